"""Clang-compiled BPF objects, in two phases as in libbpf (open/load) and cilium/ebpf
(CollectionSpec/Collection).

:meth:`CollectionSpec.read` describes an object's programs, maps and global variables
without touching the kernel: set ``const volatile`` constants there.  :meth:`CollectionSpec.load`
makes them real: the object's BTF loaded (sanitised for what the kernel lacks), its maps
created (pinned by name where the object asks), global data written (``.rodata``
frozen), its programs loaded with their func_info/line_info, so that a verifier
rejection quotes the C source.  Everything is closed again if any step fails.

Needs Linux 5.2 for global data (``BPF_PSEUDO_MAP_VALUE``, MAP_FREEZE), 5.5 for the
mmapable global data maps (``BPF_F_MMAPABLE``: set unless a ``map_mmapable`` probe says
absent; cgbpf has none yet, so always), 4.18/5.0 for BTF and its func_info/line_info.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar, cast

from . import btf, elf, uapi
from ._load_options import LoadOptions
from ._object import as_enum
from .btf.handle import Handle
from .errors import BpfError
from .kernel import Kernel, default_kernel, probe
from .map import Map, MapOptions
from .program import Program
from .uapi import AttachType, MapType, ProgType

#: The default pin root of maps with ``pinning`` LIBBPF_PIN_BY_NAME, as libbpf's.
PIN_ROOT = "/sys/fs/bpf"
PIN_NONE, PIN_BY_NAME = btf.PIN_NONE, btf.PIN_BY_NAME
#: Map types whose values are maps or programs: their contents cannot be declared yet.
_NESTED = (3, 12, 13)  # PROG_ARRAY, ARRAY_OF_MAPS, HASH_OF_MAPS
_DATA = re.compile(r"^\.(bss|data|rodata)(\..+)?$")
MIGRATION = "https://github.com/libbpf/libbpf/wiki/Libbpf-1.0-migration-guide"


def _unsupported(detail: str, hint: str) -> BpfError:
    """What cgbpf cannot do yet (EOPNOTSUPP, as NotSupported is for the kernel's lacks)."""
    return BpfError(errno.EOPNOTSUPP, detail, hint=hint)


@dataclass(eq=False)
class MapSpec:
    """A map to create: a BTF-defined map of ``.maps`` (``name`` is its C name) or a
    global data section (``name`` is ``.bss``, ``.data``, ``.rodata``, ``.rodata.str1.1``...:
    an ARRAY of one value, the section, whose initial bytes are ``contents``).
    ``kernel_name`` is the name the kernel is given (libbpf's: at most 15 characters)."""

    name: str
    type: MapType | int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    kernel_name: str = ""
    pinning: int = PIN_NONE
    map_extra: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    contents: bytearray | None = None
    freeze: bool = False


@dataclass(eq=False)
class VariableSpec:
    """A global variable: ``size`` bytes at ``offset`` in data section ``section``, of
    BTF type ``type``.  ``value`` reads and sets its initial value (before load):
    an ``int`` for integer and enum types (by their size and signedness), ``bytes`` for
    any other type."""

    name: str
    section: str
    offset: int
    size: int
    type: btf.Type
    _map: MapSpec = field(repr=False)
    _btf: btf.Spec = field(repr=False)

    @property
    def constant(self) -> bool:
        """A ``.rodata`` variable (``const volatile``): frozen once loaded."""
        return self.section.startswith(".rodata")

    @property
    def value(self) -> int | bytes:
        assert self._map.contents is not None
        return _decode(self._btf, self.type, bytes(
            self._map.contents[self.offset:self.offset + self.size]))

    @value.setter
    def value(self, new: int | bytes) -> None:
        assert self._map.contents is not None
        self._map.contents[self.offset:self.offset + self.size] = _encode(
            self._btf, self.type, self.size, new, self.name)


@dataclass(eq=False)
class ProgramSpec:
    """A program to load: function ``name`` of section ``section``, its program type and
    expected attach type from the section name (libbpf's conventions), ``instructions``
    linked with the subprograms it calls, and the ``references`` to maps and global data
    filled in at load.  ``cgroup`` is False for types cgbpf does not attach (``socket``,
    ``xdp``, ``kprobe/``...); ``attach_to`` the part of the section name after its
    prefix (``lsm_cgroup/<hook>``, ``kprobe/<function>``)."""

    name: str
    section: str
    prog_type: ProgType | int
    expected_attach_type: AttachType | None
    instructions: bytes
    references: tuple[elf.Reference, ...]
    license: str
    func_info: bytes = b""
    line_info: bytes = b""
    cgroup: bool = True
    attach_to: str = ""


class CollectionSpec:
    """An object file's programs, maps and variables (by name), not yet loaded.  ``btf``
    is its parsed ``.BTF`` (None without one: then no variables, no BTF-defined maps)."""

    def __init__(self, path: str, name: str, programs: dict[str, ProgramSpec],
                 maps: dict[str, MapSpec], variables: dict[str, VariableSpec],
                 btf_spec: btf.Spec | None) -> None:
        self.path = path
        self.name = name
        self.programs = programs
        self.maps = maps
        self.variables = variables
        self.btf = btf_spec

    def __repr__(self) -> str:
        return f"<CollectionSpec {self.path}: programs {sorted(self.programs)}, " \
               f"maps {sorted(self.maps)}>"

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> CollectionSpec:
        """Read the object file at ``path``; the object name (the kernel names of its
        global data maps start with it) is the file name up to its first dot, as
        libbpf's.  :class:`MalformedObject` if it is not a readable eBPF object."""
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        return cls.from_bytes(data, name=os.path.basename(path).split(".")[0], path=path)

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "", path: str = "<bytes>"
                   ) -> CollectionSpec:
        """An object file's contents; ``path`` names it in errors."""
        return _Reader(elf.read(bytes(data), path), name).spec()

    def constants(self, values: Mapping[str, int | bytes]) -> None:
        """Set ``const volatile`` variables (``.rodata``) before load.  A name that is
        not a constant is a KeyError; a non-rodata variable is refused (set
        ``variables[name].value`` for the initial value of ``.data``/``.bss``)."""
        for key, value in values.items():
            var = self.variables.get(key)
            if var is None:
                raise KeyError(f"{self.path}: no variable {key!r} (constants: "
                               f"{sorted(v.name for v in self.variables.values() if v.constant)})")
            if not var.constant:
                raise ValueError(f"{self.path}: {key!r} is in {var.section}, not a constant "
                                 "(.rodata); set variables[name].value for its initial value")
            var.value = value

    def load(self, kernel: Kernel | None = None, *, pin_root: str | None = None
             ) -> Collection:
        """Create the maps, write global data, load the programs: a :class:`Collection`.
        ``pin_root`` (default /sys/fs/bpf) is where maps with ``pinning`` BY_NAME are
        pinned, an existing compatible pin being reused.  On any failure, what was made
        is closed and pins made are removed.  CAP_BPF (and CAP_NET_ADMIN for most cgroup
        program types)."""
        k = kernel or default_kernel()
        for ps in self.programs.values():
            if ps.prog_type == ProgType.LSM:
                raise _unsupported(
                    f"{self.path}: program {ps.name} (section {ps.section}): LSM programs "
                    "need the BTF id of their hook in the kernel's vmlinux BTF",
                    "cgbpf does not read vmlinux BTF yet: load it with libbpf or bpftool")
        with contextlib.ExitStack() as undo:
            handle = None
            if self.btf is not None:
                handle = Handle.load(self.btf.sanitized(lambda key: _has(k, key)).to_bytes(),
                                     kernel=k)
                undo.callback(handle.close)
            maps = {name: _create(k, ms, handle, pin_root or PIN_ROOT, undo)
                    for name, ms in self.maps.items()}
            programs = {name: self._load(k, ps, maps, handle, undo)
                        for name, ps in self.programs.items()}
            coll = Collection(programs, maps, self.variables)
            undo.pop_all()
        if handle is not None:
            handle.close()
        return coll

    def _load(self, k: Kernel, ps: ProgramSpec, maps: dict[str, Map], handle: Handle | None,
              undo: contextlib.ExitStack) -> Program:
        code = elf.resolve_references(ps.instructions, list(ps.references),
                                      lambda name: maps[name].fd)
        options = None if handle is None else LoadOptions(
            btf=handle, func_info=ps.func_info, line_info=ps.line_info)
        # Program.load and Map.create take any type number (uapi names only some).
        prog = Program.load(code, cast(ProgType, ps.prog_type),
                            expected_attach_type=ps.expected_attach_type,
                            name=ps.name[:uapi.BPF_OBJ_NAME_LEN - 1], license=ps.license,
                            options=options, kernel=k)
        undo.callback(prog.close)
        return prog


def _has(k: Kernel, key: str) -> bool:
    """Whether ``k`` has feature ``key``: only a definite "absent" is False (cgbpf's
    probes are tri-state); a key without a probe is taken as present."""
    return key not in probe.FEATURES or probe.check(k, key) is not False


def _create(k: Kernel, ms: MapSpec, handle: Handle | None, pin_root: str,
            undo: contextlib.ExitStack) -> Map:
    """MAP_CREATE of ``ms`` (or its existing pin), its contents written, frozen if asked."""
    path = os.path.join(pin_root, ms.name) if ms.pinning == PIN_BY_NAME else None
    if path is not None:
        reused = _pinned(k, ms, path)
        if reused is not None:
            undo.callback(reused.close)
            return reused
    flags = ms.flags
    if ms.contents is not None and _has(k, "map_mmapable"):
        flags |= uapi.F_MMAPABLE
    options = None if handle is None else MapOptions(
        btf=handle, btf_key_type_id=ms.btf_key_type_id,
        btf_value_type_id=ms.btf_value_type_id, map_extra=ms.map_extra)
    m = Map.create(cast(MapType, ms.type), key_size=ms.key_size, value_size=ms.value_size,
                   max_entries=ms.max_entries, name=ms.kernel_name, flags=flags,
                   options=options, kernel=k)
    undo.callback(m.close)
    if ms.contents is not None:
        m.update(bytes(4), bytes(ms.contents))
    if ms.freeze:
        m.freeze()
    if path is not None:
        m.pin(path)
        undo.callback(m.unpin, path)
    return m


def _pinned(k: Kernel, ms: MapSpec, path: str) -> Map | None:
    """The map pinned at ``path`` if there is one; a clear error if it differs from ``ms``."""
    try:
        m = Map.from_pin(path, kernel=k)
    except FileNotFoundError:
        return None
    info = m.info()
    want = (ms.type, ms.key_size, ms.value_size, ms.max_entries)
    have = (info.type, info.key_size, info.value_size, info.max_entries)
    if have != want:
        m.close()
        raise BpfError(errno.EINVAL, f"map {ms.name!r}: the map pinned at {path} is "
                       f"{uapi.name_of(info.type)} key {info.key_size} B value "
                       f"{info.value_size} B x {info.max_entries}, the object's is "
                       f"{uapi.name_of(ms.type)} key {ms.key_size} B value {ms.value_size} B"
                       f" x {ms.max_entries}", command="OBJ_GET",
                       hint="remove the old pin (or pass another pin_root)")
    return m


class Globals(Mapping[str, "int | bytes"]):
    """A loaded collection's global variables by name: reading gives the current value
    (MAP_LOOKUP_ELEM of key 0 of its section's map: the same on the host and the model),
    assigning ``coll.globals[name] = v`` writes it (MAP_UPDATE_ELEM of the whole section:
    a program writing another variable of that section at the same moment can lose its
    write).  ``.rodata`` variables are read-only (EPERM, as the frozen map answers)."""

    def __init__(self, maps: dict[str, Map], variables: dict[str, VariableSpec]) -> None:
        self._maps = maps
        self._vars = variables

    def _var(self, name: str) -> tuple[VariableSpec, Map, bytes]:
        var = self._vars[name]
        m = self._maps[var.section]
        raw = m.lookup(bytes(4))
        assert raw is not None  # an ARRAY always has key 0
        return var, m, raw

    def __getitem__(self, name: str) -> int | bytes:
        var, _, raw = self._var(name)
        return _decode(var._btf, var.type, raw[var.offset:var.offset + var.size])

    def __setitem__(self, name: str, value: int | bytes) -> None:
        var, m, raw = self._var(name)
        if var.constant:
            raise BpfError(errno.EPERM, f"global {name!r} is in {var.section}",
                           command="MAP_UPDATE_ELEM",
                           hint="constants are frozen at load: set them on the "
                           "CollectionSpec (spec.constants) before loading")
        new = bytearray(raw)
        new[var.offset:var.offset + var.size] = _encode(var._btf, var.type, var.size, value,
                                                        name)
        m.update(bytes(4), bytes(new))

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __len__(self) -> int:
        return len(self._vars)


class Collection:
    """A loaded object: ``programs`` (each with its expected attach type, so that
    ``cg.link(coll.programs[name])`` needs none), ``maps`` (global data maps under their
    section names), ``globals``.  ``close()`` (or ``with``) closes them all."""

    def __init__(self, programs: dict[str, Program], maps: dict[str, Map],
                 variables: dict[str, VariableSpec]) -> None:
        self.programs = programs
        self.maps = maps
        self.globals = Globals(maps, variables)

    def __repr__(self) -> str:
        return f"<Collection programs {sorted(self.programs)} maps {sorted(self.maps)}>"

    @classmethod
    def load(cls, path: str | os.PathLike[str], kernel: Kernel | None = None, *,
             constants: Mapping[str, int | bytes] | None = None,
             pin_root: str | None = None) -> Collection:
        """:meth:`CollectionSpec.read`, :meth:`~CollectionSpec.constants`,
        :meth:`~CollectionSpec.load` in one."""
        spec = CollectionSpec.read(path)
        spec.constants(constants or {})
        return spec.load(kernel, pin_root=pin_root)

    def close(self) -> None:
        """Close every program and map (their fds: links and pins keep theirs alive)."""
        for obj in (*self.programs.values(), *self.maps.values()):
            obj.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _decode(spec: btf.Spec, t: btf.Type, raw: bytes) -> int | bytes:
    r = spec.resolve(t)
    if isinstance(r, (btf.Int, btf.Enumeration)) and r.size in (1, 2, 4, 8) \
            and len(raw) == r.size:
        return int.from_bytes(raw, "little", signed=r.signed)
    return raw


def _encode(spec: btf.Spec, t: btf.Type, size: int, value: int | bytes, name: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, bytes, bytearray)):
        raise TypeError(f"variable {name!r}: an int or bytes, not {type(value).__name__}")
    r = spec.resolve(t)
    if isinstance(value, int):
        if not isinstance(r, (btf.Int, btf.Enumeration)) or r.size != size:
            raise TypeError(f"variable {name!r} is {spec.name_of(t)}: give {size} bytes")
        try:
            return value.to_bytes(size, "little", signed=r.signed)
        except OverflowError:
            raise ValueError(f"variable {name!r} ({spec.name_of(t)}): {value} does not fit"
                             ) from None
    if len(value) != size:
        raise ValueError(f"variable {name!r} ({spec.name_of(t)}) is {size} bytes, not "
                         f"{len(value)}")
    return bytes(value)


def kernel_map_name(object_name: str, section: str) -> str:
    """libbpf's ``internal_map_name``: the object name's first characters and the section
    name, in 15 characters; ``.rodata.foo``-style sections are named alone."""
    suffix = max(7, len(section))
    suffix = min(suffix, uapi.BPF_OBJ_NAME_LEN - 1)
    prefix = 0 if "." in section[1:] else min(uapi.BPF_OBJ_NAME_LEN - suffix - 1,
                                               len(object_name))
    name = (object_name[:prefix] + section[:suffix])[:uapi.BPF_OBJ_NAME_LEN - 1]
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


class _Reader:
    """An :class:`elf.ObjectFile` interpreted: what :meth:`CollectionSpec.from_bytes` does."""

    def __init__(self, obj: elf.ObjectFile, name: str) -> None:
        self.obj = obj
        self.name = name
        self.btf: btf.Spec | None = None
        self.ext: btf.Ext | None = None
        self.maps: dict[str, MapSpec] = {}
        self.variables: dict[str, VariableSpec] = {}

    def spec(self) -> CollectionSpec:
        obj = self.obj
        if obj.section("maps") is not None:
            raise obj.error(
                "a legacy 'maps' section (struct bpf_map_def): libbpf 1.0 dropped it and "
                "cgbpf does not read it", "maps",
                hint=f"declare maps in SEC(\".maps\") with __uint/__type ({MIGRATION})")
        self._btf()
        self._maps()
        self._data()
        lic = obj.section("license")
        license = lic.data.split(b"\0")[0].decode(errors="replace") if lic else ""
        programs: dict[str, ProgramSpec] = {}
        for sec in obj.sections:
            if sec.executable and sec.name != ".text":
                for sym in obj.symbols:
                    if sym.section == sec.index and sym.type == "STT_FUNC":
                        programs[sym.name] = self._program(sec, sym, license)
        return CollectionSpec(obj.path, self.name, programs, self.maps, self.variables,
                              self.btf)

    def _btf(self) -> None:
        obj = self.obj
        sec = obj.section(".BTF")
        if sec is None:
            return
        spec = btf.Spec.from_bytes(sec.data, path=obj.path)
        spec.fixup_datasecs(
            {s.name: s.size for s in obj.sections},
            {s.name: s.value for s in obj.symbols
             if s.type == "STT_OBJECT" and s.bind in ("STB_GLOBAL", "STB_WEAK")})
        self.btf = spec
        ext = obj.section(".BTF.ext")
        if ext is not None:
            self.ext = btf.Ext.from_bytes(ext.data, spec, path=obj.path)

    def _maps(self) -> None:
        obj = self.obj
        if obj.section(".maps") is None:
            return
        if self.btf is None:
            raise obj.error("a .maps section without .BTF: BTF-defined maps need the "
                            "object's BTF", ".maps", hint="compile with clang -g")
        for name, d in self.btf.maps().items():
            if d.map_type in _NESTED or d.inner is not None or d.values_type_id:
                raise _unsupported(f"{obj.path}: map {name!r}: maps of maps and program "
                                   "arrays with declared values",
                                   "create it with Map.create and fill it after load")
            if d.pinning not in (PIN_NONE, PIN_BY_NAME):
                raise obj.error(f"map {name!r}: pinning {d.pinning} (LIBBPF_PIN_NONE 0 "
                                "or LIBBPF_PIN_BY_NAME 1)", ".maps")
            self.maps[name] = MapSpec(
                name, as_enum(MapType, d.map_type), d.key_size or 0, d.value_size or 0,
                d.max_entries, d.map_flags, name[:uapi.BPF_OBJ_NAME_LEN - 1], d.pinning,
                d.map_extra, d.key_type_id, d.value_type_id)

    def _data(self) -> None:
        """One ARRAY map per global data section, and its variables from the DATASEC."""
        secs = self.btf.datasecs() if self.btf is not None else {}
        for sec in self.obj.sections:
            if not _DATA.match(sec.name) or not sec.size or sec.executable:
                continue
            rodata = sec.name.startswith(".rodata")
            datasec = secs.get(sec.name)
            contents = bytearray(sec.data) if sec.data else bytearray(sec.size)
            ms = MapSpec(sec.name, MapType.ARRAY, 4, sec.size, 1,
                         uapi.F_RDONLY_PROG if rodata else 0,
                         kernel_map_name(self.name, sec.name),
                         btf_value_type_id=self.btf.types.index(datasec)
                         if self.btf is not None and datasec is not None else 0,
                         contents=contents, freeze=rodata)
            self.maps[sec.name] = ms
            if self.btf is not None and datasec is not None:
                self._variables(ms, datasec, self.btf)

    def _variables(self, ms: MapSpec, datasec: btf.Datasec, spec: btf.Spec) -> None:
        for v in datasec.vars:
            var = spec.type(v.type_id)
            if not isinstance(var, btf.Var) or v.offset + v.size > ms.value_size:
                raise self.obj.error(f"DATASEC {ms.name}: {spec.name_of(var)} at "
                                     f"{v.offset}+{v.size} is not a variable of the "
                                     f"{ms.value_size}-byte section", ".BTF")
            key = var.name if var.name not in self.variables else f"{ms.name}/{var.name}"
            self.variables[key] = VariableSpec(var.name, ms.name, v.offset, v.size,
                                               spec.type(var.type_id), ms, spec)

    def _program(self, sec: elf.Section, sym: elf.Symbol, license: str) -> ProgramSpec:
        obj = self.obj
        what = f"program {sym.name}"
        d = elf.section_def(sec.name)
        if d is None:
            raise _unsupported(f"{obj.path}: {what}: section {sec.name!r} is not a program "
                               "section cgbpf knows",
                               "use one of libbpf's names: cgroup_skb/egress, cgroup/connect4,"
                               " sockops, ... (cgbpf.elf.SECTION_DEFS)")
        if sym.bind == "STB_LOCAL":
            raise _unsupported(f"{obj.path}: {what} in section {sec.name} is static",
                               "programs are global functions (libbpf refuses static ones)")
        linked = elf.link(obj, sym, self._resolve, what)
        func_info, line_info = self._ext(linked, what)
        return ProgramSpec(sym.name, sec.name, d.prog_type, d.attach_type,
                           bytes(linked.insns), tuple(linked.references), license,
                           func_info, line_info, d.cgroup, sec.name[len(d.name) + 1:])

    def _ext(self, linked: elf.Linked, what: str) -> tuple[bytes, bytes]:
        """The program's func_info and line_info, gathered from its pieces; CO-RE
        relocations refused."""
        if self.ext is None:
            return b"", b""
        funcs, lines = [], []
        for p in linked.pieces:
            lo, hi = p.start * elf.linker.INSN, (p.start + p.count) * elf.linker.INSN
            core = _within(self.ext.core_relos.get(p.section.name, []), lo, hi)
            if core:
                c = core[0]
                assert self.btf is not None
                raise _unsupported(
                    f"{self.obj.path}: {what}: CO-RE relocation {c.kind_name} of "
                    f"{self.btf.name_of(c.type_id)} (access {c.access}) at instruction "
                    f"{c.insn_off // elf.linker.INSN - p.start + p.at} (section {p.section.name})"
                    + (f", and {len(core) - 1} more" if len(core) > 1 else ""),
                    "cgbpf does not apply CO-RE relocations yet: avoid "
                    "__builtin_preserve_access_index/BPF_CORE_READ, or load with libbpf")
            base = p.at - p.start
            funcs.append(btf.func_info_bytes(
                _within(self.ext.func_info.get(p.section.name, []), lo, hi), insn_base=base))
            lines.append(btf.line_info_bytes(
                _within(self.ext.line_info.get(p.section.name, []), lo, hi), insn_base=base))
        return b"".join(funcs), b"".join(lines)

    def _resolve(self, sym: elf.Symbol, imm: int, what: str) -> tuple[str, int | None]:
        """The map or global data an ``ld_imm64`` relocation names."""
        obj = self.obj
        name = elf.symbol_name(obj, sym)
        if not sym.section:
            raise _unsupported(f"{obj.path}: {what} refers to extern {name} (a __ksym or "
                               "__kconfig variable)", "cgbpf does not resolve externs yet")
        sec = obj.sections[sym.section]
        if sec.name == ".maps":
            if sym.name not in self.maps:
                raise obj.error(f"{what} refers to {name} in .maps, not a map", ".maps")
            return sym.name, None
        ms = self.maps.get(sec.name)
        if ms is not None and ms.contents is not None:
            offset = sym.value + imm
            if not 0 <= offset < ms.value_size:
                raise obj.error(f"{what} refers to byte {offset} of {sec.name} "
                                f"({ms.value_size} bytes)", sec.name)
            return sec.name, offset
        if sec.executable:
            raise _unsupported(f"{obj.path}: {what} takes the address of a function "
                               "(a callback, BPF_PSEUDO_FUNC)", "not supported yet")
        raise obj.error(f"{what} refers to {name} in section {sec.name!r}, neither a map "
                        "nor global data", sec.name)


R = TypeVar("R", btf.FuncInfo, btf.LineInfo, btf.CoreRelo)


def _within(records: list[R], lo: int, hi: int) -> list[R]:
    """The records of instructions at byte offsets ``lo`` to ``hi`` of their section."""
    return [r for r in records if lo <= r.insn_off < hi]
