"""The model kernel's speed next to the real kernel's, measured in one run:

* operations per second of a mixed loop (link create, update, query, close; legacy
  attach and detach) through the public API;
* one LINK_CREATE (and its close) at the root of a 10,000-cgroup subtree, which makes
  the kernel recompute the effective arrays of every descendant.

    sudo .venv/bin/python bench/model_speed.py [CGROUPS]

The host needs root and cgroup2; without them only the model is measured."""

from __future__ import annotations

import os
import sys
import time

import cgbpf
from cgbpf import AttachType, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel

EGRESS = AttachType.CGROUP_INET_EGRESS
LOOPS = 300


def mixed_ops_per_second(k: Kernel) -> float:
    with Scratch(k, "cgbpf-bench") as s:
        cg = s.cgroup("a")
        a, b = (cgbpf.Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                                   expected_attach_type=EGRESS, name=n, kernel=k)
                for n in "ab")
        t0 = time.perf_counter()
        for _ in range(LOOPS):  # 7 operations per loop
            with cg.link(a) as link:
                link.update(b)
                cg.query(EGRESS)
                cg.query(EGRESS, effective=True)
            cg.attach(a, EGRESS)
            cg.detach(a, EGRESS)
        elapsed = time.perf_counter() - t0
        a.close()
        b.close()
    return 7 * LOOPS / elapsed


def link_at_root_of(k: Kernel, n: int) -> tuple[float, float]:
    """Seconds to build an ``n``-cgroup subtree (two levels, sqrt(n) wide), and to
    link+close at its root."""
    width = max(1, int(n ** 0.5))
    with Scratch(k, "cgbpf-bench") as s:
        t0 = time.perf_counter()
        for i in range(width):
            for j in range(n // width - 1):
                s.mkdir(f"{i}/{j}")
        build = time.perf_counter() - t0
        root = s.cgroup("")
        with cgbpf.Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                                expected_attach_type=EGRESS, kernel=k) as p:
            t0 = time.perf_counter()
            root.link(p).close()
            link = time.perf_counter() - t0
    return build, link


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    kernels: list[tuple[str, Kernel]] = [("model", cgbpf.model())]
    if os.geteuid() == 0:
        kernels.insert(0, (f"host {os.uname().release}", cgbpf.host()))
    print(f"{'kernel':28} {'mixed ops/s':>12} {f'mkdir x{n} s':>14} {'link+close at root':>20}")
    for name, k in kernels:
        ops = mixed_ops_per_second(k)
        build, link = link_at_root_of(k, n)
        print(f"{name:28} {ops:12.0f} {build:14.2f} {link * 1e3:17.2f} ms")


if __name__ == "__main__":
    main()
