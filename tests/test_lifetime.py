"""Link lifetime across processes (docs/kernel.md §11): the last owner's exit detaches,
a pin survives kill -9 of its creator, any process that opens the pin (or the id) owns
the link, and unlinking the last pin detaches asynchronously."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from cgbpf import BpfError, Cgroup, Link, Program, asm, links
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import EGRESS, Counters, host_only


@pytest.fixture
def counters(kernel: Kernel) -> Iterator[Counters]:
    c = Counters(kernel, 2)
    yield c
    c.close()


def fork(fn: Callable[[int], None]) -> tuple[int, int]:
    """Run ``fn(write_fd)`` in a child process; return (pid, read end of its pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            os.close(r)
            fn(w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def read_int(fd: int) -> int:
    with os.fdopen(fd) as f:
        return int(f.readline())


def attached(cg: Cgroup) -> list[int]:
    return cg.query(EGRESS).ids


def poll(cond: Callable[[], bool], what: str, seconds: float = 5.0) -> float:
    """Wait for an asynchronous kernel event; return how long it took."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.0005)
    return time.monotonic() - start


@host_only
def test_unpinned_link_goes_with_its_process(scratch: Scratch, counters: Counters) -> None:
    cg, prog = scratch.cgroup("a"), counters.progs[0]

    def child(w: int) -> None:
        link = cg.link(prog, EGRESS)
        os.write(w, f"{link.id}\n".encode())
        os._exit(0)  # no close(): the kernel drops the fd at exit

    pid, r = fork(child)
    link_id = read_int(r)
    assert wait(pid) == 0
    assert attached(cg) == []
    assert counters.check(cg.path) == [0, 0]
    with pytest.raises(BpfError) as e:
        Link.from_id(link_id, kernel=cg.kernel)
    assert e.value.errno == errno.ENOENT


@host_only
def test_pin_survives_kill9_and_other_processes_own_it(scratch: Scratch,
                                                       counters: Counters) -> None:
    cg, (main, alt) = scratch.cgroup("a"), counters.progs
    pin = os.path.join(scratch.bpffs(), "link")

    def creator(w: int) -> None:
        link = cg.link(main, EGRESS)
        link.pin(pin)
        os.write(w, f"{link.id}\n".encode())
        time.sleep(60)

    pid, r = fork(creator)
    link_id = read_int(r)
    os.kill(pid, signal.SIGKILL)
    assert wait(pid) == -signal.SIGKILL
    assert attached(cg) == [main.id]
    assert counters.check(cg.path) == [1, 0]

    def updater(w: int) -> None:  # a process that only has the pin
        with Link.from_pin(pin, kernel=cg.kernel) as link:
            assert link.id == link_id
            link.update(alt, expected=main)

    assert wait(fork(updater)[0]) == 0
    assert attached(cg) == [alt.id]
    assert counters.check(cg.path) == [0, 1]

    def detacher(w: int) -> None:  # a process that only knows the id
        with Link.from_id(link_id, kernel=cg.kernel) as link:
            link.detach()

    assert wait(fork(detacher)[0]) == 0
    assert attached(cg) == []
    with Link.from_pin(pin, kernel=cg.kernel) as link:
        assert link.defunct and link.info().prog_id == alt.id
        link.unpin()
    with pytest.raises(BpfError) as e:
        Link.from_id(link_id, kernel=cg.kernel)
    assert e.value.errno == errno.ENOENT


def test_unlinking_last_pin_detaches(scratch: Scratch, counters: Counters) -> None:
    cg, prog = scratch.cgroup("a"), counters.progs[0]
    pin = os.path.join(scratch.bpffs(), "link")
    with cg.link(prog, EGRESS) as link:
        link.pin(pin)
    assert attached(cg) == [prog.id]  # the pin holds it
    cg.kernel.unlink(pin)
    poll(lambda: attached(cg) == [], "detach after the last pin was unlinked")
    assert counters.check(cg.path) == [0, 0]


def test_open_fd_outlives_unlinked_pin(scratch: Scratch, counters: Counters) -> None:
    """Unlinking the pin while an fd is open changes nothing until that fd closes."""
    cg, prog = scratch.cgroup("a"), counters.progs[0]
    pin = os.path.join(scratch.bpffs(), "link")
    link = cg.link(prog, EGRESS)
    link.pin(pin)
    link.unpin()
    time.sleep(0.05)  # give an (incorrect) asynchronous detach the time to happen
    assert attached(cg) == [prog.id]
    link.close()
    assert attached(cg) == []  # close of the last owner is synchronous


def test_every_fd_is_an_owner(scratch: Scratch, counters: Counters) -> None:
    cg, prog = scratch.cgroup("a"), counters.progs[0]
    k = cg.kernel
    link = cg.link(prog, EGRESS)
    dup = k.dup(link.fd)
    link.close()
    assert attached(cg) == [prog.id]
    assert counters.check(cg.path) == [1, 0]
    k.close(dup)
    assert attached(cg) == []


def test_links_walk_and_fdinfo(scratch: Scratch, counters: Counters) -> None:
    cg, prog = scratch.cgroup("a"), counters.progs[0]
    with cg.link(prog, EGRESS) as link:
        mine = [i for i in links(kernel=cg.kernel) if i.id == link.id]
        assert mine == [link.info()]
        assert mine[0].cgroup_id == cg.id and mine[0].attach_type == EGRESS
        info = link.fdinfo()
        assert list(info)[-6:] == ["link_type", "link_id", "prog_tag", "prog_id", "cgroup_id",
                                   "attach_type"]
        assert info["link_type"] == "cgroup" and info["link_id"] == str(link.id)
        assert info["prog_tag"] == prog.info().tag and info["cgroup_id"] == str(cg.id)
        assert info["attach_type"] == str(int(EGRESS))
        link.detach()
        assert link.fdinfo()["cgroup_id"] == "0"


def test_program_outlives_fd_while_attached(scratch: Scratch, counters: Counters) -> None:
    """A legacy attachment keeps the program; from_id gets it back."""
    cg = scratch.cgroup("a")
    prog = Program.load(asm.counter_program(counters.map), counters.progs[0].type,
                        expected_attach_type=EGRESS, name="tmp", kernel=cg.kernel)
    prog_id = prog.id
    cg.attach(prog, EGRESS)
    prog.close()
    with Program.from_id(prog_id, kernel=cg.kernel) as again:
        assert again.name == "tmp" and attached(cg) == [prog_id]
        cg.detach(again, EGRESS)
    with pytest.raises(BpfError) as e:
        Program.from_id(prog_id, kernel=cg.kernel)
    assert e.value.errno == errno.ENOENT


def test_links_walk_tolerates_vanishing_links(scratch: Scratch, counters: Counters) -> None:
    cg, prog = scratch.cgroup("a"), counters.progs[0]
    mine = [cg.link(prog, EGRESS) for _ in range(6)]
    ids = [link.id for link in mine]
    seen = []
    for info in links(kernel=cg.kernel):
        if info.id in ids:
            seen.append(info.id)
            if len(seen) == 1:  # the walk is under way: three links not yet seen go away
                for link in mine[-3:]:
                    link.close()
    assert seen == ids[:3]
    for link in mine[:3]:
        link.close()
