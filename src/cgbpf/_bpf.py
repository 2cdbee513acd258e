"""Typed wrappers around the bpf(2) commands: build the attr, call the seam, turn the
errno into a :class:`~cgbpf.errors.BpfError` that names the command and the objects.

This is the only module that fills ``union bpf_attr`` structs; the objects above call it.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from . import uapi
from .errors import BpfError, MissingPrivilege
from .kernel.protocol import Kernel
from .uapi import Cmd

#: What a failed command usually means, by (command, errno): the hint in the message.
HINTS: dict[tuple[Cmd, int], str] = {
    (Cmd.PROG_ATTACH, errno.EPERM): "the hook's mode differs from the one asked for (links "
    "count as MULTI), or an ancestor attached an exclusive program",
    (Cmd.LINK_CREATE, errno.EPERM): "links need a MULTI hook: this cgroup or an ancestor "
    "has an exclusive/override program attached",
    (Cmd.PROG_ATTACH, errno.E2BIG): "the hook already holds 64 programs",
    (Cmd.LINK_CREATE, errno.E2BIG): "the hook already holds 64 programs",
    (Cmd.PROG_ATTACH, errno.EINVAL): "wrong program type or expected attach type for this "
    "hook, an invalid flag combination, or the program is already attached here",
    (Cmd.LINK_CREATE, errno.EINVAL): "wrong program type or expected attach type for this "
    "hook, or invalid flags",
    (Cmd.PROG_DETACH, errno.ENOENT): "not attached here by PROG_ATTACH (a link's program is "
    "detached through the link)",
    (Cmd.PROG_ATTACH, errno.ENOENT): "the anchor or replaced program is not attached to "
    "this hook by PROG_ATTACH, or the cgroup was removed",
    (Cmd.LINK_CREATE, errno.ENOENT): "the anchor link is not attached to this hook, or the "
    "cgroup was removed",
    (Cmd.LINK_UPDATE, errno.EINVAL): "the new program's type or expected attach type does "
    "not fit the link",
    (Cmd.OBJ_PIN, errno.EPERM): "the path is not on a bpffs mount (mount -t bpf bpf DIR)",
    (Cmd.OBJ_PIN, errno.EEXIST): "something is already pinned at that path",
    (Cmd.OBJ_GET, errno.EACCES): "not a bpffs pin, or no permission to open it",
    (Cmd.OBJ_GET, errno.ENOENT): "nothing is pinned at that path",
    (Cmd.PROG_GET_FD_BY_ID, errno.ENOENT): "no program with that id (it may have been freed)",
    (Cmd.LINK_GET_FD_BY_ID, errno.ENOENT): "no link with that id (it may have been freed)",
    (Cmd.MAP_GET_FD_BY_ID, errno.ENOENT): "no map with that id (it may have been freed)",
}

#: The capability each command asks for when it refuses with EPERM (§15).
NEEDS: dict[Cmd, str] = {
    Cmd.PROG_LOAD: "CAP_BPF",
    Cmd.MAP_CREATE: "CAP_BPF",
    Cmd.PROG_QUERY: "CAP_NET_ADMIN",
    Cmd.PROG_GET_NEXT_ID: "CAP_SYS_ADMIN",
    Cmd.PROG_GET_FD_BY_ID: "CAP_SYS_ADMIN",
    Cmd.MAP_GET_NEXT_ID: "CAP_SYS_ADMIN",
    Cmd.MAP_GET_FD_BY_ID: "CAP_SYS_ADMIN",
    Cmd.LINK_GET_NEXT_ID: "CAP_SYS_ADMIN",
    Cmd.LINK_GET_FD_BY_ID: "CAP_SYS_ADMIN",
}

ErrorMap = Mapping[int, tuple[type[BpfError], str]]
#: The objects a request is about, for the error message: text, or a function that makes
#: it (so that the hot path formats nothing).
Detail = str | Callable[[], str]


def call(k: Kernel, cmd: Cmd, attr: ctypes.Structure, detail: Detail, *,
         needs: tuple[str, ...] = (), errors: ErrorMap | None = None) -> int:
    """Run ``cmd``; on failure raise the right :class:`BpfError`.

    ``needs`` names the capabilities this request requires, where they differ from
    :data:`NEEDS` (§15).  ``errors`` maps an errno to a specific error class and hint.
    """
    try:
        return k.bpf(cmd, attr)
    except OSError as e:
        raise error(k, cmd, e.errno or errno.EIO, detail, needs=needs, errors=errors) from e


def error(k: Kernel, cmd: Cmd, err: int, detail: Detail, *, needs: tuple[str, ...] = (),
          errors: ErrorMap | None = None) -> BpfError:
    """The error for ``cmd`` failing with ``err``: a missing capability first, then
    ``errors``, then the generic hint table."""
    detail = detail() if callable(detail) else detail
    # PROG_ATTACH says EINVAL for a CGROUP_SKB program without CAP_NET_ADMIN (§0 fact 19).
    refused = err in (errno.EPERM, errno.EACCES) or (cmd is Cmd.PROG_ATTACH and
                                                     err == errno.EINVAL)
    caps = needs or ((NEEDS[cmd],) if cmd in NEEDS else ())
    missing = [c for c in caps if not k.has_capability(c)]
    if refused and missing and not k.has_capability("CAP_SYS_ADMIN"):
        return MissingPrivilege(err, detail, capability=" and ".join(missing),
                                command=cmd.name)
    cls, hint = (errors or {}).get(err, (BpfError, HINTS.get((cmd, err), "")))
    return cls(err, detail, command=cmd.name, hint=hint)


def c_str(s: str | bytes) -> ctypes.Array[ctypes.c_char]:
    """A NUL-terminated buffer whose address can go into an attr."""
    return ctypes.create_string_buffer(s.encode() if isinstance(s, str) else s)


def addr(buf: ctypes.Array[ctypes.c_char] | ctypes.Array[ctypes.c_uint32] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


# --------------------------------------------------------------------------- objects


def obj_pin(k: Kernel, fd: int, path: str, detail: str) -> None:
    """OBJ_PIN: pin the object behind ``fd`` at ``path`` (on bpffs)."""
    p = c_str(path)
    call(k, Cmd.OBJ_PIN, uapi.ObjAttr(pathname=addr(p), bpf_fd=fd), f"{detail} at {path}")


def obj_get(k: Kernel, path: str, flags: int = 0) -> int:
    """OBJ_GET: a new fd for the object pinned at ``path``."""
    p = c_str(path)
    return call(k, Cmd.OBJ_GET, uapi.ObjAttr(pathname=addr(p), file_flags=flags),
                f"pin {path}")


def get_info(k: Kernel, fd: int, info: ctypes.Structure, detail: str) -> int:
    """OBJ_GET_INFO_BY_FD into ``info``; returns the number of bytes the kernel wrote."""
    attr = uapi.InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    call(k, Cmd.OBJ_GET_INFO_BY_FD, attr, detail)
    return int(attr.info_len)


def next_ids(k: Kernel, cmd: Cmd) -> Iterator[int]:
    """Walk ``*_GET_NEXT_ID`` from the start; ENOENT ends the walk."""
    attr = uapi.GetIdAttr(start_id=0)
    while True:
        try:
            k.bpf(cmd, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise error(k, cmd, e.errno or errno.EIO, "id walk") from e
        yield int(attr.next_id)
        attr.start_id = attr.next_id


def fd_by_id(k: Kernel, cmd: Cmd, obj_id: int, what: str) -> int:
    """``*_GET_FD_BY_ID``: a new owner fd for the object with that id."""
    return call(k, cmd, uapi.GetIdAttr(start_id=obj_id), f"{what} id {obj_id}")


# --------------------------------------------------------------------------- query


@dataclass(frozen=True)
class RawQuery:
    """PROG_QUERY outputs: the hook flags, the revision, the program ids and each
    program's attach flags."""

    attach_flags: int
    revision: int
    prog_ids: list[int]
    prog_flags: list[int]


def prog_query(k: Kernel, target_fd: int, attach_type: int, *, effective: bool,
               detail: Detail) -> RawQuery:
    """PROG_QUERY for every entry whatever their number: ENOSPC grows the buffer.

    Per-program flags are asked for only for LSM_CGROUP, which refuses a query without
    them (§8); elsewhere the kernel would just repeat the hook's flags, and kernels
    before 6.0 have no such field.
    """
    cap = 0 if effective else uapi.MAX_PROGS
    per_prog = attach_type == uapi.AttachType.LSM_CGROUP and not effective
    while True:
        ids = (ctypes.c_uint32 * max(cap, 1))()
        flags = (ctypes.c_uint32 * max(cap, 1))() if per_prog else None
        attr = uapi.QueryAttr(target_fd=target_fd, attach_type=attach_type,
                              query_flags=uapi.F_QUERY_EFFECTIVE if effective else 0,
                              prog_ids=ctypes.addressof(ids), prog_cnt=cap,
                              prog_attach_flags=addr(flags))
        try:
            k.bpf(Cmd.PROG_QUERY, attr)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise error(k, Cmd.PROG_QUERY, e.errno or errno.EIO, detail) from e
        n = int(attr.prog_cnt)
        if n <= cap:
            return RawQuery(int(attr.attach_flags), int(attr.revision), list(ids[:n]),
                            list(flags[:n]) if flags else [int(attr.attach_flags)] * n)
        cap = n
