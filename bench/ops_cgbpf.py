"""The cgbpf variants of bench/run.py's scenarios: the same operations and command line
as bench/ops.c, through cgbpf's public API, on the host or (``--model``) on the model.

    python bench/ops_cgbpf.py [--model] OP N DIR [EXTRA]

Prints the seconds per operation (mean of N after a warm-up of N/10).  Run by the driver
in a subprocess, so the ``cgbpf`` imported is the one its PYTHONPATH chooses.  On the
model, the host's cgroup subtree DIR (made by the driver) is first copied into the
model's cgroup tree, untimed."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable

import cgbpf
from cgbpf import AttachType, Cgroup, Collection, Program, ProgType, asm
from cgbpf.kernel import Kernel

EGRESS = AttachType.CGROUP_INET_EGRESS


def mirror(k: Kernel, host_dir: str) -> str:
    """Copy the host's cgroup directories at and under ``host_dir`` into ``k``; the
    model's path of ``host_dir``."""
    rel = os.path.relpath(host_dir, cgbpf.host().cgroup_root)
    path = k.cgroup_root
    for part in rel.split("/"):
        path = os.path.join(path, part)
        k.mkdir(path)
    for top, dirs, _ in os.walk(host_dir):
        for d in sorted(dirs):
            k.mkdir(os.path.normpath(os.path.join(path, os.path.relpath(top, host_dir), d)))
    return path


def per_op(fn: Callable[[int], object], n: int) -> float:
    """Seconds per call of ``fn(i)``, after ``n/10`` warm-up calls."""
    for i in range(-(-n // 10)):
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n


def measure(k: Kernel, op: str, n: int, path: str, extra: str,
            held: contextlib.ExitStack) -> float:
    """Seconds per ``op`` (for ``siblings``: for all ``n`` cgroups); what it keeps open
    goes on ``held``."""
    count = int(extra) if op in ("query", "query_eff") else 2
    progs = [held.enter_context(Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                                             expected_attach_type=EGRESS, name="bench",
                                             kernel=k))
             for _ in range(count)]
    if op == "load_object":
        return per_op(lambda i: Collection.load(extra, k).close(), n)
    if op == "prog_load":  # the instructions encoded once, as the C variant has them
        code = asm.assemble(asm.return_program(1))
        return per_op(lambda i: Program.load(code, ProgType.CGROUP_SKB,
                                             expected_attach_type=EGRESS, name="bench",
                                             kernel=k).close(), n)
    if op == "siblings":
        links = []
        t0 = time.perf_counter()
        for i in range(n):
            with Cgroup.open(f"{path}/{i}", kernel=k) as child:
                links.append(child.link(progs[0]))
        elapsed = time.perf_counter() - t0
        for link in links:
            link.close()
        return elapsed
    cg = held.enter_context(Cgroup.open(path, kernel=k))
    if op == "query_eff":
        with Cgroup.open(os.path.dirname(path), kernel=k) as parent:
            for p in progs:
                held.enter_context(parent.link(p))
        return per_op(lambda i: cg.query(EGRESS, effective=True), n)
    if op == "query":
        for p in progs:
            held.enter_context(cg.link(p))
        return per_op(lambda i: cg.query(EGRESS), n)
    if op in ("link_create", "link_busy"):
        if op == "link_busy":
            held.enter_context(cg.link(progs[0]))
        return per_op(lambda i: cg.link(progs[0]).close(), n)
    if op == "link_update":
        link = held.enter_context(cg.link(progs[0]))
        return per_op(lambda i: link.update(progs[i & 1]), n)
    if op == "attach_detach":
        def attach_detach(i: int) -> None:
            cg.attach(progs[0], EGRESS)
            cg.detach(progs[0], EGRESS)
        return per_op(attach_detach, n)
    if op == "pin_get":
        pin = f"{extra}/p{os.getpid()}"

        def pin_get(i: int) -> None:
            progs[0].pin(pin)
            Program.from_pin(pin, kernel=k).close()
            k.unlink(pin)
        return per_op(pin_get, n)
    raise SystemExit(f"ops_cgbpf: unknown operation {op}")


def main(argv: list[str]) -> None:
    model = argv[:1] == ["--model"]
    op, n, path, *rest = argv[1:] if model else argv
    extra = rest[0] if rest else ""
    k: Kernel = cgbpf.model() if model else cgbpf.host()
    if model:
        if op == "query_eff":  # the parent too, where the links go
            path = os.path.join(mirror(k, os.path.dirname(path)), os.path.basename(path))
        else:
            path = mirror(k, path)
        if op == "pin_get":
            extra = "/tmp/bench-bpffs"
            k.mkdir(extra)
            k.mount_bpffs(extra)
    with contextlib.ExitStack() as held:
        print(f"{measure(k, op, int(n), path, extra, held):.9e}")


if __name__ == "__main__":
    main(sys.argv[1:])
