"""``cgbpf demo``: runs the tour on the real kernel, leaves nothing behind (Ctrl-C
included), and says what is missing when it cannot run."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

from cgbpf.kernel import Kernel
from cgtest import host_only

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": "error::ResourceWarning"}
DEMO = [sys.executable, "-X", "dev", "-m", "cgbpf", "demo"]


def demo_leftovers(k: Kernel, pid: int) -> list[str]:
    """The cgroups and bpffs mounts the demo process ``pid`` left (its names carry its
    pid; other runs on the machine are not this test's to judge)."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2] == "bpf"
                  and line.split()[1].startswith(f"/tmp/cgbpf-bpffs-{pid}-")]
    return glob.glob(os.path.join(k.cgroup_root, f"cgbpf-demo-{pid}-*")) + mounts


@host_only
def test_demo_runs_and_cleans_up(kernel: Kernel) -> None:
    proc = subprocess.Popen(DEMO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert err == ""  # no warning, no traceback
    assert "UDP datagrams from a/b/c (5 delivered)" in out
    assert_tour(out)
    assert demo_leftovers(kernel, proc.pid) == []


def assert_tour(out: str) -> None:
    """Every step of the tour reported what the kernel did."""
    for needle in ("count_main ran 15x, count_alt ran 0x", "refused, EPERM",
                   "runs count_main -> count_alt -> count_main",
                   "legacy PROG_DETACH of count_main from a/b/c: refused, ENOENT",
                   "reopened", "defunct", "refused, ENOLINK", "done:"):
        assert needle in out


@host_only
def test_demo_interrupted_cleans_up(kernel: Kernel) -> None:
    proc = subprocess.Popen(DEMO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("3."):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted" in out and "Traceback" not in err
    assert demo_leftovers(kernel, proc.pid) == []


NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


@pytest.fixture
def unprivileged() -> Iterator[tuple[list[str], dict[str, str]]]:
    """How to run the demo as uid 65534 wherever this checkout lives (a 0700 directory
    included): a world-readable copy of the package in a fresh temporary directory
    (removed afterwards), and an interpreter that user can run, tried in turn."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run the demo as another user")
    tmp = tempfile.mkdtemp(prefix="cgbpf-src-")
    try:
        os.chmod(tmp, 0o755)
        shutil.copytree(os.path.join(SRC, "cgbpf"), os.path.join(tmp, "cgbpf"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(tmp):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        env = {**ENV, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        yield [setpriv, *NOBODY, python_for_nobody(setpriv, env)], env
    finally:
        shutil.rmtree(tmp)


def python_for_nobody(setpriv: str, env: dict[str, str]) -> str:
    """The first of this interpreter, /usr/bin/python3 and python3 on the default PATH
    that uid 65534 can run, is Python >= 3.10 and imports cgbpf from ``env``'s path."""
    candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3", path=os.defpath)]
    check = "import sys, cgbpf; sys.exit(sys.version_info < (3, 10))"
    tried = []
    for exe in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        run = subprocess.run([setpriv, *NOBODY, exe, "-c", check], env=env, cwd="/",
                             capture_output=True, text=True, timeout=30, check=False)
        if run.returncode == 0:
            return exe
        why = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
        tried.append(f"{exe} ({os.path.realpath(exe)}): {why}")
    pytest.fail("no interpreter that uid 65534 can run, Python >= 3.10, importing cgbpf "
                "from a world-readable copy: " + "; ".join(tried))


@host_only
def test_demo_without_root_says_why_and_runs_on_the_model(
        kernel: Kernel, unprivileged: tuple[list[str], dict[str, str]]) -> None:
    prefix, env = unprivileged
    run = subprocess.run([*prefix, *DEMO[1:]], env=env, capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""
    assert "the host kernel cannot run it: root is needed" in run.stdout
    assert "running on the model kernel instead" in run.stdout
    assert_tour(run.stdout)


def test_demo_on_the_model() -> None:
    run = subprocess.run(DEMO, env={**ENV, "CGBPF_KERNEL": "model"}, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == "", run.stdout + run.stderr
    assert "cgbpf demo on the model kernel" in run.stdout
    assert "UDP datagrams of a model process from a/b/c (5 delivered): count_main ran 15x" \
        in run.stdout  # the model's VM ran the programs
    assert_tour(run.stdout)
