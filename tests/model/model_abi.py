"""Raw bpf(2) calls for the model tests, built from the ``cgbpf.uapi`` layouts (the ABI the
library uses).  Every helper returns what the syscall returns and raises its OSError."""

from __future__ import annotations

import contextlib
import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cgbpf import uapi
from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import ProgType as PT

ROOT = "/sys/fs/cgroup"
EG, ING, CONN4, CONN6 = (AT.CGROUP_INET_EGRESS, AT.CGROUP_INET_INGRESS,
                         AT.CGROUP_INET4_CONNECT, AT.CGROUP_INET6_CONNECT)
OVR, MULTI, REPL = uapi.F_ALLOW_OVERRIDE, uapi.F_ALLOW_MULTI, uapi.F_REPLACE
BEFORE, AFTER, ID, LINK, PRE = uapi.F_BEFORE, uapi.F_AFTER, uapi.F_ID, uapi.F_LINK, uapi.F_PREORDER
RET1 = bytes.fromhex("b700000001000000" "9500000000000000")  # mov r0,1; exit (§1.4)


def ret(value: int) -> bytes:
    """mov r0, value; exit."""
    return struct.pack("<BBhi", 0xB7, 0, 0, value) + RET1[8:]


def err(fn: Callable[..., Any], *args: Any, **kw: Any) -> int:
    """The errno ``fn`` fails with, or 0."""
    try:
        fn(*args, **kw)
    except OSError as e:
        return e.errno or -1
    return 0


def buf(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, len(data) + 1)


# Buffers must outlive the call: keep them referenced from the attr's frame.
def prog_load(k: ModelKernel, ptype: int = PT.CGROUP_SKB, eat: int = 0, insns: bytes = RET1,
              *, name: bytes = b"", license: bytes = b"GPL", log: Any = None,
              log_level: int = 0, **fields: int) -> int:
    code, lic = buf(insns), buf(license)
    attr = uapi.ProgLoadAttr(prog_type=ptype, insn_cnt=len(insns) // 8,
                             insns=ctypes.addressof(code), license=ctypes.addressof(lic),
                             prog_name=name, expected_attach_type=eat, **fields)
    if log is not None:
        attr.log_level, attr.log_size = log_level or 1, len(log)
        attr.log_buf = ctypes.addressof(log)
    return k.bpf(Cmd.PROG_LOAD, attr)


def prog_for(k: ModelKernel, attach_type: int, insns: bytes = RET1) -> int:
    """A program that attaches to ``attach_type`` (its type, eat = the attach type)."""
    return prog_load(k, uapi.CGROUP_PROG_TYPE[AT(attach_type)], attach_type, insns)


def cgroup(k: ModelKernel, rel: str, *, path_only: bool = False) -> int:
    """mkdir -p ROOT/rel and open it."""
    path = ROOT
    for part in filter(None, rel.split("/")):
        path += "/" + part
        with contextlib.suppress(FileExistsError):
            k.mkdir(path)
    return k.open_dir(path, path_only=path_only)


def attach(k: ModelKernel, target: int, prog: int, atype: int = AT.CGROUP_INET_EGRESS,
           flags: int = 0, *, replace: int = 0, relative: int = 0, revision: int = 0) -> int:
    return k.bpf(Cmd.PROG_ATTACH, uapi.ProgAttachAttr(
        target_fd=target, attach_bpf_fd=prog, attach_type=atype, attach_flags=flags,
        replace_bpf_fd=replace, relative_fd=relative, expected_revision=revision))


def detach(k: ModelKernel, target: int, prog: int, atype: int = AT.CGROUP_INET_EGRESS, *,
           flags: int = 0, relative: int = 0, revision: int = 0) -> int:
    return k.bpf(Cmd.PROG_DETACH, uapi.ProgAttachAttr(
        target_fd=target, attach_bpf_fd=prog, attach_type=atype, attach_flags=flags,
        relative_fd=relative, expected_revision=revision))


@dataclass
class Query:
    errno: int
    attach_flags: int
    prog_cnt: int
    revision: int
    ids: list[int]
    flags: list[int]


def query(k: ModelKernel, target: int, atype: int = AT.CGROUP_INET_EGRESS, *,
          effective: bool = False, cap: int = 64, with_flags: bool = False,
          sentinel: int = 0xDEADBEEF, **fields: int) -> Query:
    """PROG_QUERY; ENOSPC is returned in ``errno`` (other errors raise).  ``ids`` and
    ``flags`` are the whole buffers (``cap`` entries, unwritten ones = ``sentinel``)."""
    ids = (ctypes.c_uint32 * max(cap, 1))(*[sentinel] * max(cap, 1))
    flg = (ctypes.c_uint32 * max(cap, 1))(*[sentinel] * max(cap, 1))
    attr = uapi.QueryAttr(target_fd=target, attach_type=atype,
                          query_flags=uapi.F_QUERY_EFFECTIVE if effective else 0,
                          prog_ids=ctypes.addressof(ids), prog_cnt=cap,
                          prog_attach_flags=ctypes.addressof(flg) if with_flags else 0,
                          **fields)
    e = 0
    try:
        k.bpf(Cmd.PROG_QUERY, attr)
    except OSError as ex:
        if ex.errno != 28:
            raise
        e = 28
    return Query(e, attr.attach_flags, attr.prog_cnt, attr.revision, list(ids)[:cap],
                 list(flg)[:cap])


def ids(k: ModelKernel, target: int, atype: int = AT.CGROUP_INET_EGRESS, *,
        effective: bool = False) -> list[int]:
    """The program IDs a query reports, in order."""
    q = query(k, target, atype, effective=effective)
    return q.ids[: q.prog_cnt]


def link_create(k: ModelKernel, prog: int, target: int, atype: int = AT.CGROUP_INET_EGRESS,
                flags: int = 0, *, relative: int = 0, revision: int = 0) -> int:
    return k.bpf(Cmd.LINK_CREATE, uapi.LinkCreateAttr(
        prog_fd=prog, target_fd=target, attach_type=atype, flags=flags,
        relative_fd=relative, expected_revision=revision))


def link_update(k: ModelKernel, link: int, new: int, *, old: int = 0,
                flags: int | None = None) -> int:
    if flags is None:
        flags = uapi.F_REPLACE if old else 0
    return k.bpf(Cmd.LINK_UPDATE, uapi.LinkUpdateAttr(link_fd=link, new_prog_fd=new,
                                                      flags=flags, old_prog_fd=old))


def link_detach(k: ModelKernel, link: int) -> int:
    return k.bpf(Cmd.LINK_DETACH, uapi.LinkDetachAttr(link_fd=link))


def info(k: ModelKernel, fd: int, layout: type[uapi.Layout] = uapi.LinkInfo,
         size: int | None = None, fill: bytes = b"") -> tuple[Any, int]:
    """GET_INFO_BY_FD into a ``size``-byte buffer (prefilled with ``fill``); returns the
    decoded struct and the info_len the model wrote back."""
    n = ctypes.sizeof(layout) if size is None else size
    raw = ctypes.create_string_buffer(fill.ljust(max(n, ctypes.sizeof(layout)), b"\0"))
    attr = uapi.InfoAttr(bpf_fd=fd, info_len=n, info=ctypes.addressof(raw))
    k.bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return layout.from_buffer_copy(raw.raw), attr.info_len


def prog_id(k: ModelKernel, fd: int) -> int:
    return int(info(k, fd, uapi.ProgInfo)[0].id)


def link_id(k: ModelKernel, fd: int) -> int:
    return int(info(k, fd)[0].id)


def pin(k: ModelKernel, fd: int, path: str) -> int:
    p = buf(path.encode())
    return k.bpf(Cmd.OBJ_PIN, uapi.ObjAttr(pathname=ctypes.addressof(p), bpf_fd=fd))


def obj_get(k: ModelKernel, path: str, flags: int = 0) -> int:
    p = buf(path.encode())
    return k.bpf(Cmd.OBJ_GET, uapi.ObjAttr(pathname=ctypes.addressof(p), file_flags=flags))


def next_id(k: ModelKernel, start: int, cmd: int = Cmd.LINK_GET_NEXT_ID) -> int:
    attr = uapi.GetIdAttr(start_id=start)
    k.bpf(cmd, attr)
    return int(attr.next_id)


def all_ids(k: ModelKernel, cmd: int = Cmd.LINK_GET_NEXT_ID) -> list[int]:
    out, start = [], 0
    while True:
        try:
            start = next_id(k, start, cmd)
        except FileNotFoundError:
            return out
        out.append(start)


def fd_by_id(k: ModelKernel, ident: int, cmd: int = Cmd.LINK_GET_FD_BY_ID,
             flags: int = 0) -> int:
    return k.bpf(cmd, uapi.GetIdAttr(start_id=ident, open_flags=flags))


def map_create(k: ModelKernel, mtype: int = uapi.MapType.ARRAY, key: int = 4, value: int = 8,
               entries: int = 4, **fields: Any) -> int:
    return k.bpf(Cmd.MAP_CREATE, uapi.MapCreateAttr(map_type=mtype, key_size=key,
                                                    value_size=value, max_entries=entries,
                                                    **fields))


def map_elem(k: ModelKernel, cmd: int, fd: int, key: bytes | None, value: bytes | None = None,
             flags: int = 0) -> bytes:
    """A map element command; returns the value buffer's contents afterwards."""
    kb = buf(key) if key is not None else None
    vb = ctypes.create_string_buffer(value or b"", 64) if value is not None else None
    attr = uapi.MapElemAttr(map_fd=fd, key=ctypes.addressof(kb) if kb else 0,
                            value=ctypes.addressof(vb) if vb else 0, flags=flags)
    k.bpf(cmd, attr)
    return vb.raw if vb is not None else b""
