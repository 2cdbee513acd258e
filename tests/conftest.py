"""Fixtures: ``kernel`` runs a test on both kernels, the host (a failure, not a skip,
under CI=true when it cannot run) and a fresh model machine of the host's kernel
(``model("host")``: calibrated by probing it; mainline 6.18 where the host cannot be
probed); ``cgtest.host_only`` keeps a test on the host (programs that must run, real
processes).  A scratch cgroup subtree per test, and a leftover check for the session."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pytest

import cgbpf
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import host_problem, need_host

PREFIX = "cgbpf-test"


@pytest.fixture(params=["host", "model"])
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """Each test that takes ``kernel`` runs on the real kernel and on the model."""
    if request.param == "host":
        return need_host()
    return cgbpf.model("6.18" if host_problem() else "host")


@pytest.fixture
def scratch(kernel: Kernel) -> Iterator[Scratch]:
    with Scratch(kernel, PREFIX) as s:
        yield s


def leftovers() -> list[str]:
    """This run's test cgroups and bpffs mounts that are still there (another run's, on
    the same machine at the same time, are not this run's to judge)."""
    mine = f"{os.getpid()}-"
    found = []
    try:
        root = cgbpf.host().cgroup_root
        found += glob.glob(os.path.join(root, f"{PREFIX}-{mine}*"))
    except cgbpf.BpfError:
        pass
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f if line.split()[2] == "bpf"
                  and line.split()[1].startswith(f"/tmp/cgbpf-bpffs-{mine}")]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = leftovers()
    if left:
        print(f"\nLEFTOVERS after the test run (a test did not clean up): {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
