"""BPF_PROG_TEST_RUN in the model (VM-SPEC §5.5): a CGROUP_SKB program run by the VM on a
packet, as 6.18's ``bpf_prog_test_run_skb`` runs it; every other program type answers
ENOTSUPP (524, §0 fact 22).

What the kernel does, as measured on 6.18.44 (tests/test_test_run.py compares both):
``data_in`` is an Ethernet frame of 14 to 3712 bytes (``PAGE_SIZE`` less the skb's
headroom and shared info); ``eth_type_trans`` on loopback takes the protocol from its
ethertype and ``pkt_type`` from the destination MAC, then the Ethernet header is pulled:
the program sees the bytes after it (``len``, ``data_end - data``), an IPv4 or IPv6 frame
must hold the whole IP header (else EINVAL), and a dummy socket of that family carries the
header's addresses (``local_ip4`` the source, ``remote_ip4`` the destination; ports 0).
One program runs ``repeat`` times (0 is once) on one skb, with one cgroup storage, zeroed
for the call.  ``data_out`` gets the packet back with a zeroed Ethernet header;
``ctx_in``/``ctx_out`` are a ``__sk_buff`` of which only some fields may be set.  A run
the VM cannot reproduce (a pointer stored as a number ...) raises its
:class:`~.errors.VmError`, not an errno: the kernel would have run it.
"""

from __future__ import annotations

import errno
import struct
import time

from ... import uapi
from .. import attach, memory
from ..memory import Attr, fail
from ..objects import Prog
from ..process import Process
from . import storage
from .ctx import AF_INET, AF_INET6, LOOPBACK_IFINDEX, SkbCtx, Sock
from .env import Env, Task
from .interp import run

ETH_HLEN = 14
#: The largest ``data_size_in`` (measured): 4096 - NET_SKB_PAD (64) - 320 of shared info.
DATA_MAX = 3712
SKB_SIZE = 192  # sizeof(struct __sk_buff)
ETH_P_802_3_MIN, ETH_P_802_3, ETH_P_802_2 = 0x600, 0x0001, 0x0004
#: ethertype -> (family of the dummy socket, IP header size, where its addresses are)
IP = {0x0800: (AF_INET, 20, slice(12, 16), slice(16, 20)),
      0x86DD: (AF_INET6, 40, slice(8, 24), slice(24, 40))}
PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 2, 3
GSO_MAX_SEGS, GSO_LEGACY_MAX_SIZE = 65535, 65536
#: ``__sk_buff`` bytes ``ctx_in`` may set (``convert___skb_to_skb``): mark, priority,
#: ingress_ifindex and ifindex, cb, tstamp, wire_len and gso_segs, gso_size, hwtstamp.
CTX_SETTABLE = ((8, 12), (32, 44), (48, 68), (152, 168), (176, 180), (184, 192))
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
COMM = b"cgbpf-model"


def prog_test_run(proc: Process, attr: Attr) -> int:
    """PROG_TEST_RUN, its checks in the kernel's order: the attr tail and the ctx
    pointer/size pairs (EINVAL), the program (EBADF, EINVAL, ENOTSUPP for any type but
    CGROUP_SKB), flags/cpu/batch_size and the data size (EINVAL), the copies in
    (EFAULT; a ``ctx_in`` longer than ``__sk_buff`` must be zero past it, E2BIG), the
    device (ENODEV: the model has loopback only), the IP header and ``ctx_in``'s fields
    (EINVAL); then the runs, and the copies out (ENOSPC for a short buffer, after the
    outputs are written)."""
    attr.check_tail(attach.attr_end(proc.machine.profile, uapi.Cmd.PROG_TEST_RUN))
    a = attr.view(uapi.TestRunAttr)
    if bool(a.ctx_size_in) != bool(a.ctx_in) or bool(a.ctx_size_out) != bool(a.ctx_out):
        raise fail(errno.EINVAL)
    prog = proc.obj(a.prog_fd, Prog)
    if prog.type != uapi.ProgType.CGROUP_SKB:
        raise fail(uapi.ENOTSUPP)
    if a.flags & ~uapi.F_TEST_SKB_CHECKSUM_COMPLETE or a.cpu or a.batch_size:
        raise fail(errno.EINVAL)
    if not ETH_HLEN <= a.data_size_in <= DATA_MAX:
        raise fail(errno.EINVAL)
    frame = memory.read(a.data_in, a.data_size_in)
    skb_in = _ctx_in(a) if a.ctx_in or a.ctx_out else None
    if skb_in is not None and _U32.unpack_from(skb_in, 40)[0] > LOOPBACK_IFINDEX:
        raise fail(errno.ENODEV)
    ctx = _skb(prog, frame, proc)
    if skb_in is not None:
        _apply(ctx, skb_in)
    env = Env(Task(proc.pid, proc.cred.uid, proc.cred.uid, COMM, proc.home),
              prog.expected_attach_type)
    ctx.env = env
    env.storage = storage.regions(prog, {m.type: storage.Storage(m, b"") for m in prog.maps
                                         if isinstance(m, storage.StorageMap)}, env.cpu)
    repeat = a.repeat or 1
    t0 = time.monotonic_ns()
    for _ in range(repeat):
        retval = run(prog, ctx, env)
    duration = min((time.monotonic_ns() - t0) // repeat, 0xFFFFFFFF)
    _finish(attr, a, bytes(ETH_HLEN) + bytes(ctx.packet.buf), retval, duration)
    if skb_in is not None and a.ctx_out:
        _ctx_finish(attr, a, _ctx_out(ctx, skb_in))
    return 0


def _ctx_in(a: uapi.TestRunAttr) -> bytearray:
    """``bpf_ctx_init``: the ``__sk_buff`` given (zero-extended), or zeros for
    ``ctx_out`` alone."""
    if not a.ctx_in:
        return bytearray(SKB_SIZE)
    size = a.ctx_size_in
    if size > memory.PAGE or (size > SKB_SIZE and not memory.is_zero(
            a.ctx_in + SKB_SIZE, size - SKB_SIZE)):
        raise fail(errno.E2BIG)
    return bytearray(memory.read(a.ctx_in, min(size, SKB_SIZE)).ljust(SKB_SIZE, b"\0"))


def _skb(prog: Prog, frame: bytes, proc: Process) -> SkbCtx:
    """``eth_type_trans`` on loopback (whose address is all zeros), the pull of the
    Ethernet header and the dummy socket (EINVAL: an IP frame too short for its
    header)."""
    ethertype = int.from_bytes(frame[12:14], "big")
    packet = frame[ETH_HLEN:]
    if ethertype < ETH_P_802_3_MIN:
        ethertype = ETH_P_802_3 if packet[:2] == b"\xff\xff" else ETH_P_802_2
    family, src, dst = 0, b"", b""
    if ethertype in IP:
        family, header, saddr, daddr = IP[ethertype]
        if len(packet) < header:
            raise fail(errno.EINVAL)
        src, dst = packet[saddr], packet[daddr]
    sock = Sock(family, 0, 0, proc.home, proc.cred.uid)
    if src:
        sock.src, sock.dst = src, dst
    ctx = SkbCtx(prog.expected_attach_type, sock, packet)
    ctx.data_end_set = proc.machine.profile.has("test_run_data_end")
    ctx.protocol = int.from_bytes(ethertype.to_bytes(2, "big"), "little")
    ctx.ingress_ifindex = 0
    mac = frame[:6]
    ctx.pkt_type = (PACKET_HOST if not any(mac) else
                    PACKET_MULTICAST if mac[0] & 1 else PACKET_OTHERHOST)
    return ctx


def _apply(ctx: SkbCtx, skb: bytearray) -> None:
    """``convert___skb_to_skb``: only the settable fields may be non-zero, ``wire_len``
    0 (the packet's length) or from ``len`` to 64 KiB, ``gso_segs`` at most 65535."""
    allowed = bytearray(SKB_SIZE)
    for start, end in CTX_SETTABLE:
        allowed[start:end] = skb[start:end]
    wire_len, gso_segs = _U32.unpack_from(skb, 160)[0], _U32.unpack_from(skb, 164)[0]
    if allowed != skb or (wire_len and not len(ctx.packet.buf) <= wire_len
                          <= GSO_LEGACY_MAX_SIZE) or gso_segs > GSO_MAX_SEGS:
        raise fail(errno.EINVAL)
    ctx.mark = _U32.unpack_from(skb, 8)[0]
    ctx.priority, ctx.ingress_ifindex = struct.unpack_from("<II", skb, 32)
    ctx.mem[SkbCtx.CB:SkbCtx.CB + 20] = skb[48:68]
    ctx.tstamp, ctx.hwtstamp = _U64.unpack_from(skb, 152)[0], _U64.unpack_from(skb, 184)[0]
    ctx.gso_segs, ctx.gso_size = gso_segs, _U32.unpack_from(skb, 176)[0]


def _ctx_out(ctx: SkbCtx, skb: bytearray) -> bytes:
    """``convert_skb_to___skb``: the given ``__sk_buff`` with what the skb holds after
    the runs (``wire_len``: the packet's length unless given; ``gso_size`` stays)."""
    wire_len = _U32.unpack_from(skb, 160)[0] or len(ctx.packet.buf)
    _U32.pack_into(skb, 8, ctx.mark)
    struct.pack_into("<III", skb, 32, ctx.priority, ctx.ingress_ifindex, LOOPBACK_IFINDEX)
    skb[48:68] = ctx.mem[SkbCtx.CB:SkbCtx.CB + 20]
    struct.pack_into("<QII", skb, 152, ctx.tstamp, wire_len, ctx.gso_segs)
    _U64.pack_into(skb, 184, ctx.hwtstamp)
    return bytes(skb)


def _finish(attr: Attr, a: uapi.TestRunAttr, data: bytes, retval: int, duration: int) -> None:
    """``bpf_test_finish``: the packet into ``data_out`` (clamped to a non-zero
    ``data_size_out``: then ENOSPC), and ``data_size_out``, ``retval``, ``duration``."""
    size = copy = len(data)
    short = bool(a.data_size_out) and size > a.data_size_out
    if short:
        copy = a.data_size_out
    if a.data_out:
        memory.write(a.data_out, data[:copy])
    attr.put(uapi.TestRunAttr, "data_size_out", size)
    attr.put(uapi.TestRunAttr, "retval", retval)
    attr.put(uapi.TestRunAttr, "duration", duration)
    if short:
        raise fail(errno.ENOSPC)


def _ctx_finish(attr: Attr, a: uapi.TestRunAttr, skb: bytes) -> None:
    """``bpf_ctx_finish``: the ``__sk_buff`` into ``ctx_out`` (ENOSPC if shorter)."""
    memory.write(a.ctx_out, skb[:a.ctx_size_out])
    attr.put(uapi.TestRunAttr, "ctx_size_out", SKB_SIZE)
    if a.ctx_size_out < SKB_SIZE:
        raise fail(errno.ENOSPC)
