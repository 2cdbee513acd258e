"""Running an effective array and what its result means (VM-SPEC §5).

:func:`run_array` is ``bpf_prog_run_array_cg``: every program of the cgroup's effective
array for the attach type runs, in order, on one shared context (rewrites are seen by
later programs), each with the cgroup storage of its own entry; a 0 return turns the run's
retval into -EPERM unless it already holds an error; egress and bind programs return a
flag in bit 1.  The functions after it say what a result means for each hook (§5.3).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, NamedTuple

from ... import uapi
from . import storage
from .ctx import PAGE_SIZE, SkbCtx, SockoptCtx
from .interp import run

if TYPE_CHECKING:
    from ..cgroupfs import Cgroup
    from .ctx import Ctx
    from .env import Env

A = uapi.AttachType
#: Hooks whose programs return a flag in bit 1 (congestion notification; for bind "no
#: CAP_NET_BIND_SERVICE check").
FLAG_HOOKS = frozenset({A.CGROUP_INET_EGRESS, A.CGROUP_INET4_BIND, A.CGROUP_INET6_BIND})
MAX_ERRNO = 4095
CB = slice(SkbCtx.CB, SkbCtx.CB + 20)


class Result(NamedTuple):
    """A run's ``retval`` (a C int: 0, -errno or a positive value set by a program) and
    the ORed bit-1 ``flags``."""

    retval: int
    flags: int


def is_error(v: int) -> bool:
    """``IS_ERR_VALUE``: -4095..-1."""
    return -MAX_ERRNO <= v <= -1


def run_array(attach_type: int, cgroup: Cgroup, ctx: Ctx, env: Env) -> Result:
    """Run ``cgroup``'s effective array for ``attach_type`` on ``ctx`` (§5.2); ``env``
    carries the retval the run starts with (getsockopt: the kernel's own result)."""
    hook = cgroup.hooks.get(attach_type)
    entries = hook.effective if hook is not None else []
    env.attach_type, ctx.env, flags = attach_type, env, 0
    skb = isinstance(ctx, SkbCtx)
    for entry in entries:
        prog = entry.current
        env.storage = storage.regions(prog, entry.storage, env.cpu) if entry.storage else {}
        if skb:  # cb[] is private to each program: zeroed before, discarded after
            ctx.mem[CB] = bytes(20)
        r = run(prog, ctx, env)
        if skb:
            ctx.mem[CB] = bytes(20)
        if attach_type in FLAG_HOOKS:
            flags |= r >> 1
            r &= 1
        if r == 0 and not is_error(env.retval):
            env.retval = -errno.EPERM
    return Result(env.retval, flags)


# --- what a result means (§5.3) ------------------------------------------------------------


def egress(res: Result) -> tuple[int, bool]:
    """cgroup_skb egress for a UDP sender: (the errno sendmsg fails with or 0, whether
    the packet leaves).  A non-error retval is -EFAULT; with the congestion flag a
    dropped packet is NET_XMIT_DROP, which UDP reports as success."""
    ret = res.retval
    if ret and not is_error(ret):
        ret = -errno.EFAULT
    if ret == 0:
        return 0, True
    return (0 if res.flags & 1 else -ret), False


def getsockopt(res: Result, ctx: SockoptCtx, caller_optlen: int) -> tuple[int, bytes | None]:
    """(-errno or 0, the bytes the caller receives, or None: the kernel's value stands)."""
    if res.retval < 0:
        return res.retval, None
    buflen = len(ctx.buf.buf)
    if ctx.optlen < 0 or ctx.optlen > buflen:
        if caller_optlen > PAGE_SIZE and ctx.optlen >= 0:
            return 0, None
        return -errno.EFAULT, None
    if ctx.optlen == 0:
        return 0, None
    return 0, ctx.buf.read_bytes(0, ctx.optlen)


def setsockopt(res: Result, ctx: SockoptCtx, caller_optlen: int) -> tuple[int, bytes | None]:
    """(-errno, 0, or 1: the kernel handler is skipped and the call returns 0; the option
    bytes the handler gets, or None: the caller's own).  ``ctx.level``/``ctx.optname``
    say which option the handler sets."""
    if res.retval:
        return res.retval, None
    buflen = len(ctx.buf.buf)
    if ctx.optlen == -1:
        return 1, None
    if ctx.optlen < -1 or ctx.optlen > buflen:
        return (0 if caller_optlen > PAGE_SIZE else -errno.EFAULT), None
    if ctx.optlen == 0:
        return 0, None
    return 0, ctx.buf.read_bytes(0, ctx.optlen)
