"""§1.4 attr-size rules, per-command trailing bytes, EFAULT, unknown commands; and the
fuzz test: random bytes and sizes for every command never raise anything but OSError.

``CGBPF_FUZZ_EXAMPLES`` sets the number of fuzz examples (default 2000; e.g. 10000)."""

from __future__ import annotations

import ctypes
import errno as E
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_abi import ROOT, attach, cgroup, err, link_create, map_create, pin, prog_for

from cgbpf import uapi
from cgbpf.model import ModelKernel
from cgbpf.uapi import Cmd

EG = uapi.AttachType.CGROUP_INET_EGRESS
#: Each command's last-field end on 6.18 (§1.4); a non-zero byte there gives EINVAL.
ENDS = {Cmd.PROG_ATTACH: 32, Cmd.PROG_DETACH: 32, Cmd.PROG_QUERY: 64, Cmd.LINK_CREATE: 64,
        Cmd.LINK_UPDATE: 16, Cmd.LINK_DETACH: 4, Cmd.OBJ_PIN: 20, Cmd.OBJ_GET: 20,
        Cmd.OBJ_GET_INFO_BY_FD: 16, Cmd.LINK_GET_NEXT_ID: 8, Cmd.LINK_GET_FD_BY_ID: 4,
        Cmd.MAP_CREATE: 44, Cmd.PROG_LOAD: 116}


def raw(size: int, **bytes_at: int) -> ctypes.Array[ctypes.c_char]:
    b = ctypes.create_string_buffer(max(size, 8))
    for off, value in bytes_at.items():
        b[int(off[1:])] = value
    return b


def test_size_rules(k: ModelKernel) -> None:
    """size > 4096: E2BIG; non-zero past 168: E2BIG; zeros past 168 are fine."""
    assert err(k.bpf, Cmd.LINK_DETACH, raw(4097), 4097) == E.E2BIG
    assert err(k.bpf, Cmd.LINK_DETACH, raw(4096, b4095=1), 4096) == E.E2BIG
    assert err(k.bpf, Cmd.LINK_DETACH, raw(169, b168=1), 169) == E.E2BIG
    assert err(k.bpf, 999, raw(169, b168=1), 169) == E.E2BIG  # before the command
    assert err(k.bpf, Cmd.LINK_GET_NEXT_ID, raw(4096), 4096) == E.ENOENT  # zeros: fine
    assert err(k.bpf, Cmd.LINK_DETACH, raw(4096), -1) == E.E2BIG  # u32 size
    assert err(k.bpf, 999, raw(8)) == E.EINVAL  # unknown command


@pytest.mark.parametrize("cmd", list(ENDS))
def test_trailing_bytes(k: ModelKernel, cmd: int) -> None:
    """CHECK_ATTR: a non-zero byte after the last field is EINVAL, before any other check
    (except PROG_QUERY's capability check, §8)."""
    end = ENDS[cmd]
    assert err(k.bpf, cmd, raw(168, **{f"b{end}": 1})) == E.EINVAL
    assert err(k.bpf, cmd, raw(168, b167=1)) == E.EINVAL
    assert err(k.bpf, cmd, raw(end + 1, **{f"b{end}": 1}), end + 1) == E.EINVAL
    passed_short = err(k.bpf, cmd, raw(end + 1, **{f"b{end}": 1}), end)
    assert passed_short == err(k.bpf, cmd, raw(end), end)  # bytes past `size` are unseen


def test_short_attr_is_zero_extended(k: ModelKernel) -> None:
    c, prog = cgroup(k, "a"), prog_for(k, EG)
    a = uapi.ProgAttachAttr(target_fd=c, attach_bpf_fd=prog, attach_type=EG,
                            attach_flags=uapi.F_ALLOW_MULTI, expected_revision=99)
    assert k.bpf(Cmd.PROG_ATTACH, a, 16) == 0  # expected_revision not passed


def test_link_create_union_bytes_not_checked(k: ModelKernel) -> None:
    """§1.4: bytes 32-63 of LINK_CREATE are not validated for cgroup links."""
    a = uapi.LinkCreateAttr(prog_fd=prog_for(k, EG), target_fd=cgroup(k, "a"), attach_type=EG)
    b = ctypes.create_string_buffer(bytes(a).ljust(64, b"\0"), 64)
    b[40] = 7
    assert k.bpf(Cmd.LINK_CREATE, b, 64) >= 3


def test_null_pointers_are_efault(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG, uapi.F_ALLOW_MULTI)
    q = uapi.QueryAttr(target_fd=c, attach_type=EG, prog_cnt=4, prog_ids=0x1000)
    assert err(k.bpf, Cmd.PROG_QUERY, q) == E.EFAULT
    assert q.prog_cnt == 1  # counts are written before the array
    assert err(k.bpf, Cmd.OBJ_PIN, uapi.ObjAttr(bpf_fd=c)) == E.EINVAL  # fd probe first
    lk = link_create(k, prog_for(k, EG), c)
    assert err(k.bpf, Cmd.OBJ_PIN, uapi.ObjAttr(bpf_fd=lk)) == E.EFAULT
    assert err(k.bpf, Cmd.OBJ_GET_INFO_BY_FD, uapi.InfoAttr(bpf_fd=lk, info_len=8)) == E.EFAULT
    assert err(k.bpf, Cmd.OBJ_GET_INFO_BY_FD, uapi.InfoAttr(bpf_fd=lk, info_len=0)) == 0
    assert err(k.bpf, Cmd.OBJ_GET, uapi.ObjAttr(pathname=2**63)) == E.EFAULT
    assert err(pin, k, lk, "") == E.ENOENT
    assert err(pin, k, lk, "/sys/fs/bpf/" + "x" * 5000) == E.ENAMETOOLONG


def test_unmapped_pointers_are_efault(k: ModelKernel) -> None:
    """Pointers into unmapped user memory: EFAULT (the kernel's answer), not a crash."""
    wild = 0x7E00_0000_0000  # user space, far from anything Python maps
    load = uapi.ProgLoadAttr(prog_type=uapi.ProgType.CGROUP_SKB, insn_cnt=2, insns=wild,
                             license=wild)
    assert err(k.bpf, Cmd.PROG_LOAD, load) == E.EFAULT
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG, uapi.F_ALLOW_MULTI)
    q = uapi.QueryAttr(target_fd=c, attach_type=EG, prog_cnt=4, prog_ids=wild)
    assert err(k.bpf, Cmd.PROG_QUERY, q) == E.EFAULT


def test_path_fd(k: ModelKernel) -> None:
    """OBJ_PIN/OBJ_GET with BPF_F_PATH_FD (6.5): relative to a directory fd."""
    lk = link_create(k, prog_for(k, EG), cgroup(k, "a"))
    d = k.open_dir("/sys/fs/bpf")
    name = ctypes.create_string_buffer(b"rel")
    a = uapi.ObjAttr(pathname=ctypes.addressof(name), bpf_fd=lk, file_flags=uapi.F_PATH_FD,
                     path_fd=d)
    assert k.bpf(Cmd.OBJ_PIN, a) == 0
    assert k.fd_kind(k.bpf(Cmd.OBJ_GET, uapi.ObjAttr(
        pathname=ctypes.addressof(name), file_flags=uapi.F_PATH_FD, path_fd=d))) == "link"
    a.file_flags = 0
    assert err(k.bpf, Cmd.OBJ_PIN, a) == E.EINVAL  # path_fd without the flag
    a.file_flags, a.path_fd = uapi.F_PATH_FD, 9999
    assert err(k.bpf, Cmd.OBJ_PIN, a) == E.EBADF


# --- fuzz ------------------------------------------------------------------------------

EXAMPLES = int(os.environ.get("CGBPF_FUZZ_EXAMPLES", "2000"))
SCRATCH = ctypes.create_string_buffer(8 << 20 | 4096)  # room for 1M insns and more
COUNTS = {  # layout -> {count field: max that keeps the model inside SCRATCH}
    uapi.ProgLoadAttr: {"insn_cnt": 4096, "log_size": 8 << 20},
    uapi.QueryAttr: {"prog_cnt": 1 << 20},
    uapi.InfoAttr: {"info_len": 8192},
}
POINTERS = {  # layout -> its pointer fields
    uapi.ProgLoadAttr: ("insns", "license", "log_buf", "func_info", "line_info"),
    uapi.QueryAttr: ("prog_ids", "prog_attach_flags", "link_ids", "link_attach_flags"),
    uapi.InfoAttr: ("info",),
    uapi.ObjAttr: ("pathname",),
    uapi.MapElemAttr: ("key", "value"),
}
LAYOUT = {Cmd.PROG_LOAD: uapi.ProgLoadAttr, Cmd.PROG_QUERY: uapi.QueryAttr,
          Cmd.OBJ_GET_INFO_BY_FD: uapi.InfoAttr, Cmd.OBJ_PIN: uapi.ObjAttr,
          Cmd.OBJ_GET: uapi.ObjAttr, **dict.fromkeys(
              (Cmd.MAP_LOOKUP_ELEM, Cmd.MAP_UPDATE_ELEM, Cmd.MAP_DELETE_ELEM,
               Cmd.MAP_GET_NEXT_KEY), uapi.MapElemAttr)}
COMMANDS = [*Cmd, 10, 17, 35, 2**31]


def world() -> ModelKernel:
    """A machine with something of everything for the fuzzer's fds to hit."""
    k = ModelKernel(lag=0)
    c = cgroup(k, "a")
    m = map_create(k)
    prog = prog_for(k, EG)
    attach(k, c, prog, EG, uapi.F_ALLOW_MULTI)
    lk = link_create(k, prog_for(k, EG), c)
    pin(k, lk, "/sys/fs/bpf/l")
    k.open_dir(ROOT)
    assert m < 16
    return k


def sanitize(cmd: int, data: bytearray, choices: list[int], size: int | None) -> None:
    """Point pointer fields at SCRATCH (or leave NULL/garbage below 64 KiB or above user
    space; NULL if ``size`` cuts the field); clamp counts so the model stays in SCRATCH."""
    layout = LAYOUT.get(cmd)
    if layout is None:
        return
    for i, field in enumerate(POINTERS[layout]):
        off = getattr(layout, field).offset
        pick = choices[i % len(choices)] % 4
        value = (0, 0x1000, 2**63, ctypes.addressof(SCRATCH))[pick]
        struct.pack_into("<Q", data, off, 0 if size is not None and size < off + 8 else value)
    for field, limit in COUNTS.get(layout, {}).items():
        off = getattr(layout, field).offset
        (value,) = struct.unpack_from("<I", data, off)
        struct.pack_into("<I", data, off, value % (limit + 1))


FUZZ_KERNEL = world()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cmd=st.sampled_from(COMMANDS),
       data=st.binary(min_size=0, max_size=200).map(bytearray),
       small=st.lists(st.integers(0, 20), min_size=6, max_size=6),
       size=st.one_of(st.none(), st.integers(0, 200), st.sampled_from([4096, 4097, 2**32 - 1])),
       scratch=st.binary(max_size=64),
       choices=st.lists(st.integers(0, 3), min_size=1, max_size=4))
def test_fuzz_only_oserror(cmd: int, data: bytearray, small: list[int], size: int | None,
                           scratch: bytes, choices: list[int]) -> None:
    data = data.ljust(200, b"\0")
    for i, v in enumerate(small):  # small values in the fd/type slots hit real objects
        if v % 2:
            data[4 * i] = v
            data[4 * i + 1 : 4 * i + 4] = bytes(3)
    sanitize(cmd, data, choices, size)
    ctypes.memmove(SCRATCH, scratch.ljust(64, b"\0"), 64)
    buf = ctypes.create_string_buffer(bytes(data).ljust(4200, b"\0"), 4200)
    try:
        ret = FUZZ_KERNEL.bpf(cmd, buf, size)
    except OSError:
        return
    assert isinstance(ret, int) and ret >= 0
