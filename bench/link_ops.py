"""Per-operation latency of LINK_CREATE(+close), LINK_UPDATE and PROG_QUERY: cgbpf, a bare
ctypes syscall, and C (gcc), measured side by side in one run on the real kernel.

    sudo .venv/bin/python bench/link_ops.py [N]

Prints ns/op and the ratio of each to C.  Needs root, cgroup2 and gcc."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import cgbpf
from cgbpf import AttachType, ProgType, asm, uapi
from cgbpf._scratch import Scratch

EGRESS = AttachType.CGROUP_INET_EGRESS


ROUNDS = 5
#: The first link on a hook (and the last one leaving) flips the kernel's static key for
#: cgroup BPF: far slower than a link beside another one, so both are measured.
OPERATIONS = ("LINK_CREATE + close, empty hook", "LINK_CREATE + close, 1 link there",
              "LINK_UPDATE", "PROG_QUERY")


def per_op(fn: Callable[[], object], n: int) -> float:
    """``n`` calls, in ns per call."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n


def c_baseline(exe: str, cg: int, p1: int, p2: int, n: int) -> list[float]:
    run = subprocess.run([exe, str(cg), str(p1), str(p2), str(n)], pass_fds=(cg, p1, p2),
                         capture_output=True, text=True, check=True)
    return [float(v) for v in run.stdout.split()]


def bare_ctypes(cg: int, p1: int, p2: int, n: int) -> list[float]:
    libc = ctypes.CDLL(None, use_errno=True)
    create = uapi.LinkCreateAttr(prog_fd=p1, target_fd=cg, attach_type=EGRESS)
    size, nr = ctypes.sizeof(create), uapi.BPF_SYSCALL

    def link_close() -> None:
        os.close(libc.syscall(nr, uapi.Cmd.LINK_CREATE, ctypes.byref(create), size))

    empty = per_op(link_close, n)
    link = libc.syscall(nr, uapi.Cmd.LINK_CREATE, ctypes.byref(create), size)
    upd = uapi.LinkUpdateAttr(link_fd=link, new_prog_fd=p2)
    ids = (ctypes.c_uint32 * 64)()
    q = uapi.QueryAttr(target_fd=cg, attach_type=EGRESS, prog_ids=ctypes.addressof(ids),
                       prog_cnt=64)

    def query() -> None:
        q.prog_cnt = 64
        libc.syscall(nr, uapi.Cmd.PROG_QUERY, ctypes.byref(q), ctypes.sizeof(q))

    out = [empty, per_op(link_close, n),
           per_op(lambda: libc.syscall(nr, uapi.Cmd.LINK_UPDATE, ctypes.byref(upd),
                                       ctypes.sizeof(upd)), n),
           per_op(query, n)]
    os.close(link)
    return out


def library(cg: cgbpf.Cgroup, p1: cgbpf.Program, p2: cgbpf.Program, n: int) -> list[float]:
    empty = per_op(lambda: cg.link(p1).close(), n)
    with cg.link(p1) as link:
        flip = [p1, p2]
        return [empty, per_op(lambda: cg.link(p1).close(), n),
                per_op(lambda: link.update(flip.reverse() or flip[0]), n),
                per_op(lambda: cg.query(EGRESS), n)]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    k = cgbpf.host()
    here = os.path.dirname(os.path.abspath(__file__))
    with Scratch(k, "cgbpf-bench") as s, tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "link_ops")
        subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(here, "link_ops.c")], check=True)
        cg = s.cgroup("a")
        p1, p2 = (cgbpf.Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                                     expected_attach_type=EGRESS, name=f"p{i}", kernel=k)
                  for i in range(2))
        rounds = [(c_baseline(exe, cg.fd, p1.fd, p2.fd, n), bare_ctypes(cg.fd, p1.fd, p2.fd, n),
                   library(cg, p1, p2, n)) for _ in range(ROUNDS)]  # interleaved: fair drift
        p1.close()
        p2.close()
    c, bare, lib = ([min(r[who][op] for r in rounds) for op in range(4)] for who in range(3))
    print(f"kernel {os.uname().release}, {n} ops per round, best of {ROUNDS} interleaved rounds")
    print(f"{'operation':32} {'C ns':>8} {'ctypes ns':>10} {'cgbpf ns':>10} "
          f"{'ctypes/C':>9} {'cgbpf/C':>8}")
    for name, cv, bv, lv in zip(OPERATIONS, c, bare, lib, strict=True):
        print(f"{name:32} {cv:8.0f} {bv:10.0f} {lv:10.0f} {bv / cv:9.2f} {lv / cv:8.2f}")


if __name__ == "__main__":
    main()
