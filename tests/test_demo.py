"""``cgbpf demo``: runs the tour on the real kernel, leaves nothing behind (Ctrl-C
included), and says what is missing when it cannot run."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys

from cgbpf.kernel import Kernel
from cgtest import host_only

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": "error::ResourceWarning"}
DEMO = [sys.executable, "-X", "dev", "-m", "cgbpf", "demo"]


def demo_leftovers(k: Kernel) -> list[str]:
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2] == "bpf"
                  and line.split()[1].startswith("/tmp/cgbpf-bpffs-")]
    return glob.glob(os.path.join(k.cgroup_root, "cgbpf-demo-*")) + mounts


@host_only
def test_demo_runs_and_cleans_up(kernel: Kernel) -> None:
    run = subprocess.run(DEMO, env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""  # no warning, no traceback
    assert "UDP datagrams from a/b/c (5 delivered)" in run.stdout
    assert_tour(run.stdout)
    assert demo_leftovers(kernel) == []


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
    assert demo_leftovers(kernel) == []


@host_only
def test_demo_without_root_says_why_and_runs_on_the_model(kernel: Kernel) -> None:
    run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--inh-caps=-all", *DEMO], env=ENV, capture_output=True,
                         text=True, timeout=60, cwd="/")
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
    assert "(model: from the effective array)" in run.stdout
    assert_tour(run.stdout)
