"""fd-owning objects are like ``socket.socket`` all the way: no copies (a copy would be a
second owner of one fd), ``dup()`` for an independent owner, ``detach_fd()`` to take the
fd out, and a ``fork()`` child never closes or detaches what its parent owns."""

from __future__ import annotations

import copy
import gc
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Callable

import pytest

from cgbpf import Cgroup, Link, Map, MapType
from cgbpf._fd import FdObject
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import EGRESS, host_only, load

Make = Callable[[Kernel, Scratch], FdObject]
MAKERS: dict[str, Make] = {
    "program": lambda k, s: load(k),
    "map": lambda k, s: Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1,
                                   kernel=k),
    "cgroup": lambda k, s: Cgroup.open(s.mkdir("c"), kernel=k),
}


@pytest.mark.parametrize("what", MAKERS)
def test_no_copies(kernel: Kernel, scratch: Scratch, what: str) -> None:
    with MAKERS[what](kernel, scratch) as obj:
        for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="fd"):
                attempt(obj)  # type: ignore[operator]
        assert not obj.closed and kernel.fd_kind(obj.fileno()) in ("prog", "map", "other")


@pytest.mark.parametrize("what", MAKERS)
def test_dup_is_an_independent_owner(kernel: Kernel, scratch: Scratch, what: str) -> None:
    with MAKERS[what](kernel, scratch) as obj:
        twin = obj.dup()
        assert type(twin) is type(obj) and twin.fileno() not in (-1, obj.fileno())
        assert kernel.fd_kind(twin.fileno()) == kernel.fd_kind(obj.fileno())
        obj.close()
        assert kernel.fd_kind(twin.fileno()) in ("prog", "map", "other")
        twin.close()
        assert twin.closed


def test_dup_of_a_link_keeps_it_attached(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a")
    with load(kernel) as prog:
        link = cg.link(prog)
        twin = link.dup()
        assert (twin.id, twin.attach_type) == (link.id, link.attach_type)
        link.close()
        assert cg.query(EGRESS).ids == [prog.id]  # the twin still owns the link
        twin.close()
        assert cg.query(EGRESS).ids == []


def test_detach_fd_hands_the_fd_over(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a")
    with load(kernel) as prog:
        link = cg.link(prog)
        fd = link.detach_fd()
        assert link.closed and link.fileno() == -1
        del link
        gc.collect()  # no warning, no close: the fd is the caller's now
        assert cg.query(EGRESS).ids == [prog.id]
        again = Link(kernel, fd)
        again.close()
        assert cg.query(EGRESS).ids == []


def test_an_fd_closed_under_an_object_is_quiet(kernel: Kernel,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Collecting an object whose fd was closed behind its back prints no "Exception
    ignored" (an explicit close() still says EBADF, as a socket's does)."""
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    prog = load(kernel)
    kernel.close(prog.fileno())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del prog
        gc.collect()
    assert unraisable == []


@host_only
def test_fork_child_never_detaches_the_parents_link(kernel: Kernel, scratch: Scratch) -> None:
    """The child garbage-collects (``__del__``) and closes its copies of the parent's
    link and program and exits; the parent's link is still attached, and the child gave
    no ResourceWarning for objects it did not make."""
    cg = scratch.cgroup("a")
    with load(kernel) as prog, cg.link(prog) as link:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", ResourceWarning)
                    link.__del__()
                    prog.__del__()
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert cg.query(EGRESS).ids == [prog.id]
        assert link.info().cgroup_id == cg.id


LEAK = """
import gc, cgbpf
from cgbpf import asm, ProgType, AttachType
k = cgbpf.model()
cg = cgbpf.Cgroup.create("svc", kernel=k)
p = cgbpf.Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                       expected_attach_type=AttachType.CGROUP_INET_EGRESS, kernel=k)
link = cg.link(p)
if PIN:
    link.pin("/sys/fs/bpf/svc")
del link
gc.collect()
"""


@pytest.mark.parametrize("pinned", [False, True])
def test_a_leaked_unpinned_link_warns_visibly(pinned: bool) -> None:
    """Python hides ResourceWarning by default; a link whose collection detaches its
    program also says so with a LinkLeakWarning, which Python shows.  A pinned one stays
    attached: no visible warning."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    run = subprocess.run([sys.executable, "-c", f"PIN = {pinned}\n" + LEAK],
                         env={**os.environ, "PYTHONPATH": src, "PYTHONWARNINGS": ""},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert ("LinkLeakWarning" in run.stderr) is not pinned, run.stderr
    assert "detaches program" in run.stderr or pinned
