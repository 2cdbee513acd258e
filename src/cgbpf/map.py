"""BPF maps (ARRAY, HASH): create, look up, update, delete, iterate; find by id or pin;
list.  Programs use them as counters; a map fd goes into ``asm.ld_map_fd``."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import _bpf, _check, _sys, uapi
from ._object import BpfObject, as_enum
from .errors import BpfError
from .kernel import Kernel, default_kernel
from .uapi import F_MMAPABLE, F_RDONLY, F_RDONLY_PROG, F_WRONLY, F_WRONLY_PROG, Cmd, MapType

#: Map types whose value is one copy per possible CPU.
PERCPU = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                    MapType.PERCPU_CGROUP_STORAGE})

if TYPE_CHECKING:
    from .btf.handle import Handle

#: MAP_UPDATE_ELEM flags.
ANY, NOEXIST, EXIST = 0, 1, 2
#: MAP_CREATE ``flags``: the syscall side may only read (RDONLY) or write (WRONLY) the
#: map (4.15); programs may only read (RDONLY_PROG: libbpf's .rodata) or write it
#: (WRONLY_PROG), Linux 5.2; an ARRAY whose values can be mmap()ed (MMAPABLE, 5.5).
MAP_FLAGS = {"RDONLY": F_RDONLY, "WRONLY": F_WRONLY, "RDONLY_PROG": F_RDONLY_PROG,
             "WRONLY_PROG": F_WRONLY_PROG, "MMAPABLE": F_MMAPABLE}


@dataclass(frozen=True)
class MapOptions:
    """The BTF and other rarer MAP_CREATE attributes, for :meth:`Map.create`.

    ``btf`` with ``btf_key_type_id`` and ``btf_value_type_id``: the key's and value's
    types in that BTF (Linux 4.18; their sizes must be the map's key and value sizes;
    bpftool and ``bpf_map_info.btf_id`` show them).  ``map_extra``: per map type (the
    bloom filter's hash count, 5.16; must be 0 for ARRAY and HASH)."""

    btf: Handle | None = None
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    map_extra: int = 0

    def __post_init__(self) -> None:
        for field in ("btf_key_type_id", "btf_value_type_id", "map_extra"):
            _check.arg("MapOptions", field, getattr(self, field), int, "an int")


@dataclass(frozen=True)
class MapInfo:
    """OBJ_GET_INFO_BY_FD of a map."""

    id: int
    type: MapType | int
    key_size: int
    value_size: int
    max_entries: int
    name: str
    flags: int = 0
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0


class Map(BpfObject):
    """A BPF map.  Requires Linux 4.13+ (map ids); CAP_BPF to create."""

    kind, by_id = "map", Cmd.MAP_GET_FD_BY_ID

    def _describe(self, info: MapInfo) -> None:
        self.id, self.type, self.name = info.id, info.type, info.name
        self.key_size, self.value_size = info.key_size, info.value_size
        #: a lookup's or update's value: one value, or for a per-CPU map one copy per
        #: possible CPU, each rounded up to 8 bytes (the kernel writes them all)
        self.value_len = (-(-info.value_size // 8) * 8 * self.kernel.possible_cpus()
                          if info.type in PERCPU else info.value_size)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"id={self.id}"
        return f"<Map {self.name or '?'} {uapi.name_of(self.type)} {state}>"

    @classmethod
    def create(cls, map_type: MapType, *, key_size: int, value_size: int, max_entries: int,
               name: str = "", flags: int = 0, options: MapOptions | None = None,
               kernel: Kernel | None = None) -> Map:
        """MAP_CREATE.  ``name``: letters, digits, '_' and '.' (15 at most); ``flags``: of
        :data:`MAP_FLAGS` (``cgbpf.uapi.F_RDONLY_PROG``...); ``options``: BTF types and
        the rest (:class:`MapOptions`)."""
        _check.arg("Map.create", "map_type", map_type, int, "a cgbpf.MapType")
        for field, value in (("key_size", key_size), ("value_size", value_size),
                             ("max_entries", max_entries), ("flags", flags)):
            _check.arg("Map.create", field, value, int, "an int")
        _check.arg("Map.create", "name", name, str, "a str")
        _check.arg("Map.create", "options", options, MapOptions, "a cgbpf.MapOptions",
                   none=True)
        opts = options or MapOptions()
        k = kernel or default_kernel()
        names = [n for n, f in MAP_FLAGS.items() if flags & f]
        detail = f"map {name!r} ({uapi.name_of(map_type)}, key {key_size} B, " \
                 f"value {value_size} B, {max_entries} entries" + (
                     f", {'|'.join(names)}" if names else "") + (
                     f", BTF key {opts.btf_key_type_id} value {opts.btf_value_type_id}"
                     if opts.btf is not None else "") + ")"
        return cls(k, _bpf.call(k, Cmd.MAP_CREATE, lambda: _sys.map_create(
            k, map_type=map_type, key_size=key_size, value_size=value_size,
            max_entries=max_entries, map_flags=flags, name=name.encode(),
            btf_fd=opts.btf.fd if opts.btf is not None else 0,
            btf_key_type_id=opts.btf_key_type_id, btf_value_type_id=opts.btf_value_type_id,
            map_extra=opts.map_extra), detail, errors=_CREATE_ERRORS))

    def info(self) -> MapInfo:
        """OBJ_GET_INFO_BY_FD: id, type, sizes, name, flags and BTF ids as the kernel
        reports them."""
        return _info(self.kernel, self.fd)

    def freeze(self) -> None:
        """MAP_FREEZE: from now on the syscall side cannot write the map (updates and
        deletes are EPERM); programs still can, unless it is RDONLY_PROG (then the
        verifier knows its values are constant: libbpf freezes .rodata).  Once only
        (again: EBUSY).  Linux 5.2; CAP_BPF."""
        _bpf.call(self.kernel, Cmd.MAP_FREEZE, lambda: _sys.map_freeze(self.kernel, self.fd),
                  repr(self))

    def _elem(self, cmd: Cmd, key: bytes, value: ctypes.Array[ctypes.c_char] | None,
              flags: int = 0) -> None:
        _check.arg(f"Map.{cmd.name.split('_')[1].lower()}", "key", key, bytes, "bytes")
        if len(key) != self.key_size:
            raise BpfError(errno.EINVAL, f"{self!r}: key of {len(key)} bytes",
                           command=cmd.name, hint=f"keys are {self.key_size} bytes")
        kb = ctypes.create_string_buffer(key, len(key))
        _bpf.call(self.kernel, cmd, lambda: _sys.map_elem(self.kernel, cmd, self.fd, kb, value,
                                                          flags), f"{self!r} key {key.hex()}")

    def lookup(self, key: bytes) -> bytes | None:
        """MAP_LOOKUP_ELEM: the value, or None if the key is absent."""
        value = ctypes.create_string_buffer(self.value_len)
        try:
            self._elem(Cmd.MAP_LOOKUP_ELEM, key, value)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return value.raw

    def update(self, key: bytes, value: bytes, *, flags: int = ANY) -> None:
        """MAP_UPDATE_ELEM (``flags``: ANY, NOEXIST or EXIST)."""
        _check.arg("Map.update", "value", value, bytes, "bytes")
        if len(value) != self.value_len:
            raise BpfError(errno.EINVAL, f"{self!r}: value of {len(value)} bytes",
                           command="MAP_UPDATE_ELEM", hint=f"values are {self.value_len} bytes"
                           + (" (a copy per possible CPU, each rounded up to 8 bytes)"
                              if self.value_len != self.value_size else ""))
        self._elem(Cmd.MAP_UPDATE_ELEM, key, ctypes.create_string_buffer(value, len(value)), flags)

    def delete(self, key: bytes) -> None:
        """MAP_DELETE_ELEM (ARRAY maps refuse with EINVAL, as the kernel does)."""
        self._elem(Cmd.MAP_DELETE_ELEM, key, None)

    def _next_key(self, key: bytes | None) -> bytes | None:
        """MAP_GET_NEXT_KEY: the key after ``key`` (None: the first key); None at the end.
        The kernel starts again from the first key when ``key`` is absent (a HASH key
        deleted since) and, for an ARRAY, when it is out of range."""
        kb = None if key is None else ctypes.create_string_buffer(key, len(key))
        out = ctypes.create_string_buffer(self.key_size)
        try:
            _bpf.call(self.kernel, Cmd.MAP_GET_NEXT_KEY, lambda: _sys.map_elem(
                self.kernel, Cmd.MAP_GET_NEXT_KEY, self.fd, kb, out),
                lambda: f"{self!r} " + ("first key" if key is None else f"after key {key.hex()}"))
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return out.raw

    def keys(self) -> Iterator[bytes]:
        """Every key, in the kernel's order (index order for an ARRAY, bucket order for a
        HASH), through MAP_GET_NEXT_KEY from the first key.  Each key comes once: when the
        key just given is deleted during the walk (as in ``for k in m: m.delete(k)``) the
        kernel starts again from the first key, and the keys already given are passed
        over.  Keys added during the walk may or may not come.  Linux 4.12."""
        seen: set[bytes] | None = None if self.type == MapType.ARRAY else set()
        key = self._next_key(None)
        while key is not None:
            if seen is None or key not in seen:
                if seen is not None:
                    seen.add(key)
                yield key
            key = self._next_key(key)

    def __iter__(self) -> Iterator[bytes]:
        """The keys: ``iter(m)`` is :meth:`keys`."""
        return self.keys()

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` for every key, as :meth:`keys` walks them; a key deleted
        between the walk and its lookup is skipped.  Linux 4.12."""
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                yield key, value


_CREATE_ERRORS: _bpf.ErrorMap = {
    errno.EINVAL: (BpfError, "a size, flag or BTF type id this map type does not take "
                   "(MMAPABLE: ARRAY only; RDONLY with WRONLY; a BTF type whose size is not "
                   "the key or value size), or a name with characters other than "
                   "letters, digits, '_' and '.'"),
}


def _info(k: Kernel, fd: int) -> MapInfo:
    raw = uapi.MapInfo()
    _bpf.get_info(k, fd, raw, f"map fd {fd}")
    return MapInfo(int(raw.id), as_enum(MapType, raw.type), int(raw.key_size),
                   int(raw.value_size), int(raw.max_entries), raw.name.decode(errors="replace"),
                   int(raw.map_flags), int(raw.btf_id), int(raw.btf_key_type_id),
                   int(raw.btf_value_type_id))


def maps(*, kernel: Kernel | None = None) -> Iterator[MapInfo]:
    """Every map on the system (all types), via MAP_GET_NEXT_ID, in id order.  Maps that
    vanish during the walk are skipped.  Needs CAP_SYS_ADMIN; Linux 4.13."""
    k = kernel or default_kernel()
    return _bpf.infos(k, Cmd.MAP_GET_NEXT_ID, Map.by_id, "map", _info)
