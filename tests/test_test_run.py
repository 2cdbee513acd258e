"""BPF_PROG_TEST_RUN on both kernels (``Program.test_run``, and raw attrs for its errors):
return values, what a CGROUP_SKB program sees of the frame it is given, the attr checks
in the kernel's order, repeats, cgroup storage, ``data_out`` and ``ctx_in``/``ctx_out``.
The expected values are 6.18.44's, measured; the model must give the same."""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Callable, Iterator

import pytest

from cgbpf import AttachType, BpfError, Map, MapType, Program, ProgType, asm, uapi
from cgbpf.asm import R0, R1, R2, R3, R4
from cgbpf.kernel import Kernel, probe

GET_LOCAL_STORAGE = 81  # BPF_FUNC_get_local_storage
ETH_IP4, ETH_IP6 = bytes(12) + b"\x08\x00", bytes(12) + b"\x86\xdd"
#: IPv4 10.0.0.1 -> 10.0.0.2, UDP, 5 bytes of payload (33 bytes from the IP header on)
IP4 = ETH_IP4 + bytes.fromhex("4500001c0000000040110000" "0a000001" "0a000002") + bytes(8) \
    + b"abcde"
#: IPv6 ::1 -> ::2, UDP
IP6 = ETH_IP6 + bytes.fromhex("6000000000081140") + bytes(15) + b"\x01" + bytes(15) + b"\x02" \
    + bytes(8)
ARP = bytes(12) + b"\x08\x06" + bytes(28)
FRAMES = {"ip4": IP4, "ip6": IP6, "arp": ARP,
          "802.3": bytes(12) + b"\x00\x10" + b"\xff\xff" + bytes(20),
          "802.2": bytes(12) + b"\x00\x10" + b"\xaa\xaa" + bytes(20),
          "broadcast": b"\xff" * 6 + ARP[6:], "other host": b"\x02" + ARP[1:]}


def io_map(kernel: Kernel) -> Map:
    return Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, name="io",
                      kernel=kernel)


def stored(io: Map) -> int:
    value = io.lookup(bytes(4))
    assert value is not None
    return int(struct.unpack("<Q", value)[0])


def store(io: Map, reg: int) -> list[asm.Item]:
    """``reg`` into the io map's value; return 1."""
    return [asm.ld_map_value(R1, io, 0), asm.stx("dw", R1, 0, reg), asm.mov64(R0, 1),
            asm.exit_()]


def field(off: int, size: str = "w") -> Callable[[Map], list[asm.Item]]:
    return lambda io: [asm.ldx(size, R0, R1, off), *store(io, R0)]


def data_len(io: Map) -> list[asm.Item]:
    return [asm.ldx("w", R2, R1, 76), asm.ldx("w", R3, R1, 80), asm.sub64(R3, R2),
            *store(io, R3)]


def data_byte(i: int) -> Callable[[Map], list[asm.Item]]:
    """``data[i]``, or 0xEE past ``data_end``."""
    return lambda io: [asm.ldx("w", R2, R1, 76), asm.ldx("w", R3, R1, 80), asm.mov64(R4, R2),
                       asm.add64(R4, i + 1), asm.mov64(R0, 0xEE), asm.jgt(R4, R3, 1),
                       asm.ldx("b", R0, R2, i), *store(io, R0)]


#: The readers that need data_end.
DATA_END_READERS = ("data_end - data", "data[0]", "data[32]")
READERS: dict[str, Callable[[Map], list[asm.Item]]] = {
    "len": field(0), "pkt_type": field(4), "protocol": field(16), "data_end - data": data_len,
    "data[0]": data_byte(0), "data[32]": data_byte(32), "ifindex": field(40),
    "ingress_ifindex": field(36), "family": field(88), "remote_ip4": field(92),
    "local_ip4": field(96), "remote_ip6[3]": field(112), "local_ip6[3]": field(128),
    "remote_port": field(132), "local_port": field(136), "mark": field(8), "hash": field(68),
    "tstamp": field(152, "dw"), "gso_segs": field(164), "hwtstamp": field(184, "dw"),
}
#: What 6.18.44 gives, frame by frame (the fields not listed are 0).
SEEN = {
    "ip4": {"len": 33, "protocol": 0x0008, "data_end - data": 33, "data[0]": 0x45,
            "data[32]": ord("e"), "ifindex": 1, "family": 2, "remote_ip4": 0x0200000A,
            "local_ip4": 0x0100000A},
    "ip6": {"len": 48, "protocol": 0xDD86, "data_end - data": 48, "data[0]": 0x60,
            "ifindex": 1, "family": 10, "remote_ip6[3]": 0x02000000,
            "local_ip6[3]": 0x01000000},
    "arp": {"len": 28, "protocol": 0x0608, "data_end - data": 28, "data[32]": 0xEE,
            "ifindex": 1},
    "802.3": {"len": 22, "protocol": 0x0100, "data_end - data": 22, "data[0]": 0xFF,
              "data[32]": 0xEE, "ifindex": 1},
    "802.2": {"len": 22, "protocol": 0x0400, "data_end - data": 22, "data[0]": 0xAA,
              "data[32]": 0xEE, "ifindex": 1},
    "broadcast": {"len": 28, "pkt_type": 2, "protocol": 0x0608, "data_end - data": 28,
                  "data[32]": 0xEE, "ifindex": 1},
    "other host": {"len": 28, "pkt_type": 3, "protocol": 0x0608, "data_end - data": 28,
                   "data[32]": 0xEE, "ifindex": 1},
}


@pytest.mark.parametrize("ret", [0, 1, 2])
def test_retval(kernel: Kernel, ret: int) -> None:
    """``retval`` is the program's r0 (2 needs an egress program: ingress is [0, 1])."""
    eat = AttachType.CGROUP_INET_EGRESS if ret > 1 else None
    with Program.load(asm.return_program(ret), ProgType.CGROUP_SKB, expected_attach_type=eat,
                      kernel=kernel) as prog:
        run = prog.test_run(IP4)
    assert run.retval == ret and run.duration_ns >= 0
    assert run.data_out == bytes(14) + IP4[14:]  # the Ethernet header comes back zeroed


@pytest.mark.parametrize("frame", list(SEEN))
def test_what_the_program_sees(kernel: Kernel, frame: str) -> None:
    """Each ``__sk_buff`` field and packet byte read by its own program, per frame (the
    packet's end and bytes where the kernel's test run sets data_end: before
    ``test_run_data_end`` it is garbage)."""
    names = [n for n in READERS
             if n not in DATA_END_READERS or probe.check(kernel, "test_run_data_end")]
    with io_map(kernel) as io:
        seen = {}
        for name in names:
            with Program.load(READERS[name](io), ProgType.CGROUP_SKB, kernel=kernel) as prog:
                assert prog.test_run(FRAMES[frame]).retval == 1
            seen[name] = stored(io)
    assert seen == {name: SEEN[frame].get(name, 0) for name in names}


def test_counter_per_repeat(kernel: Kernel) -> None:
    """A counter map is incremented once per repeat; repeat 0 runs once."""
    with io_map(kernel) as io, Program.load(asm.counter_program(io), ProgType.CGROUP_SKB,
                                            kernel=kernel) as prog:
        for repeat, total in ((5, 5), (0, 6), (1, 7), (100, 107)):
            assert prog.test_run(IP4, repeat=repeat).retval == 1
            assert stored(io) == total


def test_fresh_storage_per_call(kernel: Kernel) -> None:
    """A cgroup storage is zeroed for each call and shared by its repeats."""
    with Map.create(MapType.CGROUP_STORAGE, key_size=8, value_size=8, max_entries=0,
                    kernel=kernel) as st, io_map(kernel) as io:
        code = [asm.ld_map_fd(R1, st), asm.mov64(R2, 0), asm.call(GET_LOCAL_STORAGE),
                asm.mov64(R1, 1), asm.atomic_add("dw", R0, 0, R1), asm.ldx("dw", R3, R0, 0),
                *store(io, R3)]
        with Program.load(code, ProgType.CGROUP_SKB, kernel=kernel) as prog:
            for repeat in (3, 2, 1):
                prog.test_run(IP4, repeat=repeat)
                assert stored(io) == repeat
        assert list(st.keys()) == []  # the test run's storage is not the map's


def test_errors_name_the_command(kernel: Kernel) -> None:
    """A refused test run names the command, the program, the errno and what to do;
    only CGROUP_SKB among the cgroup types has one (ENOTSUPP, 524)."""
    with Program.load(asm.return_program(1), ProgType.CGROUP_SKB, kernel=kernel) as prog:
        with pytest.raises(BpfError) as e:
            prog.test_run(IP4[:33])
        assert e.value.errno == errno.EINVAL and e.value.command == "PROG_TEST_RUN"
        assert "CGROUP_SKB" in str(e.value) and "IPv4 or IPv6 header" in str(e.value)
    with Program.load(asm.return_program(1), ProgType.CGROUP_SOCK, kernel=kernel,
                      expected_attach_type=AttachType.CGROUP_INET_SOCK_CREATE) as sock, \
            pytest.raises(BpfError) as e:
        sock.test_run(IP4)
    assert e.value.errno == uapi.ENOTSUPP and "only CGROUP_SKB" in str(e.value)
    assert ": ENOTSUPP " in str(e.value)


# --- the attr, raw ------------------------------------------------------------------------


class Raw:
    """PROG_TEST_RUN with a hand-made attr: the buffers, the programs, the counter."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.io = io_map(kernel)
        self.prog = Program.load(asm.counter_program(self.io), ProgType.CGROUP_SKB,
                                 kernel=kernel)
        self.sock = Program.load(asm.return_program(1), ProgType.CGROUP_SOCK, kernel=kernel,
                                 expected_attach_type=AttachType.CGROUP_INET_SOCK_CREATE)
        self.data = ctypes.create_string_buffer(IP4, 300)
        self.out = ctypes.create_string_buffer(64)
        self.ctx, self.ctx_out = ctypes.create_string_buffer(300), ctypes.create_string_buffer(192)

    def addr(self, name: str) -> int:
        return ctypes.addressof(getattr(self, name))

    def run(self, tail: int | None = None, **fields: int) -> tuple[int, uapi.TestRunAttr, int]:
        """(errno or 0, the attr after the call, runs counted)."""
        self.io.update(bytes(4), bytes(8))
        attr = uapi.TestRunAttr(**{"prog_fd": self.prog.fileno(), "data_in": self.addr("data"),
                                   "data_size_in": len(IP4), "repeat": 1, **fields})
        raw = ctypes.create_string_buffer(bytes(attr), uapi.ATTR_SIZE)
        if tail is not None:
            raw[tail] = 1
        try:
            self.kernel.bpf(uapi.Cmd.PROG_TEST_RUN, raw)
            err = 0
        except OSError as e:
            err = e.errno or -1
        return err, uapi.TestRunAttr.from_buffer_copy(raw), stored(self.io)

    def close(self) -> None:
        for obj in (self.prog, self.sock, self.io):
            obj.close()


@pytest.fixture
def raw(kernel: Kernel) -> Iterator[Raw]:
    r = Raw(kernel)
    yield r
    r.close()


#: (what, attr fields by name or by the buffer they point to, errno): in the kernel's
#: order where two checks could both fail (measured on 6.18.44).
ERRNO_CASES: list[tuple[str, dict[str, object], int]] = [
    ("attr tail past batch_size", {"tail": 76}, errno.EINVAL),
    # (a byte inside every kernel's union bpf_attr: 6.1's and 6.12's end before 167,
    # where a non-zero byte is E2BIG)
    ("attr tail before the fd", {"tail": 120, "prog_fd": 999}, errno.EINVAL),
    ("ctx_in without ctx_size_in, before the fd", {"ctx_in": "ctx", "prog_fd": 999},
     errno.EINVAL),
    ("ctx_size_in without ctx_in", {"ctx_size_in": 192}, errno.EINVAL),
    ("ctx_out without ctx_size_out", {"ctx_out": "ctx_out"}, errno.EINVAL),
    ("ctx_size_out without ctx_out", {"ctx_size_out": 192}, errno.EINVAL),
    ("bad fd", {"prog_fd": 999}, errno.EBADF),
    ("a map's fd", {"prog_fd": "io"}, errno.EINVAL),
    ("CGROUP_SOCK, before the data size", {"prog_fd": "sock", "data_size_in": 0},
     uapi.ENOTSUPP),
    ("CGROUP_SOCK, before the flags", {"prog_fd": "sock", "flags": 1}, uapi.ENOTSUPP),
    ("flags 1", {"flags": 1}, errno.EINVAL),
    ("flags 8", {"flags": 8}, errno.EINVAL),
    ("cpu", {"cpu": 1}, errno.EINVAL),
    ("batch_size", {"batch_size": 1}, errno.EINVAL),
    ("13 bytes", {"data_size_in": 13}, errno.EINVAL),
    ("13 bytes, before reading them", {"data_size_in": 13, "data_in": 8}, errno.EINVAL),
    ("an IPv4 frame without its IP header", {"data_size_in": 33}, errno.EINVAL),
    ("3713 bytes", {"data_size_in": 3713}, errno.EINVAL),
    ("data_in unmapped", {"data_in": 8}, errno.EFAULT),
    ("ctx_in unmapped", {"ctx_in": 8, "ctx_size_in": 192}, errno.EFAULT),
    ("ctx_in non-zero past __sk_buff", {"ctx_in": "ctx", "ctx_size_in": 300, "ctx": (250, 1)},
     errno.E2BIG),
    ("ctx_in len", {"ctx_in": "ctx", "ctx_size_in": 192, "ctx": (0, 1)}, errno.EINVAL),
    ("ctx_in protocol", {"ctx_in": "ctx", "ctx_size_in": 192, "ctx": (16, 1)}, errno.EINVAL),
    ("ctx_in hash", {"ctx_in": "ctx", "ctx_size_in": 192, "ctx": (68, 1)}, errno.EINVAL),
    ("ctx_in data", {"ctx_in": "ctx", "ctx_size_in": 192, "ctx": (76, 1)}, errno.EINVAL),
    ("ctx_in wire_len below len", {"ctx_in": "ctx", "ctx_size_in": 192, "ctx": (160, 1)},
     errno.EINVAL),
    ("ctx_in ifindex of no device, before the IP header", {
        "ctx_in": "ctx", "ctx_size_in": 192, "ctx": (40, 99999), "data_size_in": 33},
     errno.ENODEV),
    ("ctx_in gso_segs 65536", {"ctx_in": "ctx", "ctx_size_in": 192, "ctx": (164, 65536)},
     errno.EINVAL),
    ("data_out unmapped, after the run", {"data_out": 8, "data_size_out": 64}, errno.EFAULT),
]


@pytest.mark.parametrize(("what", "fields", "err"), ERRNO_CASES, ids=[c[0] for c in ERRNO_CASES])
def test_errno(raw: Raw, what: str, fields: dict[str, object], err: int) -> None:
    args: dict[str, int] = {}
    tail: int | None = None
    for name, v in fields.items():
        if name == "tail":
            tail = int(str(v))
        elif name == "ctx":  # (offset, u32) in the __sk_buff at ctx_in
            assert isinstance(v, tuple)
            struct.pack_into("<I", raw.ctx, *v)
        elif isinstance(v, str):
            args[name] = getattr(raw, v).fileno() if name == "prog_fd" else raw.addr(v)
        else:
            args[name] = int(str(v))
    got, _, runs = raw.run(tail, **args)
    assert got == err, (what, got)
    assert runs == (1 if what.endswith("after the run") else 0)


@pytest.mark.parametrize("offset", [8, 32, 36, 40, 48, 152, 164, 176, 184, 188])
def test_ctx_in_settable(raw: Raw, offset: int) -> None:
    """mark, priority, ingress_ifindex, ifindex (1: loopback), cb, tstamp, gso_segs,
    gso_size, hwtstamp may be set."""
    raw.ctx[offset] = 1
    assert raw.run(ctx_in=raw.addr("ctx"), ctx_size_in=192)[::2] == (0, 1)


def test_outputs(raw: Raw) -> None:
    """``data_size_out``, ``retval`` and ``duration`` are written; a ``data_size_out``
    too small is ENOSPC after they are (0: no limit); flags 4 (CHECKSUM_COMPLETE) is
    taken; ``ctx_size_in`` below 192 is zero-extended, above it must be zero."""
    err, attr, runs = raw.run(data_out=raw.addr("out"), data_size_out=64, repeat=3, flags=4)
    assert (err, attr.retval, attr.data_size_out, runs) == (0, 1, len(IP4), 3)
    assert attr.duration > 0 and raw.out.raw[:len(IP4)] == bytes(14) + IP4[14:]
    raw.out[:] = b"\xaa" * 64
    err, attr, runs = raw.run(data_out=raw.addr("out"), data_size_out=20)
    assert (err, attr.retval, attr.data_size_out, runs) == (errno.ENOSPC, 1, len(IP4), 1)
    assert raw.out.raw[:21] == bytes(14) + IP4[14:20] + b"\xaa" and attr.duration > 0
    assert raw.run(data_size_out=10)[0] == errno.ENOSPC  # even without data_out
    err, attr, _ = raw.run(data_out=raw.addr("out"))
    assert (err, attr.data_size_out) == (0, len(IP4)) and raw.out.raw[14] == 0x45
    assert raw.run(ctx_in=raw.addr("ctx"), ctx_size_in=100)[0] == 0
    assert raw.run(ctx_in=raw.addr("ctx"), ctx_size_in=300)[0] == 0


def test_ctx_round_trip(kernel: Kernel) -> None:
    """The program sees ``ctx_in``'s mark and cb; ``ctx_out`` is the ``__sk_buff`` given,
    with mark, priority, the ifindexes, cb, tstamp, wire_len (the packet's length unless
    set), gso_segs and hwtstamp from the skb after the run; ``ctx_size_out`` 192, a
    smaller buffer ENOSPC."""
    r = Raw(kernel)
    try:
        code = [asm.ldx("w", R2, R1, 8), asm.ldx("w", R3, R1, 48), asm.add64(R2, R3),
                asm.stx("w", R1, 52, R2), asm.mov64(R2, 9), asm.stx("w", R1, 8, R2),
                asm.mov64(R0, 1), asm.exit_()]
        with Program.load(code, ProgType.CGROUP_SKB, kernel=kernel) as prog:
            struct.pack_into("<I", r.ctx, 8, 3)  # mark
            struct.pack_into("<I", r.ctx, 48, 4)  # cb[0]
            struct.pack_into("<I", r.ctx, 176, 7)  # gso_size: stays
            err, attr, _ = r.run(prog_fd=prog.fileno(), ctx_in=r.addr("ctx"), ctx_size_in=192,
                                 ctx_out=r.addr("ctx_out"), ctx_size_out=192)
            assert (err, attr.ctx_size_out) == (0, 192)
            want = bytearray(192)
            struct.pack_into("<I", want, 8, 9)  # the program's mark
            struct.pack_into("<I", want, 40, 1)  # ifindex: loopback
            struct.pack_into("<II", want, 48, 4, 7)  # cb[0], cb[1] = mark + cb[0]
            struct.pack_into("<I", want, 160, len(IP4) - 14)  # wire_len
            struct.pack_into("<I", want, 176, 7)
            assert r.ctx_out.raw == bytes(want)
            err, attr, _ = r.run(prog_fd=prog.fileno(), ctx_out=r.addr("ctx_out"),
                                 ctx_size_out=10)
            assert (err, attr.ctx_size_out, attr.retval) == (errno.ENOSPC, 192, 1)
    finally:
        r.close()
