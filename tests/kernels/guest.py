"""One kernel of the matrix, inside its guest (run by matrix.py through run-on-kernel.sh).

    python3 tests/kernels/guest.py PROFILE STEPS [--deselect NODEID]...

In the job directory (``/job/dir``: ``src/``, ``tests/``, ``pyproject.toml``, ``vendor/``
with the pure-Python dependencies, ``bpf-objects/`` with the tests' C programs compiled
on the host), as root on the guest's kernel:

1. the kernel: ``uname -r`` and ``/proc/version`` (the upstream version of the build);
2. the probes: ``probe_all(cgbpf.host())`` and ``Profile.diff(Profile.probe(host),
   Profile.of(PROFILE))``, which must be empty;
3. the host tests: pytest on the ``host`` parameters of the suite (``-k host``), minus
   the deselected tests (matrix.py gives each a reason);
4. the differential test, bounded: ``tests/differential.py --steps STEPS --against host``
   (the model calibrated here) and ``--against PROFILE``;
5. ``tests/kernels/characterize.py host`` (diffed with ``model:PROFILE`` by matrix.py).

Everything lands in ``out/`` (``result.json`` sums it up); the rest of the job directory
is removed at the end, so that only ``out/`` travels back.  Exit 0 when every phase passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "out")
PATH = os.pathsep.join(os.path.join(ROOT, d) for d in ("src", "vendor"))
#: The tests' BPF programs in C, compiled by matrix.py on the host (no clang here).
BPF_OBJECTS = os.path.join(ROOT, "bpf-objects")


def run(name: str, argv: list[str], timeout: float, *, echo: bool = True) -> tuple[int, str, float]:
    """``argv`` from the job directory, its output kept in ``out/<name>.txt`` and, with
    ``echo``, streamed to ours (the guest's console log: where a hang shows): (exit code,
    output, seconds).  Killed after ``timeout`` seconds (exit code 124)."""
    env = dict(os.environ, PYTHONPATH=PATH, CI="true", CGBPF_BPF_CACHE=BPF_OBJECTS)
    t0 = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as p:
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(f"  {name}| {line}")
                sys.stdout.flush()
        rc = p.wait()
        timed_out = not timer.is_alive()
        timer.cancel()
    if timed_out:
        rc = 124
        lines.append(f"\nTIMEOUT after {timeout:.0f} s: killed\n")
    text = "".join(lines)
    with open(os.path.join(OUT, f"{name}.txt"), "w") as f:
        f.write(text)
    return rc, text, time.monotonic() - t0


PROBE = """
import json, sys
import cgbpf
from cgbpf.kernel import probe
from cgbpf.model import Profile
host = cgbpf.host()
found = probe.probe_all(host)
why = {k: probe.why(host, k) for k, v in found.items() if v is None}
diff = {}
if not why:
    diff = Profile.diff(Profile.probe(host), Profile.of(sys.argv[1]))
print(json.dumps({"features": found, "cannot_tell": why,
                  "diff": {k: list(v) for k, v in diff.items()}}))
"""


def probe_phase(profile: str) -> dict[str, object]:
    rc, text, seconds = run("probe", [sys.executable, "-c", PROBE, profile], 300, echo=False)
    try:
        result = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": text[-2000:], "seconds": seconds}
    result["ok"] = rc == 0 and not result["diff"] and not result["cannot_tell"]
    result["seconds"] = seconds
    return result


def pytest_phase(deselect: list[str], ignore: list[str]) -> dict[str, object]:
    argv = [sys.executable, "-m", "pytest", "-v", "-k", "host", "-p", "no:cacheprovider",
            "--junitxml", os.path.join(OUT, "junit.xml")]
    for nodeid in deselect:
        argv += ["--deselect", nodeid]
    for path in ignore:
        argv += ["--ignore", path]
    rc, text, seconds = run("pytest", argv, 900)
    summary = next((line.strip("= ") for line in reversed(text.splitlines())
                    if re.search(r"\d+ (passed|failed|error|skipped|deselected)", line)), "")
    failed = [line.split(" - ")[0].split(" ", 1)[1] for line in text.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    skipped = [line for line in text.splitlines() if line.startswith("SKIPPED ")]
    return {"ok": rc == 0, "rc": rc, "summary": summary, "failed": failed,
            "skipped": skipped, "seconds": seconds}


def differential_phase(against: str, steps: int) -> dict[str, object]:
    script = os.path.join("tests", "differential.py")
    rc, text, seconds = run(f"differential-{against}",
                            [sys.executable, script, "--steps", str(steps), "--against", against],
                            600)
    last = text.strip().splitlines()[-1] if text.strip() else ""
    if rc == 2 and "--against" in text:
        last = "tests/differential.py has no --against yet: " + last
    return {"ok": rc == 0, "rc": rc, "summary": last, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("steps", type=int)
    parser.add_argument("--deselect", action="append", default=[])
    parser.add_argument("--ignore", action="append", default=[])
    parser.add_argument("--keep", action="store_true", help="keep the job directory")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    t0 = time.monotonic()
    with open("/proc/version") as f:
        version = f.read().strip()
    result: dict[str, object] = {"profile": args.profile, "release": os.uname().release,
                                 "version": version}
    # "... #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-11-26)": the last "Debian X.Y.Z"
    # (the first is the compiler's)
    builds = re.findall(r"Debian ((\d+\.\d+\.\d+)\S*) \(", str(result["version"]))
    result["debian"], result["upstream"] = builds[-1] if builds else ("", "")
    print(f"kernel: {result['release']} ({result['debian'] or result['version']})", flush=True)
    result["probe"] = probe_phase(args.profile)
    print(f"probe: {json.dumps(result['probe'])}", flush=True)
    result["pytest"] = pytest_phase(args.deselect, args.ignore)
    print(f"pytest: {result['pytest']['summary']}", flush=True)  # type: ignore[index]
    result["differential"] = {}
    for against in ("host", args.profile):
        d = differential_phase(against, args.steps)
        result["differential"][against] = d  # type: ignore[index]
        print(f"differential --against {against}: {d['summary']}", flush=True)
    rc, _, seconds = run("characterize", [sys.executable, "tests/kernels/characterize.py",
                                          "host"], 300, echo=False)
    result["characterize"] = {"ok": rc == 0, "seconds": seconds}
    result["seconds"] = time.monotonic() - t0
    ok = all(p["ok"] for p in (result["probe"], result["pytest"], result["characterize"],  # type: ignore[index]
                               *result["differential"].values()))  # type: ignore[attr-defined]
    result["ok"] = ok
    with open(os.path.join(OUT, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    if not args.keep:
        for name in os.listdir(ROOT):
            if name != "out":
                path = os.path.join(ROOT, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
