"""cgbpf.testing for users' own tools: a project of its own that enables the plugin
gets each ``kernel`` test on the host and on the model, with a scratch subtree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cgtest import need_host

SRC = Path(__file__).resolve().parent.parent / "src"
TEST = '''
import cgbpf
from cgbpf import AttachType, Program, ProgType, asm
from cgbpf.testing.pytest_plugin import host_only


def test_link(kernel, scratch):
    prog = Program.load(asm.return_program(1), ProgType.CGROUP_SKB,
                        expected_attach_type=AttachType.CGROUP_INET_EGRESS, kernel=kernel)
    with prog, scratch.cgroup("a").link(prog) as link:
        assert link.info().prog_id == prog.id
    print("RAN ON", kernel.name)


@host_only
def test_host_only(kernel):
    assert kernel.name == "host"
'''


def test_a_users_project_runs_on_both_kernels(tmp_path: Path) -> None:
    need_host()  # the host half needs root
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["cgbpf.testing.pytest_plugin"]\n')
    (tmp_path / "test_mine.py").write_text(TEST)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout, run.stdout
    assert "RAN ON host" in run.stdout and "RAN ON model" in run.stdout
