"""The Kernel protocol surface of the model: file system, fds, processes, sockets,
deferred work."""

from __future__ import annotations

import errno as E

import pytest
from model_abi import ROOT, cgroup, err, link_create, pin, prog_for

from cgbpf import uapi
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel

EG = uapi.AttachType.CGROUP_INET_EGRESS


def test_is_a_kernel(k: ModelKernel) -> None:
    assert isinstance(k, Kernel)
    assert (k.name, k.cgroup_root) == ("model", ROOT)


def test_fs_magic_and_cgroup_ids(k: ModelKernel) -> None:
    k.mkdir(f"{ROOT}/a")
    assert k.fs_magic(f"{ROOT}/a") == k.fs_magic(ROOT) == uapi.CGROUP2_MAGIC
    assert k.fs_magic("/sys/fs/bpf") == uapi.BPF_FS_MAGIC
    assert k.fs_magic("/tmp") == uapi.TMPFS_MAGIC
    ids = {k.cgroup_id(ROOT), k.cgroup_id(f"{ROOT}/a")}
    k.rmdir(f"{ROOT}/a")
    k.mkdir(f"{ROOT}/a")
    ids.add(k.cgroup_id(f"{ROOT}/a"))
    assert len(ids) == 3  # unique, like inode numbers
    assert err(k.fs_magic, "/nope") == E.ENOENT


def test_mkdir_rmdir_unlink_rules(k: ModelKernel) -> None:
    k.mkdir(f"{ROOT}/a")
    assert err(k.mkdir, f"{ROOT}/a") == E.EEXIST
    assert err(k.mkdir, f"{ROOT}/x/y") == E.ENOENT
    assert err(k.mkdir, f"{ROOT}/a/cgroup.procs") == E.EEXIST
    k.mkdir(f"{ROOT}/a/b")
    assert err(k.rmdir, f"{ROOT}/a") == E.EBUSY
    assert err(k.rmdir, f"{ROOT}/a/cgroup.procs") == E.ENOTDIR
    assert err(k.unlink, f"{ROOT}/a/cgroup.procs") == E.EPERM
    assert err(k.rmdir, f"{ROOT}/nope") == E.ENOENT
    assert err(k.rmdir, ROOT) == E.EBUSY
    k.mkdir("/tmp/d")
    k.mkdir("/tmp/d/e")
    assert err(k.rmdir, "/tmp/d") == E.ENOTEMPTY
    assert err(k.unlink, "/tmp/d") == E.EISDIR
    assert err(k.open_dir, f"{ROOT}/a/cgroup.procs") == E.ENOTDIR
    assert k.open_dir(f"{ROOT}/a/b/../b/./") >= 3


def test_fds_are_lowest_free_and_dup(k: ModelKernel) -> None:
    a, b = k.open_dir("/tmp"), k.open_dir("/tmp")
    assert (a, b) == (3, 4)
    k.close(a)
    assert k.dup(b) == 3
    assert err(k.close, a + 10) == E.EBADF
    assert err(k.fd_kind, 99) == E.EBADF
    assert k.fdinfo(b)["pos"] == "0"


def test_processes_and_exit(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    lk = link_create(k, prog_for(k, EG), c)
    child = k.process(fork=True)
    assert child.fd_kind(lk) == "link"
    k.close(lk)
    child.exit()  # the last owner goes: synchronous detach
    from model_abi import query

    assert query(k, c).prog_cnt == 0
    assert err(child.open_dir, "/tmp") == E.ESRCH
    other = k.process()
    assert err(other.fd_kind, c) == E.EBADF  # its own fd table
    with pytest.raises(ValueError):
        k.process(caps={"CAP_WIZARD"})


def test_socket_needs_a_cgroup(k: ModelKernel) -> None:
    assert err(k.socket, "/tmp") == E.EINVAL
    assert err(k.socket, f"{ROOT}/nope") == E.ENOENT


def test_lag_zero_runs_work_on_the_next_call() -> None:
    k = ModelKernel(lag=0)
    lk = link_create(k, prog_for(k, EG), cgroup(k, "a"))
    pin(k, lk, "/sys/fs/bpf/l")
    k.close(lk)
    k.unlink("/sys/fs/bpf/l")
    assert k.pending == 1
    k.fs_magic("/")
    assert k.pending == 0


def test_mount_needs_sys_admin(k: ModelKernel) -> None:
    k.mkdir("/tmp/m")
    weak = k.process(caps={"CAP_BPF"})
    assert err(weak.mount_bpffs, "/tmp/m") == E.EPERM
    assert err(k.mount_bpffs, "/tmp/none") == E.ENOENT
    k.mount_bpffs("/tmp/m")
    assert err(weak.umount, "/tmp/m") == E.EPERM
    k.umount("/tmp/m")
    assert k.fs_magic("/tmp/m") == 0x01021994
