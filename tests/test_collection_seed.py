"""SEED-TEST.md §3 through the seed's own BPF program, written in C (tests/bpf/seed_link.c:
two cgroup_skb/egress programs counting into ``calls`` and ``alt_calls`` in .bss),
loaded with cgbpf.collection: all 34 steps, with real traffic from a child in cg4 and
the counters read through ``coll.globals`` on the host; on the model (it runs no
programs) the counts are the effective array, as tests/cgtest.py's Counters check."""

from __future__ import annotations

import errno

import pytest

from bpfc import compile_c
from cgbpf import AttachMode, BpfError, ExpectedProgramMismatch, Program
from cgbpf._scratch import Scratch
from cgbpf.collection import Collection
from cgbpf.kernel import Kernel, probe
from cgbpf.testing import send_from
from cgtest import EGRESS
from test_seed import wait_defunct


class SeedCounters:
    """``check(leaf)``: how often each program ran for one datagram from ``leaf``."""

    def __init__(self, kernel: Kernel, coll: Collection, progs: list[Program]) -> None:
        self.kernel, self.coll, self.progs = kernel, coll, progs

    def reset(self) -> None:
        self.coll.globals["calls"] = self.coll.globals["alt_calls"] = 0

    def read(self) -> list[int | bytes]:
        return [self.coll.globals["calls"], self.coll.globals["alt_calls"]]

    def check(self, leaf: str) -> list[int]:
        from cgbpf import Cgroup

        with Cgroup.open(leaf, kernel=self.kernel) as cg:
            eff = cg.query(EGRESS, effective=True).ids
        counted = [eff.count(p.id) for p in self.progs]
        if self.kernel.name == "host":
            self.reset()
            assert send_from(leaf, 1) == 1  # every program allows
            assert self.read() == counted, "the programs that ran are not the effective array"
        return counted


def test_cgroup_link_seed_from_c(kernel: Kernel, scratch: Scratch) -> None:
    coll = Collection.load(compile_c("seed_link"), kernel)
    main, alt = coll.programs["egress"], coll.programs["egress_alt"]
    c = SeedCounters(kernel, coll, [main, alt])
    cgs = [scratch.cgroup("cg1"), scratch.cgroup("cg1/cg2"), scratch.cgroup("cg1/cg2/cg3"),
           scratch.cgroup("cg1/cg2/cg3/cg4")]
    cg1, cg4 = cgs[0], cgs[3]
    leaf = cg4.path

    def check(calls: int, alt_calls: int) -> None:
        assert c.check(leaf) == [calls, alt_calls]

    links = [cg.link(main) for cg in cgs]                              # 1: no attach type
    check(4, 0)                                                        # 2
    q = cg1.query(EGRESS)                                              # 3
    assert (q.mode, len(q.programs)) == (AttachMode.MULTI, 1)
    eff = cg4.query(EGRESS, effective=True)                            # 4
    assert len(eff.programs) == 4
    flags = 0 if probe.check(kernel, "prog_attach_flags_query") is not False else AttachMode.MULTI
    assert eff.ids == [main.id] * 4 and eff.attach_flags == flags      # 5
    links[3].close()                                                   # 6
    check(3, 0)                                                        # 7
    cg4.attach(main, mode=AttachMode.MULTI)                            # 8
    l4b = cg4.link(main)                                               # 9
    check(5, 0)                                                        # 10
    l4b.close()                                                        # 11
    cg4.detach(main, EGRESS)                                           # 12
    cg4.attach(main, mode=AttachMode.EXCLUSIVE)                        # 13
    with pytest.raises(BpfError) as e:                                 # 14
        cg4.link(main)
    assert e.value.errno == errno.EPERM
    check(4, 0)                                                        # 15
    cg4.detach(main, EGRESS)                                           # 16
    check(3, 0)                                                        # 17
    l4c = cg4.link(main)                                               # 18
    check(4, 0)                                                        # 19
    with pytest.raises(BpfError) as e:                                 # 20
        cg4.attach(main, mode=AttachMode.EXCLUSIVE)
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
    if kernel.name == "host":                                          # 33: from the root
        from cgbpf.testing import udp_loopback

        c.reset()
        assert udp_loopback(1) == 1 and c.read() == [0, 0]
    wait_defunct([links[1], links[2], l4c])
    for link in (links[1], links[2], l4c, links[0]):                   # 34
        link.close()
    coll.close()
