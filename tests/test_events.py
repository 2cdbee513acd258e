"""Events that run cgroup programs, the same on both kernels: on the host a forked child
in the scratch cgroup makes the real syscalls (loopback only; sysctls only read, or
written where a program denies the write; /dev/null only); on the model a model process
in the same cgroup makes the same calls (``ModelKernel.process()``,
:mod:`cgbpf.model.vm.events`)."""

from __future__ import annotations

import errno
import os
import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest

from cgbpf import AttachType, Map, MapType, Program, ProgType, VerifierError, asm
from cgbpf._scratch import Scratch
from cgbpf._traffic import in_cgroup
from cgbpf.asm import R0, R1, R2, R3, R4
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel
from cgtest import EGRESS, INGRESS, Counters, said

A = AttachType
SOL_SOCKET, SO_RCVBUF = socket.SOL_SOCKET, socket.SO_RCVBUF
RET1 = [asm.mov64(R0, 1), asm.exit_()]


class HostActor:
    """The real syscalls behind the model process's event methods."""

    def __init__(self) -> None:
        self.bound: dict[tuple[str, int], socket.socket] = {}

    def send_udp(self, host: str, port: int, data: bytes = b"x") -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return s.sendto(data, (host, port))

    def bind(self, host: str, port: int) -> tuple[str, int]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, port))
        addr: tuple[str, int] = s.getsockname()
        self.bound[addr] = s
        return addr

    def recv(self, host: str, port: int) -> bytes | None:
        s = self.bound[(host, port)]
        s.settimeout(0.3)
        try:
            return s.recv(64)
        except TimeoutError:
            return None

    def connect(self, host: str, port: int) -> tuple[str, int]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            peer: tuple[str, int] = s.getpeername()
            return peer

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(level, name, value)

    def getsockopt(self, level: int, name: int, optlen: int = 4) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return s.getsockopt(level, name, optlen)

    def sysctl_read(self, name: str) -> str:
        fd = os.open(f"/proc/sys/{name}", os.O_RDONLY)
        try:
            return os.read(fd, 4096).decode()
        finally:
            os.close(fd)

    def sysctl_write(self, name: str, value: str) -> None:
        fd = os.open(f"/proc/sys/{name}", os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def open_device(self, kind: str, major: int, minor: int, access: str = "r") -> None:
        assert (kind, major, minor) == ("c", 1, 3), "the host tests open only /dev/null"
        flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[access]
        os.close(os.open("/dev/null", flags))


def act(kernel: Kernel, path: str, fn: Callable[[Any], object]) -> object:
    """``fn(actor)`` from inside cgroup ``path``: its result, or the OSError's errno as
    ``("errno", n)``.  Host: a forked child (the result comes back through a pipe);
    model: a model process that enters the cgroup."""
    def outcome(actor: Any) -> object:
        try:
            return fn(actor)
        except OSError as e:
            return ("errno", e.errno)

    if isinstance(kernel, ModelKernel):
        p = kernel.process()
        try:
            p.enter(path)
            return outcome(p)
        finally:
            p.exit()
    rfd, wfd = os.pipe()

    def child() -> int:
        os.write(wfd, pickle.dumps(outcome(HostActor())))
        return 0

    try:
        assert in_cgroup(path, child) == 0
        os.close(wfd)
        wfd = -1
        with os.fdopen(rfd, "rb") as f:
            return pickle.loads(f.read())
    finally:
        if wfd >= 0:
            os.close(wfd)


def load(kernel: Kernel, insns: list[Any], ptype: ProgType, at: AttachType) -> Program:
    return Program.load(insns, ptype, expected_attach_type=at, kernel=kernel)


def htons_le(port: int) -> int:
    """A port as a program stores it into user_port (network order in the low 16 bits)."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def test_deny_egress_is_eperm(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("deny")
    with load(kernel, asm.return_program(0), ProgType.CGROUP_SKB, EGRESS) as deny, \
            cg.link(deny, EGRESS):
        assert act(kernel, cg.path, lambda a: a.send_udp("127.0.0.1", 9, b"x")) == \
            ("errno", errno.EPERM)
    assert act(kernel, cg.path, lambda a: a.send_udp("127.0.0.1", 9, b"xy")) == 2


def test_counter_counts(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("count")
    c = Counters(kernel, 2)
    try:
        with cg.link(c.progs[0], EGRESS), cg.link(c.progs[1], EGRESS):
            c.reset()

            def three(a: Any) -> int:
                return sum(a.send_udp("127.0.0.1", 9, b"abc") for _ in range(3))

            assert act(kernel, cg.path, three) == 9
            assert c.read() == [3, 3]
    finally:
        c.close()


def test_ingress_deny_drops(kernel: Kernel, scratch: Scratch) -> None:
    """A receiver in the cgroup, an ingress program that returns 0: the sender succeeds,
    nothing arrives; with 1 the datagram arrives."""
    cg = scratch.cgroup("ingress")

    def loop(a: Any) -> object:
        host, port = a.bind("127.0.0.1", 0)
        return a.send_udp(host, port, b"hello"), a.recv(host, port)

    for ret, got in ((0, None), (1, b"hello")):
        with load(kernel, asm.return_program(ret), ProgType.CGROUP_SKB, INGRESS) as p, \
                cg.link(p, INGRESS):
            assert act(kernel, cg.path, loop) == (5, got)


def test_connect4_rewrites_the_port(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("connect")
    rewrite = [asm.mov64(R2, htons_le(4040)), asm.stx("w", R1, 24, R2), *RET1]
    with load(kernel, rewrite, ProgType.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT) as p, \
            cg.link(p, A.CGROUP_INET4_CONNECT):
        assert act(kernel, cg.path, lambda a: a.connect("127.0.0.1", 5555)) == \
            ("127.0.0.1", 4040)


def test_set_retval_eacces(kernel: Kernel, scratch: Scratch) -> None:
    """set_retval(-EACCES) then return 1: connect() fails with EACCES, not EPERM."""
    cg = scratch.cgroup("retval")
    insns = [asm.mov64(R1, -errno.EACCES), asm.call(187), *RET1]
    with load(kernel, insns, ProgType.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT) as p, \
            cg.link(p, A.CGROUP_INET4_CONNECT):
        assert act(kernel, cg.path, lambda a: a.connect("127.0.0.1", 5555)) == \
            ("errno", errno.EACCES)


def test_getsockopt_program_replaces_the_value(kernel: Kernel, scratch: Scratch) -> None:
    """A getsockopt program writes 0x1234 into the (bounds-checked) buffer, optlen 4,
    retval 0: the caller gets 0x1234 for SO_RCVBUF."""
    cg = scratch.cgroup("getsockopt")
    insns = [asm.ldx("dw", R2, R1, 8), asm.ldx("dw", R3, R1, 16), asm.mov64(R4, R2),
             asm.add64(R4, 4), asm.jgt(R4, R3, 5), asm.st("w", R2, 0, 0x1234),
             # context fields by register (STX): BPF_ST into the context needs 6.3
             asm.mov64(R4, 4), asm.stx("w", R1, 32, R4), asm.mov64(R4, 0),
             asm.stx("w", R1, 36, R4), *RET1]
    with load(kernel, insns, ProgType.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT) as p, \
            cg.link(p, A.CGROUP_GETSOCKOPT):
        assert act(kernel, cg.path, lambda a: a.getsockopt(SOL_SOCKET, SO_RCVBUF, 4)) == \
            struct.pack("<I", 0x1234)
    assert act(kernel, cg.path, lambda a: a.getsockopt(SOL_SOCKET, SO_RCVBUF, 4)) == \
        struct.pack("<I", 212992)


@pytest.mark.parametrize(("insns", "expect"), [
    (asm.return_program(0), ("errno", errno.EPERM)),
    ([asm.mov64(R2, -1), asm.stx("w", R1, 32, R2), *RET1], None),  # optlen -1: the
    # kernel's handler is skipped
])
def test_setsockopt_program(kernel: Kernel, scratch: Scratch, insns: list[Any],
                            expect: object) -> None:
    """A one-byte SO_RCVBUF, which the kernel's own handler refuses (EINVAL): the program
    denies it first, or skips the handler."""
    cg = scratch.cgroup("setsockopt")

    def short(a: Any) -> None:
        a.setsockopt(SOL_SOCKET, SO_RCVBUF, b"\x01")

    with load(kernel, insns, ProgType.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT) as p, \
            cg.link(p, A.CGROUP_SETSOCKOPT):
        assert act(kernel, cg.path, short) == expect
    assert act(kernel, cg.path, short) == ("errno", errno.EINVAL)


def test_sysctl_program_denies_writes(kernel: Kernel, scratch: Scratch) -> None:
    """Reads pass and are counted; a write is denied (EPERM) before it reaches the
    handler, so the host's value does not change."""
    cg = scratch.cgroup("sysctl")
    m = Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, kernel=kernel)
    # r6 = ctx->write; count into slot 0; return !write
    insns = [asm.ldx("w", asm.R6, R1, 0), *asm.counter_program(m, ret=1)[:-2],
             asm.mov64(R0, 1), asm.jeq(asm.R6, 0, 1), asm.mov64(R0, 0), asm.exit_()]
    try:
        with load(kernel, insns, ProgType.CGROUP_SYSCTL, A.CGROUP_SYSCTL) as p, \
                cg.link(p, A.CGROUP_SYSCTL):
            assert act(kernel, cg.path, lambda a: a.sysctl_read("kernel/ostype")) == "Linux\n"
            assert act(kernel, cg.path, lambda a: a.sysctl_write(
                "net/ipv4/ip_default_ttl", "65")) == ("errno", errno.EPERM)
            assert m.lookup(bytes(4)) == struct.pack("<Q", 2)
        assert act(kernel, cg.path, lambda a: a.sysctl_read("net/ipv4/ip_default_ttl")) \
            == "64\n"
    finally:
        m.close()


def test_device_program_denies_open(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("device")

    def null(a: Any) -> object:
        return a.open_device("c", 1, 3, "r")

    # deny reads of char 1:3, allow the rest: (access_type >> 16) & READ and major 1
    insns = [asm.ldx("w", R2, R1, 0), asm.rsh64(R2, 16), asm.and64(R2, 2),
             asm.ldx("w", R3, R1, 4), asm.ldx("w", R4, R1, 8), asm.mov64(R0, 1),
             asm.jeq(R2, 0, 3), asm.jne(R3, 1, 2), asm.jne(R4, 3, 1), asm.mov64(R0, 0),
             asm.exit_()]
    with load(kernel, insns, ProgType.CGROUP_DEVICE, A.CGROUP_DEVICE) as p, \
            cg.link(p, A.CGROUP_DEVICE):
        assert act(kernel, cg.path, null) == ("errno", errno.EPERM)
        assert act(kernel, cg.path, lambda a: a.open_device("c", 1, 3, "w")) is None
    assert act(kernel, cg.path, null) is None


def test_unavailable_helper_is_refused_at_load(kernel: Kernel) -> None:
    """A helper the hook may not call (get_retval on egress): refused at load, in the
    verifier's words (the model checks its table of what each hook may call)."""
    with pytest.raises(VerifierError) as e:
        load(kernel, [asm.call(186), *RET1], ProgType.CGROUP_SKB, EGRESS).close()
    assert e.value.errno == errno.EINVAL
    assert said(kernel, "program of this type cannot use helper bpf_get_retval#186",
                e.value.log.splitlines())
