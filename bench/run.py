"""The benchmark suite: cgbpf (host and model) against C with raw ``syscall(SYS_bpf)``,
C with libbpf, and bpftool, the same scenarios side by side in one run.

    sudo .venv/bin/python bench/run.py [--quick] [--src DIR] [--out FILE]

Each measurement is one process of a variant (bench/ops.c built twice with gcc, once
with -DLIBBPF; bench/ops_cgbpf.py with ``PYTHONPATH=DIR``, default ``$CGBPF_SRC`` or this
tree's src, so any cgbpf tree can be measured), the rounds interleave the variants
(A B C A B C ...), and the table gives the median over rounds and the ratios to C and to
libbpf.  Writes ``bench/out/results.json``.  The driver itself does not import cgbpf: it
makes the cgroup subtree ``<cgroup2>/cgbpf-bench-<pid>`` with plain mkdir and a bpffs on
a temp directory, and removes both at the end, Ctrl-C and SIGTERM included.
Needs root, cgroup2, gcc, clang, libbpf-dev and bpftool (``make deps``)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TypedDict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"
VARIANTS = ("c", "libbpf", "bpftool", "cgbpf", "cgbpf-model")
IN_PROCESS = ("c", "libbpf", "cgbpf", "cgbpf-model")
OBJECTS = ("seed_link", "globals")  # tests/bpf/*.c: a typical small and a fuller object


class Record(TypedDict):
    """One line of results.json: a variant's median in a scenario, and its ratios."""
    scenario: str
    variant: str
    median_s: float
    c_median_s: float | None
    ratio_to_c: float | None
    libbpf_median_s: float | None
    ratio_to_libbpf: float | None
    unit: str
    ops_per_sample: int
    samples_s: list[float]


@dataclass(frozen=True)
class Scenario:
    """One row: ``op`` of bench/ops.c / ops_cgbpf.py (or ``tree`` / ``object``, whole
    processes) run ``n`` (``n_quick``) times per measurement in cgroup ``where``."""
    name: str
    op: str
    where: str = "one"
    extra: str = ""
    n: int = 1000
    n_quick: int = 300
    variants: tuple[str, ...] = IN_PROCESS
    full_only: bool = False
    unit: str = "op"


SCENARIOS = [
    Scenario("program load", "prog_load", n=300, n_quick=100),
    Scenario("link create + close, empty hook", "link_create"),
    Scenario("link create + close, beside a link", "link_busy"),
    Scenario("link update, alternating 2 programs", "link_update", n=3000),
    Scenario("query, 1 program", "query", extra="1", n=3000),
    Scenario("query, 8 programs", "query", extra="8", n=3000),
    Scenario("query, 64 programs", "query", extra="64", n=2000),
    Scenario("query effective, 8 at the parent", "query_eff", "eff/child", "8", n=3000),
    Scenario("legacy attach + detach", "attach_detach"),
    Scenario("pin + OBJ_GET (+ close, unlink)", "pin_get", extra="<bpffs>/get"),
    Scenario("links on 1,000 sibling cgroups", "siblings", "s1000", n=1000, n_quick=1000,
             unit="batch"),
    Scenario("links on 5,000 sibling cgroups", "siblings", "s5000", n=5000, n_quick=5000,
             full_only=True, unit="batch"),
    Scenario("link + close at a root of 1,000", "link_create", "sub", n=30, n_quick=10),
    Scenario("cgroup tree, 1,000 cgroups", "tree", "tree", variants=("c", "bpftool", "cgbpf"),
             unit="process"),
    *(Scenario(f"load {name}.o (clang)", "load_object", extra=name, n=30, n_quick=10,
               variants=("libbpf", "bpftool", "cgbpf", "cgbpf-model")) for name in OBJECTS),
]


def cgroup2_root() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mnt, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return mnt
    raise SystemExit("bench: no cgroup2 mount in /proc/self/mounts")


def dirs_for(where: str) -> list[str]:
    """The cgroups (relative, parents first) a scenario's ``where`` needs."""
    if where[:1] == "s" and where[1:].isdigit():  # sN: N sibling cgroups
        return [where] + [f"{where}/{i}" for i in range(int(where[1:]))]
    if where in ("sub", "tree"):  # 10 groups of 99 children: 1,000 descendants
        return [where] + [f"{where}/g{g}{c}" for g in range(10)
                          for c in ["", *(f"/c{i}" for i in range(99))]]
    return ["eff", "eff/child"] if where == "eff/child" else [where]


class Bench:
    """What one run made (cgroups, the bpffs mount, binaries) and removes in :meth:`close`."""

    def __init__(self, src: str) -> None:
        self.base = os.path.join(cgroup2_root(), f"cgbpf-bench-{os.getpid()}")
        self.tmp = tempfile.mkdtemp(prefix="cgbpf-bench-")
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.made: list[str] = []
        self.mounted = False
        self.src = src
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [src, os.environ.get("PYTHONPATH")])))

    def setup(self, scenarios: list[Scenario]) -> None:
        """Build the C variants and objects, mount the bpffs, make the cgroups."""
        # Bytecode, as an installed package has it: without it every whole-process sample
        # would compile the sources again (PYTHONDONTWRITEBYTECODE is set on some machines).
        self.sh(sys.executable, "-m", "compileall", "-q", self.src)
        ops = os.path.join(HERE, "ops.c")
        self.sh("gcc", "-O2", "-o", self.exe("c"), ops)
        self.sh("gcc", "-O2", "-DLIBBPF", "-o", self.exe("libbpf"), ops, "-lbpf")
        self.sh("gcc", "-O2", "-o", self.exe("tree"), os.path.join(HERE, "cgroup_tree.c"))
        machine = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        for name in OBJECTS:
            self.sh("clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{machine}", "-c",
                    os.path.join(REPO, "tests", "bpf", f"{name}.c"), "-o", self.obj(name))
        os.mkdir(self.bpffs)
        self.sh("mount", "-t", "bpf", "bpf", self.bpffs)
        self.mounted = True
        for sub in ("get", "tree"):
            os.mkdir(os.path.join(self.bpffs, sub))
        self.mkdir(self.base)
        for where in dict.fromkeys(s.where for s in scenarios):
            for rel in dirs_for(where):
                self.mkdir(os.path.join(self.base, rel))
        if any(s.op == "tree" for s in scenarios):  # a pinned link on every cgroup there
            self.sh(self.exe("c"), "link_tree", "0", self.cgroup("tree"),
                    os.path.join(self.bpffs, "tree"))

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        self.made.append(path)

    def sh(self, *cmd: str) -> None:
        subprocess.run(cmd, check=True)

    def exe(self, name: str) -> str:
        return os.path.join(self.tmp, f"ops_{name}")

    def obj(self, name: str) -> str:
        return os.path.join(self.tmp, f"{name}.o")

    def cgroup(self, where: str) -> str:
        return os.path.join(self.base, where)

    def command(self, s: Scenario, variant: str, quick: bool) -> list[str]:
        """The process that measures ``s`` for ``variant`` (prints seconds per op), or,
        for whole-process scenarios, the process to time."""
        where = self.cgroup(s.where)
        if s.op == "tree":
            return {"c": [self.exe("tree"), where], "bpftool": [BPFTOOL, "cgroup", "tree", where],
                    "cgbpf": [sys.executable, "-m", "cgbpf", "cgroup", "tree", where]}[variant]
        extra = s.extra.replace("<bpffs>", self.bpffs)
        if s.op == "load_object":
            extra = self.obj(s.extra)
            if variant == "bpftool":
                return [BPFTOOL, "prog", "loadall", extra, os.path.join(self.bpffs, "prog")]
        args = [s.op, str(s.n_quick if quick else s.n), where, *([extra] if extra else [])]
        if variant.startswith("cgbpf"):
            model = ["--model"] if variant == "cgbpf-model" else []
            return [sys.executable, os.path.join(HERE, "ops_cgbpf.py"), *model, *args]
        return [self.exe(variant), *args]

    def measure(self, s: Scenario, variant: str, quick: bool) -> float:
        """One sample: seconds per operation (per batch, per whole process)."""
        cmd = self.command(s, variant, quick)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, env=self.env)
        elapsed = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"bench: {s.name} / {variant}: {' '.join(cmd)} failed with status "
                             f"{p.returncode}:\n{p.stderr.decode(errors='replace')}")
        if variant == "bpftool" and s.op == "load_object":
            shutil.rmtree(os.path.join(self.bpffs, "prog"))  # its pins: the programs go too
        return elapsed if s.op == "tree" or variant == "bpftool" else float(p.stdout)

    def close(self) -> None:
        """Unmount the bpffs (pinned links go), rmdir the cgroups deepest first (a
        cgroup whose links are still being freed is busy for a moment: retried 5 s)."""
        if self.mounted:
            subprocess.run(["umount", self.bpffs], check=False)
        for path in reversed(self.made):
            for _ in range(500):
                try:
                    os.rmdir(path)
                    break
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        break
                    time.sleep(0.01)
        shutil.rmtree(self.tmp, ignore_errors=True)


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run(bench: Bench, scenarios: list[Scenario], rounds: int, quick: bool) -> list[Record]:
    """Every scenario, ``rounds`` interleaved rounds of its variants; the JSON records."""
    records: list[Record] = []
    for s in scenarios:
        variants = [v for v in s.variants if v != "bpftool" or os.access(BPFTOOL, os.X_OK)]
        if s.unit != "process":  # a warm-up sample (page cache, lazy kernel state); none
            for v in variants:  # for whole processes: the tree's bpftool alone takes ~10 s
                bench.measure(s, v, True)
        samples: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            for v in variants:
                samples[v].append(bench.measure(s, v, quick))
        med = {v: statistics.median(ts) for v, ts in samples.items()}
        for v in variants:
            records.append({
                "scenario": s.name, "variant": v, "median_s": med[v],
                "c_median_s": med.get("c"), "ratio_to_c": ratio(med[v], med.get("c")),
                "libbpf_median_s": med.get("libbpf"),
                "ratio_to_libbpf": ratio(med[v], med.get("libbpf")),
                "unit": s.unit, "ops_per_sample": 1 if s.unit != "op" else
                (s.n_quick if quick else s.n), "samples_s": samples[v]})
        print(f"  {s.name}: " + ", ".join(f"{v} {fmt(med[v])}" for v in variants), flush=True)
    return records


def table(records: list[Record]) -> str:
    """The results, one row per scenario: medians, then cgbpf's ratios."""
    rows: dict[str, dict[str, float]] = {}
    for r in records:
        rows.setdefault(r["scenario"], {})[r["variant"]] = r["median_s"]
    cols = [*VARIANTS, "cgbpf/C", "cgbpf/libbpf", "cgbpf/bpftool", "model/C"]
    lines = [f"{'scenario (median per op)':38}" + "".join(f"{c:>14}" for c in cols)]
    for name, m in rows.items():
        ratios = [ratio(m.get("cgbpf"), m.get(b)) for b in ("c", "libbpf", "bpftool")]
        ratios.append(ratio(m.get("cgbpf-model"), m.get("c")))
        lines.append(f"{name:38}" + "".join(f"{fmt(m.get(v)):>14}" for v in VARIANTS)
                     + "".join(f"{'-' if x is None else f'{x:.2f}x':>14}" for x in ratios))
    return "\n".join(lines)


def machine(src: str, rounds: int) -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), "?")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return (f"kernel {os.uname().release}, {os.cpu_count()} x {cpu}, load {' '.join(load)};"
            f" cgbpf from {src}; median of {rounds} interleaved rounds")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and operations")
    ap.add_argument("--src", default=os.environ.get("CGBPF_SRC", os.path.join(REPO, "src")),
                    help="the cgbpf source tree to measure (default $CGBPF_SRC or ./src)")
    ap.add_argument("--out", default=os.path.join(HERE, "out", "results.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (bpf, cgroup2 mkdir, mount -t bpf)")
    scenarios = [s for s in SCENARIOS if not (args.quick and s.full_only)]
    rounds = 3 if args.quick else 7
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bench = Bench(os.path.abspath(args.src))
    t0 = time.perf_counter()
    try:
        bench.setup(scenarios)
        print(f"set up in {time.perf_counter() - t0:.1f} s; measuring", flush=True)
        records = run(bench, scenarios, rounds, args.quick)
        floor = statistics.median(_startup(bench) for _ in range(rounds))
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        bench.close()
    head = machine(os.path.abspath(args.src), rounds)
    text = (f"{head}\n{table(records)}\n(python -c 'import cgbpf.cli' alone: {fmt(floor)};"
            f" whole run {time.perf_counter() - t0:.0f} s)")
    print("\n" + text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
        f.write(text + "\n")
    return 0


def _startup(bench: Bench) -> float:
    """Seconds for a Python process that imports cgbpf.cli and does nothing."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cgbpf.cli"], check=True, env=bench.env)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
