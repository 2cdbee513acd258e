"""A pytest plugin: one test suite, two kernels.  ``pytest_plugins =
["cgbpf.testing.pytest_plugin"]`` in a ``conftest.py`` gives:

* ``kernel``: each test that takes it runs on the host (``cgbpf.host()``: root and a
  cgroup2 mount are needed; without them the test skips saying why, and fails under
  ``CI=true``) and on a fresh model machine of the host's kernel (``model("host")``,
  calibrated by probing; mainline 6.18 where the host cannot be probed; the profile
  ``CGBPF_TEST_MODEL`` names, if set).
* ``scratch``: a :class:`~cgbpf.testing.Scratch` subtree on that kernel, removed after.
* ``host_only``: a mark that keeps a test on the host (programs that must run, real
  processes or capabilities): ``@host_only`` on a test that takes ``kernel``.
* :func:`requires`: skip where cgbpf's own probe says the kernel lacks a feature.
* a check at the end of the run: cgroups named ``<prefix>-<pid>-*`` or bpffs mounts of
  this run still there fail it (``CGBPF_TEST_PREFIX``, default "cgbpf-test").
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator

import pytest

from ..errors import BpfError
from ..kernel import Kernel, host, model, probe
from . import Scratch

__all__ = ["PREFIX", "host_only", "host_problem", "kernel", "need_host", "requires",
           "scratch"]

#: The name prefix of test cgroups.
PREFIX = os.environ.get("CGBPF_TEST_PREFIX", "cgbpf-test")
CI = os.environ.get("CI") == "true"
#: The profile of the model half (``CGBPF_TEST_MODEL``, e.g. "6.1.192": run a suite on the
#: model of another kernel); default: the host's, probed.
MODEL = os.environ.get("CGBPF_TEST_MODEL", "")

#: Keep a test that takes ``kernel`` on the host only.
host_only = pytest.mark.parametrize("kernel", ["host"], indirect=True)


def host_problem() -> str | None:
    """Why the real kernel cannot be tested here, or None."""
    if os.geteuid() != 0:
        return "host tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)"
    try:
        host()
    except BpfError as e:
        return str(e)
    return None


def need_host() -> Kernel:
    """The host kernel; skip (fail under ``CI=true``) saying why it cannot be tested."""
    problem = host_problem()
    if problem:
        if CI:
            pytest.fail(f"CI=true and the host kernel cannot be tested: {problem}")
        pytest.skip(problem)
    return host()


def requires(kernel: Kernel, *features: str) -> None:
    """Skip the test where cgbpf's own probe says ``kernel`` lacks one of ``features``
    (keys of :data:`cgbpf.kernel.probe.FEATURES`), naming the feature and its first
    kernel.  Only a definite "absent" skips: present, or could not tell, and the test
    runs (and fails if the behaviour is wrong)."""
    for key in features:
        if probe.check(kernel, key) is False:
            f = probe.FEATURES[key]
            pytest.skip(f"{kernel!r} lacks {f.name} ({key}, since {f.since};"
                        f" probe: {f.how})")


@pytest.fixture(params=["host", "model"])
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """Each test that takes ``kernel`` runs on the real kernel and on the model."""
    if request.param == "host":
        return need_host()
    return model(MODEL or ("6.18" if host_problem() else "host"))


@pytest.fixture
def scratch(kernel: Kernel) -> Iterator[Scratch]:
    """A scratch cgroup subtree (and bpffs mounts) on ``kernel``, removed after."""
    with Scratch(kernel, PREFIX) as s:
        yield s


def leftovers() -> list[str]:
    """This run's test cgroups and bpffs mounts that are still there (another run's, on
    the same machine at the same time, are not this run's to judge)."""
    mine = f"{os.getpid()}-"
    found = []
    with contextlib.suppress(BpfError):
        found += glob.glob(os.path.join(host().cgroup_root, f"{PREFIX}-{mine}*"))
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f if line.split()[2] == "bpf"
                  and line.split()[1].startswith(f"/tmp/cgbpf-bpffs-{mine}")]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = leftovers()
    if left:
        print(f"\nLEFTOVERS after the test run (a test did not clean up): {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
