"""Clang-compiled objects (cgbpf.collection): what a spec reads from an object, loading
on both kernels (BTF, maps, global data, subprograms, pins, every cgroup section), and
the clear refusals (legacy maps, CO-RE, LSM, non-cgroup programs linked to a cgroup, a
verifier rejection quoting the C source)."""

from __future__ import annotations

import errno
import os
import struct
import warnings

import pytest

from bpfc import compile_c
from cgbpf import AttachType, BpfError, Map, MapType, ProgType, VerifierError, uapi
from cgbpf._scratch import Scratch
from cgbpf.collection import Collection, CollectionSpec, kernel_map_name
from cgbpf.elf import SECTION_DEFS, section_def
from cgbpf.errors import MalformedObject
from cgbpf.kernel import Kernel
from cgtest import host_only, requires


def test_spec_reads_programs_maps_and_variables() -> None:
    spec = CollectionSpec.read(compile_c("globals"))
    assert spec.name == compile_c("globals").name.split(".")[0]
    assert set(spec.programs) == {"count_egress", "count_ingress"}
    egress = spec.programs["count_egress"]
    assert (egress.section, egress.prog_type, egress.expected_attach_type, egress.license) \
        == ("cgroup_skb/egress", ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS, "GPL")
    assert spec.programs["count_ingress"].expected_attach_type == AttachType.CGROUP_INET_INGRESS
    # count_egress calls weigh (global) and record (static): three functions, three
    # func_info records of 8 bytes; count_ingress calls record only
    assert len(egress.func_info) == 3 * 8 and len(spec.programs["count_ingress"].func_info) == 16
    assert egress.line_info and len(egress.line_info) % 16 == 0
    sizes = spec.maps["sizes"]
    assert (sizes.type, sizes.key_size, sizes.value_size, sizes.max_entries) == (
        MapType.HASH, 4, 8, 64)
    assert sizes.btf_key_type_id and sizes.btf_value_type_id
    bss, data, rodata = spec.maps[".bss"], spec.maps[".data"], spec.maps[".rodata"]
    assert (bss.type, bss.key_size, bss.value_size, bss.max_entries) == (MapType.ARRAY, 4, 24, 1)
    assert bss.kernel_name == kernel_map_name(spec.name, ".bss") == "globals_.bss"
    assert (rodata.flags, rodata.freeze, data.freeze) == (uapi.F_RDONLY_PROG, True, False)
    values = {name: v.value for name, v in spec.variables.items()}
    assert values == {"egress_packets": 0, "ingress_packets": 0, "weighed": 0, "step": 3,
                      "tag": b"cgbpf\0\0\0", "allow": 1, "bias": -1}
    assert [(v.section, v.size) for v in (spec.variables["bias"], spec.variables["tag"])] \
        == [(".rodata", 4), (".data", 8)]
    refs = {r.map for r in egress.references}
    assert refs == {"sizes", ".bss", ".data", ".rodata"}


def test_constants_and_variables_are_set_on_the_spec() -> None:
    spec = CollectionSpec.read(compile_c("globals"))
    spec.constants({"allow": 0, "bias": -7})
    spec.variables["tag"].value = b"changed!"
    spec.variables["step"].value = 2**32 - 1
    assert bytes(spec.maps[".rodata"].contents or b"") == struct.pack("<Ii", 0, -7)
    assert spec.variables["tag"].value == b"changed!" and spec.variables["step"].value == 2**32 - 1
    with pytest.raises(ValueError, match="not a constant"):
        spec.constants({"step": 1})
    with pytest.raises(KeyError, match="nope"):
        spec.constants({"nope": 1})
    with pytest.raises(ValueError, match="does not fit"):
        spec.variables["step"].value = 2**32
    with pytest.raises(ValueError, match="8 bytes"):
        spec.variables["tag"].value = b"short"
    with pytest.raises(TypeError):
        spec.variables["tag"].value = 1


def test_kernel_map_names_as_libbpf() -> None:
    assert kernel_map_name("test_cgroup_link", ".bss") == "test_cgr.bss"
    assert kernel_map_name("x", ".rodata") == "x.rodata"
    assert kernel_map_name("object", ".rodata.str1.1") == ".rodata.str1.1"
    assert kernel_map_name("o", ".data.a_very_long_name") == ".data.a_very_lo"
    assert kernel_map_name("", ".bss") == ".bss"


def test_section_table_covers_every_cgroup_attach_type() -> None:
    cgroup = [d for d in SECTION_DEFS if d.cgroup and d.attach_type is not None]
    assert {d.attach_type for d in cgroup} == set(uapi.CGROUP_PROG_TYPE)
    for d in cgroup:
        assert d.attach_type is not None
        assert uapi.CGROUP_PROG_TYPE[d.attach_type] == d.prog_type, d.name
    assert section_def("kprobe/do_nanosleep") == section_def("kprobe")
    assert section_def("lsm_cgroup/socket_bind") is not None
    assert section_def("kprobex") is None and section_def("cgroup/connect7") is None


def test_every_cgroup_section_loads_and_links_without_an_attach_type(
        kernel: Kernel, scratch: Scratch) -> None:
    requires(kernel, "unix_hooks", "sock_release_hook", "getpeername_hooks")
    spec = CollectionSpec.read(compile_c("cgroup_sections"))
    assert len(spec.programs) == 30
    cg = scratch.cgroup("all")
    with spec.load(kernel) as coll:
        for name, prog in coll.programs.items():
            ps = spec.programs[name]
            d = section_def(ps.section)
            assert d is not None and prog.type == d.prog_type == ps.prog_type
            assert prog.expected_attach_type == d.attach_type
            if d.attach_type is None:  # cgroup/skb: libbpf gives it no attach type
                with pytest.raises(BpfError, match="no attach type"):
                    cg.link(prog)
                continue
            with cg.link(prog) as link:
                assert link.info().attach_type == d.attach_type
                assert cg.query(d.attach_type).ids == [prog.id]


def test_global_data_subprograms_and_btf_load(kernel: Kernel) -> None:
    """Loaded with BTF: the maps carry their BTF types, .rodata is read-only and frozen,
    .data holds its initial value, globals are typed."""
    with Collection.load(compile_c("globals"), kernel, constants={"bias": 4}) as coll:
        assert set(coll.maps) == {"sizes", ".bss", ".data", ".rodata"}
        assert coll.maps[".rodata"].info().name.endswith(".rodata")
        assert dict(coll.globals) == {"egress_packets": 0, "ingress_packets": 0, "weighed": 0,
                                      "step": 3, "tag": b"cgbpf\0\0\0", "allow": 1, "bias": 4}
        coll.globals["step"] = 9
        coll.globals["tag"] = b"\xff" * 8
        assert (coll.globals["step"], coll.globals["tag"]) == (9, b"\xff" * 8)
        assert coll.maps[".data"].lookup(bytes(4)) == struct.pack("<I", 9) + b"\xff" * 8
        with pytest.raises(PermissionError, match="constants are frozen"):
            coll.globals["allow"] = 0
        with pytest.raises(BpfError) as e:  # frozen: the kernel refuses too
            coll.maps[".rodata"].update(bytes(4), bytes(8))
        assert e.value.errno == errno.EPERM
        with pytest.raises(KeyError):
            coll.globals["nope"]
        prog = coll.programs["count_egress"]
        info = prog.info()
        assert set(info.map_ids) == {m.id for m in coll.maps.values()}
        assert prog.expected_attach_type == AttachType.CGROUP_INET_EGRESS


def test_a_failed_load_closes_what_it_made(kernel: Kernel, scratch: Scratch) -> None:
    """The second program is refused: the maps, the first program, the BTF and the pin
    made for it are gone again."""
    spec = CollectionSpec.read(compile_c("pinned"))
    code = spec.programs["count_shared"].instructions
    assert code[-8:] == b"\x95" + bytes(7)  # exit: made r0 = 0, the program falls off its end
    spec.programs["count_shared"].instructions = code[:-8] + b"\xb7" + bytes(7)
    root = scratch.bpffs()
    before = _objects(kernel)
    with pytest.raises(BpfError):
        spec.load(kernel, pin_root=root)
    assert _objects(kernel) == before
    assert not os.path.exists(os.path.join(root, "shared")) or kernel.name == "model"
    with pytest.raises(FileNotFoundError):
        Map.from_pin(os.path.join(root, "shared"), kernel=kernel)


def _objects(kernel: Kernel) -> tuple[set[int], set[int]]:
    from cgbpf import maps, programs

    return {m.id for m in maps(kernel=kernel)}, {p.id for p in programs(kernel=kernel)}


def test_maps_pinned_by_name_are_shared(kernel: Kernel, scratch: Scratch) -> None:
    root = scratch.bpffs()
    with Collection.load(compile_c("pinned"), kernel, pin_root=root) as first:
        with Collection.load(compile_c("pinned"), kernel, pin_root=root) as second:
            assert first.maps["shared"].id == second.maps["shared"].id
        with pytest.raises(BpfError, match=r"the map pinned at .*/shared is ARRAY key 4 B "
                           r"value 8 B x 1, the object's is ARRAY key 4 B value 4 B"):
            Collection.load(compile_c("pinned_other"), kernel, pin_root=root)
    with Map.from_pin(os.path.join(root, "shared"), kernel=kernel) as m:  # outlives them
        m.unpin()


def test_close_and_with_leave_no_resource_warning(kernel: Kernel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        coll = Collection.load(compile_c("seed_link"), kernel)
        progs = list(coll.programs.values())
        coll.close()
        assert all(p.closed for p in progs) and all(m.closed for m in coll.maps.values())
        with Collection.load(compile_c("seed_link"), kernel) as coll:
            pass
        assert coll.programs["egress"].closed


@host_only
def test_a_verifier_rejection_quotes_the_c_source(kernel: Kernel) -> None:
    with pytest.raises(VerifierError) as e:
        Collection.load(compile_c("reject"), kernel)
    assert "; return *count > 0; /* no NULL check: refused */" in e.value.log
    assert "map_value_or_null" in str(e.value)
    # the message names it too, with the file and line where the log has them (not 6.1's)
    where = "reject.c:19" if " @ reject.c:19" in e.value.log else ""
    assert f"at {where}: return *count > 0;".replace("at : ", "at: ") in str(e.value)


def test_co_re_relocations_are_refused_naming_the_program() -> None:
    with pytest.raises(BpfError) as e:
        CollectionSpec.read(compile_c("core"))
    assert e.value.errno == errno.EOPNOTSUPP
    assert "program relocated: CO-RE relocation FIELD_BYTE_OFFSET of struct skb_view " \
           "(access 0:1)" in str(e.value)


def test_the_legacy_maps_section_is_refused() -> None:
    with pytest.raises(MalformedObject, match=r"legacy 'maps' section.*migration-guide"):
        CollectionSpec.read(compile_c("legacy_maps"))


def test_lsm_cgroup_is_recognised_but_not_loaded(kernel: Kernel) -> None:
    spec = CollectionSpec.read(compile_c("lsm"))
    p = spec.programs["bind_hook"]
    assert (p.prog_type, p.expected_attach_type, p.attach_to) == (
        ProgType.LSM, AttachType.LSM_CGROUP, "socket_bind")
    with pytest.raises(BpfError, match="vmlinux BTF") as e:
        spec.load(kernel)
    assert e.value.errno == errno.EOPNOTSUPP


@host_only
def test_other_program_types_load_but_do_not_link(kernel: Kernel, scratch: Scratch) -> None:
    spec = CollectionSpec.read(compile_c("others"))
    types = {n: (p.prog_type, p.cgroup, p.attach_to) for n, p in spec.programs.items()}
    assert types == {"filter": (ProgType.SOCKET_FILTER, False, ""),
                     "pass": (ProgType.XDP, False, ""),
                     "classify": (ProgType.SCHED_CLS, False, ""),
                     "probe": (ProgType.KPROBE, False, "do_nanosleep"),
                     "tracepoint": (5, False, "syscalls/sys_enter_getpid")}
    cg = scratch.cgroup("x")
    with spec.load(kernel) as coll:
        for prog in coll.programs.values():
            with pytest.raises(BpfError) as e:
                cg.link(prog)
            assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("version", ["5.10", "6.18"])
def test_btf_is_sanitised_for_what_the_kernel_lacks(version: str) -> None:
    """On a model of 5.10 (no FLOAT, no DECL_TAG) the object's own BTF is refused, and
    loads once sanitised; on 6.18 it needs nothing."""
    from cgbpf.btf.handle import Handle
    from cgbpf.kernel import model, probe

    k = model(version)
    spec = CollectionSpec.read(compile_c("sanitize"))
    assert spec.btf is not None
    lacks = [key for key in ("btf_float", "btf_decl_tag") if probe.check(k, key) is False]
    assert lacks == ([] if version == "6.18" else ["btf_float", "btf_decl_tag"])
    if lacks:
        with pytest.raises(BpfError):
            Handle.load(spec.btf.to_bytes(), kernel=k)
    with spec.load(k) as coll:
        assert coll.globals["sample"] == struct.pack("<fi", 1.5, 2)
