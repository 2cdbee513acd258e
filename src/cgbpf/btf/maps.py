"""BTF-defined maps: the anonymous structs of the ``.maps`` section, decoded as libbpf's
``parse_btf_map_def`` decodes them (``bpf/bpf_helpers.h``: ``__uint``, ``__type``,
``__array``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import MalformedObject
from .types import EXTERN, Array, Enumeration, FuncProto, Ptr, Struct, Var

if TYPE_CHECKING:
    from .spec import Spec

#: ``BPF_MAP_TYPE_*`` whose ``values`` are maps (``__array(values, struct inner)``).
MAP_IN_MAP = (12, 13)  # ARRAY_OF_MAPS, HASH_OF_MAPS
PROG_ARRAY = 3
PIN_NONE, PIN_BY_NAME = 0, 1
_INTS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
         "pinning", "map_extra")


@dataclass(frozen=True)
class MapDef:
    """A map definition.  ``key_size``/``value_size`` are None when the definition gives
    neither a size nor a type; ``*_type_id`` are 0 without ``__type``.  ``values_type_id``
    is what ``__array(values, ...)`` holds (a map-in-map's inner definition struct,
    described by ``inner``, or a prog array's function prototype); 0 without it."""

    name: str
    map_type: int
    key_size: int | None
    value_size: int | None
    key_type_id: int
    value_type_id: int
    max_entries: int
    map_flags: int
    pinning: int
    map_extra: int
    numa_node: int
    values_type_id: int = 0
    inner: MapDef | None = None


def parse_map_def(spec: Spec, t: Var | Struct, *, name: str = "",
                  inner: bool = False) -> MapDef:
    """The :class:`MapDef` of ``t``; :class:`MalformedObject` names the map and member."""
    name = name or t.name
    fail = _Fail(spec, name)
    if isinstance(t, Var) and t.linkage == EXTERN:
        raise fail("an extern declaration, not a definition")
    struct = spec.resolve(spec.type(t.type_id)) if isinstance(t, Var) else t
    if not isinstance(struct, Struct):
        raise fail(f"defined by {spec.name_of(struct)}, not a struct")
    ints: dict[str, int] = {}
    types: dict[str, int] = {}
    for m in struct.members:
        if m.name in _INTS:
            ints[m.name] = _int_field(spec, m.type_id, fail, m.name)
        elif m.name in ("key", "value"):
            types[m.name] = _pointee(spec, m.type_id, fail, m.name)
        elif m.name == "values":
            if inner:
                raise fail("an inner map with values: maps of maps of maps are not supported")
            types["values"] = _values(spec, m.type_id, fail)
        else:
            raise fail(f"unknown member {m.name!r}")
    sizes: dict[str, int | None] = {}
    for what in ("key", "value"):
        size = ints.get(f"{what}_size")
        if what in types:
            try:
                typed = spec.size_of(spec.type(types[what]))
            except MalformedObject as e:
                raise fail(f"{what} type {spec.name_of(types[what])} has no size") from e
            if size not in (None, typed):
                raise fail(f"{what} type of {typed} bytes but {what}_size {size}")
            size = typed
        sizes[what] = size
    map_type, pinning = ints.get("type", 0), ints.get("pinning", PIN_NONE)
    if pinning not in (PIN_NONE, PIN_BY_NAME) or (inner and pinning):
        raise fail(f"pinning {pinning}: not LIBBPF_PIN_NONE or LIBBPF_PIN_BY_NAME "
                   "(an inner map: NONE)")
    inner_def = None
    if "values" in types:
        if sizes["value"] not in (None, 4):
            raise fail(f"values of {sizes['value']} bytes; __array values are 4")
        sizes["value"] = 4
        target = spec.type(types["values"])
        if map_type in MAP_IN_MAP and isinstance(target, Struct):
            inner_def = parse_map_def(spec, target, name=f"{name}.inner", inner=True)
        elif map_type != PROG_ARRAY or not isinstance(target, FuncProto):
            raise fail(f"values of {spec.name_of(target)} in a map of type {map_type}")
    return MapDef(name, map_type, sizes["key"], sizes["value"], types.get("key", 0),
                  types.get("value", 0), ints.get("max_entries", 0), ints.get("map_flags", 0),
                  pinning, ints.get("map_extra", 0), ints.get("numa_node", 0),
                  types.get("values", 0), inner_def)


class _Fail:
    """Makes the :class:`MalformedObject` of one map."""

    def __init__(self, spec: Spec, name: str) -> None:
        self.path, self.name = spec.path, name

    def __call__(self, detail: str) -> MalformedObject:
        return MalformedObject(f"map {self.name!r}: {detail}", path=self.path,
                               section=".BTF",
                               hint="define maps with bpf_helpers.h's __uint, __type and "
                                    "__array")


def _int_field(spec: Spec, type_id: int, fail: _Fail, member: str) -> int:
    """``__uint(name, val)``: ``int (*name)[val]``; ``__ulong``: an enum of one value."""
    t = spec.resolve(spec.type(type_id))
    if isinstance(t, Ptr):
        arr = spec.type(t.type_id)
        if isinstance(arr, Array):
            return arr.nelems
    if isinstance(t, Enumeration) and len(t.values) == 1:
        return t.values[0][1]
    raise fail(f"member {member!r} is {spec.name_of(t)}, not __uint's int (*)[N]")


def _pointee(spec: Spec, type_id: int, fail: _Fail, member: str) -> int:
    """``__type(name, T)``: ``typeof(T) *name``; the id of ``T``."""
    t = spec.resolve(spec.type(type_id))
    if not isinstance(t, Ptr):
        raise fail(f"member {member!r} is {spec.name_of(t)}, not __type's T *")
    return t.type_id


def _values(spec: Spec, type_id: int, fail: _Fail) -> int:
    """``__array(values, T)``: ``typeof(T) *values[]``; the id of ``T``, modifiers off."""
    t = spec.type(type_id)
    if isinstance(t, Array) and not t.nelems:
        ptr = spec.resolve(spec.type(t.type_id))
        if isinstance(ptr, Ptr):
            return spec.resolve_id(ptr.type_id)
    raise fail(f"member 'values' is {spec.name_of(t)}, not __array's T *values[]")
