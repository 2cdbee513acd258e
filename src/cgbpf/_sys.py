"""The syscall layer: one typed function per bpf(2) command, the only code that fills a
``union bpf_attr`` (layouts from :mod:`cgbpf.uapi`).  Each fills its attr (the thread's
reusable one, :meth:`~cgbpf.uapi.Layout.scratch`), calls the kernel seam and returns the
result; a refusal is the kernel's plain ``OSError`` (turning
it into a :class:`~cgbpf.errors.BpfError` is :mod:`cgbpf._bpf`'s job).  Pointers are
addresses of the caller's buffers, which must outlive the call.

Tests that must send malformed attrs on purpose (tests/kernels/characterize.py,
tests/differential.py, tests/model/model_abi.py) build raw attrs themselves.
"""

from __future__ import annotations

import ctypes
import errno

from . import uapi
from .kernel.protocol import Kernel
from .uapi import Cmd

Buffer = ctypes.Array[ctypes.c_char]


def c_str(s: str | bytes) -> Buffer:
    """A NUL-terminated buffer whose address can go into an attr."""
    return ctypes.create_string_buffer(s.encode() if isinstance(s, str) else s)


def addr(buf: ctypes.Array[ctypes.c_char] | ctypes.Array[ctypes.c_uint32] | None) -> int:
    """The address of ``buf`` for an attr's pointer field (0 for None)."""
    return ctypes.addressof(buf) if buf is not None else 0


def invalid(k: Kernel) -> None:
    """An invalid command: EINVAL where bpf(2) exists, ENOSYS where it does not."""
    k.bpf(-1, uapi.GetIdAttr.scratch())


def _len(buf: Buffer | None) -> int:
    return len(buf) if buf is not None else 0


def prog_load(k: Kernel, *, prog_type: int, insns: Buffer, insn_cnt: int, license: Buffer,
              expected_attach_type: int = 0, name: bytes = b"", attach_btf_id: int = 0,
              prog_flags: int = 0, log_buf: Buffer | None = None, log_level: int = 0,
              prog_btf_fd: int = 0, func_info: Buffer | None = None, func_info_cnt: int = 0,
              func_info_rec_size: int = 0, line_info: Buffer | None = None,
              line_info_cnt: int = 0, line_info_rec_size: int = 0) -> int:
    """PROG_LOAD: the new program's fd.  ``func_info``/``line_info`` are record arrays
    (``bpf_func_info``, ``bpf_line_info``) describing the code with the BTF of
    ``prog_btf_fd`` (Linux 5.0)."""
    return k.bpf(Cmd.PROG_LOAD, uapi.ProgLoadAttr.scratch(
        prog_type=prog_type, insn_cnt=insn_cnt, insns=addr(insns), license=addr(license),
        prog_name=name[: uapi.BPF_OBJ_NAME_LEN - 1], expected_attach_type=expected_attach_type,
        attach_btf_id=attach_btf_id, prog_flags=prog_flags, log_level=log_level,
        log_size=_len(log_buf), log_buf=addr(log_buf), prog_btf_fd=prog_btf_fd,
        func_info=addr(func_info), func_info_cnt=func_info_cnt,
        func_info_rec_size=func_info_rec_size, line_info=addr(line_info),
        line_info_cnt=line_info_cnt, line_info_rec_size=line_info_rec_size))


def map_create(k: Kernel, *, map_type: int, key_size: int, value_size: int, max_entries: int,
               map_flags: int = 0, name: bytes = b"", btf_fd: int = 0,
               btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               map_extra: int = 0) -> int:
    """MAP_CREATE: the new map's fd (``btf_*``: the key and value types, Linux 4.18)."""
    return k.bpf(Cmd.MAP_CREATE, uapi.MapCreateAttr.scratch(
        map_type=map_type, key_size=key_size, value_size=value_size, max_entries=max_entries,
        map_flags=map_flags, map_name=name[: uapi.BPF_OBJ_NAME_LEN - 1], btf_fd=btf_fd,
        btf_key_type_id=btf_key_type_id, btf_value_type_id=btf_value_type_id,
        map_extra=map_extra))


def map_freeze(k: Kernel, fd: int) -> None:
    """MAP_FREEZE: no more syscall-side writes to the map (Linux 5.2)."""
    k.bpf(Cmd.MAP_FREEZE, uapi.MapFreezeAttr.scratch(map_fd=fd))


def btf_load(k: Kernel, data: Buffer, *, log_buf: Buffer | None = None,
             log_level: int = 0) -> int:
    """BTF_LOAD of the raw BTF in ``data`` (all of it): the new BTF object's fd (4.18)."""
    return k.bpf(Cmd.BTF_LOAD, uapi.BtfLoadAttr.scratch(
        btf=addr(data), btf_size=len(data), btf_log_buf=addr(log_buf),
        btf_log_size=_len(log_buf), btf_log_level=log_level))


def map_elem(k: Kernel, cmd: Cmd, map_fd: int, key: Buffer | None,
             value: Buffer | None = None, flags: int = 0) -> None:
    """MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM or MAP_GET_NEXT_KEY (``value``
    is the next key's buffer there; no ``key``: the first key, Linux 4.12)."""
    k.bpf(cmd, uapi.MapElemAttr.scratch(map_fd=map_fd, key=addr(key), value=addr(value),
                                        flags=flags))


def obj_pin(k: Kernel, fd: int, path: Buffer, *, file_flags: int = 0, path_fd: int = 0) -> None:
    """OBJ_PIN of ``fd`` at ``path`` (relative to ``path_fd`` with BPF_F_PATH_FD)."""
    k.bpf(Cmd.OBJ_PIN, uapi.ObjAttr.scratch(pathname=addr(path), bpf_fd=fd,
                                            file_flags=file_flags, path_fd=path_fd))


def obj_get(k: Kernel, path: Buffer, *, file_flags: int = 0, path_fd: int = 0) -> int:
    """OBJ_GET: a new fd for what is pinned at ``path``."""
    return k.bpf(Cmd.OBJ_GET, uapi.ObjAttr.scratch(pathname=addr(path),
                                                   file_flags=file_flags, path_fd=path_fd))


def prog_attach(k: Kernel, target_fd: int, prog_fd: int, attach_type: int, *, flags: int = 0,
                replace_fd: int = 0, relative_fd: int = 0, expected_revision: int = 0) -> None:
    """PROG_ATTACH (legacy attach)."""
    k.bpf(Cmd.PROG_ATTACH, uapi.ProgAttachAttr.scratch(
        target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type,
        attach_flags=flags, replace_bpf_fd=replace_fd, relative_fd=relative_fd,
        expected_revision=expected_revision))


def prog_detach(k: Kernel, target_fd: int, prog_fd: int, attach_type: int, *,
                expected_revision: int = 0) -> None:
    """PROG_DETACH (legacy detach)."""
    k.bpf(Cmd.PROG_DETACH, uapi.ProgAttachAttr.scratch(
        target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type,
        expected_revision=expected_revision))


def prog_query(k: Kernel, target_fd: int, attach_type: int, *, query_flags: int = 0,
               prog_ids: int = 0, prog_cnt: int = 0, prog_attach_flags: int = 0,
               link_ids: int = 0, revision: int = 0) -> tuple[ctypes.Structure, bool]:
    """PROG_QUERY into the buffers at those addresses: (the attr with the outputs
    ``attach_flags``, ``prog_cnt``, ``revision``; whether they all fit).  ENOSPC is not
    raised: it is the kernel saying how many entries there are for a buffer too small."""
    attr = uapi.QueryAttr.scratch()  # the hot query: fields set one by one (no **kwargs)
    attr.target_fd, attr.attach_type, attr.query_flags = target_fd, attach_type, query_flags
    attr.prog_ids, attr.prog_cnt = prog_ids, prog_cnt
    if prog_attach_flags or link_ids or revision:  # rare: not paid for on every query
        attr.prog_attach_flags, attr.link_ids, attr.revision = \
            prog_attach_flags, link_ids, revision
    try:
        k.bpf(Cmd.PROG_QUERY, attr)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        return attr, False
    return attr, True


def prog_test_run(k: Kernel, prog_fd: int, data_in: Buffer, data_out: Buffer | None, *,
                  repeat: int = 1, ctx_in: Buffer | None = None,
                  ctx_out: Buffer | None = None, flags: int = 0) -> uapi.TestRunAttr:
    """PROG_TEST_RUN: run the program ``repeat`` times on a copy of ``data_in`` (and of
    ``ctx_in``); the attr with the outputs ``retval``, ``duration`` (ns per run),
    ``data_size_out`` and ``ctx_size_out``, the packet and context copied into
    ``data_out`` and ``ctx_out``.  The out sizes are the buffers' (a kernel given 0 would
    copy the whole packet whatever the buffer); one too small is ENOSPC."""
    attr = uapi.TestRunAttr.scratch(
        prog_fd=prog_fd, data_size_in=len(data_in), data_in=addr(data_in),
        data_size_out=_len(data_out), data_out=addr(data_out), repeat=repeat,
        ctx_size_in=_len(ctx_in), ctx_in=addr(ctx_in), ctx_size_out=_len(ctx_out),
        ctx_out=addr(ctx_out), flags=flags)
    k.bpf(Cmd.PROG_TEST_RUN, attr)
    return attr


def next_id(k: Kernel, cmd: Cmd, start_id: int) -> int:
    """PROG/MAP/LINK/BTF_GET_NEXT_ID: the first id after ``start_id`` (ENOENT: none)."""
    attr = uapi.GetIdAttr.scratch(start_id=start_id)
    k.bpf(cmd, attr)
    return int(attr.next_id)


def fd_by_id(k: Kernel, cmd: Cmd, obj_id: int, open_flags: int = 0) -> int:
    """PROG/MAP/LINK/BTF_GET_FD_BY_ID: a new fd for the object with that id."""
    return k.bpf(cmd, uapi.GetIdAttr.scratch(start_id=obj_id, open_flags=open_flags))


def get_info(k: Kernel, fd: int, info: ctypes.Structure | Buffer,
             info_len: int | None = None) -> int:
    """OBJ_GET_INFO_BY_FD into ``info`` (``info_len`` bytes, default all of it): the
    number of bytes the kernel wrote."""
    attr = uapi.InfoAttr.scratch(bpf_fd=fd, info_len=ctypes.sizeof(info) if info_len is None
                                 else info_len, info=ctypes.addressof(info))
    k.bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return int(attr.info_len)


def link_create(k: Kernel, prog_fd: int, target_fd: int, attach_type: int, *, flags: int = 0,
                relative_fd: int = 0, expected_revision: int = 0) -> int:
    """LINK_CREATE for a cgroup: the new link's fd."""
    return k.bpf(Cmd.LINK_CREATE, uapi.LinkCreateAttr.scratch(
        prog_fd=prog_fd, target_fd=target_fd, attach_type=attach_type, flags=flags,
        relative_fd=relative_fd, expected_revision=expected_revision))


def link_update(k: Kernel, link_fd: int, new_prog_fd: int, *, flags: int = 0,
                old_prog_fd: int = 0) -> None:
    """LINK_UPDATE (BPF_F_REPLACE with ``old_prog_fd``)."""
    k.bpf(Cmd.LINK_UPDATE, uapi.LinkUpdateAttr.scratch(
        link_fd=link_fd, new_prog_fd=new_prog_fd, flags=flags, old_prog_fd=old_prog_fd))


def link_detach(k: Kernel, link_fd: int) -> None:
    """LINK_DETACH."""
    k.bpf(Cmd.LINK_DETACH, uapi.LinkDetachAttr.scratch(link_fd=link_fd))
