"""The README's examples run as written, one after the other as a reader would type
them, on the host and on the model (``CGBPF_KERNEL``).  On the host the names it makes
(the cgroup, the bpffs directory) get this run's test prefix, so that nothing outside
the test subtree is touched and a leftover is caught."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cgbpf.kernel import Kernel

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3 and "Cgroup.create" in BLOCKS[0]


@pytest.mark.parametrize("kernel", ["host", "model"], indirect=True)
def test_readme_examples_run(kernel: Kernel) -> None:
    """(The probing example needs root: the ``kernel`` fixture makes sure it is there.)"""
    code = "\n".join(BLOCKS)
    tag = f"{os.getpid()}-readme"
    code = code.replace('"my-service"', f'"cgbpf-test-{tag}"').replace(
        "/tmp/my-pins", f"/tmp/cgbpf-bpffs-{tag}")
    run = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", code],
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                              "CGBPF_KERNEL": kernel.name},
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "LinkInfo(" in run.stdout and "Query(" in run.stdout
    assert not os.path.exists(f"/tmp/cgbpf-bpffs-{tag}")
