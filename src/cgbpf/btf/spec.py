"""The ``.BTF`` section: parsed, checked as the kernel's ``btf_parse`` and
``btf_check_all_metas`` check it (structurally), queried, fixed up and marshalled again."""

from __future__ import annotations

import builtins
import dataclasses
import struct
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..errors import MalformedObject
from .types import (
    GLOBAL,
    STATIC,
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Enumeration,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Modifier,
    Ptr,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)

if TYPE_CHECKING:
    from .maps import MapDef

T = TypeVar("T", bound=Type)

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic version flags hdr_len type_off type_len str_off str_len
TYPE = struct.Struct("<III")  # name_off info size_or_type
PTR_SIZE = 8
U32_MAX = 0xFFFFFFFF
MAX_NAME_DEPTH = 16
MAX_NAME_OFFSET = 0xFFFFFF  # BTF_MAX_NAME_OFFSET
MAX_TYPES = 0xFFFFF  # BTF_MAX_TYPE
_UNUSED_INFO = 0x60FF0000
_NAMED = (Kind.TYPEDEF, Kind.FWD, Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.FLOAT,
          Kind.DECL_TAG, Kind.TYPE_TAG)
_ANONYMOUS = (Kind.PTR, Kind.ARRAY, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.FUNC_PROTO)
#: Per kind: the bytes of one ``vlen`` record and the fixed bytes after ``struct btf_type``.
_VLEN = {Kind.STRUCT: 12, Kind.UNION: 12, Kind.ENUM: 8, Kind.FUNC_PROTO: 8,
         Kind.DATASEC: 12, Kind.ENUM64: 12}
_EXTRA = {Kind.INT: 4, Kind.ARRAY: 12, Kind.VAR: 4, Kind.DECL_TAG: 4}
#: Kinds whose kind flag means something (else it must be 0).
_KFLAG = (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.ENUM64, Kind.DECL_TAG,
          Kind.TYPE_TAG)


class Spec:
    """Parsed BTF: ``types[i]`` is type id ``i`` (``types[0]`` is :class:`Void`).  The
    string table is kept as it was, so offsets into it (``.BTF.ext`` line info) stay valid
    in what :meth:`to_bytes` gives; names not in it are appended.  ``offsets`` says where
    names already are in ``strings`` (what :meth:`from_bytes` found)."""

    def __init__(self, types: Sequence[Type], strings: bytes = b"\0", *, path: str = "",
                 offsets: dict[str, int] | None = None) -> None:
        self.path = path
        self.types = tuple(types)
        if not self.types or not isinstance(self.types[0], Void):
            raise self._error("type 0 is not void")
        if not strings or strings[0] or strings[-1]:
            raise self._error("the string section does not start and end with NUL")
        self._strings = strings
        self._offsets = {} if offsets is None else offsets
        self._check_graph()

    @property
    def strings(self) -> bytes:
        """The string section as read (what ``.BTF.ext`` offsets point into)."""
        return self._strings

    def _error(self, detail: str) -> MalformedObject:
        return MalformedObject(detail, path=self.path, section=".BTF")

    @classmethod
    def from_bytes(cls, data: bytes, *, path: str = "") -> Spec:
        """Parse a ``.BTF`` section; :class:`MalformedObject` says what is wrong."""
        types, strings, offsets = _Parser(bytes(data), path).parse()
        return cls(types, strings, path=path, offsets=offsets)

    def type(self, type_id: int) -> Type:
        """The type with id ``type_id``."""
        if not 0 <= type_id < len(self.types):
            raise self._error(f"type id {type_id} out of range (the last is "
                              f"{len(self.types) - 1})")
        return self.types[type_id]

    def find(self, name: str, kind: builtins.type[T]) -> T:
        """The first type of class ``kind`` named ``name`` (``KeyError`` if none)."""
        for t in self.types:
            if type(t) is kind and t.name == name:
                return t
        raise KeyError(f"no {kind.__name__} named {name!r} in the BTF")

    def resolve(self, t: Type) -> Type:
        """``t`` with typedefs, qualifiers and type tags taken off."""
        while isinstance(t, Modifier):
            t = self.type(t.type_id)
        return t

    def resolve_id(self, type_id: int) -> int:
        """The id of :meth:`resolve` of type ``type_id``."""
        while isinstance(t := self.type(type_id), Modifier):
            type_id = t.type_id
        return type_id

    def size_of(self, t: Type) -> int:
        """The size of ``t`` in bytes, as libbpf's ``btf__resolve_size`` computes it."""
        nelems, start = 1, t
        while True:
            if isinstance(t, (Int, Composite, Enumeration, Datasec, Float)):
                size = t.size
                break
            if isinstance(t, Ptr):
                size = PTR_SIZE
                break
            if isinstance(t, Array):
                nelems *= t.nelems
                t = self.type(t.type_id)
            elif isinstance(t, (Modifier, Var, DeclTag)):
                t = self.type(t.type_id)
            else:
                raise self._error(f"{self.name_of(start)} has no size ({self.name_of(t)})")
        if nelems * size > U32_MAX:
            raise self._error(f"the size of {self.name_of(start)} overflows 32 bits")
        return nelems * size

    def name_of(self, t: Type | int) -> str:
        """``t`` as C spells it: ``struct foo``, ``const char *``, ``__u32[4]``..."""
        return self._name(self.type(t) if isinstance(t, int) else t, 0)

    def _name(self, t: Type, depth: int) -> str:
        if depth > MAX_NAME_DEPTH:
            return "..."
        if isinstance(t, Void):
            return "void"
        if isinstance(t, Ptr):
            return f"{self._name(self.type(t.type_id), depth + 1)} *"
        if isinstance(t, Array):
            return f"{self._name(self.type(t.type_id), depth + 1)}[{t.nelems}]"
        if isinstance(t, Modifier) and not t.name:
            return f"{type(t).__name__.lower()} {self._name(self.type(t.type_id), depth + 1)}"
        if isinstance(t, (Composite, Enumeration, Fwd)):
            keyword = ("union" if isinstance(t, Union) or (isinstance(t, Fwd) and t.union)
                       else "enum" if isinstance(t, Enumeration) else "struct")
            return f"{keyword} {t.name or '<anon>'}"
        if isinstance(t, FuncProto):
            return f"{self._name(self.type(t.return_type_id), depth + 1)} (*)(...)"
        return t.name

    def datasecs(self) -> dict[str, Datasec]:
        """The data sections by name (``.bss``, ``.data``, ``.rodata``, ``.maps``...)."""
        return {t.name: t for t in self.types if isinstance(t, Datasec)}

    def map_def(self, t: Var | Struct) -> MapDef:
        """The BTF-defined map ``t`` (a VAR of the ``.maps`` DATASEC, or its struct)."""
        from .maps import parse_map_def

        return parse_map_def(self, t)

    def maps(self) -> dict[str, MapDef]:
        """Every map of the ``.maps`` DATASEC by name, in section order."""
        sec = self.datasecs().get(".maps")
        variables = [self.type(v.type_id) for v in sec.vars] if sec else []
        return {v.name: self.map_def(v) for v in variables if isinstance(v, Var)}

    def fixup_datasecs(self, section_sizes: dict[str, int], symbol_offsets: dict[str, int],
                       *, hidden: Collection[str] = ()) -> None:
        """Give each DATASEC clang left at size 0 its ELF section's size, and its global
        variables their symbols' values; make the variables of ``hidden`` symbols (ELF
        visibility hidden or internal) static; then sort every DATASEC's variables by offset
        (libbpf's ``btf_fixup_datasec``: the kernel refuses size 0).  ``.kconfig`` and
        ``.ksyms`` are only sorted: their externs have no ELF section."""
        types = list(self.types)
        for i, t in enumerate(types):
            if not isinstance(t, Datasec):
                continue
            secinfos, size = list(t.vars), t.size
            if t.name not in (".kconfig", ".ksyms") and not size:
                size = section_sizes.get(t.name, 0)
                if not size:
                    raise self._error(f"DATASEC {t.name!r} has no ELF section of that name "
                                      "with a size")
                for j, v in enumerate(secinfos):
                    var = types[v.type_id]
                    if not isinstance(var, Var):
                        raise self._error(f"DATASEC {t.name!r} holds {self.name_of(var)}, "
                                          "not a VAR")
                    if var.linkage != GLOBAL:
                        continue
                    if var.name not in symbol_offsets:
                        raise self._error(f"variable {var.name!r} of DATASEC {t.name!r} has "
                                          "no ELF symbol")
                    secinfos[j] = dataclasses.replace(v, offset=symbol_offsets[var.name])
                    if var.name in hidden:
                        types[v.type_id] = dataclasses.replace(var, linkage=STATIC)
            types[i] = dataclasses.replace(t, size=size, vars=tuple(
                sorted(secinfos, key=lambda v: v.offset)))
        self.types = tuple(types)

    def sanitized(self, has: Callable[[str], bool]) -> Spec:
        """A copy for a kernel without some BTF kinds, as libbpf's
        ``bpf_object__sanitize_btf`` makes it: ``has(key)`` False for ``btf_func_global``
        (5.6: global functions become static), ``btf_float`` (5.13: FLOAT becomes an empty
        anonymous STRUCT of its size), ``btf_decl_tag`` (5.16: DECL_TAG becomes a 1-byte
        INT), ``btf_type_tag`` (5.17: TYPE_TAG becomes an anonymous CONST) or
        ``btf_enum64`` (6.0: ENUM64 becomes a UNION of 1-byte INT members, ENUM loses its
        signed flag).  Type ids stay; an ENUM64 adds the INT at the end."""
        enum64, decl_tag = not has("btf_enum64"), not has("btf_decl_tag")
        func_global, float_, type_tag = (has("btf_func_global"), has("btf_float"),
                                         has("btf_type_tag"))
        placeholder = len(self.types)
        types: list[Type] = []
        for t in self.types:
            if isinstance(t, DeclTag) and decl_tag:
                t = Int(t.name, 1, 0, 8, 0)
            elif isinstance(t, Func) and not func_global:
                t = dataclasses.replace(t, linkage=STATIC)
            elif isinstance(t, Float) and not float_:
                t = Struct("", t.size, ())
            elif isinstance(t, TypeTag) and not type_tag:
                t = Const("", t.type_id)
            elif isinstance(t, Enum) and enum64 and t.signed:
                t = dataclasses.replace(t, signed=False, values=tuple(
                    (n, v & U32_MAX) for n, v in t.values))
            elif isinstance(t, Enum64) and enum64:
                t = Union(t.name, t.size, tuple(Member(n, placeholder, 0) for n, _ in t.values))
            types.append(t)
        if any(isinstance(t, Enum64) for t in self.types) and enum64:
            types.append(Int("enum64_placeholder", 1, 0, 8, 0))
        return Spec(types, self._strings, path=self.path, offsets=dict(self._offsets))

    def to_bytes(self) -> bytes:
        """The ``.BTF`` section (24-byte header, types, strings): byte for byte what
        :meth:`from_bytes` read from clang or libbpf, unless changed."""
        strings = bytearray(self._strings)
        offsets = dict(self._offsets)

        def off(name: str) -> int:
            if not name:
                return 0
            if name not in offsets:
                offsets[name] = len(strings)
                strings.extend(name.encode("utf-8", "surrogateescape") + b"\0")
            return offsets[name]

        body = b"".join(_encode(t, off) for t in self.types[1:])
        return HEADER.pack(MAGIC, 1, 0, HEADER.size, 0, len(body), len(body),
                           len(strings)) + body + strings

    def _check_graph(self) -> None:
        """Every referenced id exists, and no chain of references (pointers, typedefs,
        qualifiers, array elements, vars, funcs, tags) loops: the kernel's "Loop detected"."""
        n = len(self.types)
        for i, t in enumerate(self.types):
            for ref in _refs(t):
                if not 0 <= ref < n:
                    raise self._error(f"type {i} ({t.kind.name}) refers to type id {ref}, "
                                      f"past the last ({n - 1})")
        done = [False] * n
        for i in range(n):
            path: dict[int, None] = {}
            j: int | None = i
            while j is not None and not done[j]:
                if j in path:
                    raise self._error(f"type {j} refers to itself through a chain of "
                                      f"{len(path) - list(path).index(j)} references")
                path[j] = None
                j = _next(self.types[j])
            for j in path:
                done[j] = True


def _next(t: Type) -> int | None:
    """The one type ``t`` is made of (whose size or resolution it needs), if any."""
    if isinstance(t, (Ptr, Array, Modifier, Func, Var, DeclTag)):
        return t.type_id
    return None


def _refs(t: Type) -> Iterator[int]:
    """Every type id ``t`` mentions."""
    if isinstance(t, (Ptr, Modifier, Func, Var, DeclTag)):
        yield t.type_id
    elif isinstance(t, Array):
        yield from (t.type_id, t.index_type_id)
    elif isinstance(t, Composite):
        yield from (m.type_id for m in t.members)
    elif isinstance(t, FuncProto):
        yield t.return_type_id
        yield from (p for _, p in t.params)
    elif isinstance(t, Datasec):
        yield from (v.type_id for v in t.vars)


def _encode(t: Type, off: Callable[[str], int]) -> bytes:
    """One type in the type section; ``off`` gives a name's string offset."""
    kind, vlen, kflag, size_type, extra = t.kind, 0, False, 0, b""
    if isinstance(t, Int):
        size_type = t.size
        extra = struct.pack("<I", t.encoding << 24 | t.offset << 16 | t.bits)
    elif isinstance(t, (Ptr, Modifier)):
        size_type = t.type_id
        kflag = isinstance(t, TypeTag) and t.kind_flag
    elif isinstance(t, Array):
        extra = struct.pack("<III", t.type_id, t.index_type_id, t.nelems)
    elif isinstance(t, Composite):
        size_type, vlen, kflag = t.size, len(t.members), t.kind_flag
        extra = b"".join(struct.pack("<III", off(m.name), m.type_id,
                                     m.bitfield_size << 24 | m.bit_offset if kflag
                                     else m.bit_offset) for m in t.members)
    elif isinstance(t, Enumeration):
        size_type, vlen, kflag = t.size, len(t.values), t.signed
        extra = b"".join(
            struct.pack("<II", off(n), v & U32_MAX) if isinstance(t, Enum)
            else struct.pack("<III", off(n), v & U32_MAX, v >> 32 & U32_MAX)
            for n, v in t.values)
    elif isinstance(t, Fwd):
        kflag = t.union
    elif isinstance(t, Func):
        size_type, vlen = t.type_id, t.linkage
    elif isinstance(t, FuncProto):
        size_type, vlen = t.return_type_id, len(t.params)
        extra = b"".join(struct.pack("<II", off(n), p) for n, p in t.params)
    elif isinstance(t, Var):
        size_type, extra = t.type_id, struct.pack("<I", t.linkage)
    elif isinstance(t, Datasec):
        size_type, vlen = t.size, len(t.vars)
        extra = b"".join(struct.pack("<III", v.type_id, v.offset, v.size) for v in t.vars)
    elif isinstance(t, Float):
        size_type = t.size
    elif isinstance(t, DeclTag):
        size_type, kflag = t.type_id, t.kind_flag
        extra = struct.pack("<i", t.component_idx)
    info = kflag << 31 | kind << 24 | vlen
    return TYPE.pack(off(t.name), info, size_type) + extra


class _Parser:
    """One pass over a ``.BTF`` section's bytes."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.path = data, path
        self.offsets: dict[str, int] = {}
        self.strings = b""

    def fail(self, detail: str) -> MalformedObject:
        return MalformedObject(detail, path=self.path, section=".BTF")

    def parse(self) -> tuple[list[Type], bytes, dict[str, int]]:
        data = self.data
        if len(data) < HEADER.size:
            raise self.fail(f"{len(data)} bytes: shorter than the {HEADER.size}-byte header")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = \
            HEADER.unpack_from(data)
        if magic == 0x9FEB:
            raise self.fail("big-endian BTF is not supported")
        if magic != MAGIC:
            raise self.fail(f"bad magic {magic:#06x} (not {MAGIC:#06x})")
        if version != 1 or flags:
            raise self.fail(f"unsupported version {version} or flags {flags:#x}")
        if hdr_len < HEADER.size or hdr_len > len(data) or any(data[HEADER.size:hdr_len]):
            raise self.fail(f"header length {hdr_len}: not {HEADER.size} plus zeros "
                            f"within the {len(data)} bytes")
        if type_off % 4:
            raise self.fail(f"type section at {type_off}: not aligned to 4 bytes")
        if (type_off, str_off, str_off + str_len) != (0, type_len, len(data) - hdr_len):
            raise self.fail(f"sections (types {type_off}+{type_len}, strings "
                            f"{str_off}+{str_len}) do not fill the {len(data) - hdr_len} "
                            "bytes after the header, types first (as the kernel wants)")
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        if not self.strings or self.strings[0] or self.strings[-1]:
            raise self.fail("the string section does not start and end with NUL")
        if len(self.strings) > MAX_NAME_OFFSET + 1:
            raise self.fail(f"string section of {len(self.strings)} bytes (at most "
                            f"{MAX_NAME_OFFSET + 1})")
        return self.types(data[hdr_len:hdr_len + type_len]), self.strings, self.offsets

    def name(self, off: int, what: str) -> str:
        if off >= len(self.strings):
            raise self.fail(f"{what}: name offset {off} past the string section "
                            f"({len(self.strings)} bytes)")
        raw = self.strings[off:self.strings.index(b"\0", off)]
        name = raw.decode("utf-8", "surrogateescape")
        self.offsets.setdefault(name, off)
        return name

    def types(self, sec: bytes) -> list[Type]:
        types: list[Type] = [Void()]
        pos = 0
        while pos < len(sec):
            tid = len(types)
            if tid > MAX_TYPES:
                raise self.fail(f"more than {MAX_TYPES} types")
            if pos + TYPE.size > len(sec):
                raise self.fail(f"type {tid}: truncated at byte {pos} of the type section")
            name_off, info, size_type = TYPE.unpack_from(sec, pos)
            pos += TYPE.size
            kind_nr, vlen, kflag = info >> 24 & 0x1F, info & 0xFFFF, bool(info >> 31)
            if not 0 < kind_nr <= Kind.ENUM64:
                raise self.fail(f"type {tid}: unknown kind {kind_nr}")
            kind = Kind(kind_nr)
            what = f"type {tid} ({kind.name})"
            if info & _UNUSED_INFO or (kflag and kind not in _KFLAG):
                raise self.fail(f"{what}: unused bits set in info {info:#010x}")
            if vlen and kind not in _VLEN and kind != Kind.FUNC:
                raise self.fail(f"{what}: vlen {vlen} where the kind has none")
            need = _EXTRA.get(kind, 0) + vlen * _VLEN.get(kind, 0)
            if pos + need > len(sec):
                raise self.fail(f"{what}: {need} bytes of data (vlen {vlen}) run past the "
                                "type section")
            name = self.name(name_off, what)
            if (kind in _NAMED and not name) or (kind in _ANONYMOUS and name):
                raise self.fail(f"{what}: {'a name' if name else 'no name'} ({name!r})")
            types.append(self.one(kind, what, name, kflag, vlen, size_type,
                                  sec[pos:pos + need]))
            pos += need
        return types

    def one(self, kind: Kind, what: str, name: str, kflag: bool, vlen: int,
            size_type: int, extra: bytes) -> Type:
        """The type of ``kind`` from its ``btf_type`` fields and the bytes after them."""
        words = struct.unpack(f"<{len(extra) // 4}I", extra)
        if kind == Kind.INT:
            (data,) = words
            encoding, offset, bits = data >> 24, data >> 16 & 0xFF, data & 0xFF
            if (data & ~0x0FFF00FF or encoding not in (0, 1, 2, 4)
                    or size_type not in (1, 2, 4, 8, 16) or not 0 < bits <= 128
                    or offset + bits > size_type * 8):
                raise self.fail(f"{what}: bad int: size {size_type}, data {data:#010x}")
            return Int(name, size_type, offset, bits, encoding)
        if kind in (Kind.ARRAY, Kind.FWD) and size_type:
            raise self.fail(f"{what}: size/type field {size_type} where it must be 0")
        if kind == Kind.ARRAY:
            return Array(name, *words)
        if kind in (Kind.STRUCT, Kind.UNION):
            members = tuple(
                Member(self.name(words[i], what), words[i + 1],
                       words[i + 2] & 0xFFFFFF if kflag else words[i + 2],
                       words[i + 2] >> 24 if kflag else 0)
                for i in range(0, len(words), 3))
            cls = Struct if kind == Kind.STRUCT else Union
            return cls(name, size_type, members, kflag)
        if kind in (Kind.ENUM, Kind.ENUM64):
            step = 2 if kind == Kind.ENUM else 3
            bits = 32 * (step - 1)
            if size_type not in (1, 2, 4, 8):
                raise self.fail(f"{what}: size {size_type}")
            values = []
            for i in range(0, len(words), step):
                v = words[i + 1] | (words[i + 2] << 32 if step == 3 else 0)
                values.append((self.name(words[i], what),
                               v - (1 << bits) if kflag and v >> (bits - 1) else v))
            return (Enum if kind == Kind.ENUM else Enum64)(name, size_type, kflag,
                                                           tuple(values))
        if kind == Kind.FUNC_PROTO:
            params = tuple((self.name(words[i], what), words[i + 1])
                           for i in range(0, len(words), 2))
            return FuncProto(name, size_type, params)
        if kind == Kind.DATASEC:
            return Datasec(name, size_type, tuple(
                VarSecinfo(*words[i:i + 3]) for i in range(0, len(words), 3)))
        if kind in (Kind.FUNC, Kind.VAR):
            linkage = vlen if kind == Kind.FUNC else words[0]
            if linkage > 2:
                raise self.fail(f"{what}: linkage {linkage}")
            return (Func if kind == Kind.FUNC else Var)(name, size_type, linkage)
        if kind == Kind.FLOAT:
            if size_type not in (2, 4, 8, 12, 16):
                raise self.fail(f"{what}: size {size_type}")
            return Float(name, size_type)
        if kind == Kind.DECL_TAG:
            (idx,) = struct.unpack("<i", extra)
            if idx < -1:
                raise self.fail(f"{what}: component index {idx}")
            return DeclTag(name, size_type, idx, kflag)
        if kind == Kind.FWD:
            return Fwd(name, kflag)
        if kind == Kind.TYPE_TAG:
            return TypeTag(name, size_type, kflag)
        return _REFERENCES[kind](name, size_type)


_REFERENCES: dict[Kind, Callable[[str, int], Type]] = {
    Kind.PTR: Ptr, Kind.TYPEDEF: Typedef, Kind.VOLATILE: Volatile, Kind.CONST: Const,
    Kind.RESTRICT: Restrict}
