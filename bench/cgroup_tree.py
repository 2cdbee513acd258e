"""``cgbpf cgroup tree`` against ``bpftool cgroup tree`` and a C walker, on 1,000 cgroups
with one link each, whole processes (start-up included), interleaved A B C A B C.

    sudo .venv/bin/python bench/cgroup_tree.py [ROUNDS]

Builds a scratch subtree ``<cgroup2>/cgbpf-bench-<pid>`` (10 cgroups of 99 children
each: 1,000 cgroups), a cgroup_skb egress link on every one, pinned in a bpffs mounted on
a temp directory; removes all of it at the end, Ctrl-C included.  The C walker
(bench/cgroup_tree.c, built with gcc here) opens each cgroup, queries every cgroup attach
type and names each program, printing as bpftool does.  Prints the median seconds per
run and the ratios to C, and, for scale, the start-up of a Python process that imports
cgbpf.cli and does nothing.  Needs root, cgroup2, gcc and bpftool (skipped if absent)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import cgbpf
from cgbpf import AttachType, ProgType, asm

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
GROUPS, CHILDREN = 10, 99  # 10 + 990 = 1,000 cgroups

#: Before ``cgbpf cgroup tree`` exists: the same walk through the library.
WALKER = """
import sys, cgbpf
from cgbpf import uapi
k = cgbpf.host()
def walk(path):
    with cgbpf.Cgroup.open(path, kernel=k) as cg:
        for at in uapi.CGROUP_PROG_TYPE:
            try:
                q = cg.query(at)
            except OSError:
                continue
            for p in q.programs:
                print(path, p.id, at.name, q.mode.name)
    for name in sorted(k.cgroup_children(path)):
        walk(path + "/" + name)
walk(sys.argv[1])
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cgbpf_command(root: str) -> tuple[str, list[str]]:
    """``cgbpf cgroup tree ROOT`` if the command exists, else the library walker."""
    probe = subprocess.run([sys.executable, "-m", "cgbpf", "cgroup", "tree", "--help"],
                           capture_output=True, env=_env())
    if probe.returncode == 0:
        return "cgbpf cgroup tree", [sys.executable, "-m", "cgbpf", "cgroup", "tree", root]
    return "python library walk", [sys.executable, "-c", WALKER, root]


def build(k: cgbpf.Kernel, base: str, bpffs: str) -> list[str]:
    """The 1,000 cgroups (their paths, parents first) with a pinned link each."""
    made: list[str] = []
    prog = cgbpf.Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                              expected_attach_type=AttachType.CGROUP_INET_EGRESS,
                              name="bench", kernel=k)
    with prog:
        for g in range(GROUPS):
            paths = [f"{base}/g{g}"] + [f"{base}/g{g}/c{c}" for c in range(CHILDREN)]
            for path in paths:
                k.mkdir(path)
                made.append(path)
                with cgbpf.Cgroup.open(path, kernel=k) as cg, cg.link(prog) as link:
                    link.pin(f"{bpffs}/{len(made)}")
    return made


def clean(k: cgbpf.Kernel, base: str, bpffs: str, made: list[str]) -> None:
    """Unmount the bpffs (the links go), then rmdir deepest first."""
    with contextlib.suppress(OSError):
        k.umount(bpffs)
    with contextlib.suppress(OSError):
        os.rmdir(bpffs)
    for path in sorted([*made, base], key=lambda p: p.count("/"), reverse=True):
        for _ in range(500):
            try:
                k.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)


def run(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed with status {p.returncode}")
    return dt, p.stdout.count(b"\n")


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    k = cgbpf.host()
    base = os.path.join(k.cgroup_root, f"cgbpf-bench-{os.getpid()}")
    tmp = tempfile.mkdtemp(prefix="cgbpf-bench-")
    exe, bpffs = os.path.join(tmp, "cgroup_tree"), os.path.join(tmp, "pins")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    made: list[str] = []
    mounted = False
    try:
        subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(HERE, "cgroup_tree.c")],
                       check=True)
        os.mkdir(bpffs)
        k.mount_bpffs(bpffs)
        mounted = True
        k.mkdir(base)
        t0 = time.perf_counter()
        made = build(k, base, bpffs)
        print(f"{len(made)} cgroups with a link each under {base}"
              f" (built in {time.perf_counter() - t0:.1f} s)")
        name, mine = cgbpf_command(base)
        commands = {name: mine, "C walker": [exe, base],
                    # What a Python command costs before it does anything.
                    "python start-up floor": [sys.executable, "-c", "import cgbpf.cli"]}
        bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
        if os.access(bpftool, os.X_OK):
            commands["bpftool cgroup tree"] = [bpftool, "cgroup", "tree", base]
        times: dict[str, list[float]] = {n: [] for n in commands}
        lines: dict[str, int] = {}
        for _ in range(rounds):
            for n, cmd in commands.items():
                dt, lines[n] = run(cmd)
                times[n].append(dt)
        c = statistics.median(times["C walker"])
        print(f"median of {rounds} interleaved runs, whole process:")
        for n, ts in times.items():
            med = statistics.median(ts)
            print(f"  {n:22} {med:8.3f} s   {med / c:6.1f}x C   ({lines[n]} lines out;"
                  f" min {min(ts):.3f} s, max {max(ts):.3f} s)")
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        if mounted or made:
            clean(k, base, bpffs, made)
        else:
            with contextlib.suppress(OSError):
                k.rmdir(base)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
