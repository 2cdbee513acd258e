"""cgbpf.btf against clang's output, bpftool's reading of it and the kernel's BTF_LOAD:
round trips, every type as ``bpftool btf dump format raw`` shows it, func/line info
against the C source, DATASEC fix-ups against the ELF, BTF-defined maps, sanitizing for
older kernels, and fuzzing (malformed BTF only ever raises MalformedObject).

``CGBPF_FUZZ_EXAMPLES`` sets the number of examples of each fuzz test (default 150)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfc import SOURCES, compile_c
from cgbpf import btf
from cgbpf.btf import Kind
from cgbpf.errors import MalformedObject
from cgtest import need_host

EXAMPLES = int(os.environ.get("CGBPF_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"
ALL_OBJECTS = sorted(p.stem for p in SOURCES.glob("*.c"))
NONE = lambda key: False  # noqa: E731  # a kernel with none of the newer BTF kinds


@dataclass
class Obj:
    """A compiled test object: its sections, ELF facts and parsed BTF."""

    path: Path
    btf: bytes
    ext: bytes
    sizes: dict[str, int]
    symbols: dict[str, int]
    funcs: dict[tuple[str, int], str]  # (section, offset) -> function symbol
    hidden: set[str]

    def spec(self) -> btf.Spec:
        return btf.Spec.from_bytes(self.btf, path=str(self.path))

    def fixed(self) -> btf.Spec:
        spec = self.spec()
        spec.fixup_datasecs(self.sizes, self.symbols, hidden=self.hidden)
        return spec


@functools.cache
def obj(name: str) -> Obj:
    path = compile_c(name)
    with path.open("rb") as f:
        elf = ELFFile(f)
        sections = list(elf.iter_sections())
        symtab = elf.get_section_by_name(".symtab")
        symbols = list(symtab.iter_symbols())
        return Obj(
            path, elf.get_section_by_name(".BTF").data(),
            elf.get_section_by_name(".BTF.ext").data(),
            {s.name: s.data_size for s in sections},
            {s.name: s["st_value"] for s in symbols if s["st_info"]["type"] == "STT_OBJECT"},
            {(sections[s["st_shndx"]].name, s["st_value"]): s.name for s in symbols
             if s["st_info"]["type"] == "STT_FUNC"},
            {s.name for s in symbols
             if s["st_other"]["visibility"] in ("STV_HIDDEN", "STV_INTERNAL")})


def blob(types: bytes, strings: bytes, *, hdr: bytes = b"") -> bytes:
    """A .BTF section of raw type records and a string section."""
    return (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24 + len(hdr), 0, len(types), len(types),
                        len(strings)) + hdr + types + strings)


def rec(kind: int, type_or_size: int = 0, name_off: int = 0, vlen: int = 0,
        kflag: int = 0, *extra: int) -> bytes:
    return struct.pack(f"<III{len(extra)}I", name_off, kflag << 31 | kind << 24 | vlen,
                       type_or_size, *extra)


# --- what bpftool says ---------------------------------------------------------------

ENCODING = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}
LINKAGE = {0: "static", 1: "global", 2: "extern"}


Raw = tuple[int, str, str, dict[str, str], list[tuple[str, dict[str, str]]]]


def bpftool_raw(path: Path) -> list[Raw]:
    """``bpftool btf dump file PATH format raw``: (id, kind, name, fields, members)."""
    out = subprocess.run([BPFTOOL, "btf", "dump", "file", str(path), "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    types: list[Raw] = []
    for line in out.splitlines():
        if line.startswith("["):
            m = re.fullmatch(r"\[(\d+)\] (\w+) '([^']*)'(.*)", line)
            assert m, line
            types.append((int(m[1]), m[2], "" if m[3] == "(anon)" else m[3], fields(m[4]), []))
        else:
            m = re.fullmatch(r"\s+(?:'([^']*)' )?(.*)", line)
            assert m, line
            name = "" if m[1] in (None, "(anon)") else m[1]
            types[-1][4].append((name, fields(m[2])))
    return types


def fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=([^\s,]+)", text))


def describe(spec: btf.Spec, i: int) -> Raw:
    """Type ``i`` of ``spec`` as :func:`bpftool_raw` gives it."""
    t = spec.type(i)
    f: dict[str, object] = {}
    members: list[tuple[str, dict[str, object]]] = []
    if isinstance(t, btf.Int):
        f = {"size": t.size, "bits_offset": t.offset, "nr_bits": t.bits,
             "encoding": ENCODING[t.encoding]}
    elif isinstance(t, (btf.Ptr, btf.Modifier)):
        f = {"type_id": t.type_id}
    elif isinstance(t, btf.Array):
        f = {"type_id": t.type_id, "index_type_id": t.index_type_id, "nr_elems": t.nelems}
    elif isinstance(t, btf.Composite):
        f = {"size": t.size, "vlen": len(t.members)}
        members = [(m.name, {"type_id": m.type_id, "bits_offset": m.bit_offset}
                    | ({"bitfield_size": m.bitfield_size} if m.bitfield_size else {}))
                   for m in t.members]
    elif isinstance(t, btf.Enumeration):
        f = {"encoding": "SIGNED" if t.signed else "UNSIGNED", "size": t.size,
             "vlen": len(t.values)}
        members = [(n, {"val": v}) for n, v in t.values]
    elif isinstance(t, btf.Fwd):
        f = {"fwd_kind": "union" if t.union else "struct"}
    elif isinstance(t, (btf.Func, btf.Var)):
        f = {"type_id": t.type_id, "linkage": LINKAGE[t.linkage]}
    elif isinstance(t, btf.FuncProto):
        f = {"ret_type_id": t.return_type_id, "vlen": len(t.params)}
        members = [(n, {"type_id": p}) for n, p in t.params]
    elif isinstance(t, btf.Datasec):
        f = {"size": t.size, "vlen": len(t.vars)}
        members = [("", {"type_id": v.type_id, "offset": v.offset, "size": v.size})
                   for v in t.vars]
    elif isinstance(t, btf.Float):
        f = {"size": t.size}
    elif isinstance(t, btf.DeclTag):
        f = {"type_id": t.type_id, "component_idx": t.component_idx}
    return (i, t.kind.name, t.name, {k: str(v) for k, v in f.items()},
            [(n, {k: str(v) for k, v in d.items()}) for n, d in members])


def assert_bpftool_agrees(spec: btf.Spec, path: Path) -> None:
    theirs = bpftool_raw(path)
    ours = [describe(spec, i) for i in range(1, len(spec.types))]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a == b


# --- round trips and bpftool ---------------------------------------------------------

@pytest.mark.parametrize("name", ALL_OBJECTS)
def test_round_trip(name: str) -> None:
    """Every test object's .BTF marshals back byte for byte, and reparses to equal types."""
    o = obj(name)
    spec = o.spec()
    assert spec.to_bytes() == o.btf
    assert btf.Spec.from_bytes(spec.to_bytes()).types == spec.types


@pytest.mark.parametrize("name", ALL_OBJECTS)
def test_types_agree_with_bpftool(name: str) -> None:
    """Each type's id, kind, name, sizes, members and values as bpftool reads them."""
    o = obj(name)
    assert_bpftool_agrees(o.spec(), o.path)


def test_fixed_and_sanitized_agree_with_bpftool(tmp_path: Path) -> None:
    """What to_bytes writes after changes is BTF that bpftool (libbpf) reads as we do."""
    for spec in (obj("btf_types").fixed(), obj("btf_types").fixed().sanitized(NONE)):
        raw = tmp_path / "raw.btf"
        raw.write_bytes(spec.to_bytes())
        assert_bpftool_agrees(spec, raw)


def test_kinds_and_queries() -> None:
    spec = obj("btf_types").spec()
    kinds = {t.kind for t in spec.types[1:]}
    assert kinds == set(Kind) - {Kind.UNKN, Kind.ENUM64}  # clang 14 emits no ENUM64
    point = spec.find("point", btf.Struct)
    assert spec.size_of(point) == 48 and point.kind_flag
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in point.members[:3]] == [
        ("x", 0, 0), ("flags", 32, 3), ("mode", 35, 5)]
    typedef = spec.find("point_t", btf.Typedef)
    assert spec.resolve(typedef) is point
    assert spec.size_of(typedef) == 48
    assert spec.name_of(typedef) == "point_t"
    name = spec.type(point.members[3].type_id)
    assert spec.name_of(name) == "const volatile char *" and spec.size_of(name) == 8
    assert spec.size_of(spec.type(point.members[4].type_id)) == 16  # long pair[2]
    colour = spec.find("colour", btf.Enum)
    assert colour.values == (("RED", 0), ("GREEN", 7), ("BLUE", 2**32 - 3))
    assert spec.find("tagged_ptr", btf.Var).kind == Kind.VAR
    with pytest.raises(KeyError):
        spec.find("point", btf.Union)
    with pytest.raises(MalformedObject, match="out of range"):
        spec.type(len(spec.types))
    with pytest.raises(MalformedObject, match="no size"):
        spec.size_of(spec.find("count_egress", btf.Func))
    assert set(spec.datasecs()) == {".bss", ".data", ".rodata", ".maps", "license"}


# --- .BTF.ext ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["btf_types", "btf_maps", "btf_core"])
def test_func_and_line_info(name: str) -> None:
    """Each func_info names the function symbol at its offset; each line_info has the text
    of its line in the C source, in order, inside its section."""
    o = obj(name)
    spec = o.spec()
    ext = btf.Ext.from_bytes(o.ext, spec, path=str(o.path))
    source = (SOURCES / f"{name}.c").read_text().splitlines()
    assert ext.func_info and set(ext.line_info) == set(ext.func_info)
    for sec, infos in ext.func_info.items():
        for fi in infos:
            assert spec.type(fi.type_id).name == o.funcs[sec, fi.insn_off]
    for sec, lines in ext.line_info.items():
        assert [li.insn_off for li in lines] == sorted(li.insn_off for li in lines)
        for li in lines:
            assert li.insn_off % 8 == 0 and li.insn_off < o.sizes[sec]
            assert Path(li.file_name).name == f"{name}.c"
            assert li.line in ("", source[li.line_num - 1])  # clang leaves some out
            assert spec.strings[li.line_off:].startswith(li.line.encode() + b"\0")
        assert sum(bool(li.line) for li in lines) > len(lines) / 2
    if name == "btf_types":
        funcs = {spec.type(fi.type_id).name for v in ext.func_info.values() for fi in v}
        assert funcs == {"count_egress", "count_ingress", "weigh"}
        lines = [li.line for li in ext.line_info["cgroup_skb/egress"]]
        assert "\t__u32 key = skb->len & 1;" in lines
    assert ext.core_relos == {} or name == "btf_core"


def test_core_relos() -> None:
    o = obj("btf_core")
    spec = o.spec()
    relos = btf.Ext.from_bytes(o.ext, spec).core_relos["cgroup_skb/egress"]
    got = [(spec.name_of(r.type_id), r.access, r.kind_name) for r in relos]
    assert got == [("struct sock_like", "0:1", "FIELD_BYTE_OFFSET"),
                   ("struct sock_like", "0:2", "FIELD_EXISTS"),
                   ("struct sock_like", "0", "TYPE_SIZE"),
                   ("enum sk_state", "1", "ENUMVAL_VALUE")]
    assert btf.CoreRelo(0, 1, "0", 99).kind_name == "UNKNOWN(99)"


def test_prog_load_arrays() -> None:
    """func_info/line_info as PROG_LOAD takes them: instruction indexes from insn_base."""
    o = obj("btf_types")
    ext = btf.Ext.from_bytes(o.ext, o.spec())
    fis = ext.func_info["cgroup_skb/egress"]
    raw = btf.func_info_bytes(fis, insn_base=3)
    assert len(raw) == btf.FUNC_INFO_REC_SIZE * len(fis)
    assert struct.unpack_from("<II", raw) == (fis[0].insn_off // 8 + 3, fis[0].type_id)
    lis = ext.line_info["cgroup_skb/egress"]
    raw = btf.line_info_bytes(lis, insn_base=2)
    assert len(raw) == btf.LINE_INFO_REC_SIZE * len(lis)
    for i, li in enumerate(lis):
        off, file_off, line_off, line_col = struct.unpack_from("<IIII", raw, 16 * i)
        assert (off, file_off, line_off) == (li.insn_off // 8 + 2, li.file_name_off,
                                             li.line_off)
        assert (line_col >> 10, line_col & 0x3FF) == (li.line_num, li.col)


# --- DATASEC fix-ups -----------------------------------------------------------------

def test_fixup_datasecs() -> None:
    """Sizes from the ELF sections, offsets from the symbols, sorted, no overlaps."""
    o = obj("btf_types")
    spec = o.fixed()
    before = o.spec().datasecs()
    assert all(d.size == 0 for d in before.values())
    for name, sec in spec.datasecs().items():
        assert sec.size == o.sizes[name] > 0
        assert sorted(spec.type(v.type_id).name for v in sec.vars) == sorted(
            spec.type(v.type_id).name for v in before[name].vars)
        end = 0
        for v in sec.vars:
            var = spec.type(v.type_id)
            assert isinstance(var, btf.Var)
            assert v.offset == o.symbols[var.name] >= end
            assert v.size == spec.size_of(var)
            end = v.offset + v.size
        assert end <= sec.size
    bss = spec.datasecs()[".bss"]
    assert [spec.type(v.type_id).name for v in bss.vars] == sorted(
        ("packets", "drops", "origin", "tagged_ptr", "restricted"), key=o.symbols.__getitem__)


def test_fixup_static_hidden_and_missing() -> None:
    o = obj("btf_maps")
    spec = o.fixed()
    seen = spec.find("seen", btf.Var)
    assert seen.linkage == btf.STATIC  # libbpf leaves a static's offset as clang wrote it
    spec = o.spec()
    spec.fixup_datasecs(o.sizes, o.symbols, hidden={"tuples"})
    assert spec.find("tuples", btf.Var).linkage == btf.STATIC
    assert spec.find("outer", btf.Var).linkage == btf.GLOBAL
    with pytest.raises(MalformedObject, match=r"'\.bss' has no ELF section"):
        o.spec().fixup_datasecs({k: v for k, v in o.sizes.items() if k != ".bss"}, o.symbols)
    with pytest.raises(MalformedObject, match=r"'outer' of DATASEC '\.maps' has no ELF symbol"):
        o.spec().fixup_datasecs(o.sizes, {k: v for k, v in o.symbols.items() if k != "outer"})


# --- maps ----------------------------------------------------------------------------

def test_map_def() -> None:
    spec = obj("btf_types").spec()
    counts = spec.map_def(spec.find("counts", btf.Var))
    u32, u64 = spec.find("__u32", btf.Typedef), spec.find("__u64", btf.Typedef)
    assert counts == btf.MapDef(
        name="counts", map_type=1, key_size=4, value_size=8,
        key_type_id=spec.types.index(u32), value_type_id=spec.types.index(u64),
        max_entries=16, map_flags=0, pinning=btf.PIN_BY_NAME, map_extra=0, numa_node=0)
    sized = spec.maps()["sized"]
    assert (sized.map_type, sized.key_size, sized.value_size, sized.max_entries,
            sized.map_flags, sized.key_type_id, sized.pinning) == (2, 4, 16, 2, 128, 0, 0)
    assert list(spec.maps()) == ["counts", "sized"]


def test_map_in_map_and_prog_array() -> None:
    spec = obj("btf_maps").spec()
    maps = spec.maps()
    inner = spec.find("inner", btf.Struct)
    outer = maps["outer"]
    assert (outer.map_type, outer.key_size, outer.value_size, outer.max_entries) == (12, 4, 4, 2)
    assert outer.values_type_id == spec.types.index(inner)
    assert outer.inner == maps["first"].__class__(**{**vars(maps["first"]),
                                                     "name": "outer.inner"})
    jumps = maps["jumps"]
    assert (jumps.map_type, jumps.value_size, jumps.inner) == (3, 4, None)
    assert isinstance(spec.type(jumps.values_type_id), btf.FuncProto)
    tuples = maps["tuples"]
    assert (tuples.map_type, tuples.key_size, tuples.value_size, tuples.map_flags) == (
        9, 36, 4, 2)
    assert spec.name_of(tuples.key_type_id) == "struct bpf_sock_tuple"


def hand_map(*members: tuple[str, btf.Type]) -> btf.Spec:
    """A Spec with one map ``bad`` of ``name: type`` members (each type appended after
    ``int`` (id 1) and ``int[5]`` (id 2), so ``Ptr("", 2)`` is ``__uint(name, 5)``)."""
    types: list[btf.Type] = [btf.Void(), btf.Int("int", 4, 0, 32, 1), btf.Array("", 1, 1, 5)]
    ms = []
    for name, t in members:
        types.append(t)
        ms.append(btf.Member(name, len(types) - 1, 64 * len(ms)))
    types.append(btf.Struct("", 8 * len(ms), tuple(ms)))
    types.append(btf.Var("bad", len(types) - 1, btf.GLOBAL))
    return btf.Spec(types)


@pytest.mark.parametrize(("members", "message"), [
    ([("colour", btf.Ptr("", 2))], "map 'bad': unknown member 'colour'"),
    ([("type", btf.Ptr("", 1))], "member 'type' is int \\*, not __uint"),
    ([("key", btf.Int("long", 8, 0, 64, 1))], "member 'key' is long, not __type"),
    ([("key", btf.Ptr("", 1)), ("key_size", btf.Ptr("", 2))],
     "key type of 4 bytes but key_size 5"),
    ([("pinning", btf.Ptr("", 2))], "pinning 5"),
    ([("values", btf.Ptr("", 1))], "member 'values' is int \\*"),
    ([("key", btf.Ptr("", 0))], "map 'bad': key type void has no size"),
    ([("values", btf.Array("", 4, 1, 0)), ("type", btf.Ptr("", 2))],
     r"values of int\[5\] in a map of type 5"),
])
def test_map_def_refusals(members: list[tuple[str, btf.Type]], message: str) -> None:
    spec = hand_map(*members)
    with pytest.raises(MalformedObject, match=message) as e:
        spec.map_def(spec.find("bad", btf.Var))
    assert e.value.section == ".BTF"


def test_map_def_not_a_struct() -> None:
    spec = btf.Spec([btf.Void(), btf.Int("int", 4, 0, 32, 1), btf.Var("v", 1, btf.GLOBAL),
                     btf.Var("e", 1, btf.EXTERN)])
    with pytest.raises(MalformedObject, match="map 'v': defined by int, not a struct"):
        spec.map_def(spec.find("v", btf.Var))
    with pytest.raises(MalformedObject, match="map 'e': an extern declaration"):
        spec.map_def(spec.find("e", btf.Var))


# --- sanitizing ----------------------------------------------------------------------

class BtfLoadAttr(ctypes.Structure):
    """BPF_BTF_LOAD's part of ``union bpf_attr`` (test-only, raw)."""

    _fields_ = [("btf", ctypes.c_uint64), ("btf_log_buf", ctypes.c_uint64),
                ("btf_size", ctypes.c_uint32), ("btf_log_size", ctypes.c_uint32),
                ("btf_log_level", ctypes.c_uint32)]


def btf_load(data: bytes) -> str | None:
    """BTF_LOAD (cmd 18) of ``data`` on the host: None, or why the kernel refused it."""
    k = need_host()
    buf = ctypes.create_string_buffer(data, len(data))
    log = ctypes.create_string_buffer(1 << 16)
    attr = BtfLoadAttr(ctypes.addressof(buf), ctypes.addressof(log), len(data), len(log), 1)
    try:
        fd = k.bpf(18, attr)
    except OSError as e:
        return f"BTF_LOAD: {e}\n{log.value.decode(errors='replace')[-2000:]}"
    k.close(fd)
    return None


def kernel_accepts(data: bytes) -> None:
    problem = btf_load(data)
    assert problem is None, problem


INT = btf.Int("int", 4, 0, 32, btf.INT_SIGNED)
#: The smallest BTF with each newer kind, as libbpf's probe_kern_btf_* load them.
PROBES = {
    "btf_float": [btf.Void(), btf.Float("float", 4)],
    "btf_decl_tag": [btf.Void(), INT, btf.Var("x", 1, btf.GLOBAL), btf.DeclTag("tag", 2, -1)],
    "btf_type_tag": [btf.Void(), INT, btf.TypeTag("tag", 1), btf.Ptr("", 2)],
    "btf_enum64": [btf.Void(), btf.Enum64("e", 8, False, (("A", 1 << 40),))],
    "btf_func_global": [btf.Void(), INT, btf.FuncProto("", 1, (("x", 1),)),
                        btf.Func("f", 2, btf.GLOBAL)],
}


@functools.cache
def kernel_has(key: str) -> bool:
    """Whether the host's BTF_LOAD takes the kind (or linkage) ``key`` names."""
    return btf_load(btf.Spec(PROBES[key]).to_bytes()) is None


ENUM64_SPEC = btf.Spec([
    btf.Void(), btf.Int("unsigned long", 8, 0, 64, 0),
    btf.Enum64("big", 8, False, (("LOW", 1), ("HIGH", 1 << 40))),
    btf.Enum64("neg", 8, True, (("MINUS", -(1 << 40)),)),
    btf.Enum("small", 4, True, (("NEG", -1), ("POS", 2))),
    btf.Var("wide", 2, btf.GLOBAL),
    btf.Datasec(".data", 8, (btf.VarSecinfo(5, 0, 8),)),
])


def test_sanitized_kinds() -> None:
    spec = obj("btf_types").fixed()
    clean = spec.sanitized(NONE)
    assert len(clean.types) == len(spec.types)
    changed = [(a, b) for a, b in zip(spec.types, clean.types, strict=True) if a != b]
    for a, b in changed:
        if isinstance(a, btf.Float):
            assert b == btf.Struct("", a.size, ())
        elif isinstance(a, btf.DeclTag):
            assert b == btf.Int(a.name, 1, 0, 8, 0)
        elif isinstance(a, btf.TypeTag):
            assert b == btf.Const("", a.type_id)
        else:
            assert isinstance(a, btf.Func) and b == btf.Func(a.name, a.type_id, btf.STATIC)
            assert a.linkage == btf.GLOBAL
    assert {a.kind for a, _ in changed} == {Kind.FLOAT, Kind.DECL_TAG,
                                                     Kind.TYPE_TAG, Kind.FUNC}
    assert spec.sanitized(lambda key: True).types == spec.types
    only_float = spec.sanitized(lambda key: key != "btf_float")
    assert {a.kind for a, b in zip(spec.types, only_float.types, strict=True)
            if a != b} == {Kind.FLOAT}
    assert btf.Spec.from_bytes(clean.to_bytes()).strings[:len(spec.strings)] == spec.strings


def test_sanitized_enum64() -> None:
    """ENUM64 (clang 14 emits none: built by hand) becomes a UNION of 1-byte INTs."""
    spec = btf.Spec.from_bytes(ENUM64_SPEC.to_bytes())
    assert spec.types == ENUM64_SPEC.types
    clean = spec.sanitized(lambda key: key != "btf_enum64")
    placeholder = len(spec.types)
    assert clean.types[placeholder] == btf.Int("enum64_placeholder", 1, 0, 8, 0)
    assert clean.types[2] == btf.Union("big", 8, (btf.Member("LOW", placeholder, 0),
                                                  btf.Member("HIGH", placeholder, 0)))
    assert clean.types[4] == btf.Enum("small", 4, False, (("NEG", 2**32 - 1), ("POS", 2)))
    assert clean.types[5:placeholder] == spec.types[5:]
    assert btf.Spec.from_bytes(clean.to_bytes()).types == clean.types


@pytest.mark.host
@pytest.mark.parametrize("name", ["btf_types", "btf_maps", "btf_core"])
def test_kernel_loads_fixed_and_sanitized(name: str) -> None:
    """Sanitized for the host's kernel (as probed), or for one without any newer kind,
    the kernel takes it; where it has them all, also unsanitized and without each one."""
    spec = obj(name).fixed()
    kernel_accepts(spec.sanitized(kernel_has).to_bytes())
    kernel_accepts(spec.sanitized(NONE).to_bytes())
    if all(map(kernel_has, PROBES)):
        kernel_accepts(spec.to_bytes())
        for key in PROBES:
            kernel_accepts(spec.sanitized(lambda k, key=key: k != key).to_bytes())


@pytest.mark.host
def test_kernel_refuses_the_malformed() -> None:
    """What Spec.from_bytes refuses, BTF_LOAD refuses too."""
    for message, data in MALFORMED.items():
        assert btf_load(data) is not None, message


@pytest.mark.host
def test_kernel_loads_enum64_and_sanitized() -> None:
    kernel_accepts(ENUM64_SPEC.sanitized(kernel_has).to_bytes())
    kernel_accepts(ENUM64_SPEC.sanitized(NONE).to_bytes())
    assert (btf_load(ENUM64_SPEC.to_bytes()) is None) == kernel_has("btf_enum64")


# --- malformed input -----------------------------------------------------------------

def exercise(spec: btf.Spec) -> None:
    """Everything a loader asks of a parsed spec: only MalformedObject may come out."""
    for t in spec.types:
        spec.name_of(t)
        spec.resolve(t)
        with contextlib.suppress(MalformedObject):
            spec.size_of(t)
    with contextlib.suppress(MalformedObject):
        spec.maps()
    assert btf.Spec.from_bytes(spec.to_bytes()).types == spec.types
    btf.Spec.from_bytes(spec.sanitized(NONE).to_bytes())
    with contextlib.suppress(MalformedObject):
        spec.fixup_datasecs({}, {})


def parse(data: bytes) -> btf.Spec | None:
    try:
        spec = btf.Spec.from_bytes(data)
    except MalformedObject as e:
        assert e.section == ".BTF"
        return None
    exercise(spec)
    return spec


def test_truncated_everywhere() -> None:
    """Cut anywhere: the whole section, its type section, its string section."""
    data = obj("btf_types").btf
    for n in range(len(data)):
        with pytest.raises(MalformedObject):
            btf.Spec.from_bytes(data[:n])
    spec = obj("btf_types").spec()
    types = data[24:24 + len(data) - 24 - len(spec.strings)]
    for n in [*range(16), *range(16, len(types), 4)]:  # every record boundary
        parse(blob(types[:n], spec.strings))
    for n in range(0, len(spec.strings), 7):
        parse(blob(types, spec.strings[:n]))


@FUZZ
@given(st.data())
def test_corrupt_bytes(data: st.DataObject) -> None:
    """Single-byte (and a few-byte) corruptions of a real .BTF anywhere, header included."""
    raw = bytearray(obj("btf_types").btf)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.one_of(st.integers(0, 23), st.integers(0, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    parse(bytes(raw))


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes(body: bytes, with_header: bool) -> None:
    parse(blob(body[: len(body) // 2], b"\0" + body[len(body) // 2:] + b"\0")
          if with_header else body)


#: Per kind: the u32 words after ``struct btf_type``, fixed and per ``vlen`` record.
WORDS = {1: (1, 0), 3: (3, 0), 4: (0, 3), 5: (0, 3), 6: (0, 2), 13: (0, 2), 14: (1, 0),
         15: (0, 3), 17: (1, 0), 19: (0, 3)}
SMALL = st.sampled_from([0, 1, 2, 3] * 3 + [4, 8, 32, 0x01000020, 0xFFFFFFFF])


@st.composite
def type_records(draw: st.DrawFn) -> bytes:
    """A type section of a few records of random kinds, mostly well formed, with small
    ids, sizes and name offsets: a good share parse and go through every query."""
    out = b""
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from([*range(1, 20)] * 5 + [0, 20]))
        fixed, per = WORDS.get(kind, (0, 0))
        vlen = draw(st.sampled_from([0, 1, 2, 3] * 3 + [0xFFFF] if per else [0] * 15 + [1]))
        n = max(0, min(fixed + per * vlen, 12) + draw(st.sampled_from([0] * 15 + [-1, 1])))
        extra = draw(st.lists(SMALL, min_size=n, max_size=n))
        name = 5 if kind in (7, 8, 12, 14, 15, 16, 17, 18) else 1 if kind == 1 else 0
        out += rec(kind, draw(SMALL), draw(st.sampled_from([name] * 15 + [0, 5, 99])), vlen,
                   draw(st.sampled_from([0] * 15 + [1])), *extra)
    return out


@FUZZ
@given(type_records())
def test_random_records(body: bytes) -> None:
    """Type records of random kinds, vlens, flags and ids: all checks, never a crash."""
    parse(blob(body, b"\0int\0x\0"))


_S = b"\0int\0T\0"
_INT = rec(1, 4, 1, 0, 0, 32)
#: Malformed .BTF sections and what MalformedObject says of each.
MALFORMED = {
    "bad magic": b"\x00\x00" + blob(_INT, _S)[2:],
    "big-endian BTF is not supported": b"\xeb\x9f" + blob(_INT, _S)[2:],
    "unsupported version 2": blob(_INT, _S)[:2] + b"\x02" + blob(_INT, _S)[3:],
    "header length": blob(_INT, _S, hdr=b"\1\0\0\0"),
    "do not fill": blob(_INT, _S) + b"\0",
    "start and end with NUL": blob(_INT, b"int\0"),
    "unknown kind 20": blob(rec(20), _S),
    "unknown kind 0": blob(rec(0), _S),
    "vlen 65535": blob(rec(4, 4, 0, 0xFFFF), _S),
    "name offset 99 past": blob(rec(1, 4, 99, 0, 0, 32), _S),
    "refers to type id 7": blob(_INT + rec(2, 7), _S),
    "refers to itself through a chain of 1": blob(rec(8, 1, 5), _S),
    "refers to itself through a chain of 2": blob(rec(8, 2, 5) + rec(10, 1), _S),
    "unused bits": blob(rec(2, 0, 0, 0, 1), _S),
    "bad int": blob(rec(1, 3, 1, 0, 0, 32), _S),
    "linkage 3": blob(_INT + rec(14, 1, 5, 0, 0, 3), _S),
    "no name": blob(rec(8, 0), _S),
    "a name": blob(rec(2, 0, 1), _S),
    "truncated": blob(_INT + b"\0\0\0\0", _S),
}


def test_malformed_cases() -> None:
    for message, data in MALFORMED.items():
        with pytest.raises(MalformedObject, match=message) as e:
            btf.Spec.from_bytes(data, path="x.o")
        assert e.value.path == "x.o" and e.value.section == ".BTF"
    with pytest.raises(MalformedObject, match="type 0 is not void"):
        btf.Spec([btf.Int("int", 4, 0, 32, 1)])


def parse_ext(data: bytes, spec: btf.Spec) -> None:
    try:
        btf.Ext.from_bytes(data, spec)
    except MalformedObject as e:
        assert e.section == ".BTF.ext"


@FUZZ
@given(st.data())
def test_ext_corrupt_and_random(data: st.DataObject) -> None:
    o = obj("btf_core")
    spec = o.spec()
    raw = bytearray(o.ext)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.one_of(st.integers(0, 40), st.integers(0, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    parse_ext(bytes(raw), spec)
    parse_ext(bytes(raw[:data.draw(st.integers(0, len(raw)))]), spec)
    parse_ext(data.draw(st.binary(max_size=120)), spec)


def test_ext_truncated_everywhere() -> None:
    o = obj("btf_core")
    spec = o.spec()
    for n in range(len(o.ext)):
        parse_ext(o.ext[:n], spec)
    with pytest.raises(MalformedObject, match="not a FUNC"):
        btf.Ext.from_bytes(o.ext, btf.Spec([btf.Void()] * 1 + [btf.Int("int", 4, 0, 32, 1)] * 40,
                                           spec.strings))
