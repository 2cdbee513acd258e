"""The README's "Programs in C" example as written: its C source saved as count.c, its
clang line run, its Python run (as a reader would, in a fresh interpreter), on the host:
the example sends real packets.  (Its Python block is fenced ``py``, not ``python``:
test_readme.py runs the ``python`` blocks, which need no compiled object.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bpfc import CI, CLANG
from cgbpf.kernel import Kernel
from cgtest import host_only

ROOT = Path(__file__).resolve().parent.parent
SECTION = (ROOT / "README.md").read_text().split("## Programs in C\n", 1)[1].split("\n## ", 1)[0]


def block(lang: str) -> str:
    found = re.findall(rf"```{lang}\n(.*?)```", SECTION, re.S)
    assert len(found) == 1, f"one {lang} block in the section"
    return str(found[0])


@host_only
def test_programs_in_c_example_runs(kernel: Kernel, tmp_path: Path) -> None:
    if shutil.which(CLANG) is None:
        if CI:
            pytest.fail("CI=true and clang is not installed")
        pytest.skip("clang is not installed (make deps installs it)")
    (tmp_path / "count.c").write_text(block("c"))
    cc = subprocess.run(["bash", "-ec", block("sh")], cwd=tmp_path, capture_output=True,
                        text=True, check=False)
    assert cc.returncode == 0, cc.stderr
    code = block("py").replace('"my-counted-service"', f'"cgbpf-test-{os.getpid()}-readme-c"')
    run = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", code],
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src"),
                              "CGBPF_KERNEL": kernel.name},
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [
        "cgroup_skb/egress ['.bss', '.rodata'] ['packets', 'verdict']", "3 sent, 3 counted"]
