"""SEED-TEST.md §3 through the seed's own BPF program, written in C (tests/bpf/seed_link.c:
two cgroup_skb/egress programs counting into ``calls`` and ``alt_calls`` in .bss),
loaded with cgbpf.collection: all 34 steps of tests/test_seed.py, with traffic from inside
cg4 (a child process on the host, a model process on the model, whose VM runs the
programs) and the counters read through ``coll.globals``."""

from __future__ import annotations

from bpfc import compile_c
from cgbpf._scratch import Scratch
from cgbpf.collection import Collection
from cgbpf.kernel import Kernel
from cgtest import Counted
from test_seed import seed


class Globals(Counted):
    """The seed program's two counters, ``calls`` and ``alt_calls``, in ``.bss``."""

    NAMES = ("calls", "alt_calls")

    def __init__(self, kernel: Kernel, coll: Collection) -> None:
        self.kernel, self.coll = kernel, coll
        self.progs = [coll.programs["egress"], coll.programs["egress_alt"]]

    def read(self) -> list[int]:
        return [int(self.coll.globals[name]) for name in self.NAMES]

    def reset(self) -> None:
        for name in self.NAMES:
            self.coll.globals[name] = 0


def test_cgroup_link_seed_from_c(kernel: Kernel, scratch: Scratch) -> None:
    with Collection.load(compile_c("seed_link"), kernel) as coll:
        seed(kernel, scratch, Globals(kernel, coll), coll.programs["egress"],
             coll.programs["egress_alt"])
