"""Program contexts (VM-SPEC §4): what a program sees through R1.

A context is not memory: each field is a view of a kernel object (the socket, the skb, the
sockaddr being connected to ...).  A field has a struct offset ``off``, a slot size ``cs``
(what the verifier records as the ctx field size), a kernel size ``ks`` (the width of
what the conversion really loads), a getter and maybe a setter; which ``(offset in the
field, size)`` pairs may be read, sign-extending read or written is data, per attach type
(:data:`ACCESS`, measured on 6.18: ``out4_ctx.txt``).  :meth:`Ctx.load` applies the
narrow-load rule of §4.1 exactly, quirk included: a read at least as wide as the kernel
field returns the whole value whatever the offset inside the slot.

The kernel objects the contexts view are plain classes here (:class:`Sock`, the packet,
the sysctl being read ...): the events of :mod:`.events` build them, a program run
changes them through setters, and the event then applies what the programs changed.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ... import uapi
from ..memory import PAGE
from .errors import VerifierWouldReject
from .regions import M32, M64, Mem, Ptr, Region

if TYPE_CHECKING:
    from ..cgroupfs import Cgroup
    from .env import Env

A = uapi.AttachType
AF_INET, AF_INET6 = 2, 10
SOCK_DGRAM = 2
IPPROTO_UDP = 17
TCP_ESTABLISHED, TCP_CLOSE = 1, 7
LOOPBACK_IFINDEX = 1

# --- the access patterns of out4_ctx.txt: (offset in the field, size) pairs -------------

Access = frozenset[tuple[int, int]]
#: "any narrow": 1 byte at +0..+3, 2 at +0/+2, 4 at +0
NARROW: Access = frozenset({(0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (2, 2), (0, 4)})
SMALL: Access = frozenset({(0, 1), (0, 2), (0, 4)})  # 1, 2 or 4 bytes at +0
PORT: Access = SMALL | {(1, 1)}  # bpf_sock.dst_port
FULL4: Access = frozenset({(0, 4)})
FULL8: Access = frozenset({(0, 8)})
NONE: Access = frozenset()
CB: Access = frozenset({(o, n) for n in (1, 2, 4) for o in range(0, 20, n)} | {(0, 8), (8, 8)})
IP6: Access = frozenset((w * 4 + o, n) for w in range(4) for o, n in NARROW)
IP6_WORDS: Access = frozenset((w * 4, 4) for w in range(4))


class Field(NamedTuple):
    """One field of a context struct.  ``get(ctx)`` is the value a full-slot converted
    load yields (an int, or a :class:`Ptr` for pointer fields); ``set(ctx, v)`` receives
    the low ``8 * ks`` bits of a store; no getter: plain memory of the context's own
    buffer (``__sk_buff.cb``, ``bpf_cgroup_dev_ctx``)."""

    name: str
    off: int
    cs: int
    ks: int
    get: Callable[[Any], int | Ptr] | None = None  # of the Ctx subclass the field is in
    set: Callable[[Any, int], None] | None = None
    array: int = 0  # the bytes an array field covers (an ip6 address: 16 words of cs)

    @property
    def span(self) -> int:
        """The bytes of the struct the field covers."""
        return self.array or self.cs


class Rule(NamedTuple):
    """Who may touch a field and how: ``reads`` (also sign-extending where ``sx``) and
    ``writes`` (STX and ST alike), for the attach types ``where``."""

    field: str
    reads: Access
    writes: Access
    where: frozenset[int]
    sx: bool = True


def _u16be(port: int) -> int:
    """A port as the kernel keeps it (network order), read as a little-endian u16."""
    return int.from_bytes((port & 0xFFFF).to_bytes(2, "big"), "little")


def _port(v: int) -> int:
    """The inverse of :func:`_u16be`: the port a network-order u16 names."""
    return int.from_bytes((v & 0xFFFF).to_bytes(2, "little"), "big")


def _word(ip: bytes, i: int) -> int:
    """Word ``i`` of an address in network order, as a little-endian u32 load sees it."""
    return int.from_bytes(ip[4 * i:4 * i + 4].ljust(4, b"\0"), "little")



class Sock:
    """A model socket (what ``struct sock`` holds that programs can see): family, type,
    protocol, options, bound (``src``/``src_port``) and connected (``dst``/``dst_port``)
    addresses as network-order bytes and host-order ports, the cgroup it was created
    in (§5.1: its hooks run there), its owner and its cookie (0 until first asked)."""

    def __init__(self, family: int, type_: int, protocol: int, cgroup: Cgroup,
                 uid: int = 0) -> None:
        zero = bytes(4 if family == AF_INET else 16)
        self.family, self.type, self.protocol = family, type_, protocol
        self.cgroup, self.uid = cgroup, uid
        self.mark = self.priority = self.bound_dev_if = 0
        self.src, self.src_port, self.dst, self.dst_port = zero, 0, zero, 0
        self.state = TCP_CLOSE
        self.cookie = 0
        self.options: dict[tuple[int, int], bytes] = {}


# --- the context region -------------------------------------------------------------------


class Ctx(Region):
    """A context: loads and stores follow :data:`ACCESS` for ``attach_type`` and the
    field rules of §4.1; anything else is what the verifier refuses (EACCES, "invalid
    bpf_context access").  ``env`` is the run (:mod:`.run` sets it): some fields read
    it (``bpf_sockopt.retval``)."""

    kind = "ctx"
    struct: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    _tables: ClassVar[dict[tuple[str, int], dict[int, tuple[Field, Rule]]]] = {}

    def __init__(self, attach_type: int, size: int) -> None:
        super().__init__(self.struct, size)
        self.attach_type = attach_type
        self.mem = bytearray(size)  # the plain-memory fields
        self.env: Env | None = None
        self._at = self.table(attach_type)

    @classmethod
    def table(cls, attach_type: int) -> dict[int, tuple[Field, Rule]]:
        """Every byte offset a program may touch for ``attach_type``: its field and rule."""
        key = (cls.struct, attach_type)
        if key not in Ctx._tables:
            by_name = {f.name: f for f in cls.fields}
            out: dict[int, tuple[Field, Rule]] = {}
            for rule in ACCESS[cls.struct]:
                if attach_type in rule.where:
                    f = by_name[rule.field]
                    for b in range(f.off, f.off + f.span):
                        out[b] = (f, rule)
            Ctx._tables[key] = out
        return Ctx._tables[key]

    def _bad(self, e: int, n: int) -> VerifierWouldReject:
        return VerifierWouldReject(errno.EACCES, f"invalid bpf_context access off={e} size={n}")

    def _find(self, e: int, n: int, write: bool) -> tuple[Field, int]:
        """The field at ``e`` and the offset in its slot, if ``(e, n)`` is allowed."""
        hit = self._at.get(e)
        if n not in (1, 2, 4, 8) or e % n or hit is None:
            raise self._bad(e, n)
        f, rule = hit
        rel = e - f.off
        if (rel, n) not in (rule.writes if write else rule.reads):
            raise self._bad(e, n)
        return f, rel

    def _value(self, f: Field, rel: int) -> int | Ptr:
        """The slot value of the field (of an array field: of the word at ``rel``)."""
        assert f.get is not None
        v = f.get(self)
        if not f.array or isinstance(v, Ptr):
            return v
        return (v >> (8 * (rel - rel % f.cs))) & M32

    def load(self, off: int, n: int, signed: bool = False) -> int | Ptr:
        f, rel = self._find(off, n, write=False)
        if signed and not self._at[off][1].sx:
            raise self._bad(off, n)
        if f.get is None:  # plain memory
            v = int.from_bytes(self.mem[off:off + n], "little")
        else:
            got = self._value(f, rel)
            if isinstance(got, Ptr):
                return got
            v = got
            if n > f.cs == 4:  # a double word over two words of an ip6 array
                nxt = self._value(f, rel + 4)
                assert isinstance(nxt, int)
                v |= nxt << 32
            elif n < f.cs and n < f.ks:  # §4.1 rule 3; otherwise the whole value
                v = (v >> (8 * (rel % f.cs))) & ((1 << (8 * n)) - 1)
        if signed:
            bits = 8 * n
            v &= (1 << bits) - 1
            if v >> (bits - 1):
                v -= 1 << bits
        return v & M64

    def store(self, off: int, n: int, value: int | Ptr) -> None:
        """Writes are whole slots (:data:`ACCESS` allows no other): a setter gets the low
        ``8 * ks`` bits; a u64 store into an ip6 array writes two of its words."""
        f, rel = self._find(off, n, write=True)
        if isinstance(value, Ptr):
            raise VerifierWouldReject(errno.EACCES, f"R leaks addr into ctx off={off}")
        if f.get is None:
            self.mem[off:off + n] = (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little")
            return
        assert f.set is not None
        if not f.array:
            f.set(self, value & ((1 << (8 * f.ks)) - 1))
            return
        whole = f.get(self)
        assert isinstance(whole, int)
        mask = ((1 << (8 * n)) - 1) << (8 * rel)
        f.set(self, whole & ~mask | (value << (8 * rel)) & mask)


def _ip_int(ip: bytes) -> int:
    """An address's bytes as the little-endian int the array getters use."""
    return int.from_bytes(ip, "little")


def _ip_bytes(v: int, n: int) -> bytes:
    return v.to_bytes(n, "little")


# --- struct bpf_sock (CGROUP_SOCK, and the socket behind ctx->sk) -------------------------


class SockCtx(Ctx):
    """``struct bpf_sock`` (80 bytes, §4.3) over a :class:`Sock`: the context of
    INET_SOCK_CREATE/RELEASE and INET4/6_POST_BIND, and what ``ctx->sk`` points to
    (``view``: :data:`SK_FULL` from sock_addr and sockopt, :data:`SK_COMMON` from
    ``__sk_buff``)."""

    struct = "bpf_sock"

    def __init__(self, attach_type: int, sock: Sock) -> None:
        super().__init__(attach_type, 80)
        self.sock = sock
        if attach_type in (SK_FULL, SK_COMMON):
            self.kind = "sock"

    def _set_mark(self, v: int) -> None:
        self.sock.mark = v

    def _set_priority(self, v: int) -> None:
        self.sock.priority = v

    def _set_bound_dev_if(self, v: int) -> None:
        self.sock.bound_dev_if = v

    fields = (
        Field("bound_dev_if", 0, 4, 4, lambda c: c.sock.bound_dev_if, _set_bound_dev_if),
        Field("family", 4, 4, 2, lambda c: c.sock.family),
        Field("type", 8, 4, 2, lambda c: c.sock.type),
        Field("protocol", 12, 4, 2, lambda c: c.sock.protocol),
        Field("mark", 16, 4, 4, lambda c: c.sock.mark, _set_mark),
        Field("priority", 20, 4, 4, lambda c: c.sock.priority, _set_priority),
        Field("src_ip4", 24, 4, 4, lambda c: _word(c.sock.src, 0) if c.sock.family == AF_INET
              else 0),
        Field("src_ip6", 28, 4, 4, lambda c: _ip_int(c.sock.src) if c.sock.family == AF_INET6
              else 0, array=16),
        Field("src_port", 44, 4, 2, lambda c: c.sock.src_port),
        Field("dst_port", 48, 2, 2, lambda c: _u16be(c.sock.dst_port)),
        Field("dst_ip4", 52, 4, 4, lambda c: _word(c.sock.dst, 0) if c.sock.family == AF_INET
              else 0),
        Field("dst_ip6", 56, 4, 4, lambda c: _ip_int(c.sock.dst) if c.sock.family == AF_INET6
              else 0, array=16),
        Field("state", 72, 4, 1, lambda c: c.sock.state),
        Field("rx_queue_mapping", 76, 4, 2, lambda c: M64),  # no queue: -1, not extended
    )


#: Pseudo attach types for the socket views behind a pointer: ``bpf_sock_is_valid_access``
#: (from sock_addr, sockopt) and ``bpf_sock_common_is_valid_access`` (from __sk_buff).
SK_FULL, SK_COMMON = -1, -2

# --- struct __sk_buff (CGROUP_SKB) ---------------------------------------------------------


class Packet(Mem):
    """Packet data from the network header on (``__sk_buff.data``)."""

    def __init__(self, data: bytes) -> None:
        super().__init__("pkt", bytearray(data), kind="packet")


class SkbCtx(Ctx):
    """``struct __sk_buff`` (192 bytes, §4.2) of a packet leaving (EGRESS) or reaching
    (INGRESS) ``sock``: ``mark``/``priority`` writes stay on the skb (later programs see
    them), ``cb`` is the context's own memory (:mod:`.run` zeroes it for each program).
    The skb fields an event does not set are a loopback packet's; a test run
    (:mod:`.testrun`) sets them from its Ethernet frame and ``ctx_in``."""

    struct = "__sk_buff"
    CB = 48

    def __init__(self, attach_type: int, sock: Sock | None, packet: bytes, *,
                 mark: int = 0, priority: int = 0) -> None:
        super().__init__(attach_type, 192)
        self.sock, self.packet = sock, Packet(packet)
        #: False: data_end is not set (a test run before ``test_run_data_end``)
        self.data_end_set = True
        self.mark, self.priority, self.tstamp = mark, priority, 0
        self.ingress = attach_type == A.CGROUP_INET_INGRESS
        self.pkt_type = 0  # PACKET_HOST
        self.protocol = 0x0008 if packet[:1] < b"\x60" else 0xDD86  # ETH_P_IP/IPV6, big-endian
        self.ingress_ifindex = LOOPBACK_IFINDEX if self.ingress else 0
        self.gso_segs = self.gso_size = self.hwtstamp = 0
        self.sk_view = SockCtx(SK_COMMON, sock) if sock is not None else None

    def data_end(self) -> Ptr:
        """The end of the packet data; where the kernel does not set it (a test run
        before ``test_run_data_end``) it reads as garbage there, and here as ``data``:
        deterministic, and every bounds check against it fails."""
        return Ptr(self.packet, len(self.packet.buf) if self.data_end_set else 0)

    def _set_mark(self, v: int) -> None:
        self.mark = v

    def _set_priority(self, v: int) -> None:
        self.priority = v

    def _set_tstamp(self, v: int) -> None:
        self.tstamp = v

    def _sk(self, name: str, default: int = 0) -> int:
        return getattr(self.sock, name) if self.sock is not None else default

    def _ip(self, which: str, family: int) -> int:
        s = self.sock
        if s is None or s.family != family:
            return 0
        return _ip_int(getattr(s, which))

    fields = (
        Field("len", 0, 4, 4, lambda c: len(c.packet.buf)),
        Field("pkt_type", 4, 4, 1, lambda c: c.pkt_type),
        Field("mark", 8, 4, 4, lambda c: c.mark, _set_mark),
        Field("queue_mapping", 12, 4, 2, lambda c: 0),
        Field("protocol", 16, 4, 2, lambda c: c.protocol),
        Field("vlan_present", 20, 4, 4, lambda c: 0),
        Field("vlan_tci", 24, 4, 2, lambda c: 0),
        Field("vlan_proto", 28, 4, 2, lambda c: 0),
        Field("priority", 32, 4, 4, lambda c: c.priority, _set_priority),
        Field("ingress_ifindex", 36, 4, 4, lambda c: c.ingress_ifindex),
        Field("ifindex", 40, 4, 4, lambda c: LOOPBACK_IFINDEX),
        Field("tc_index", 44, 4, 2, lambda c: 0),
        Field("cb", 48, 4, 4, array=20),
        Field("hash", 68, 4, 4, lambda c: 0),
        Field("data", 76, 4, 8, lambda c: Ptr(c.packet, 0)),
        Field("data_end", 80, 4, 8, lambda c: c.data_end()),
        Field("napi_id", 84, 4, 4, lambda c: 0),
        Field("family", 88, 4, 2, lambda c: c._sk("family")),
        Field("remote_ip4", 92, 4, 4, lambda c: c._ip("dst", AF_INET)),
        Field("local_ip4", 96, 4, 4, lambda c: c._ip("src", AF_INET)),
        Field("remote_ip6", 100, 4, 4, lambda c: c._ip("dst", AF_INET6), array=16),
        Field("local_ip6", 116, 4, 4, lambda c: c._ip("src", AF_INET6), array=16),
        Field("remote_port", 132, 4, 2, lambda c: _u16be(c._sk("dst_port")) << 16),
        Field("local_port", 136, 4, 2, lambda c: c._sk("src_port")),
        Field("tstamp", 152, 8, 8, lambda c: c.tstamp, _set_tstamp),
        Field("gso_segs", 164, 4, 2, lambda c: c.gso_segs),
        Field("sk", 168, 8, 8, lambda c: Ptr(c.sk_view, 0) if c.sk_view is not None else 0),
        Field("gso_size", 176, 4, 2, lambda c: c.gso_size),
        Field("hwtstamp", 184, 8, 8, lambda c: c.hwtstamp),
    )


# --- struct bpf_sock_addr (CGROUP_SOCK_ADDR) -----------------------------------------------


class Sockaddr:
    """A mutable copy of the address a syscall passes (``user_*``), and for sendmsg the
    source address slot (``msg_src_*``): what the programs rewrite and the syscall uses."""

    def __init__(self, family: int, ip: bytes, port: int, msg_src: bytes | None = None) -> None:
        self.family, self.ip, self.port = family, ip, port
        self.msg_src = msg_src if msg_src is not None else bytes(len(ip))


class SockAddrCtx(Ctx):
    """``struct bpf_sock_addr`` (72 bytes, §4.4): ``user_ip4/6`` and ``user_port`` are
    the sockaddr (writes rewrite it), ``family/type/protocol`` and ``sk`` the socket."""

    struct = "bpf_sock_addr"

    def __init__(self, attach_type: int, sock: Sock, addr: Sockaddr) -> None:
        super().__init__(attach_type, 72)
        self.sock, self.addr = sock, addr
        self.sk_view = SockCtx(SK_FULL, sock)

    def _set_ip4(self, v: int) -> None:
        self.addr.ip = _ip_bytes(v & M32, 4)

    def _set_ip6(self, v: int) -> None:
        self.addr.ip = _ip_bytes(v, 16)

    def _set_port(self, v: int) -> None:
        self.addr.port = _port(v)

    def _set_src4(self, v: int) -> None:
        self.addr.msg_src = _ip_bytes(v & M32, 4)

    def _set_src6(self, v: int) -> None:
        self.addr.msg_src = _ip_bytes(v, 16)

    fields = (
        Field("user_family", 0, 4, 2, lambda c: c.addr.family),
        Field("user_ip4", 4, 4, 4, lambda c: _word(c.addr.ip, 0), _set_ip4),
        Field("user_ip6", 8, 4, 4, lambda c: _ip_int(c.addr.ip), _set_ip6, array=16),
        Field("user_port", 24, 4, 2, lambda c: _u16be(c.addr.port), _set_port),
        Field("family", 28, 4, 2, lambda c: c.sock.family),
        Field("type", 32, 4, 2, lambda c: c.sock.type),
        Field("protocol", 36, 4, 2, lambda c: c.sock.protocol),
        Field("msg_src_ip4", 40, 4, 4, lambda c: _word(c.addr.msg_src, 0), _set_src4),
        Field("msg_src_ip6", 44, 4, 4, lambda c: _ip_int(c.addr.msg_src), _set_src6, array=16),
        Field("sk", 64, 8, 8, lambda c: Ptr(c.sk_view, 0)),
    )


# --- struct bpf_sockopt (CGROUP_SOCKOPT) ---------------------------------------------------

PAGE_SIZE = PAGE  # what a getsockopt/setsockopt program sees of optval at most


class SockoptCtx(Ctx):
    """``struct bpf_sockopt`` (40 bytes, §4.5): the socket, ``level``/``optname``/
    ``optlen`` (writable as measured), the option buffer (``optval``..``optval_end``) and,
    for getsockopt, ``retval`` (the run's retval: reading it is ``get_retval``)."""

    struct = "bpf_sockopt"

    def __init__(self, attach_type: int, sock: Sock, level: int, optname: int,
                 optlen: int, buf: bytes) -> None:
        super().__init__(attach_type, 40)
        self.sock, self.level, self.optname, self.optlen = sock, level, optname, optlen
        self.buf = Mem("optval", bytearray(buf), kind="packet")
        self.sk_view = SockCtx(SK_FULL, sock)

    def _set_level(self, v: int) -> None:
        self.level = _s32(v)

    def _set_optname(self, v: int) -> None:
        self.optname = _s32(v)

    def _set_optlen(self, v: int) -> None:
        self.optlen = _s32(v)

    def _retval(self) -> int:
        assert self.env is not None
        return self.env.retval & M32

    def _set_retval(self, v: int) -> None:
        assert self.env is not None
        self.env.retval = _s32(v)

    fields = (
        Field("sk", 0, 8, 8, lambda c: Ptr(c.sk_view, 0)),
        Field("optval", 8, 8, 8, lambda c: Ptr(c.buf, 0)),
        Field("optval_end", 16, 8, 8, lambda c: Ptr(c.buf, len(c.buf.buf))),
        Field("level", 24, 4, 4, lambda c: c.level & M32, _set_level),
        Field("optname", 28, 4, 4, lambda c: c.optname & M32, _set_optname),
        Field("optlen", 32, 4, 4, lambda c: c.optlen & M32, _set_optlen),
        Field("retval", 36, 4, 4, _retval, _set_retval),
    )


def _s32(v: int) -> int:
    """A C int from the low 32 bits."""
    v &= M32
    return v - (1 << 32) if v >> 31 else v


# --- struct bpf_sysctl (CGROUP_SYSCTL) ---------------------------------------------------


class SysctlCtx(Ctx):
    """``struct bpf_sysctl`` (8 bytes, §4.6): ``write`` and ``file_pos`` (writable: moves
    the position the handler uses); the name, the current text and the new text are
    hidden state the sysctl helpers reach."""

    struct = "bpf_sysctl"

    def __init__(self, name: str, cur: bytes, new: bytes | None, pos: int = 0) -> None:
        super().__init__(A.CGROUP_SYSCTL, 8)
        self.name, self.cur, self.new, self.pos = name, cur, new, pos

    def _set_pos(self, v: int) -> None:
        self.pos = v

    fields = (
        Field("write", 0, 4, 4, lambda c: int(c.new is not None)),
        Field("file_pos", 4, 4, 4, lambda c: c.pos & M32, _set_pos),
    )


# --- struct bpf_cgroup_dev_ctx (CGROUP_DEVICE) ---------------------------------------------

DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4


class DeviceCtx(Ctx):
    """``struct bpf_cgroup_dev_ctx`` (12 bytes of plain memory, §4.7)."""

    struct = "bpf_cgroup_dev_ctx"
    fields = (Field("access_type", 0, 4, 4), Field("major", 4, 4, 4), Field("minor", 8, 4, 4))

    def __init__(self, dev_type: int, access: int, major: int, minor: int) -> None:
        super().__init__(A.CGROUP_DEVICE, 12)
        for off, v in ((0, access << 16 | dev_type), (4, major), (8, minor)):
            self.mem[off:off + 4] = (v & M32).to_bytes(4, "little")


# --- who may touch what (out4_ctx.txt, 6.18) -----------------------------------------------

SKB = frozenset({A.CGROUP_INET_INGRESS, A.CGROUP_INET_EGRESS})
SOCK_LIFE = frozenset({A.CGROUP_INET_SOCK_CREATE, A.CGROUP_INET_SOCK_RELEASE})
PB4, PB6 = frozenset({A.CGROUP_INET4_POST_BIND}), frozenset({A.CGROUP_INET6_POST_BIND})
SOCK_ALL = SOCK_LIFE | PB4 | PB6
VIEWS = frozenset({SK_FULL, SK_COMMON})
ADDR4 = frozenset({A.CGROUP_INET4_BIND, A.CGROUP_INET4_CONNECT, A.CGROUP_INET4_GETPEERNAME,
                   A.CGROUP_INET4_GETSOCKNAME, A.CGROUP_UDP4_SENDMSG, A.CGROUP_UDP4_RECVMSG})
ADDR6 = frozenset({A.CGROUP_INET6_BIND, A.CGROUP_INET6_CONNECT, A.CGROUP_INET6_GETPEERNAME,
                   A.CGROUP_INET6_GETSOCKNAME, A.CGROUP_UDP6_SENDMSG, A.CGROUP_UDP6_RECVMSG})
ADDR = ADDR4 | ADDR6 | frozenset({A.CGROUP_UNIX_CONNECT, A.CGROUP_UNIX_SENDMSG,
                                  A.CGROUP_UNIX_RECVMSG, A.CGROUP_UNIX_GETPEERNAME,
                                  A.CGROUP_UNIX_GETSOCKNAME})
GSO, SSO = frozenset({A.CGROUP_GETSOCKOPT}), frozenset({A.CGROUP_SETSOCKOPT})
SYSCTL, DEVICE = frozenset({A.CGROUP_SYSCTL}), frozenset({A.CGROUP_DEVICE})


def _skb_rules() -> list[Rule]:
    narrow = ["len", "pkt_type", "queue_mapping", "protocol", "vlan_present", "vlan_tci",
              "vlan_proto", "ingress_ifindex", "ifindex", "tc_index", "hash", "napi_id",
              "family", "remote_port", "local_port", "gso_segs", "gso_size"]
    return ([Rule(n, NARROW, NONE, SKB) for n in narrow]
            + [Rule(n, NARROW, FULL4, SKB) for n in ("mark", "priority")]
            + [Rule("cb", CB, CB, SKB, sx=True),
               Rule("data", FULL4, NONE, SKB, sx=False),
               Rule("data_end", FULL4, NONE, SKB, sx=False),
               Rule("remote_ip4", FULL4, NONE, SKB), Rule("local_ip4", FULL4, NONE, SKB),
               Rule("remote_ip6", IP6_WORDS, NONE, SKB),
               Rule("local_ip6", IP6_WORDS, NONE, SKB),
               Rule("tstamp", FULL8, FULL8, SKB, sx=False),
               Rule("sk", FULL8, NONE, SKB, sx=False),
               Rule("hwtstamp", FULL8, NONE, SKB, sx=False)])


def _sock_rules() -> list[Rule]:
    full = frozenset({SK_FULL})
    return [
        Rule("bound_dev_if", FULL4, FULL4, SOCK_LIFE), Rule("bound_dev_if", FULL4, NONE, VIEWS),
        Rule("family", SMALL, NONE, SOCK_ALL | VIEWS),
        *[Rule(n, SMALL, NONE, SOCK_ALL | full) for n in ("type", "protocol")],
        *[Rule(n, FULL4, FULL4, SOCK_LIFE) for n in ("mark", "priority")],
        *[Rule(n, FULL4, NONE, full) for n in ("mark", "priority")],
        Rule("src_ip4", NARROW, NONE, PB4 | VIEWS), Rule("src_ip6", IP6, NONE, PB6 | VIEWS),
        Rule("src_port", SMALL, NONE, PB4 | PB6 | VIEWS),
        Rule("dst_port", PORT, NONE, SOCK_ALL | VIEWS),
        Rule("dst_ip4", NARROW, NONE, SOCK_ALL | VIEWS),
        Rule("dst_ip6", IP6, NONE, SOCK_ALL | VIEWS),
        Rule("state", SMALL, NONE, SOCK_ALL | VIEWS),
        Rule("rx_queue_mapping", SMALL, NONE, SOCK_ALL | VIEWS),
    ]


_IP6_RW = IP6_WORDS | {(0, 8), (8, 8)}
_SRC6_RW = IP6_WORDS | {(4, 8)}

#: The access rules of every context struct, per attach type (§4.2-§4.7).
ACCESS: dict[str, list[Rule]] = {
    "__sk_buff": _skb_rules(),
    "bpf_sock": _sock_rules(),
    "bpf_sock_addr": [
        Rule("user_family", FULL4, NONE, ADDR),
        Rule("user_ip4", NARROW, FULL4, ADDR4),
        Rule("user_ip6", IP6 | {(0, 8), (8, 8)}, _IP6_RW, ADDR6),
        Rule("user_port", NARROW, FULL4, ADDR),
        *[Rule(n, FULL4, NONE, ADDR) for n in ("family", "type", "protocol")],
        Rule("msg_src_ip4", NARROW, FULL4, frozenset({A.CGROUP_UDP4_SENDMSG})),
        Rule("msg_src_ip6", IP6 | {(4, 8)}, _SRC6_RW, frozenset({A.CGROUP_UDP6_SENDMSG})),
        Rule("sk", FULL8, NONE, ADDR, sx=False),
    ],
    "bpf_sockopt": [
        *[Rule(n, FULL8, NONE, GSO | SSO, sx=False) for n in ("sk", "optval", "optval_end")],
        Rule("level", FULL4, NONE, GSO), Rule("optname", FULL4, NONE, GSO),
        Rule("level", FULL4, FULL4, SSO), Rule("optname", FULL4, FULL4, SSO),
        Rule("optlen", FULL4, FULL4, GSO | SSO), Rule("retval", FULL4, FULL4, GSO),
    ],
    "bpf_sysctl": [Rule("write", NARROW, NONE, SYSCTL), Rule("file_pos", NARROW, FULL4, SYSCTL)],
    "bpf_cgroup_dev_ctx": [Rule("access_type", NARROW, NONE, DEVICE),
                           Rule("major", FULL4, NONE, DEVICE), Rule("minor", FULL4, NONE, DEVICE)],
}
