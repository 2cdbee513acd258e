"""Opening and creating cgroups: the checks look at what was opened (one path lookup, no
window between check and open), and nothing is created before the checks that would
refuse it."""

from __future__ import annotations

import contextlib
import errno
import os

import pytest

from cgbpf import BpfError, Cgroup, NotACgroup2
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import host_only


def _v1_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        return next((line.split()[1] for line in f if line.split()[2] == "cgroup"), None)


@host_only
def test_create_under_cgroup_v1_makes_nothing(kernel: Kernel) -> None:
    mount = _v1_mount()
    if mount is None:
        pytest.skip("no cgroup v1 hierarchy is mounted here")
    path = os.path.join(mount, f"cgbpf-test-v1-{os.getpid()}")
    try:
        with pytest.raises(NotACgroup2) as e:
            Cgroup.create(path, kernel=kernel)
        assert e.value.errno == errno.EBADF and "cgroup v1" in str(e.value)
        assert not os.path.exists(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)  # only if the refusal came too late


def test_create_under_a_missing_parent(kernel: Kernel, scratch: Scratch) -> None:
    with pytest.raises(BpfError) as e:
        Cgroup.create(scratch.path("nope/child"), kernel=kernel)
    assert e.value.errno == errno.ENOENT and "nope" in str(e.value)


def test_open_checks_the_directory_it_opened(kernel: Kernel, scratch: Scratch) -> None:
    """The id and the file system come from the fd: the same as by path."""
    path = scratch.mkdir("a")
    with Cgroup.open(path, kernel=kernel) as cg:
        assert cg.id == kernel.cgroup_id(path) == kernel.cgroup_id(cg.fileno())
        assert kernel.fs_magic(cg.fileno()) == kernel.fs_magic(path)
    bpffs = scratch.bpffs()
    with pytest.raises(NotACgroup2, match="bpffs"):
        Cgroup.open(bpffs, kernel=kernel)
    with pytest.raises(NotACgroup2, match="cgroup2 file"):
        Cgroup.open(os.path.join(path, "cgroup.procs"), kernel=kernel)
