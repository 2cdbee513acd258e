"""Fixtures: ``kernel`` runs a test on both kernels, the host (a failure, not a skip,
under CI=true when it cannot run) and a fresh model machine; ``host`` is for tests that
need programs to run or real processes.  A scratch cgroup subtree per test, and a
leftover check for the session."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pytest

import cgbpf
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel

CI = os.environ.get("CI") == "true"
PREFIX = "cgbpf-test"


def host_problem() -> str | None:
    """Why the real kernel cannot be tested here, or None."""
    if os.geteuid() != 0:
        return "host tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)"
    try:
        cgbpf.host()
    except cgbpf.BpfError as e:
        return str(e)
    return None


def need_host() -> Kernel:
    problem = host_problem()
    if problem:
        if CI:
            pytest.fail(f"CI=true and the host kernel cannot be tested: {problem}")
        pytest.skip(problem)
    return cgbpf.host()


@pytest.fixture(params=["host", "model"])
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """Each test that takes ``kernel`` runs on the real kernel and on the model."""
    return need_host() if request.param == "host" else cgbpf.model()


#: For tests that need programs to run, real processes or real capabilities.
host_only = pytest.mark.parametrize("kernel", ["host"], indirect=True)


@pytest.fixture
def scratch(kernel: Kernel) -> Iterator[Scratch]:
    with Scratch(kernel, PREFIX) as s:
        yield s


def leftovers() -> list[str]:
    """Test cgroups and bpffs mounts that are still there."""
    found = []
    try:
        root = cgbpf.host().cgroup_root
        found += glob.glob(os.path.join(root, f"{PREFIX}-*"))
    except cgbpf.BpfError:
        pass
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f if line.split()[2] == "bpf"
                  and line.split()[1].startswith("/tmp/cgbpf-bpffs-")]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = leftovers()
    if left:
        print(f"\nLEFTOVERS after the test run (a test did not clean up): {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
