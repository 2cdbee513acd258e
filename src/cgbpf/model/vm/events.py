"""Events on the model: what a model process does that makes cgroup programs run.

Each event is a system call of a model process: it builds the kernel objects a real
kernel would (a socket in the process's cgroup, an IPv4/UDP packet, a sockaddr, a sysctl
text, a device access), runs the effective arrays of the hooks that call would run, in
the kernel's order, applies what the programs rewrote, and returns what the syscall
returns or raises ``OSError`` with its errno.  Socket hooks run in the cgroup the socket
was created in, device and sysctl hooks in the current task's (VM-SPEC §5.1).  Sockets
live for one event (created, used, closed: INET_SOCK_CREATE and INET_SOCK_RELEASE run),
except a bound receiver (:func:`bind`), which stays until the process closes it.

Through a model process (``ModelKernel.process()``)::

    from cgbpf import AttachType, Cgroup, Map, MapType, Program, ProgType, asm
    from cgbpf.kernel import model

    k = model()
    counts = Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, kernel=k)
    prog = Program.load(asm.counter_program(counts), ProgType.CGROUP_SKB,
                        expected_attach_type=AttachType.CGROUP_INET_EGRESS, kernel=k)
    k.mkdir("/sys/fs/cgroup/app")
    with Cgroup.open("/sys/fs/cgroup/app", kernel=k) as cg:
        link = cg.link(prog, AttachType.CGROUP_INET_EGRESS)
        p = k.process()
        p.enter("/sys/fs/cgroup/app")
        p.send_udp("127.0.0.1", 9000, b"hi")    # 2: bytes sent; the program ran
        counts.lookup(bytes(4))                 # b"\\x01\\x00..."
        p.exit()
        link.close()

The events: ``enter(cgroup_path)``, ``send_udp(host, port, data)`` (UDP4/6_SENDMSG, then
EGRESS in the sender's cgroup, then INGRESS in the cgroup of a model socket bound to the
destination, if any), ``bind(host, port)`` (INET4/6_BIND, POST_BIND; the socket stays
bound: ``recv(host, port)`` takes what reached it), ``connect(host, port)``
(INET4/6_CONNECT on a UDP socket: the address connected to, or a positive retval),
``setsockopt``/``getsockopt(level, name, ...)``, ``sysctl_read(name)``,
``sysctl_write(name, value)`` and ``open_device(kind, major, minor, access)``.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from ... import uapi
from ..memory import fail
from ..process import SocketFile
from . import run as vmrun
from .ctx import (
    ACC_MKNOD,
    ACC_READ,
    ACC_WRITE,
    AF_INET,
    AF_INET6,
    DEV_BLOCK,
    DEV_CHAR,
    IPPROTO_UDP,
    PAGE_SIZE,
    SOCK_DGRAM,
    TCP_ESTABLISHED,
    Ctx,
    DeviceCtx,
    SkbCtx,
    Sock,
    Sockaddr,
    SockAddrCtx,
    SockCtx,
    SockoptCtx,
    SysctlCtx,
)
from .env import Env, Task

if TYPE_CHECKING:
    from ..cgroupfs import Cgroup
    from ..machine import Machine
    from ..process import Process

A = uapi.AttachType
EPHEMERAL = range(32768, 61000)  # net.ipv4.ip_local_port_range
COMM = b"model"
#: The sysctls a model machine has (text as the handler prints it), by /proc/sys path.
SYSCTLS = {"kernel/ostype": "Linux\n", "kernel/hostname": "model\n",
           "net/ipv4/ip_default_ttl": "64\n", "net/ipv4/tcp_mtu_probing": "0\n",
           "net/core/somaxconn": "4096\n"}
SOL_SOCKET, SOL_IP, SO_SNDBUF, SO_RCVBUF, SO_PRIORITY, SO_MARK, IP_TOS = 1, 0, 7, 8, 12, 36, 1
#: The options the model's own getsockopt/setsockopt know, with their defaults (6.18).
SOCKOPTS = {(SOL_SOCKET, SO_SNDBUF): 212992, (SOL_SOCKET, SO_RCVBUF): 212992,
            (SOL_SOCKET, SO_PRIORITY): 0, (SOL_SOCKET, SO_MARK): 0, (SOL_IP, IP_TOS): 0}
SOCK_MIN_BUF = 2304  # SOCK_MIN_RCVBUF: the kernel doubles what is set, at least this


class InetSocket(SocketFile):
    """A model socket in a process's fd table: the :class:`Sock` programs see and the
    datagrams delivered to it."""

    def __init__(self, sock: Sock, proc: Process) -> None:
        super().__init__(sock.cgroup)
        self.sock, self.proc = sock, proc
        self.inbox: list[bytes] = []

    def release(self) -> None:
        """close(): INET_SOCK_RELEASE runs (its verdict cannot fail close)."""
        net(self.proc.machine).unbind(self)
        _run(self.proc, A.CGROUP_INET_SOCK_RELEASE, self.sock.cgroup,
             SockCtx(A.CGROUP_INET_SOCK_RELEASE, self.sock))
        super().release()


class Net:
    """A machine's network and sysctl state: bound UDP sockets, the next ephemeral
    port, the sysctl values."""

    def __init__(self) -> None:
        self.bound: dict[tuple[int, bytes, int], InetSocket] = {}
        self.next_port = EPHEMERAL.start
        self.sysctls = dict(SYSCTLS)

    def port(self, family: int) -> int:
        """An ephemeral port no socket of ``family`` has bound."""
        while any(k[0] == family and k[2] == self.next_port for k in self.bound):
            self.next_port = self.next_port + 1 if self.next_port + 1 < EPHEMERAL.stop \
                else EPHEMERAL.start
        p = self.next_port
        self.next_port = p + 1 if p + 1 < EPHEMERAL.stop else EPHEMERAL.start
        return p

    def unbind(self, s: InetSocket) -> None:
        for k, v in list(self.bound.items()):
            if v is s:
                del self.bound[k]


_nets: WeakKeyDictionary[Machine, Net] = WeakKeyDictionary()


def net(machine: Machine) -> Net:
    """The :class:`Net` of a machine."""
    if machine not in _nets:
        _nets[machine] = Net()
    return _nets[machine]


# --- running hooks ------------------------------------------------------------------------


def _run(proc: Process, attach_type: int, cgroup: Cgroup, ctx: Ctx,
         retval: int = 0) -> vmrun.Result:
    """One array run with a fresh run context; ``proc`` is "current" (an empty array:
    nothing runs, nothing to set up)."""
    hook = cgroup.hooks.get(attach_type)
    if hook is None or not hook.effective:
        return vmrun.Result(retval, 0)
    task = Task(proc.pid, proc.cred.uid, proc.cred.uid, COMM, proc.home)
    return vmrun.run_array(attach_type, cgroup, ctx, Env(task, attach_type, retval=retval))


def _check(ret: int) -> int:
    """A run result as a syscall's: -errno raised, else returned (0 or positive)."""
    if ret < 0:
        raise fail(-ret)
    return ret


def _family(host: str) -> tuple[int, bytes]:
    fam = AF_INET6 if ":" in host else AF_INET
    try:
        return fam, socket.inet_pton(fam, host)
    except OSError:
        raise fail(errno.EINVAL) from None


def _host(fam: int, ip: bytes) -> str:
    return socket.inet_ntop(fam, ip)


def open_socket(proc: Process, family: int, type_: int = SOCK_DGRAM,
                protocol: int = IPPROTO_UDP) -> InetSocket:
    """``socket()``: a socket in the process's cgroup, after INET_SOCK_CREATE allowed it
    (mark, priority, bound_dev_if as the programs set them)."""
    cgroup = proc.home
    sock = Sock(family, type_, protocol, cgroup, proc.cred.uid)
    res = _run(proc, A.CGROUP_INET_SOCK_CREATE, cgroup,
               SockCtx(A.CGROUP_INET_SOCK_CREATE, sock))
    if res.retval < 0:
        raise fail(-res.retval)
    return InetSocket(sock, proc)


def _close(s: InetSocket) -> None:
    if s.count == 0:
        s.release()


def _sock_addr(proc: Process, at4: int, at6: int, s: InetSocket, ip: bytes, port: int
               ) -> tuple[Sockaddr, int]:
    """The sock_addr hook of the call (``at4`` or ``at6`` by the socket's family) on the
    address (ip, port): the address as the programs left it, and the run's retval as the
    syscall's (an -errno raised)."""
    fam = s.sock.family
    at, addr = at4 if fam == AF_INET else at6, Sockaddr(fam, ip, port)
    return addr, _check(_run(proc, at, s.sock.cgroup, SockAddrCtx(at, s.sock, addr)).retval)


# --- UDP ---------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packet(fam: int, src: bytes, sport: int, dst: bytes, dport: int, data: bytes,
           ttl: int = 64, tos: int = 0) -> bytes:
    """The IPv4 or IPv6 + UDP packet a datagram becomes (IP id 0, DF set, checksums)."""
    ulen = 8 + len(data)
    if fam == AF_INET:
        pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, ulen)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", ulen, IPPROTO_UDP)
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + data
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    if fam == AF_INET6:
        return struct.pack("!IHBB", 6 << 28, ulen, IPPROTO_UDP, ttl) + src + dst + udp
    head = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + ulen, 0, 0x4000, ttl, IPPROTO_UDP, 0,
                       src, dst)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return head + udp


def send_udp(proc: Process, host: str, port: int, data: bytes = b"x") -> int:
    """``sendto()`` on a new unconnected UDP socket: UDP4/6_SENDMSG (may rewrite the
    destination and source), EGRESS in the socket's cgroup (EPERM when denied; a drop
    with the congestion flag is success), then INGRESS in the cgroup of a model socket
    bound to the destination; bytes sent, or a positive retval a sendmsg program set."""
    fam, ip = _family(host)
    s = open_socket(proc, fam)
    try:
        addr, ret = _sock_addr(proc, A.CGROUP_UDP4_SENDMSG, A.CGROUP_UDP6_SENDMSG, s, ip,
                               port)
        if ret:
            return ret
        if addr.port == 0:
            raise fail(errno.EINVAL)
        n = net(proc.machine)
        s.sock.src_port = n.port(fam)  # autobind; the bound address stays "any"
        loop = b"\x7f\0\0\1" if fam == AF_INET else socket.inet_pton(AF_INET6, "::1")
        src = addr.msg_src if any(addr.msg_src) else loop
        ttl = int(n.sysctls["net/ipv4/ip_default_ttl"])
        pkt = packet(fam, src, s.sock.src_port, addr.ip, addr.port, data, ttl=ttl,
                     tos=_opt_int(s.sock, SOL_IP, IP_TOS))
        ctx = SkbCtx(A.CGROUP_INET_EGRESS, s.sock, pkt, mark=s.sock.mark,
                     priority=s.sock.priority)
        err, leaves = vmrun.egress(_run(proc, A.CGROUP_INET_EGRESS, s.sock.cgroup, ctx))
        if err:
            raise fail(err)
        rx = n.bound.get((fam, addr.ip, addr.port)) or n.bound.get(
            (fam, bytes(len(addr.ip)), addr.port))
        if leaves and rx is not None:
            ingress = SkbCtx(A.CGROUP_INET_INGRESS, rx.sock, bytes(ctx.packet.buf))
            if _run(proc, A.CGROUP_INET_INGRESS, rx.sock.cgroup, ingress).retval == 0:
                rx.inbox.append(data)
        return len(data)
    finally:
        _close(s)


def bind(proc: Process, host: str, port: int) -> tuple[str, int]:
    """``bind()`` of a new UDP socket that stays open in the process (a receiver):
    INET4/6_BIND (may rewrite the address), then POST_BIND (0 undoes the bind: EPERM);
    the address bound (an ephemeral port for 0)."""
    fam, ip = _family(host)
    s = open_socket(proc, fam)
    try:
        addr, _ = _sock_addr(proc, A.CGROUP_INET4_BIND, A.CGROUP_INET6_BIND, s, ip, port)
        n = net(proc.machine)
        p = addr.port or n.port(fam)
        if any(k[0] == fam and k[2] == p and (k[1] == addr.ip or not any(k[1])
                                               or not any(addr.ip)) for k in n.bound):
            raise fail(errno.EADDRINUSE)
        s.sock.src, s.sock.src_port = addr.ip, p
        at = A.CGROUP_INET4_POST_BIND if fam == AF_INET else A.CGROUP_INET6_POST_BIND
        _check(_run(proc, at, s.sock.cgroup, SockCtx(at, s.sock)).retval)
    except BaseException:  # an errno, or a program the VM could not run: no socket left
        _close(s)
        raise
    n.bound[(fam, addr.ip, p)] = s
    proc.install(s)
    return _host(fam, addr.ip), p


def recv(proc: Process, host: str, port: int) -> bytes | None:
    """The next datagram that reached this process's socket bound to (host, port), or
    None (a receiver that would time out)."""
    fam, ip = _family(host)
    s = net(proc.machine).bound.get((fam, ip, port))
    if s is None or s not in proc.fds.values():
        raise fail(errno.ENOTCONN)
    return s.inbox.pop(0) if s.inbox else None


def connect(proc: Process, host: str, port: int) -> tuple[str, int] | int:
    """``connect()`` of a new UDP socket: INET4/6_CONNECT; the address connected to (as
    the programs rewrote it), or the positive retval a program set, which is what
    connect() returns then."""
    fam, ip = _family(host)
    s = open_socket(proc, fam)
    try:
        addr, ret = _sock_addr(proc, A.CGROUP_INET4_CONNECT, A.CGROUP_INET6_CONNECT, s, ip,
                               port)
        if ret:
            return ret
        s.sock.dst, s.sock.dst_port, s.sock.state = addr.ip, addr.port, TCP_ESTABLISHED
        return _host(fam, addr.ip), addr.port
    finally:
        _close(s)


# --- socket options ------------------------------------------------------------------------


def _opt_int(sock: Sock, level: int, name: int) -> int:
    raw = sock.options.get((level, name))
    return int.from_bytes(raw[:4], "little") if raw else SOCKOPTS.get((level, name), 0)


def _kernel_get(sock: Sock, level: int, name: int) -> bytes | int:
    """The model's own getsockopt: the value, or -ENOPROTOOPT for an option it lacks."""
    if (level, name) not in SOCKOPTS:
        return -errno.ENOPROTOOPT
    return struct.pack("<i", _opt_int(sock, level, name))


def _kernel_set(sock: Sock, level: int, name: int, value: bytes) -> None:
    if (level, name) not in SOCKOPTS:
        raise fail(errno.ENOPROTOOPT)
    if len(value) < 4:
        raise fail(errno.EINVAL)
    v = struct.unpack("<i", value[:4])[0]
    if name in (SO_RCVBUF, SO_SNDBUF) and level == SOL_SOCKET:
        v = max(2 * v, SOCK_MIN_BUF)
    elif (level, name) == (SOL_SOCKET, SO_MARK):
        sock.mark = v
    elif (level, name) == (SOL_SOCKET, SO_PRIORITY):
        sock.priority = v
    sock.options[(level, name)] = struct.pack("<i", v)


def _value(value: int | bytes) -> bytes:
    return struct.pack("<i", value) if isinstance(value, int) else value


def setsockopt(proc: Process, level: int, name: int, value: int | bytes) -> None:
    """``setsockopt()`` on a new UDP socket: SETSOCKOPT programs see (and may change)
    level, optname, optlen and the buffer; optlen -1 skips the kernel's handler."""
    raw = _value(value)
    s = open_socket(proc, AF_INET)
    try:
        buflen = min(max(16, len(raw)), PAGE_SIZE)
        ctx = SockoptCtx(A.CGROUP_SETSOCKOPT, s.sock, level, name, len(raw),
                         raw[:buflen].ljust(buflen, b"\0"))
        res = _run(proc, A.CGROUP_SETSOCKOPT, s.sock.cgroup, ctx)
        code, data = vmrun.setsockopt(res, ctx, len(raw))
        if _check(code) == 1:
            return
        _kernel_set(s.sock, ctx.level, ctx.optname, raw if data is None else data)
    finally:
        _close(s)


def getsockopt(proc: Process, level: int, name: int, optlen: int = 4) -> bytes:
    """``getsockopt()`` on a new UDP socket with an ``optlen``-byte buffer: the kernel's
    answer first, then GETSOCKOPT programs (which see it and its retval, and may replace
    both); the bytes the caller receives."""
    s = open_socket(proc, AF_INET)
    try:
        got = _kernel_get(s.sock, level, name)
        buflen = min(optlen, PAGE_SIZE)
        if isinstance(got, bytes):
            value, retval = got[:optlen], 0
            ctx = SockoptCtx(A.CGROUP_GETSOCKOPT, s.sock, level, name, len(value),
                             value[:buflen].ljust(buflen, b"\0"))
        else:
            value, retval = b"", got
            ctx = SockoptCtx(A.CGROUP_GETSOCKOPT, s.sock, level, name, optlen,
                             bytes(buflen))
        res = _run(proc, A.CGROUP_GETSOCKOPT, s.sock.cgroup, ctx, retval=retval)
        code, data = vmrun.getsockopt(res, ctx, optlen)
        _check(code)
        return value if data is None else data
    finally:
        _close(s)


# --- sysctl and devices ----------------------------------------------------------------------


def _sysctl_name(name: str) -> str:
    return name.removeprefix("/proc/sys/").replace(".", "/").strip("/")


def sysctl_read(proc: Process, name: str) -> str:
    """One ``read()`` of up to a page at position 0 of ``/proc/sys/<name>`` (dots or
    slashes): SYSCTL programs of the task's cgroup may deny it (EPERM) or move the
    position; the text read."""
    path = _sysctl_name(name)
    n = net(proc.machine)
    if path not in n.sysctls:
        raise fail(errno.ENOENT)
    cur = n.sysctls[path].encode()
    ctx = SysctlCtx(path, cur, None)
    _check(_run(proc, A.CGROUP_SYSCTL, proc.home, ctx).retval)
    return cur[ctx.pos:].decode()


def sysctl_write(proc: Process, name: str, value: str) -> None:
    """A ``write()`` of ``value`` at position 0: SYSCTL programs see the new text and
    may replace it (``bpf_sysctl_set_new_value``) or deny the write."""
    path = _sysctl_name(name)
    n = net(proc.machine)
    if path not in n.sysctls:
        raise fail(errno.ENOENT)
    ctx = SysctlCtx(path, n.sysctls[path].encode(), value.encode())
    _check(_run(proc, A.CGROUP_SYSCTL, proc.home, ctx).retval)
    assert ctx.new is not None
    n.sysctls[path] = ctx.new.decode(errors="replace").strip() + "\n"


DEVICE_TYPES = {"c": DEV_CHAR, "char": DEV_CHAR, "b": DEV_BLOCK, "block": DEV_BLOCK}
ACCESS_BITS = {"r": ACC_READ, "w": ACC_WRITE, "m": ACC_MKNOD}


def open_device(proc: Process, kind: str, major: int, minor: int, access: str) -> None:
    """Opening (access "r", "w", "rw") or creating ("m") a device node: the DEVICE
    programs of the task's cgroup decide (EPERM)."""
    if kind not in DEVICE_TYPES or not access or set(access) - ACCESS_BITS.keys():
        raise ValueError(f"device kind {kind!r} (c or b), access {access!r} (of r, w, m)")
    bits = sum(ACCESS_BITS[c] for c in set(access))
    ctx = DeviceCtx(DEVICE_TYPES[kind], bits, major, minor)
    _check(_run(proc, A.CGROUP_DEVICE, proc.home, ctx).retval)
