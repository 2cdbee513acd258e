"""The kernel matrix: the host tests, the probes and the differential test on real Debian
kernels, each booted in qemu by ``<project>/../shared/tools/run-on-kernel.sh``.

    .venv/bin/python tests/kernels/matrix.py     # as root: every kernel of MATRIX
    .venv/bin/python tests/kernels/matrix.py 6.1 --jobs 1   # one kernel, one VM at a time

The job directory is built once (``src/``, ``tests/``, ``pyproject.toml`` and, in
``vendor/``, the pure-Python dependencies of this interpreter: pyelftools, pytest,
hypothesis and theirs; the guest has python3 but no pip; in ``bpf-objects/`` the tests' C
programs, compiled here: the guest has no clang) and every kernel runs ``tests/kernels/guest.py``
in it.  Per kernel this prints the kernel release, pytest's summary, the probe line, the
differential results, the characteristic requests against the model profile, and the wall
time.  Exit 1 if any kernel fails.  Outputs (per kernel: the guest's ``out/`` with every
phase's output, result.json, junit.xml; the VM's log) stay in ``--out``; by default in a
new ``/tmp/cgbpf-matrix-*``, removed again when every kernel passed.

Environment: ``RUN_ON_KERNEL`` (default: the script beside the project), ``OLDK_CACHE``
and the other knobs of run-on-kernel.sh (``OLDK_SMP`` defaults to 1 with ``--jobs`` > 1).
"""

from __future__ import annotations

import argparse
import compileall
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@dataclass(frozen=True)
class Kernel:
    kver: str     # run-on-kernel.sh's KVER
    profile: str  # the named profile it must match (cgbpf.model.profiles)


#: The kernels (with ``--jobs`` below their number, the first ones start first).
MATRIX = (
    Kernel("6.1", "6.1.192"),                    # bookworm's default kernel
    Kernel("6.12.100+deb12-amd64", "6.12.100"),  # PREORDER for PROG_ATTACH only (§19)
    Kernel("6.12", "6.12.117"),                  # bookworm's current 6.12
)

#: Host tests that cannot run in a guest for reasons other than its kernel.
DESELECT: dict[str, str] = {
    "tests/test_differential.py":
        "runs here as the bounded differential phase (--against host and the profile);"
        " its pytest form (5 x 100 sequences x 40 steps, shrinking) takes 110 s on the"
        " 6.18 host, about 5 times that in a TCG guest",
    "tests/test_cli_bpftool.py":
        "compares with bpftool, which the guests do not have",
    "tests/test_collection_readme.py":
        "runs the README's clang line, and the guests have no clang (the loader's tests"
        " run there on objects compiled here)",
}

#: What of the project goes into the guest, and where run-on-kernel.sh puts it.
PROJECT = ("src", "tests", "pyproject.toml", "README.md", "docs")
GUEST_DIR = "/job/dir"

#: Test paths not collected in the guests (collecting costs time under TCG).
IGNORE: dict[str, str] = {
    "tests/model": "model-only tests (the model at the ABI level, no host parameter)",
}

#: What the guest needs besides the standard library (import names; pure Python).
VENDOR = ("elftools", "pytest", "_pytest", "py", "pluggy", "iniconfig", "packaging", "pygments",
          "hypothesis", "_hypothesis_globals", "_hypothesis_ftz_detector",
          "_hypothesis_pytestplugin", "sortedcontainers")

STEPS = 1000  # differential steps per run (two runs per kernel)


def build_job(job: Path) -> None:
    """The project's :data:`PROJECT` files and ``vendor/``, compiled here (the guest's
    python3 is 3.11 too: its imports then skip compiling, which TCG makes slow), and in
    ``bpf-objects/`` the tests' BPF programs compiled with clang (tests/bpfc.py)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in PROJECT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, job / name, ignore=ignore)
        elif (ROOT / name).exists():
            shutil.copy(ROOT / name, job)
    (job / "vendor").mkdir()
    for name in VENDOR:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"matrix: {name} is not importable by {sys.executable}"
                             " (run it with the project's venv)")
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, job / "vendor" / name, ignore=ignore)
        else:
            shutil.copy(origin, job / "vendor")
    # hypothesis registers its pytest plugin through an entry point: keep its metadata
    site = Path(importlib.util.find_spec("hypothesis").origin).parent.parent  # type: ignore[arg-type,union-attr]
    for dist in site.glob("*.dist-info"):
        if dist.name.split("-")[0].lower() in ("hypothesis", "pytest", "pluggy", "iniconfig",
                                                "packaging", "pygments", "sortedcontainers",
                                                "pyelftools"):
            shutil.copytree(dist, job / "vendor" / dist.name)
    sys.path.insert(0, str(ROOT / "tests"))
    import bpfc  # the tests' C programs: the guests have no clang

    bpfc.compile_all(job / "bpf-objects")
    if not compileall.compile_dir(str(job), ddir=GUEST_DIR, quiet=1, workers=0):
        raise SystemExit(f"matrix: compiling {job} failed")


@dataclass
class Outcome:
    kernel: Kernel
    ok: bool
    lines: list[str]
    seconds: float


_print_lock = threading.Lock()
_running: list[subprocess.Popen[bytes]] = []  # run-on-kernel.sh processes


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (qemu runs under ``timeout``, in its own process
    group: killing run-on-kernel.sh alone would leave the VM running)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def stop_vms() -> None:
    """Terminate the VMs this process started, and what runs them."""
    for p in list(_running):
        for pid in [*descendants(p.pid), p.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def run_kernel(k: Kernel, job: Path, out: Path, run_on_kernel: Path, steps: int,
               smp: str | None) -> Outcome:
    t0 = time.monotonic()
    dest = out / k.kver
    dest.mkdir(parents=True, exist_ok=True)
    argv = ["bash", str(run_on_kernel), "-o", str(dest), "-t", "1500", k.kver, str(job),
            "python3", "tests/kernels/guest.py", k.profile, str(steps)]
    for nodeid in DESELECT:
        argv += ["--deselect", nodeid]
    for path in IGNORE:
        argv += ["--ignore", path]
    env = dict(os.environ)
    if smp:
        env["OLDK_SMP"] = smp
    with open(dest / "guest.log", "w") as log, open(dest / "oldk.log", "w") as err:
        p = subprocess.Popen(argv, stdout=log, stderr=err, env=env)
        _running.append(p)
        rc = p.wait()
        _running.remove(p)
    lines: list[str] = []
    result_file = dest / "out" / "result.json"
    if not result_file.exists():
        tail = (dest / "oldk.log").read_text().splitlines()[-15:]
        lines += [f"no result from the guest (run-on-kernel.sh exit {rc}):", *tail]
        return Outcome(k, False, lines, time.monotonic() - t0)
    r = json.loads(result_file.read_text())
    lines.append(f"kernel   {r['release']} = Debian {r['debian']} (upstream {r['upstream']}),"
                 f" profile {k.profile}")
    p = r["pytest"]
    lines.append(f"pytest   {p['summary']} ({p['seconds']:.0f} s)")
    lines += [f"         FAILED {t}" for t in p["failed"]]
    lines += [f"         {s}" for s in p["skipped"]]
    pr = r["probe"]
    if "features" in pr:
        present = [f for f, v in pr["features"].items() if v]
        absent = [f for f, v in pr["features"].items() if v is False]
        lines.append(f"probe    present: {' '.join(present)}")
        lines.append(f"         absent: {' '.join(absent) or '-'}")
        for f, why in pr["cannot_tell"].items():
            lines.append(f"         cannot tell {f}: {why}")
        lines.append(f"         Profile.diff(probe(host), of({k.profile!r})) ="
                     f" {pr['diff'] or '{}'}")
    else:
        lines.append(f"probe    FAILED: {pr.get('error', '')}")
    for against, d in r["differential"].items():
        lines.append(f"differential --against {against}: {'ok' if d['ok'] else 'FAILED'}:"
                     f" {d['summary']} ({d['seconds']:.0f} s)")
    char_ok, char_text = characterize(dest, k.profile)
    lines.append(f"characterize host vs model:{k.profile}: {char_text}")
    seconds = time.monotonic() - t0
    vm = (dest / "oldk.log").read_text().rsplit("VM wall time ", 1)[-1].split("s", 1)[0]
    lines.append(f"time     {seconds:.0f} s (VM {vm} s; in the guest: probe"
                 f" {pr['seconds']:.0f} s, pytest {p['seconds']:.0f} s)")
    ok = rc == 0 and r["ok"] and char_ok
    return Outcome(k, ok, lines, seconds)


def characterize(dest: Path, profile: str) -> tuple[bool, str]:
    """characterize.py model:PROFILE here, diffed with the guest's host output."""
    real = dest / "out" / "characterize.txt"
    model = dest / "out" / "characterize-model.txt"
    with open(model, "w") as f:
        subprocess.run([sys.executable, str(HERE / "characterize.py"), f"model:{profile}"],
                       stdout=f, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), check=True)
    a, b = real.read_text().splitlines(), model.read_text().splitlines()
    differ = [f"{x!r} <> model {y!r}" for x, y in zip(a, b, strict=False) if x != y]
    if len(a) != len(b):
        differ.append(f"{len(a)} lines <> model {len(b)}")
    if differ:
        return False, f"{len(differ)} differences: " + "; ".join(differ)
    return True, f"identical ({len(a)} requests)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kvers", nargs="*", help="KVERs of MATRIX to run (default: all)")
    parser.add_argument("--jobs", type=int, default=len(MATRIX),
                        help="VMs at a time (default: all; each gets one vCPU)")
    parser.add_argument("--steps", type=int, default=STEPS, help="differential steps per run")
    parser.add_argument("--out", type=Path, help="where outputs stay")
    parser.add_argument("--job-dir", type=Path,
                        help="only build the job directory there (to run by hand)")
    args = parser.parse_args(argv)
    if args.job_dir:
        args.job_dir.mkdir(parents=True)
        build_job(args.job_dir)
        return 0
    kernels = [k for k in MATRIX if not args.kvers or k.kver in args.kvers]
    if not kernels:
        parser.error(f"no such kernel in MATRIX: {args.kvers}")
    run_on_kernel = Path(os.environ.get("RUN_ON_KERNEL",
                                        ROOT.parent / "shared" / "tools" / "run-on-kernel.sh"))
    if not run_on_kernel.is_file():
        raise SystemExit(f"matrix: no {run_on_kernel} (the shared tools beside the project)")
    out = args.out or Path(tempfile.mkdtemp(prefix="cgbpf-matrix-"))
    out.mkdir(parents=True, exist_ok=True)
    for path, reason in IGNORE.items():
        print(f"not collected in the guests: {path}: {reason}")
    for nodeid, reason in DESELECT.items():
        print(f"deselected in the guests: {nodeid}: {reason}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    smp = os.environ.get("OLDK_SMP") or ("1" if args.jobs > 1 else None)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="cgbpf-matrix-job-") as tmp:
        job = Path(tmp)
        build_job(job)
        pool = concurrent.futures.ThreadPoolExecutor(args.jobs)
        try:
            futures = [pool.submit(run_kernel, k, job, out, run_on_kernel, args.steps, smp)
                       for k in kernels]
            for fut in concurrent.futures.as_completed(futures):
                o = fut.result()
                outcomes.append(o)
                with _print_lock:
                    print(f"\n== {o.kernel.kver}: {'ok' if o.ok else 'FAILED'}", flush=True)
                    print("\n".join(o.lines), flush=True)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_vms()
            raise
        pool.shutdown()
    failed = [o.kernel.kver for o in outcomes if not o.ok]
    if args.out is None and not failed:
        shutil.rmtree(out)
    print(f"\nmatrix: {len(kernels) - len(failed)} of {len(kernels)} kernels ok"
          f"{' (failed: ' + ', '.join(failed) + ')' if failed else ''},"
          f" {time.monotonic() - t0:.0f} s"
          + (f"; outputs in {out}" if out.exists() else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
