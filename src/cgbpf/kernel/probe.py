"""Kernel features: one table, one probe each.  Ask the kernel, never parse its version.

Every behaviour that differs between kernels is a :class:`Feature` of :data:`FEATURES`:
its key (the model's key too: ``Profile.has(key)``), what it is, the first mainline
release with it, what it switches on, and the probe that finds it on a live kernel.

Most probes send a request that a kernel with the feature refuses for one reason (a bad
fd: EBADF) and a kernel without it for another (an unknown command, flag or attr field:
EINVAL).  Behaviours that no such request shows are tried for real, on a tiny program
and, where they need one, a scratch cgroup ``<cgroup2>/cgbpf-probe-<pid>-<n>`` that is
removed at once.  A probe has three outcomes: present, absent, or ``None`` ("could not
tell": refused for lack of privilege, say).  Only present and absent are cached, and only
absent makes :func:`require` raise :class:`NotSupported`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from .. import _sys, uapi
from ..errors import NotSupported
from ..uapi import AttachType, Cmd, ProgType
from .protocol import Kernel

_BAD_FD = 0xFFFFFFFF  # -1 as u32: never a valid fd, so a kernel that gets this far says EBADF
_PROBE_PREFIX = "cgbpf-probe"
T = TypeVar("T")


class CannotTell(Exception):
    """A probe could not decide (e.g. a step it needs was refused); the message says why."""


class Feature(NamedTuple):
    """A version-dependent kernel behaviour: ``key`` (also the model's), ``name`` (for
    messages), ``since`` (first mainline release, or how it reaches kernels), ``what``
    it switches on, ``how`` it is probed, and the ``probe``."""

    key: str
    name: str
    since: str
    what: str
    how: str
    probe: Callable[[Prober], bool]
    mainline: bool = True  # False: not in a mainline release (a stable backport)


def _return_program(ret: int) -> bytes:
    """The bytes of ``r0 = ret; exit`` (the assembler is imported when a probe runs)."""
    from .. import asm

    return asm.assemble(asm.return_program(ret))


class Prober:
    """What probes share while probing one kernel: programs by (type, expected attach
    type), a scratch cgroup, and the cleanup of both."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self._progs: dict[tuple[int, int, int], int] = {}
        self._fds: list[int] = []
        self._dirs: list[str] = []
        self._buffers: list[ctypes.Array[ctypes.c_char]] = []

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def own(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    @staticmethod
    def load(k: Kernel, ptype: ProgType, eat: AttachType | int = 0, ret: int = 1) -> int:
        """PROG_LOAD of a program that returns ``ret`` (the kernel's OSError if refused)."""
        code = _return_program(ret)
        return _sys.prog_load(k, prog_type=ptype, insns=ctypes.create_string_buffer(
            code, len(code)), insn_cnt=len(code) // 8, license=_sys.c_str("GPL"),
            expected_attach_type=eat)

    def prog(self, ptype: ProgType, eat: AttachType | int = 0, ret: int = 1) -> int:
        """A loaded program that returns ``ret``; CannotTell if PROG_LOAD is refused."""
        key = (ptype, eat, ret)
        if key not in self._progs:
            self._progs[key] = self.own(self.call(
                "PROG_LOAD", lambda: self.load(self.k, ptype, eat, ret)))
        return self._progs[key]

    def cgroup(self) -> tuple[int, str]:
        """A new empty cgroup (fd, path) below the cgroup2 root, removed on close."""
        try:
            path = os.path.join(self.k.cgroup_root,
                                f"{_PROBE_PREFIX}-{os.getpid()}-{len(self._dirs)}")
            self.k.mkdir(path)
        except OSError as e:
            raise CannotTell(f"cannot make a scratch cgroup: {e.strerror}") from e
        self._dirs.append(path)
        return self.own(self.k.open_dir(path)), path

    def call(self, what: str, op: Callable[[], T]) -> T:
        """A step the probe needs to succeed: its refusal means "could not tell"."""
        try:
            return op()
        except OSError as e:
            raise CannotTell(f"{what} was refused: {errno.errorcode.get(e.errno or 0)}") from e

    def link(self, prog: int, cg: int, at: AttachType) -> int:
        return self.own(self.call("LINK_CREATE", lambda: _sys.link_create(self.k, prog, cg, at)))

    def close_fd(self, fd: int) -> None:
        self._fds.remove(fd)
        self.k.close(fd)

    def rmdir(self, path: str) -> None:
        self.k.rmdir(path)
        self._dirs.remove(path)

    def close(self) -> None:
        for fd in reversed(self._fds):
            self.k.close(fd)
        for path in reversed(self._dirs):
            self.k.rmdir(path)
        self._fds, self._dirs, self._progs = [], [], {}


def answer(what: str, op: Callable[[], object], *, present: int = errno.EBADF,
           absent: int = errno.EINVAL) -> bool:
    """Present if the request ``what`` fails with ``present`` (or succeeds), absent with
    ``absent``; any other errno: CannotTell."""
    try:
        op()
    except OSError as e:
        if e.errno in (present, absent):
            return e.errno == present
        raise CannotTell(f"{what} gave {errno.errorcode.get(e.errno or 0)}") from e
    return True


def _attach(at: AttachType = AttachType.CGROUP_INET_EGRESS, flags: int = uapi.F_ALLOW_MULTI,
            **extra: int) -> Callable[[Prober], bool]:
    """PROG_ATTACH with bad fds: EBADF if the kernel knows the attach type, the flags and
    the fields, EINVAL if not."""
    return lambda p: answer("PROG_ATTACH", lambda: _sys.prog_attach(
        p.k, _BAD_FD, _BAD_FD, at, flags=flags, **extra))


def _query(**fields: int) -> Callable[[Prober], bool]:
    """PROG_QUERY of a bad fd with ``fields`` set: EINVAL if they lie past the kernel's
    attr (CHECK_ATTR), EBADF if it has them."""
    return lambda p: answer("PROG_QUERY", lambda: _sys.prog_query(
        p.k, _BAD_FD, AttachType.CGROUP_INET_EGRESS, **fields))


def _command(cmd: Cmd, attr: Callable[[], ctypes.Structure]) -> Callable[[Prober], bool]:
    """Unknown commands give EINVAL; a known one fails otherwise (EBADF, ENOENT, EPERM)."""
    def probe(p: Prober) -> bool:
        try:
            p.k.bpf(cmd, attr())
        except OSError as e:
            return e.errno != errno.EINVAL
        return True
    return probe


def _link_create(flags: int = 0, at: AttachType = AttachType.CGROUP_INET_EGRESS,
                 **extra: int) -> Callable[[Prober], bool]:
    """LINK_CREATE of a real program to a bad target: LINK_CREATE looks at the program
    before the flags and the target."""
    def probe(p: Prober) -> bool:
        prog = p.prog(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS)
        return answer("LINK_CREATE", lambda: _sys.link_create(
            p.k, prog, _BAD_FD, at, flags=flags, **extra))
    return probe


def _links(p: Prober) -> bool:
    """Whether there are links at all (a link-only behaviour is absent without)."""
    found = check(p.k, LINKS, p)
    if found is None:
        raise CannotTell(why(p.k, LINKS))
    return found


def _skb_link_type_check(p: Prober) -> bool:
    """A CGROUP_SKB program linked to a sock hook: EINVAL with the check, EBADF (the bad
    target) without."""
    return _links(p) and not _link_create(at=AttachType.CGROUP_INET_SOCK_CREATE)(p)


def _defunct_update(p: Prober) -> bool:
    """LINK_UPDATE of a detached link: ENOLINK (5.8) or EINVAL.  Detached with
    LINK_DETACH, or, before 5.9, by removing its cgroup (asynchronous: polled)."""
    if not _links(p):
        return False
    prog = p.prog(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS)
    cg, path = p.cgroup()
    link = p.link(prog, cg, AttachType.CGROUP_INET_EGRESS)
    if check(p.k, LINK_DETACH, p):
        p.call("LINK_DETACH", lambda: _sys.link_detach(p.k, link))
    else:
        p.close_fd(cg)
        p.rmdir(path)
    deadline = time.monotonic() + 5
    while True:
        try:
            _sys.link_update(p.k, link, prog)  # still attached: updating to itself works
        except OSError as e:
            if e.errno in (errno.ENOLINK, errno.EINVAL):
                return e.errno == errno.ENOLINK
            raise CannotTell(f"LINK_UPDATE gave {errno.errorcode.get(e.errno or 0)}") from e
        if time.monotonic() > deadline:
            raise CannotTell("the link was not auto-detached within 5 s of rmdir")
        time.sleep(0.001)


def _replace_self(p: Prober) -> bool:
    """PROG_ATTACH MULTI|REPLACE of a program with itself: 0 (5.8) or EINVAL."""
    prog = p.prog(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS)
    cg, _ = p.cgroup()
    at = AttachType.CGROUP_INET_EGRESS
    p.call("PROG_ATTACH", lambda: _sys.prog_attach(p.k, cg, prog, at,
                                                  flags=uapi.F_ALLOW_MULTI))
    try:
        return answer("PROG_ATTACH", lambda: _sys.prog_attach(
            p.k, cg, prog, at, flags=uapi.F_ALLOW_MULTI | uapi.F_REPLACE, replace_fd=prog),
            present=0)
    finally:
        _sys.prog_detach(p.k, cg, prog, at)  # it is attached once


def _link_info_64(p: Prober) -> bool:
    """The ``info_len`` GET_INFO_BY_FD writes for a cgroup link: 64 (6.6) or 48."""
    if not check(p.k, LINK_INFO, p):
        return False
    prog = p.prog(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS)
    cg, _ = p.cgroup()
    link = p.link(prog, cg, AttachType.CGROUP_INET_EGRESS)
    info = ctypes.create_string_buffer(128)
    return p.call("OBJ_GET_INFO_BY_FD", lambda: _sys.get_info(p.k, link, info, 64)) == 64


def _update_eat_check(p: Prober) -> bool:
    """LINK_UPDATE of an INET4_CONNECT link to a sock_addr program loaded for
    INET6_CONNECT: EINVAL with the check, 0 without."""
    if not _links(p):
        return False
    at = AttachType.CGROUP_INET4_CONNECT
    old = p.prog(ProgType.CGROUP_SOCK_ADDR, at)
    new = p.prog(ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET6_CONNECT)
    cg, _ = p.cgroup()
    link = p.link(old, cg, at)
    return not answer("LINK_UPDATE", lambda: _sys.link_update(p.k, link, new), present=0)


def _tag_sha256(p: Prober) -> bool:
    """A program's tag: the first 8 bytes of SHA-256 of its instructions, or of SHA-1."""
    prog = p.prog(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS)
    info = uapi.ProgInfo()
    p.call("OBJ_GET_INFO_BY_FD", lambda: _sys.get_info(p.k, prog, info))
    import hashlib

    code = _return_program(1)
    tag = bytes(info.tag)
    if tag == hashlib.sha256(code).digest()[:8]:
        return True
    if tag == hashlib.sha1(code).digest()[:8]:
        return False
    raise CannotTell(f"tag {tag.hex()} is neither SHA-256 nor SHA-1 of the instructions")


def _restricted(caps: set[str], needs: str,
                request: Callable[[Kernel], object]) -> Callable[[Prober], bool]:
    """``request`` from a child process with only ``caps``: present unless EPERM.  The
    caller must hold ``needs`` (else a refusal proves nothing)."""
    def probe(p: Prober) -> bool:
        if not p.k.has_capability(needs):
            raise CannotTell(f"the probing process lacks {needs}")
        try:
            p.k.run_restricted(caps, request)
        except OSError as e:
            if e.errno == errno.EPERM:
                return False
            if e.errno != errno.EBADF:
                raise CannotTell(f"gave {errno.errorcode.get(e.errno or 0)}") from e
        return True
    return probe


def _detach_other_needs_net_admin(p: Prober) -> bool:
    """PROG_DETACH of an exclusive program by a child with no capabilities: with the
    check, EPERM without a prog fd and 0 with the program's own; without it, 0 (or, as
    in 5.7, EPERM both ways: every detach needs CAP_NET_ADMIN there)."""
    if not p.k.has_capability("CAP_SYS_ADMIN"):
        raise CannotTell("the probing process lacks CAP_SYS_ADMIN")
    at = AttachType.CGROUP_DEVICE
    prog, (cg, _) = p.prog(ProgType.CGROUP_DEVICE, at), p.cgroup()
    refused = []
    for fd in (0, prog):
        def detach(k: Kernel, fd: int = fd) -> None:
            _sys.prog_detach(k, cg, fd, at)

        p.call("PROG_ATTACH", lambda: _sys.prog_attach(p.k, cg, prog, at, flags=0))
        try:
            p.k.run_restricted((), detach)
        except OSError as e:
            if e.errno != errno.EPERM:
                raise CannotTell(f"gave {errno.errorcode.get(e.errno or 0)}") from e
            p.call("PROG_DETACH", lambda: _sys.prog_detach(p.k, cg, prog, at))
            refused.append(fd)
    return refused == [0]


def _load_skb(k: Kernel, *insns: Callable[[Any], Any]) -> int:
    """PROG_LOAD of a CGROUP_SKB program for EGRESS: each of ``insns`` builds an
    instruction from :mod:`cgbpf.asm` (imported when a probe runs), then ``return 1``."""
    from .. import asm

    code = asm.assemble([*(f(asm) for f in insns), asm.mov64(asm.R0, 1), asm.exit_()])
    buf = ctypes.create_string_buffer(code, len(code))
    return _sys.prog_load(k, prog_type=ProgType.CGROUP_SKB, insns=buf,
                          insn_cnt=len(code) // 8, license=_sys.c_str("GPL"),
                          expected_attach_type=AttachType.CGROUP_INET_EGRESS)


def _skb_program(absent: int, *insns: Callable[[Any], Any]) -> Callable[[Prober], bool]:
    """The CGROUP_SKB program of ``insns`` loads, or is refused with ``absent``."""
    return lambda p: answer("PROG_LOAD", lambda: p.own(_load_skb(p.k, *insns)),
                            present=-1, absent=absent)


#: An IPv4 frame for test runs: Ethernet header (type 0x0800) + a 20-byte IP header.
_IP4_FRAME = bytes(12) + b"\x08\x00\x45" + bytes(19)


def _test_run_data_end(p: Prober) -> bool:
    """A CGROUP_SKB test run of ``return data_end - data == 20`` on a 20-byte IP packet:
    1 where the run sets data_end; else data_end is whatever the skb's control block
    held (garbage: seen on Debian 6.1 and 6.12)."""
    prog = p.own(p.call("PROG_LOAD", lambda: _load_skb(
        p.k, lambda a: a.ldx("w", a.R2, a.R1, 76), lambda a: a.ldx("w", a.R3, a.R1, 80),
        lambda a: a.sub64(a.R3, a.R2), lambda a: a.mov64(a.R0, 0),
        lambda a: a.jne(a.R3, 20, 1))))  # over the r0 = 1 _load_skb ends with
    frame = ctypes.create_string_buffer(_IP4_FRAME, len(_IP4_FRAME))
    return bool(p.call("PROG_TEST_RUN", lambda: _sys.prog_test_run(
        p.k, prog, frame, None)).retval)


def _prog_flag(flag: int) -> Callable[[Prober], bool]:
    """PROG_LOAD with ``flag`` and no instructions: the flags are checked first, so a
    kernel that knows the flag says E2BIG (insn_cnt 0), one that does not EINVAL."""
    empty = ctypes.create_string_buffer(8)
    return lambda p: answer("PROG_LOAD", lambda: _sys.prog_load(
        p.k, prog_type=ProgType.SOCKET_FILTER, insns=empty, insn_cnt=0, license=empty,
        prog_flags=flag), present=errno.E2BIG)


def _btf_kind(types: bytes, strings: bytes) -> Callable[[Prober], bool]:
    """BTF_LOAD of a tiny BTF with a new kind: a kernel that knows the kind loads it,
    one that does not refuses it (EINVAL, "Invalid kind")."""
    raw = uapi.raw_btf(types, strings)

    def probe(p: Prober) -> bool:
        buf = ctypes.create_string_buffer(raw, len(raw))
        return answer("BTF_LOAD", lambda: p.own(_sys.btf_load(p.k, buf)), present=-1)
    return probe


_INT = uapi.btf_type(1, 1, 0, 4, 1 << 24 | 32)  # [1] "int": a signed 32-bit INT
#: The new BTF kinds' probes: (types, strings) with the kind (numbers of <linux/btf.h>).
BTF_KIND_PROBES = {
    "btf_float": (uapi.btf_type(1, 16, 0, 4), b"\0float\0"),  # [1] FLOAT float
    # [2] VAR x (global) of [1], [3] DECL_TAG "tag" on [2] (component_idx -1)
    "btf_decl_tag": (_INT + uapi.btf_type(5, 14, 0, 1, 1) + uapi.btf_type(7, 17, 0, 2, -1),
                     b"\0int\0x\0tag\0"),
    # [2] TYPE_TAG "tag" of [1], [3] PTR to [2]
    "btf_type_tag": (_INT + uapi.btf_type(5, 18, 0, 1) + uapi.btf_type(0, 2, 0, 2),
                     b"\0int\0tag\0"),
    # [1] ENUM64 e (8 bytes), one enumerator A = 1
    "btf_enum64": (uapi.btf_type(1, 19, 1, 8, 3, 1, 0), b"\0e\0A\0"),
}


LINKS, LINK_INFO, LINK_DETACH = "links", "link_ids", "link_detach"
PREORDER_ATTACH, PREORDER_LINK, MPROG = "preorder_attach", "preorder_link", "mprog_cgroup"
UPDATE_EAT_CHECK, TAG_SHA256 = "update_eat_check", "tag_sha256"
DETACH_OTHER_NET_ADMIN = "detach_other_net_admin"

_EG = AttachType.CGROUP_INET_EGRESS
_PIN_NAME = ctypes.create_string_buffer(b"cgbpf-probe")  # OBJ_GET's path (never looked up)
_NAME_HOOKS = AttachType.CGROUP_INET4_GETPEERNAME

#: Every version-dependent behaviour, oldest first.
FEATURES: dict[str, Feature] = {f.key: f for f in [
    Feature(LINKS, "cgroup bpf_link (BPF_LINK_CREATE)", "5.7",
            "LINK_CREATE/LINK_UPDATE for cgroups, link pinning",
            "LINK_CREATE with a bad prog fd",
            lambda p: answer("LINK_CREATE", lambda: _sys.link_create(p.k, _BAD_FD, _BAD_FD, _EG))),
    Feature("cap_bpf", "CAP_BPF", "5.8",
            "CAP_BPF exists (with CAP_NET_ADMIN it loads and attaches cgroup programs)",
            "PROG_LOAD from a child with CAP_BPF and CAP_NET_ADMIN only",
            _restricted({"CAP_BPF", "CAP_NET_ADMIN"}, "CAP_SYS_ADMIN",
                        lambda k: Prober.load(k, ProgType.CGROUP_SKB))),
    Feature(LINK_INFO, "link ids and link info", "5.8",
            "link IDs, LINK_GET_FD_BY_ID/NEXT_ID, link info and fdinfo", "LINK_GET_NEXT_ID",
            _command(Cmd.LINK_GET_NEXT_ID, uapi.GetIdAttr)),
    Feature("enolink_on_update", "ENOLINK from LINK_UPDATE of a defunct link", "5.8",
            "LINK_UPDATE of a defunct link gives ENOLINK (was EINVAL)",
            "LINK_UPDATE of a detached link", _defunct_update),
    Feature("replace_self", "MULTI|REPLACE of a program with itself", "5.8",
            "MULTI|REPLACE may replace a program with itself",
            "PROG_ATTACH MULTI|REPLACE of an attached program by itself", _replace_self),
    Feature("getpeername_hooks", "GETPEERNAME/GETSOCKNAME hooks", "5.8",
            "attach types INET4/6_GETPEERNAME/GETSOCKNAME",
            "PROG_ATTACH INET4_GETPEERNAME with bad fds", _attach(_NAME_HOOKS)),
    Feature(LINK_DETACH, "BPF_LINK_DETACH", "5.9", "BPF_LINK_DETACH",
            "LINK_DETACH of a bad fd",
            lambda p: answer("LINK_DETACH", lambda: _sys.link_detach(p.k, _BAD_FD))),
    Feature("sock_release_hook", "INET_SOCK_RELEASE hook", "5.9",
            "attach type INET_SOCK_RELEASE", "PROG_ATTACH INET_SOCK_RELEASE with bad fds",
            _attach(AttachType.CGROUP_INET_SOCK_RELEASE)),
    Feature("link_create_ext_attr", "LINK_CREATE fields past flags", "5.9",
            "LINK_CREATE's attr grows past `flags` (64 bytes)",
            "LINK_CREATE with a bad prog fd and a byte at offset 16",
            lambda p: answer("LINK_CREATE", lambda: _sys.link_create(
                p.k, _BAD_FD, _BAD_FD, _EG, relative_fd=1))),
    Feature("prog_attach_flags_query", "query.prog_attach_flags", "6.0",
            "query.prog_attach_flags; effective attach_flags 0",
            "PROG_QUERY of a bad fd with prog_attach_flags set", _query(prog_attach_flags=8)),
    Feature("lsm_cgroup", "BPF_LSM_CGROUP", "6.0", "attach type LSM_CGROUP",
            "PROG_ATTACH LSM_CGROUP with bad fds", _attach(AttachType.LSM_CGROUP, 0)),
    Feature("mprog_uapi", "the mprog attr fields", "6.6",
            "attr fields relative_fd/expected_revision, query link_ids/revision;"
            " PROG_DETACH rejects attach_flags/relative_fd",
            "PROG_QUERY of a bad fd with revision set", _query(revision=1)),
    Feature("link_info_64", "64-byte struct bpf_link_info", "6.6",
            "struct bpf_link_info is 64 bytes (48 before)",
            "the info_len GET_INFO_BY_FD writes for a link", _link_info_64),
    Feature("obj_path_fd", "BPF_F_PATH_FD", "6.5",
            "BPF_F_PATH_FD and path_fd for OBJ_PIN/OBJ_GET",
            "OBJ_GET with BPF_F_PATH_FD and a bad path_fd",
            lambda p: answer("OBJ_GET", lambda: _sys.obj_get(
                p.k, _PIN_NAME, file_flags=uapi.F_PATH_FD, path_fd=-1))),
    Feature("unix_hooks", "AF_UNIX sock_addr hooks", "6.7",
            "attach types UNIX_CONNECT..UNIX_GETSOCKNAME (49-53)",
            "PROG_ATTACH UNIX_CONNECT with bad fds", _attach(AttachType.CGROUP_UNIX_CONNECT)),
    Feature("bpf_net_capable", "CAP_SYS_ADMIN as CAP_NET_ADMIN", "6.7",
            "CAP_SYS_ADMIN counts as CAP_NET_ADMIN for attach/query",
            "PROG_QUERY of a bad fd from a child with CAP_SYS_ADMIN and CAP_BPF only",
            _restricted({"CAP_SYS_ADMIN", "CAP_BPF"}, "CAP_SYS_ADMIN",
                        lambda k: _sys.prog_query(k, _BAD_FD, _EG))),
    Feature("skb_link_type_check", "the CGROUP_SKB link type check", "6.9",
            "LINK_CREATE checks a CGROUP_SKB prog's attach type",
            "LINK_CREATE of a CGROUP_SKB program to INET_SOCK_CREATE, bad target",
            _skb_link_type_check),
    Feature(PREORDER_ATTACH, "BPF_F_PREORDER for PROG_ATTACH", "6.15",
            "BPF_F_PREORDER for PROG_ATTACH", "PROG_ATTACH flags MULTI|PREORDER, bad fds",
            _attach(flags=uapi.F_ALLOW_MULTI | uapi.F_PREORDER)),
    Feature(PREORDER_LINK, "BPF_F_PREORDER for links", "6.17", "BPF_F_PREORDER for LINK_CREATE",
            "LINK_CREATE flags PREORDER, bad target", _link_create(uapi.F_PREORDER)),
    Feature(MPROG, "the mprog API for cgroups (before/after, revisions)", "6.17",
            "BEFORE/AFTER/ID/LINK anchors, revisions, expected_revision",
            "PROG_ATTACH flags MULTI|BEFORE, bad fds",
            _attach(flags=uapi.F_ALLOW_MULTI | uapi.F_BEFORE)),
    Feature("prog_flag_sleepable", "BPF_F_SLEEPABLE", "5.10",
            "PROG_LOAD prog_flags bit BPF_F_SLEEPABLE (16)",
            "PROG_LOAD with that flag and no instructions", _prog_flag(uapi.F_SLEEPABLE)),
    Feature("prog_flag_xdp_frags", "BPF_F_XDP_HAS_FRAGS", "5.18",
            "PROG_LOAD prog_flags bit BPF_F_XDP_HAS_FRAGS (32)",
            "PROG_LOAD with that flag and no instructions", _prog_flag(uapi.F_XDP_HAS_FRAGS)),
    Feature("prog_flag_xdp_dev_bound", "BPF_F_XDP_DEV_BOUND_ONLY", "6.3",
            "PROG_LOAD prog_flags bit BPF_F_XDP_DEV_BOUND_ONLY (64)",
            "PROG_LOAD with that flag and no instructions",
            _prog_flag(uapi.F_XDP_DEV_BOUND_ONLY)),
    Feature("prog_flag_reg_invariants", "BPF_F_TEST_REG_INVARIANTS", "6.8",
            "PROG_LOAD prog_flags bit BPF_F_TEST_REG_INVARIANTS (128)",
            "PROG_LOAD with that flag and no instructions",
            _prog_flag(uapi.F_TEST_REG_INVARIANTS)),
    Feature("st_ctx", "BPF_ST into the context", "6.3",
            "a store of an immediate (BPF_ST) into a context field (before: EACCES, 'BPF_ST"
            " stores into R1 ctx is not allowed'; BPF_STX always could)",
            "PROG_LOAD of *(u32 *)(skb + mark) = 1",
            _skb_program(errno.EACCES, lambda a: a.st("w", a.R1, 8, 1))),
    Feature("cpu_v4", "cpu v4 instructions", "6.6",
            "sign-extending loads and moves, sdiv/smod, bswap, gotol (before: EINVAL)",
            "PROG_LOAD of r0 = (s8) r0",
            _skb_program(errno.EINVAL, lambda a: a.mov64(a.R0, 1),
                         lambda a: a.Insn(0xBF, 0, 0, 8, 0))),  # r0 = (s8) r0
    Feature("test_run_data_end", "data_end in CGROUP_SKB test runs", "6.18",
            "BPF_PROG_TEST_RUN of a CGROUP_SKB program sets __sk_buff.data_end (before:"
            " the skb's control block is not set, data_end reads as garbage; seen on"
            " Debian 6.1 and 6.12, the first mainline release with it not pinned down)",
            "a test run of data_end - data == 20 on a 20-byte packet",
            _test_run_data_end),
    Feature("btf_float", "BTF_KIND_FLOAT", "5.13", "the BTF kind FLOAT (16)",
            "BTF_LOAD of a FLOAT", _btf_kind(*BTF_KIND_PROBES["btf_float"])),
    Feature("btf_decl_tag", "BTF_KIND_DECL_TAG", "5.16", "the BTF kind DECL_TAG (17)",
            "BTF_LOAD of a DECL_TAG of a VAR", _btf_kind(*BTF_KIND_PROBES["btf_decl_tag"])),
    Feature("btf_type_tag", "BTF_KIND_TYPE_TAG", "5.17", "the BTF kind TYPE_TAG (18)",
            "BTF_LOAD of a pointer to a TYPE_TAG", _btf_kind(*BTF_KIND_PROBES["btf_type_tag"])),
    Feature("btf_enum64", "BTF_KIND_ENUM64", "6.0", "the BTF kind ENUM64 (19)",
            "BTF_LOAD of an ENUM64", _btf_kind(*BTF_KIND_PROBES["btf_enum64"])),
    Feature(TAG_SHA256, "SHA-256 program tags", "6.18",
            "a program's tag is the first 8 bytes of SHA-256 of its instructions (was SHA-1)",
            "the tag of a loaded program", _tag_sha256),
    Feature(UPDATE_EAT_CHECK, "the LINK_UPDATE expected attach type check",
            "stable backports of CVE-2025-40123",
            "LINK_UPDATE refuses (EINVAL) a program whose expected attach type does not fit"
            " the link's attach type (as PROG_ATTACH would)",
            "LINK_UPDATE of an INET4_CONNECT link to an INET6_CONNECT program",
            _update_eat_check, mainline=False),
    Feature(DETACH_OTHER_NET_ADMIN, "the PROG_DETACH capability check for others' programs",
            "a stable backport (seen on a 6.18.44 build; not in the 6.18.44 measured before)",
            "PROG_DETACH of an exclusive or override program by no prog fd or another"
            " program's needs CAP_NET_ADMIN or CAP_SYS_ADMIN (EPERM); by its own fd it"
            " needs nothing",
            "PROG_DETACH of an exclusive program from a child with no capabilities",
            _detach_other_needs_net_admin, mainline=False),
]}

_cache: weakref.WeakKeyDictionary[Kernel, dict[str, bool]] = weakref.WeakKeyDictionary()
_why: weakref.WeakKeyDictionary[Kernel, dict[str, str]] = weakref.WeakKeyDictionary()


def check(k: Kernel, key: str, prober: Prober | None = None) -> bool | None:
    """Whether ``k`` has feature ``key``: True, False, or None (could not tell; not
    cached, :func:`why` says why).  ``prober`` shares programs and cgroups between
    probes."""
    known = _cache.get(k)
    if known is None:
        known = _cache.setdefault(k, {})
    elif key in known:  # the hot path: one lookup
        return known[key]
    if key not in known:
        try:
            if prober is None:
                with Prober(k) as p:
                    known[key] = FEATURES[key].probe(p)
            else:
                known[key] = FEATURES[key].probe(prober)
        except CannotTell as e:
            _why.setdefault(k, {})[key] = str(e)
            return None
    return known[key]


def why(k: Kernel, key: str) -> str:
    """Why the last :func:`check` of ``key`` on ``k`` could not tell."""
    return _why.get(k, {}).get(key, "")


def supported(k: Kernel, key: str) -> bool:
    """False only if the probe says ``k`` lacks ``key``: where it cannot tell, the
    request is worth trying (the kernel's own error then says why it fails)."""
    return check(k, key) is not False


def require(k: Kernel, key: str) -> None:
    """Raise :class:`NotSupported` naming the feature and its first kernel if the probe
    says ``k`` lacks it."""
    if check(k, key) is False:
        f = FEATURES[key]
        raise NotSupported(f.name, f.since, how=f"probe: {f.how}")


def probe_all(k: Kernel) -> dict[str, bool | None]:
    """Every feature of :data:`FEATURES` on ``k`` (one scratch cgroup at most)."""
    with Prober(k) as p:
        return {key: check(k, key, p) for key in FEATURES}
