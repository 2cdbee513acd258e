"""Real traffic from inside a cgroup: a forked child joins the cgroup, then sends UDP on
loopback, so cgroup programs run for real (a socket belongs to the cgroup that created
it).  On the model, a model process does the same with the model's sockets, and the
programs run in its VM."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kernel import Kernel


def in_cgroup(path: str, fn: Callable[[], int]) -> int:
    """Run ``fn`` in a child process moved into cgroup ``path``; return its result
    (0..255, the child's exit code)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 255
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            code = fn()
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:  # e.g. Ctrl-C: do not leave the child in the cgroup
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)


def udp_loopback(count: int = 1) -> int:
    """Send ``count`` datagrams to a receiver on 127.0.0.1; return how many arrived.
    A datagram an egress program drops (sendto: EPERM) is not counted."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(1.0)
        sent = 0
        for _ in range(count):
            try:
                tx.sendto(b"cgbpf", rx.getsockname())
                sent += 1
            except PermissionError:
                pass
        got = 0
        for _ in range(sent):
            try:
                rx.recv(64)
                got += 1
            except TimeoutError:
                break
        return got


def send_from(path: str, count: int = 1, *, kernel: Kernel | None = None) -> int:
    """Datagrams that got through when ``count`` are sent from inside cgroup ``path``
    (its egress and ingress programs run once per datagram): on the host, from a forked
    child; on a model ``kernel``, from a model process."""
    if kernel is not None and kernel.name == "model":
        return _model_loopback(kernel, path, count)
    return in_cgroup(path, lambda: udp_loopback(count))


def _model_loopback(kernel: Kernel, path: str, count: int) -> int:
    """:func:`udp_loopback` by a new model process in ``path`` (it exits after)."""
    from .model import ModelKernel

    assert isinstance(kernel, ModelKernel)
    p = kernel.process()
    try:
        p.enter(path)
        rx = p.bind("127.0.0.1", 0)
        sent = 0
        for _ in range(count):
            try:
                p.send_udp(*rx, data=b"cgbpf")
                sent += 1
            except PermissionError:
                pass
        return sum(p.recv(*rx) is not None for _ in range(sent))
    finally:
        p.exit()
