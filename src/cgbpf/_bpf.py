"""Errors for the bpf(2) commands: run a :mod:`cgbpf._sys` call and turn its errno into a
:class:`~cgbpf.errors.BpfError` that names the command, the objects and a hint; and the
few multi-call requests (id walks, queries of any size) the objects share.

The attrs themselves are filled by :mod:`cgbpf._sys`, the syscall layer; the objects
above call this module.
"""

from __future__ import annotations

import ctypes
import errno
import os
from _thread import _local as thread_local  # threading.local, without threading
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, TypeVar

from . import _sys, uapi
from .errors import BpfError, MissingPrivilege, StaleRevision, VerifierError
from .kernel.protocol import BPF_FS_MAGIC, Kernel
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
    (Cmd.BTF_GET_FD_BY_ID, errno.ENOENT): "no BTF object with that id (it may have been freed)",
    (Cmd.MAP_UPDATE_ELEM, errno.EPERM): "the map is frozen or read-only from the syscall "
    "side (BPF_F_RDONLY, MAP_FREEZE), or this fd was opened read-only",
    (Cmd.MAP_LOOKUP_ELEM, errno.EPERM): "the map is write-only from the syscall side "
    "(BPF_F_WRONLY), or this fd was opened write-only",
    (Cmd.MAP_FREEZE, errno.EPERM): "the map is already frozen, read-only from the syscall "
    "side (BPF_F_RDONLY), or this fd was opened read-only",
    (Cmd.MAP_FREEZE, errno.EBUSY): "the map is mmap()ed writable",
    (Cmd.PROG_TEST_RUN, uapi.ENOTSUPP): "of the cgroup program types only CGROUP_SKB has "
    "a test run",
    (Cmd.PROG_TEST_RUN, errno.EINVAL): "the data must be an Ethernet frame of 14 to 3712 "
    "bytes whose IPv4 or IPv6 header, if its ethertype says IP, is whole",
}

#: The capability each command asks for when it refuses with EPERM (§15).
NEEDS: dict[Cmd, str] = {
    Cmd.PROG_LOAD: "CAP_BPF",
    Cmd.MAP_CREATE: "CAP_BPF",
    Cmd.BTF_LOAD: "CAP_BPF",
    Cmd.BTF_GET_NEXT_ID: "CAP_SYS_ADMIN",
    Cmd.BTF_GET_FD_BY_ID: "CAP_SYS_ADMIN",
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


T = TypeVar("T")


def call(k: Kernel, cmd: Cmd, op: Callable[[], T], detail: Detail, *,
         needs: tuple[str, ...] = (), errors: ErrorMap | None = None) -> T:
    """Run ``op`` (a :mod:`cgbpf._sys` call of ``cmd``); on failure raise the right
    :class:`BpfError`.

    ``needs`` names the capabilities this request requires, where they differ from
    :data:`NEEDS` (§15).  ``errors`` maps an errno to a specific error class and hint.
    """
    try:
        return op()
    except BpfError:  # the library's own (a closed object's fd, say): already explained
        raise
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


#: Log buffer sizes tried in turn (the log is fetched only after a failure).
LOG_SIZES = (1 << 16, 1 << 20, 1 << 24)


def load_with_log(k: Kernel, cmd: Cmd, load: Callable[..., int], err: int, what: str, *,
                  logged: tuple[int, ...] = (errno.EINVAL, errno.EACCES),
                  needs: tuple[str, ...] = (), errors: ErrorMap | None = None,
                  log_level: int = uapi.LOG_LEVEL_1, no_log_hint: str = "") -> int:
    """After a refused PROG_LOAD or BTF_LOAD, ``load(log_buf=, log_level=)`` again with a
    log buffer (growing it on ENOSPC), to raise the kernel's explanation as a
    :class:`VerifierError` with ``command`` ``cmd``.  Privilege errors are raised as they
    are, and so is an errno not in ``logged`` (those the kernel explains in its log); a
    refusal with no log (before the verifier or the BTF parser logged anything) is a
    :class:`BpfError` with ``no_log_hint``.  A retry that succeeds (a transient failure)
    returns its fd."""
    first = error(k, cmd, err, what, needs=needs, errors=errors)
    if isinstance(first, MissingPrivilege) or err not in logged:
        raise first
    text = ""
    for size in LOG_SIZES:
        log = ctypes.create_string_buffer(size)
        try:
            return load(log_buf=log, log_level=log_level)
        except OSError as e:
            text = log.value.decode(errors="replace")
            err = e.errno or err
            if err != errno.ENOSPC:
                break
    if not text.strip():
        raise BpfError(err, what, command=cmd.name, hint=no_log_hint)
    raise VerifierError(err, what + source_line(text), log=text, command=cmd.name)


def source_line(log: str) -> str:
    """Where a verifier log with line_info (5.0) stopped: ``" at FILE:LINE: SOURCE"``
    from its last ``; SOURCE @ FILE:LINE`` line (6.1 quotes ``; SOURCE`` alone: then
    ``" at: SOURCE"``), or "" without one."""
    quoted = [line[2:] for line in log.splitlines() if line.startswith("; ") and line[2:].strip()]
    if not quoted:
        return ""
    source, at, where = quoted[-1].rpartition(" @ ")
    return f" at {where}: {source.strip()}" if at else f" at: {where.strip()}"


# --------------------------------------------------------------------------- objects


def obj_pin(k: Kernel, fd: int, path: str, detail: str) -> None:
    """OBJ_PIN: pin the object behind ``fd`` at ``path`` (on bpffs).  A refused pin says
    what is wrong with the directory: missing, or not a bpffs mount."""
    p = _sys.c_str(path)
    try:
        _sys.obj_pin(k, fd, p)
    except OSError as e:
        err = e.errno or errno.EIO
        parent = os.path.dirname(path) or "."
        hint = HINTS.get((Cmd.OBJ_PIN, err), "")
        if err in (errno.ENOENT, errno.EPERM):
            try:
                on_bpffs = k.fs_magic(parent) == BPF_FS_MAGIC
            except OSError:
                hint = f"the directory {parent} does not exist"
            else:
                if not on_bpffs:
                    hint = f"{parent} is not on a bpffs mount: pin under one (mount -t bpf " \
                        f"bpf {parent if parent == '/sys/fs/bpf' else 'DIR'} makes one)"
        raise error(k, Cmd.OBJ_PIN, err, f"{detail} at {path}",
                    errors={err: (BpfError, hint)}) from e


def obj_get(k: Kernel, path: str, flags: int = 0) -> int:
    """OBJ_GET: a new fd for the object pinned at ``path``."""
    p = _sys.c_str(path)
    return call(k, Cmd.OBJ_GET, lambda: _sys.obj_get(k, p, file_flags=flags), f"pin {path}")


def get_info(k: Kernel, fd: int, info: ctypes.Structure, detail: Detail) -> int:
    """OBJ_GET_INFO_BY_FD into ``info``; returns the number of bytes the kernel wrote."""
    return call(k, Cmd.OBJ_GET_INFO_BY_FD, lambda: _sys.get_info(k, fd, info), detail)


def next_ids(k: Kernel, cmd: Cmd) -> Iterator[int]:
    """Walk ``*_GET_NEXT_ID`` from the start; ENOENT ends the walk."""
    last = 0
    while True:
        try:
            last = _sys.next_id(k, cmd, last)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise error(k, cmd, e.errno or errno.EIO, "id walk") from e
        yield last


def fd_by_id(k: Kernel, cmd: Cmd, obj_id: int, what: str) -> int:
    """``*_GET_FD_BY_ID``: a new owner fd for the object with that id."""
    return call(k, cmd, lambda: _sys.fd_by_id(k, cmd, obj_id), f"{what} id {obj_id}")


def infos(k: Kernel, next_cmd: Cmd, by_id: Cmd, what: str,
          read: Callable[[Kernel, int], T]) -> Iterator[T]:
    """``read(k, fd)`` of every object of a kind, in id order: the id walk
    (``next_cmd``), an fd for each (``by_id``; closed before the info is yielded).  An
    object freed between its id and its fd is skipped."""
    for obj_id in next_ids(k, next_cmd):
        try:
            fd = fd_by_id(k, by_id, obj_id, what)
        except BpfError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        try:
            info = read(k, fd)
        finally:
            k.close(fd)
        yield info


# --------------------------------------------------------------------------- attach

#: Errors of requests that take ``expected_revision`` (§5).
REVISION_ERRORS: ErrorMap = {
    errno.ESTALE: (StaleRevision, "the hook changed since that revision: query it again"),
}


def attach_needs(prog_type: int) -> tuple[str, ...]:
    """Attaching a CGROUP_SKB program needs CAP_NET_ADMIN; other types nothing (§15)."""
    return ("CAP_NET_ADMIN",) if prog_type == uapi.ProgType.CGROUP_SKB else ()


def prog_attach(k: Kernel, target_fd: int, prog_fd: int, prog_type: int, attach_type: int,
                detail: Detail, *, flags: int, replace_fd: int = 0, relative_fd: int = 0,
                expected_revision: int = 0, errors: ErrorMap = REVISION_ERRORS) -> None:
    """PROG_ATTACH, with its errors (a stale revision is :class:`StaleRevision`)."""
    call(k, Cmd.PROG_ATTACH, lambda: _sys.prog_attach(
        k, target_fd, prog_fd, attach_type, flags=flags, replace_fd=replace_fd,
        relative_fd=relative_fd, expected_revision=expected_revision), detail,
        needs=attach_needs(prog_type), errors=errors)


def prog_detach(k: Kernel, target_fd: int, prog_fd: int, attach_type: int, detail: Detail,
                *, expected_revision: int = 0) -> None:
    """PROG_DETACH, with its errors."""
    call(k, Cmd.PROG_DETACH, lambda: _sys.prog_detach(
        k, target_fd, prog_fd, attach_type, expected_revision=expected_revision), detail,
        errors=REVISION_ERRORS)


# --------------------------------------------------------------------------- query


class RawQuery(NamedTuple):
    """PROG_QUERY outputs: the hook flags, the revision, the program ids and each
    program's attach flags."""

    attach_flags: int
    revision: int
    prog_ids: list[int]
    prog_flags: list[int]


class _IdBuffer(thread_local):
    """Per thread: room for a full hook's ids, reused by every query."""

    def __init__(self) -> None:
        self.ids = (ctypes.c_uint32 * uapi.MAX_PROGS)()
        self.addr = ctypes.addressof(self.ids)


_id_buffer = _IdBuffer()


def prog_query(k: Kernel, target_fd: int, attach_type: int, *, effective: bool,
               detail: Detail) -> RawQuery:
    """PROG_QUERY for every entry whatever their number: ENOSPC grows the buffer (a hook
    holds at most 64 entries, an effective array may hold more).

    Per-program flags are asked for only for LSM_CGROUP, which refuses a query without
    them (§8); elsewhere the kernel would just repeat the hook's flags, and kernels
    before 6.0 have no such field.  The ids go into this thread's reusable buffer: a
    query allocates nothing but its result.
    """
    buf = _id_buffer
    ids: ctypes.Array[ctypes.c_uint32] = buf.ids
    cap, ids_addr = uapi.MAX_PROGS, buf.addr
    per_prog = attach_type == uapi.AttachType.LSM_CGROUP and not effective
    flags = (ctypes.c_uint32 * cap)() if per_prog else None
    query_flags = uapi.F_QUERY_EFFECTIVE if effective else 0
    while True:
        try:
            attr, _ = _sys.prog_query(
                k, target_fd, attach_type, query_flags=query_flags, prog_ids=ids_addr,
                prog_cnt=cap, prog_attach_flags=_sys.addr(flags))
        except OSError as e:
            raise error(k, Cmd.PROG_QUERY, e.errno or errno.EIO, detail) from e
        n: int = attr.prog_cnt
        if n <= cap:
            hook_flags: int = attr.attach_flags
            return RawQuery(hook_flags, attr.revision, ids[:n],
                            flags[:n] if flags else [hook_flags] * n)
        cap = n
        ids = (ctypes.c_uint32 * cap)()
        ids_addr = ctypes.addressof(ids)
        flags = (ctypes.c_uint32 * cap)() if per_prog else None
