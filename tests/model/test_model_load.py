"""PROG_LOAD (§2 expected-attach-type rules, the structural checks, tag, log) and maps."""

from __future__ import annotations

import ctypes
import errno as E
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from model_abi import RET1, err, info, map_create, map_elem, prog_load, ret

from cgbpf import asm, uapi
from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import MapType as MT
from cgbpf.uapi import ProgType as PT


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


EXIT = insn(0x95)

EAT_ROWS = [  # (prog type, expected attach type, errno) — §2.1
    (PT.CGROUP_SKB, 0, 0), (PT.CGROUP_SKB, 1, 0), (PT.CGROUP_SKB, 2, E.EINVAL),
    (PT.CGROUP_SOCK, 0, 0), (PT.CGROUP_SOCK, 12, 0), (PT.CGROUP_SOCK, 34, 0),
    (PT.CGROUP_SOCK, 8, E.EINVAL),
    (PT.SOCK_OPS, 999, 0), (PT.CGROUP_DEVICE, 999, 0), (PT.CGROUP_SYSCTL, 999, 0),
    (PT.CGROUP_SOCK_ADDR, 0, E.EINVAL), (PT.CGROUP_SOCK_ADDR, 10, 0),
    (PT.CGROUP_SOCK_ADDR, 53, 0), (PT.CGROUP_SOCK_ADDR, 2, E.EINVAL),
    (PT.CGROUP_SOCKOPT, 0, E.EINVAL), (PT.CGROUP_SOCKOPT, 21, 0), (PT.CGROUP_SOCKOPT, 22, 0),
    (PT.LSM, 43, E.EPERM),  # the BPF LSM is not active on the reference machine
    (77, 0, E.EINVAL),  # unknown prog type
]


@pytest.mark.parametrize(("ptype", "eat", "expect"), EAT_ROWS)
def test_expected_attach_type_at_load(k: ModelKernel, ptype: int, eat: int, expect: int) -> None:
    assert err(prog_load, k, ptype, eat, RET1) == expect


BAD_PROGRAMS = {  # name: (instructions, errno) — the model's structural checks
    "empty": (b"", E.E2BIG),
    "no exit": (insn(0xB7), E.EINVAL),
    "unknown opcode": (insn(0xFF) + EXIT, E.EINVAL),
    "register 11": (insn(0xB7, dst=11) + EXIT, E.EINVAL),
    "write r10": (insn(0xB7, dst=10) + EXIT, E.EACCES),
    "jump out of range": (insn(0x05, off=5) + EXIT, E.EINVAL),
    "jump back out": (insn(0x05, off=-3) + EXIT, E.EINVAL),
    "half ld_imm64": (insn(0x18) + EXIT, E.EINVAL),
    "ld_imm64 at end": (EXIT + insn(0x18), E.EINVAL),
    "bad ld_imm64 2nd half": (insn(0x18) + insn(0, dst=1) + EXIT, E.EINVAL),
    "jump into ld_imm64": (insn(0x05, off=1) + insn(0x18) + insn(0) + EXIT, E.EINVAL),
    "unreachable": (RET1 + EXIT, E.EINVAL),
    "unknown helper": (insn(0x85, imm=9999) + EXIT, E.EINVAL),
    "kfunc": (insn(0x85, src=2, imm=1) + EXIT, E.EINVAL),
    "map fd bad": (insn(0x18, dst=1, src=1, imm=9999) + insn(0) + RET1, E.EBADF),
    "map fd not a map": (insn(0x18, dst=1, src=1, imm=0) + insn(0) + RET1, E.EINVAL),
    "ld_imm64 src 7": (insn(0x18, dst=1, src=7) + insn(0) + RET1, E.EINVAL),
    "returns 5": (ret(5), E.EINVAL),
}


@pytest.mark.parametrize("name", BAD_PROGRAMS)
def test_structural_checks(k: ModelKernel, name: str) -> None:
    code, expect = BAD_PROGRAMS[name]
    log = ctypes.create_string_buffer(256)
    assert err(prog_load, k, PT.CGROUP_SKB, 0, code, log=log) == expect
    if expect == E.EINVAL:
        assert log.value  # a one-line verifier log


def test_library_counter_program_loads(k: ModelKernel) -> None:
    m = map_create(k)
    code = asm.assemble(asm.counter_program(m))
    fd = prog_load(k, PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, code)
    pi = info(k, fd, uapi.ProgInfo)[0]
    assert (pi.type, pi.nr_map_ids) == (PT.CGROUP_SKB, 1)


@pytest.mark.parametrize(("version", "digest"), [("6.18", hashlib.sha256),
                                                ("6.17", hashlib.sha1)])
def test_tag_is_a_hash_with_map_fds_zeroed(version: str, digest: Callable[[bytes], Any]
                                           ) -> None:
    """SHA-256 from 6.18 (feature ``tag_sha256``), SHA-1 before; map fds zeroed."""
    k = ModelKernel(version)
    m1, m2 = map_create(k), map_create(k)

    def code(fd: int) -> bytes:
        return insn(0x18, dst=1, src=1, imm=fd) + insn(0) + RET1

    tags = [bytes(info(k, prog_load(k, insns=code(m)), uapi.ProgInfo)[0].tag) for m in (m1, m2)]
    assert tags[0] == tags[1] == digest(code(0)).digest()[:8]
    assert bytes(info(k, prog_load(k), uapi.ProgInfo)[0].tag) == digest(RET1).digest()[:8]


def test_prog_info_fields(k: ModelKernel) -> None:
    fd = prog_load(k, name=b"hello.world_1")
    xl = ctypes.create_string_buffer(64)
    raw = uapi.ProgInfo(xlated_prog_len=64, xlated_prog_insns=ctypes.addressof(xl))
    attr = uapi.InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(raw), info=ctypes.addressof(raw))
    k.bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    assert (raw.name, raw.xlated_prog_len, xl.raw[:16]) == (b"hello.world_1", 16, RET1)
    assert info(k, fd, uapi.ProgInfo, size=300)[1] == 232


@pytest.mark.parametrize("name", [b"bad-name", b"x" * 16, b"sp ace"])
def test_bad_names(k: ModelKernel, name: bytes) -> None:
    """``bpf_obj_name_cpy``: [A-Za-z0-9_.], NUL-terminated within 16 bytes."""
    code, lic = ctypes.create_string_buffer(RET1), ctypes.create_string_buffer(b"GPL")
    attr = uapi.ProgLoadAttr(prog_type=PT.CGROUP_SKB, insn_cnt=2, insns=ctypes.addressof(code),
                             license=ctypes.addressof(lic))
    ctypes.memmove(ctypes.addressof(attr) + uapi.ProgLoadAttr.prog_name.offset, name, len(name))
    assert err(k.bpf, Cmd.PROG_LOAD, attr) == E.EINVAL


def test_load_field_errors(k: ModelKernel) -> None:
    assert err(prog_load, k, license=b"") == 0
    assert err(prog_load, k, prog_flags=1) == 0  # STRICT_ALIGNMENT (tests/test_prog_flags.py)
    assert err(prog_load, k, prog_flags=1 << 8) == E.EINVAL
    assert err(prog_load, k, prog_ifindex=1) == E.EINVAL  # not implemented by the model
    assert err(prog_load, k, attach_btf_id=5) == E.EINVAL
    code = ctypes.create_string_buffer(RET1)
    null_lic = uapi.ProgLoadAttr(prog_type=PT.CGROUP_SKB, insn_cnt=2,
                                 insns=ctypes.addressof(code))
    assert err(k.bpf, Cmd.PROG_LOAD, null_lic) == E.EFAULT
    null_insns = uapi.ProgLoadAttr(prog_type=PT.CGROUP_SKB, insn_cnt=2)
    assert err(k.bpf, Cmd.PROG_LOAD, null_insns) == E.EFAULT
    too_many = uapi.ProgLoadAttr(prog_type=PT.CGROUP_SKB, insn_cnt=1_000_001)
    assert err(k.bpf, Cmd.PROG_LOAD, too_many) == E.E2BIG


def test_verifier_log(k: ModelKernel) -> None:
    ok = ctypes.create_string_buffer(256)
    prog_load(k, log=ok)
    assert ok.value.startswith(b"processed 2 insns")
    bad = ctypes.create_string_buffer(256)
    assert err(prog_load, k, insns=ret(7), log=bad) == E.EINVAL
    assert b"R0" in bad.value
    tiny = ctypes.create_string_buffer(8)
    assert err(prog_load, k, log=tiny) == E.ENOSPC  # truncated (rotating: the tail)
    assert len(tiny.value) == 7
    assert err(prog_load, k, log=ok, log_level=16) == E.EINVAL
    assert err(prog_load, k, log_buf=ctypes.addressof(ok), log_size=10) == E.EINVAL  # level 0


def test_array_map(k: ModelKernel) -> None:
    m = map_create(k, MT.ARRAY, 4, 8, 2)
    one, two = struct.pack("<I", 1), struct.pack("<I", 2)
    assert map_elem(k, Cmd.MAP_LOOKUP_ELEM, m, one, b"")[:8] == bytes(8)
    map_elem(k, Cmd.MAP_UPDATE_ELEM, m, one, b"abcdefgh")
    assert map_elem(k, Cmd.MAP_LOOKUP_ELEM, m, one, b"")[:8] == b"abcdefgh"
    assert err(map_elem, k, Cmd.MAP_LOOKUP_ELEM, m, two, b"") == E.ENOENT
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, m, two, b"x" * 8) == E.E2BIG
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, m, one, b"x" * 8, 1) == E.EEXIST
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, m, one, b"x" * 8, 3) == E.EINVAL
    assert err(map_elem, k, Cmd.MAP_DELETE_ELEM, m, one) == E.EINVAL
    assert err(map_elem, k, Cmd.MAP_LOOKUP_ELEM, m, None, b"") == E.EFAULT
    assert map_elem(k, Cmd.MAP_GET_NEXT_KEY, m, None, b"")[:4] == struct.pack("<I", 0)
    assert err(map_elem, k, Cmd.MAP_GET_NEXT_KEY, m, one, b"") == E.ENOENT


def test_hash_map(k: ModelKernel) -> None:
    m = map_create(k, MT.HASH, 2, 4, 1)
    map_elem(k, Cmd.MAP_UPDATE_ELEM, m, b"ab", b"1234", 1)
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, m, b"ab", b"1234", 1) == E.EEXIST
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, m, b"cd", b"1234", 2) == E.ENOENT
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, m, b"cd", b"1234") == E.E2BIG  # full
    assert map_elem(k, Cmd.MAP_GET_NEXT_KEY, m, b"zz", b"")[:2] == b"ab"
    map_elem(k, Cmd.MAP_DELETE_ELEM, m, b"ab")
    assert err(map_elem, k, Cmd.MAP_DELETE_ELEM, m, b"ab") == E.ENOENT


@pytest.mark.parametrize(("args", "expect"), [
    ((MT.ARRAY, 8, 8, 1), E.EINVAL), ((MT.ARRAY, 4, 0, 1), E.EINVAL),
    ((MT.HASH, 4, 4, 0), E.EINVAL), ((MT.HASH, 513, 4, 1), E.E2BIG), ((99, 4, 4, 1), E.EINVAL),
    ((MT.ARRAY, 4, 8, 2**32 - 1), E.E2BIG),
])
def test_map_create_errors(k: ModelKernel, args: tuple[int, ...], expect: int) -> None:
    assert err(map_create, k, *args) == expect


def test_map_info_and_readonly_fd(k: ModelKernel) -> None:
    from model_abi import fd_by_id

    m = map_create(k, MT.HASH, 4, 8, 3, map_name=b"counts")
    mi = info(k, m, uapi.MapInfo)[0]
    assert (mi.type, mi.key_size, mi.value_size, mi.max_entries, mi.name) == (
        MT.HASH, 4, 8, 3, b"counts")
    ro = fd_by_id(k, mi.id, Cmd.MAP_GET_FD_BY_ID, uapi.F_RDONLY)
    assert err(map_elem, k, Cmd.MAP_UPDATE_ELEM, ro, b"abcd", b"x" * 8) == E.EPERM
    assert err(fd_by_id, k, mi.id, Cmd.MAP_GET_FD_BY_ID, uapi.F_RDONLY | uapi.F_WRONLY) \
        == E.EINVAL
