"""The helpers cgroup programs call (VM-SPEC §3), as data: :data:`HELPERS` maps an id to
its name, its argument kinds, its implementation and the attach types that may call it
(measured on 6.18, ``out3_helpers.txt``).

:func:`call` is what the interpreter's ``CALL`` reaches (through ``Env.helper``): it
checks the helper is available for the attach type being run (the kernel checks at load;
the model at the call, so a program that slipped through load fails loudly the first time
it runs, with the verifier's words), marshals R1-R5 by kind and returns R0.  Helpers the
VM does not implement raise :class:`NotSupportedByVM`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING, Any, NamedTuple

from ... import uapi
from . import maps as vmaps
from . import storage
from .ctx import Ctx, SkbCtx, SockAddrCtx, SockCtx, SockoptCtx, SysctlCtx
from .errors import NotSupportedByVM, VerifierWouldReject
from .regions import M32, M64, UNINIT, MapRegion, Ptr

if TYPE_CHECKING:
    from ..objects import Map
    from .ctx import Sock
    from .env import Env

A = uapi.AttachType
MAX_HELPER_ID = 211  # __BPF_FUNC_MAX_ID - 1 on 6.18
HZ = 250  # CONFIG_HZ of the reference machine (jiffies64)
OVERFLOW_UID = 65534
INIT_NET_COOKIE = 1  # the first network namespace's cookie
F_SYSCTL_BASE_NAME = 1
_cookies = count(1)  # socket cookies: one global counter, as in the kernel

# --- availability per attach type (out3_helpers.txt) --------------------------------------

ALL = frozenset(int(t) for t in uapi.CGROUP_PROG_TYPE if t != A.LSM_CGROUP)
SKB = frozenset({A.CGROUP_INET_INGRESS, A.CGROUP_INET_EGRESS})
DEV, SYSCTL = frozenset({A.CGROUP_DEVICE}), frozenset({A.CGROUP_SYSCTL})
SOCKOPT = frozenset({A.CGROUP_GETSOCKOPT, A.CGROUP_SETSOCKOPT})
RETVAL = frozenset({
    A.CGROUP_INET_SOCK_CREATE, A.CGROUP_DEVICE, A.CGROUP_INET4_BIND, A.CGROUP_INET6_BIND,
    A.CGROUP_INET4_CONNECT, A.CGROUP_INET6_CONNECT, A.CGROUP_INET4_POST_BIND,
    A.CGROUP_INET6_POST_BIND, A.CGROUP_UDP4_SENDMSG, A.CGROUP_UDP6_SENDMSG, A.CGROUP_SYSCTL,
    A.CGROUP_GETSOCKOPT, A.CGROUP_SETSOCKOPT, A.CGROUP_INET_SOCK_RELEASE,
    A.CGROUP_UNIX_CONNECT, A.CGROUP_UNIX_SENDMSG})
SOCK_OPTS = ALL - SKB - DEV - SYSCTL - {A.CGROUP_GETSOCKOPT, A.CGROUP_INET_SOCK_CREATE,
                                        A.CGROUP_INET4_POST_BIND, A.CGROUP_INET6_POST_BIND,
                                        A.CGROUP_INET_SOCK_RELEASE}


class Helper(NamedTuple):
    """One helper: ``args`` are the kinds of R1.. (§3.1): ``map``, ``key``, ``value``
    (of the map before), ``mem``/``out`` (a buffer read/written, its size the next arg,
    ``size``), ``fixed8`` (8 writable bytes), ``ctx``, ``any`` (a scalar), ``opt`` (a
    scalar the kernel does not check: 0 if never written)."""

    name: str
    args: tuple[str, ...]
    impl: Callable[..., int | Ptr] | None  # None: the VM does not implement it
    where: frozenset[int] = ALL


# --- argument marshalling -------------------------------------------------------------------


def _reject(msg: str, err: int = errno.EACCES) -> VerifierWouldReject:
    return VerifierWouldReject(err, msg)


def _marshal(env: Env, h: Helper, helper_id: int, regs: tuple[Any, ...]) -> list[Any]:
    """R1.. converted by kind: a Map, key/value bytes, a checked buffer pointer ..."""
    out: list[Any] = []
    m: Map | None = None
    for i, kind in enumerate(h.args):
        r, v = i + 1, regs[i]
        if v is UNINIT and kind == "opt":  # not an argument the kernel checks: unread
            v = 0
        if v is UNINIT:
            raise _reject(f"R{r} !read_ok")
        if kind == "map":
            if not isinstance(v, Ptr) or not isinstance(v.region, MapRegion):
                raise _reject(f"R{r} type={_kind(v)} expected=map_ptr")
            m = v.region.map
            wants_storage = helper_id == 81
            if (m.type in storage.TYPES) != wants_storage:
                raise _reject(f"cannot pass map_type {m.type} into func {h.name}#{helper_id}",
                              errno.EINVAL)
            out.append(m)
        elif kind in ("key", "value"):
            assert m is not None
            n = m.key_size if kind == "key" else m.value_size
            out.append(_read(v, n, r))
        elif kind in ("mem", "out", "fixed8"):
            if not isinstance(v, Ptr):
                raise _reject(f"R{r} type={_kind(v)} expected=fp, pkt, map_value, mem")
            if kind == "mem":
                size = regs[i + 1]
                if not isinstance(size, int):
                    raise _reject(f"R{r + 1} type={_kind(size)} expected=scalar")
                v.region.read_bytes(v.off, size)  # readable and initialised
            out.append(v)
        elif kind == "ctx":
            if not isinstance(v, Ptr) or v.region is not env.ctx or v.off:
                raise _reject(f"R{r} type={_kind(v)} expected=ctx")
            out.append(v.region)
        else:  # size, any, opt
            if isinstance(v, Ptr):
                v = v.address  # privileged: a pointer passes as a number
            out.append(v)
    return out


def _kind(v: object) -> str:
    return v.region.kind if isinstance(v, Ptr) else "scalar"


def _read(p: object, n: int, r: int) -> bytes:
    if not isinstance(p, Ptr):
        raise _reject(f"R{r} type={_kind(p)} expected=fp, pkt, map_value, mem")
    return p.region.read_bytes(p.off, n)


def _write(p: Ptr, data: bytes) -> None:
    p.region.write_bytes(p.off, data)


def call(env: Env, helper_id: int, args: tuple[int | Ptr | object, ...]) -> int | Ptr:
    """Helper ``helper_id`` with R1-R5: R0 (an int, or a pointer such as a map value)."""
    h = HELPERS.get(helper_id)
    if h is None:
        if not 0 < helper_id <= MAX_HELPER_ID:
            raise _reject(f"invalid func unknown#{helper_id}", errno.EINVAL)
        raise NotSupportedByVM(f"helper #{helper_id}")
    if env.attach_type not in h.where:
        raise _reject(f"program of this type cannot use helper {h.name}#{helper_id}",
                      errno.EINVAL)
    if h.impl is None:
        raise NotSupportedByVM(f"helper {h.name}#{helper_id}")
    return h.impl(env, *_marshal(env, h, helper_id, args))


# --- implementations ------------------------------------------------------------------------


def _sock_of(ctx: Ctx) -> Sock | None:
    """The socket a context is about (``skb->sk``, ``ctx->sk``, the bpf_sock itself)."""
    if isinstance(ctx, (SkbCtx, SockAddrCtx, SockCtx, SockoptCtx)):
        return ctx.sock
    return None


def socket_cookie(sock: Sock) -> int:
    """``sock_gen_cookie``: given on first use, from one counter."""
    if not sock.cookie:
        sock.cookie = next(_cookies)
    return sock.cookie


def _cookie(env: Env, ctx: Ctx) -> int:
    sock = _sock_of(ctx)
    return socket_cookie(sock) if sock is not None else 0


def _socket_uid(env: Env, ctx: Ctx) -> int:
    sock = _sock_of(ctx)
    return sock.uid if sock is not None else OVERFLOW_UID


def _skb_cgroup_id(env: Env, ctx: Ctx) -> int:
    sock = _sock_of(ctx)
    return sock.cgroup.ino if sock is not None else 0


def _skb_bytes(ctx: Ctx, offset: int, to: Ptr, n: int, start: int | None) -> int:
    """``skb_load_bytes(_relative)``: copy, or zero ``to`` and -EFAULT when out of range
    (and for a MAC-relative read of an egress skb, which has no MAC header yet)."""
    assert isinstance(ctx, SkbCtx)
    data = bytes(ctx.packet.buf)
    if start == 0:  # BPF_HDR_START_MAC: loopback's zeroed Ethernet header on ingress
        data = (bytes(12) + (b"\x08\x00" if data[:1] < b"\x60" else b"\x86\xdd") + data
                if ctx.ingress else b"")
    elif start not in (None, 1):
        data = b""
    if offset > 0x7FFFFFFF or offset + n > len(data):
        _write(to, bytes(n))
        return -errno.EFAULT
    _write(to, data[offset:offset + n])
    return 0


def _current_comm(env: Env, buf: Ptr, size: int) -> int:
    comm = env.task.comm[:max(size - 1, 0)]
    _write(buf, comm + bytes(size - len(comm)))
    return 0


def _ancestor_cgroup_id(env: Env, level: int) -> int:
    cg = env.task.cgroup
    if cg is None:
        return 0
    chain = [cg, *cg.ancestors()][::-1]  # root (level 0) first
    return chain[level].ino if level < len(chain) else 0


def _local_storage(env: Env, m: Map, flags: int) -> Ptr:
    if flags:
        raise _reject("get_local_storage() doesn't support non-zero flags", errno.EINVAL)
    region = env.storage.get(m)
    if region is None:  # the program was attached without the map's storage
        raise NotSupportedByVM(f"no cgroup storage of map {m.id} for this program")
    return Ptr(region, 0)


def _set_retval(env: Env, v: int) -> int:
    v &= M32
    env.retval = v - (1 << 32) if v >> 31 else v
    return 0


def _copy_out(buf: Ptr, n: int, value: bytes | None) -> int:
    """The copy rule of ``sysctl_get_current_value``/``get_new_value`` (§3.4)."""
    if n == 0:
        return -errno.E2BIG
    if value is None:
        _write(buf, bytes(n))
        return -errno.EINVAL
    if n > len(value):
        _write(buf, value + bytes(n - len(value)))
        return len(value)
    _write(buf, value[:n - 1] + b"\0")
    return -errno.E2BIG


def _sysctl(ctx: Ctx) -> SysctlCtx:
    assert isinstance(ctx, SysctlCtx)
    return ctx


def _sysctl_get_name(env: Env, ctx: Ctx, buf: Ptr, n: int, flags: int) -> int:
    name = _sysctl(ctx).name
    if flags & F_SYSCTL_BASE_NAME:
        name = name.rsplit("/", 1)[-1]
    raw = name.encode()
    if n == 0:
        return -errno.E2BIG
    if len(raw) < n:
        _write(buf, raw + b"\0")
        return len(raw)
    _write(buf, raw[:n - 1] + b"\0")
    return -errno.E2BIG


def _sysctl_set_new_value(env: Env, ctx: Ctx, buf: Ptr, n: int) -> int:
    s = _sysctl(ctx)
    if s.new is None or n == 0:
        return -errno.EINVAL
    if n > 4095:
        return -errno.E2BIG
    s.new = buf.region.read_bytes(buf.off, n)
    return 0


_SPACE = b" \t\n\v\f\r"


def _parse_int(text: bytes, flags: int, signed: bool) -> tuple[int, int]:
    """``__bpf_strtoull`` and the sign rules of strtol/strtoul (§3.4): (value, consumed)
    or (-errno, 0)."""
    base = flags & 0x1F
    if flags & ~0x1F or base not in (0, 8, 10, 16) or not text:
        return -errno.EINVAL, 0
    s = text.split(b"\0", 1)[0][:63]
    i = len(s) - len(s.lstrip(_SPACE))
    neg = s[i:i + 1] == b"-"
    i += neg
    if i >= len(s):
        return -errno.EINVAL, 0
    if neg and not signed:
        return -errno.EINVAL, 0
    rest = s[i:]
    if base in (0, 16) and rest[:2].lower() == b"0x" and len(rest) > 2:
        base, i = 16, i + 2
    elif base == 0:
        base = 8 if rest[:1] == b"0" else 10
    digits = re.match(rb"[0-9a-fA-F]*", s[i:])
    assert digits is not None
    run = b""
    for ch in digits.group():
        if int(chr(ch), 16) >= base:
            break
        run += bytes([ch])
    if not run:
        return -errno.EINVAL, 0
    v = int(run, base)
    if v > M64:
        return -errno.ERANGE, 0
    if signed and (v > (1 << 63) - 1 + neg):
        return -errno.ERANGE, 0
    return (-v if neg else v) & M64, i + len(run)


def _strto(signed: bool) -> Callable[..., int]:
    def impl(env: Env, buf: Ptr, n: int, flags: int, res: Ptr) -> int:
        _write(res, bytes(8))
        v, used = _parse_int(buf.region.read_bytes(buf.off, n), flags, signed)
        if not used:
            return v
        _write(res, v.to_bytes(8, "little"))
        return used
    return impl


_CONV = re.compile(rb"%(l{0,2})([diuxXc%])|%")


def _trace_printk(env: Env, fmt: Ptr, n: int, *values: int) -> int:
    """``bpf_trace_printk``: %d %i %u %x %X %c with l/ll, at most 3 arguments; anything
    else -EINVAL.  The line goes to ``env.trace_log``."""
    raw = fmt.region.read_bytes(fmt.off, n)
    if b"\0" not in raw:
        return -errno.EINVAL
    raw = raw.split(b"\0", 1)[0]
    args, out, pos = list(values), [], 0
    for m in _CONV.finditer(raw):
        out.append(raw[pos:m.start()].decode(errors="replace"))
        pos = m.end()
        if m.group(2) is None:
            return -errno.EINVAL
        if m.group(2) == b"%":
            out.append("%")
            continue
        if not args:
            return -errno.EINVAL
        bits = 32 if not m.group(1) else 64
        v = args.pop(0) & ((1 << bits) - 1)
        conv = m.group(2).decode()
        if conv == "c":
            out.append(chr(v & 0xFF))
            continue
        if conv in "di" and v >> (bits - 1):
            v -= 1 << bits
        out.append(format(v, conv if conv in "xX" else "d"))
    out.append(raw[pos:].decode(errors="replace"))
    line = "".join(out)
    env.trace_log.append(line)
    return len(line)


def _ktime(env: Env) -> int:
    return env.clock()


def _map_lookup(env: Env, m: Map, key: bytes) -> int | Ptr:
    return vmaps.lookup(env, m, key)


def _map_update(env: Env, m: Map, key: bytes, value: bytes, flags: int) -> int:
    return vmaps.update(env, m, key, value, flags)


def _map_delete(env: Env, m: Map, key: bytes) -> int:
    return vmaps.delete(env, m, key)


def _netns_cookie(env: Env, ctx: object) -> int:
    return INIT_NET_COOKIE


#: id -> helper (VM-SPEC §3.2; availability §3.3)
HELPERS: dict[int, Helper] = {
    1: Helper("bpf_map_lookup_elem", ("map", "key"), _map_lookup),
    2: Helper("bpf_map_update_elem", ("map", "key", "value", "any"), _map_update),
    3: Helper("bpf_map_delete_elem", ("map", "key"), _map_delete),
    5: Helper("bpf_ktime_get_ns", (), _ktime),
    # the values are not arguments the verifier checks (a format may take fewer)
    6: Helper("bpf_trace_printk", ("mem", "size", "opt", "opt", "opt"), _trace_printk),
    7: Helper("bpf_get_prandom_u32", (), lambda env: env.rng.getrandbits(32)),
    8: Helper("bpf_get_smp_processor_id", (), lambda env: env.cpu),
    12: Helper("bpf_tail_call", ("ctx", "any", "any"), None),
    14: Helper("bpf_get_current_pid_tgid", (), lambda env: env.task.tgid << 32 | env.task.pid),
    15: Helper("bpf_get_current_uid_gid", (), lambda env: env.task.gid << 32 | env.task.uid),
    16: Helper("bpf_get_current_comm", ("out", "size"), _current_comm),
    17: Helper("bpf_get_cgroup_classid", (), lambda env: 0),  # no net_cls classid
    25: Helper("bpf_perf_event_output", ("ctx", "any", "any", "mem", "size"), None),
    26: Helper("bpf_skb_load_bytes", ("ctx", "any", "out", "size"),
               lambda env, ctx, off, to, n: _skb_bytes(ctx, off & M32, to, n, None), SKB),
    35: Helper("bpf_get_current_task", (), None),
    42: Helper("bpf_get_numa_node_id", (), lambda env: 0),
    46: Helper("bpf_get_socket_cookie", ("ctx",), _cookie, ALL - DEV - SYSCTL - SOCKOPT),
    47: Helper("bpf_get_socket_uid", ("ctx",), _socket_uid, SKB),
    49: Helper("bpf_setsockopt", ("ctx", "any", "any", "mem", "size"), None, SOCK_OPTS),
    57: Helper("bpf_getsockopt", ("ctx", "any", "any", "out", "size"), None, SOCK_OPTS),
    64: Helper("bpf_bind", ("ctx", "mem", "size"), None,
               frozenset({A.CGROUP_INET4_CONNECT, A.CGROUP_INET6_CONNECT})),
    68: Helper("bpf_skb_load_bytes_relative", ("ctx", "any", "out", "size", "any"),
               lambda env, ctx, off, to, n, start: _skb_bytes(ctx, off & M32, to, n, start),
               SKB),
    79: Helper("bpf_skb_cgroup_id", ("ctx",), _skb_cgroup_id, SKB),
    80: Helper("bpf_get_current_cgroup_id", (),
               lambda env: env.task.cgroup.ino if env.task.cgroup is not None else 0),
    81: Helper("bpf_get_local_storage", ("map", "any"), _local_storage),
    101: Helper("bpf_sysctl_get_name", ("ctx", "out", "size", "any"), _sysctl_get_name,
                SYSCTL),
    102: Helper("bpf_sysctl_get_current_value", ("ctx", "out", "size"),
                lambda env, ctx, buf, n: _copy_out(buf, n, _sysctl(ctx).cur), SYSCTL),
    103: Helper("bpf_sysctl_get_new_value", ("ctx", "out", "size"),
                lambda env, ctx, buf, n: _copy_out(buf, n, _sysctl(ctx).new), SYSCTL),
    104: Helper("bpf_sysctl_set_new_value", ("ctx", "mem", "size"), _sysctl_set_new_value,
                SYSCTL),
    105: Helper("bpf_strtol", ("mem", "size", "any", "fixed8"), _strto(True)),
    106: Helper("bpf_strtoul", ("mem", "size", "any", "fixed8"), _strto(False)),
    113: Helper("bpf_probe_read_kernel", ("out", "size", "any"), None),
    118: Helper("bpf_jiffies64", (), lambda env: env.clock() * HZ // 1_000_000_000),
    122: Helper("bpf_get_netns_cookie", ("any",), _netns_cookie, ALL - DEV - SYSCTL),
    123: Helper("bpf_get_current_ancestor_cgroup_id", ("any",), _ancestor_cgroup_id),
    125: Helper("bpf_ktime_get_boot_ns", (), _ktime),
    130: Helper("bpf_ringbuf_output", ("map", "mem", "size", "any"), None),
    160: Helper("bpf_ktime_get_coarse_ns", (), _ktime, ALL - DEV - SOCKOPT),
    186: Helper("bpf_get_retval", (), lambda env: env.retval & M64, RETVAL),
    187: Helper("bpf_set_retval", ("any",), _set_retval, RETVAL),
    208: Helper("bpf_ktime_get_tai_ns", (), _ktime),
}
