"""SEED-TEST.md §3: the kernel's own cgroup_link selftest, all 34 steps, with real
traffic from a child process in cg4 and the counters read back."""

from __future__ import annotations

import errno
import time

import pytest

from cgbpf import AttachMode, BpfError, ExpectedProgramMismatch, Link, Program
from cgbpf._scratch import Scratch
from cgbpf._traffic import udp_loopback
from cgbpf.kernel import Kernel, probe
from cgtest import EGRESS, Counted, Counters


def wait_defunct(links: list[Link], seconds: float = 5.0) -> None:
    """Auto-detach after rmdir is asynchronous (§12): poll."""
    deadline = time.monotonic() + seconds
    while not all(link.defunct for link in links):
        assert time.monotonic() < deadline, "links were not auto-detached within 5 s"
        time.sleep(0.005)


def test_cgroup_link_seed(kernel: Kernel, scratch: Scratch) -> None:
    c = Counters(kernel, 2)
    seed(kernel, scratch, c, *c.progs)
    c.close()


def seed(kernel: Kernel, scratch: Scratch, c: Counted, main: Program, alt: Program) -> None:
    """The 34 steps, with ``main`` and ``alt`` (CGROUP_SKB programs loaded for EGRESS)
    counting into ``c``."""
    cgs = [scratch.cgroup("cg1"), scratch.cgroup("cg1/cg2"), scratch.cgroup("cg1/cg2/cg3"),
           scratch.cgroup("cg1/cg2/cg3/cg4")]
    cg1, cg4 = cgs[0], cgs[3]
    leaf = cg4.path

    def check(calls: int, alt_calls: int) -> None:
        assert c.check(leaf) == [calls, alt_calls]

    links = [cg.link(main, EGRESS) for cg in cgs]                      # 1
    check(4, 0)                                                        # 2
    q = cg1.query(EGRESS)                                              # 3
    assert (q.mode, len(q.programs)) == (AttachMode.MULTI, 1)
    eff = cg4.query(EGRESS, effective=True)                            # 4
    assert len(eff.programs) == 4
    # effective attach_flags: 0 since 6.0 (prog_attach_flags_query), the mode before (§8)
    flags = 0 if probe.check(kernel, "prog_attach_flags_query") is not False else AttachMode.MULTI
    assert eff.ids == [main.id] * 4 and eff.attach_flags == flags      # 5
    links[3].close()                                                   # 6
    check(3, 0)                                                        # 7
    cg4.attach(main, EGRESS, mode=AttachMode.MULTI)                    # 8
    l4b = cg4.link(main, EGRESS)                                       # 9
    check(5, 0)                                                        # 10
    l4b.close()                                                        # 11
    cg4.detach(main, EGRESS)                                           # 12
    cg4.attach(main, EGRESS, mode=AttachMode.EXCLUSIVE)                # 13
    with pytest.raises(BpfError) as e:                                 # 14
        cg4.link(main, EGRESS)
    assert e.value.errno == errno.EPERM
    check(4, 0)                                                        # 15
    cg4.detach(main, EGRESS)                                           # 16
    check(3, 0)                                                        # 17
    l4c = cg4.link(main, EGRESS)                                       # 18
    check(4, 0)                                                        # 19
    with pytest.raises(BpfError) as e:                                 # 20
        cg4.attach(main, EGRESS, mode=AttachMode.EXCLUSIVE)
    assert e.value.errno == errno.EPERM
    for link in (links[1], links[2], l4c):                             # 21
        link.update(alt)
    check(1, 3)                                                        # 22
    with pytest.raises(ExpectedProgramMismatch) as e:                  # 23
        links[0].update(alt, expected=alt)
    assert e.value.errno == errno.EPERM
    links[0].update(alt, expected=main)                                # 24
    check(0, 4)                                                        # 25
    for cg in cgs:                                                     # 26
        cg.close()
    check(0, 4)                                                        # 27
    info = links[0].info()                                             # 28
    assert info.prog_id == alt.id and info.cgroup_id == cg1.id != 0
    links[0].detach()                                                  # 29
    info = links[0].info()                                             # 30
    assert info.prog_id == alt.id and info.cgroup_id == 0 and links[0].defunct
    check(0, 3)                                                        # 31
    for cg in reversed(cgs):                                           # 32
        cg.remove()
    if kernel.name == "host":                                          # 33
        c.reset()
        assert udp_loopback(1) == 1 and c.read() == [0, 0]
    wait_defunct([links[1], links[2], l4c])  # stronger than the seed: auto-detached
    for link in (links[1], links[2], l4c, links[0]):                   # 34
        link.close()
