"""Kernels cgbpf can talk to, behind one protocol (the seam), and the default one."""

from __future__ import annotations

import errno
import os

from ..errors import BpfError
from ..uapi import GetIdAttr
from .host import HostKernel
from .protocol import Kernel

__all__ = ["HostKernel", "Kernel", "default_kernel", "host"]

_host: HostKernel | None = None


def host() -> HostKernel:
    """The running kernel.  Raises :class:`BpfError` if it has no bpf(2) or no cgroup2
    mount, saying which."""
    global _host
    if _host is None:
        k = HostKernel()
        try:
            k.bpf(-1, GetIdAttr())  # an invalid command: EINVAL if bpf(2) exists
        except OSError as e:
            if e.errno == errno.ENOSYS:
                raise BpfError(errno.ENOSYS, "this kernel has no bpf(2) syscall",
                               hint="needs CONFIG_BPF_SYSCALL=y") from None
        try:
            k.cgroup_root  # noqa: B018 - find the mount now, to fail early and clearly
        except OSError as e:
            raise BpfError(errno.ENOENT, str(e.strerror),
                           hint="mount it: mount -t cgroup2 none /sys/fs/cgroup") from None
        _host = k
    return _host


def default_kernel() -> Kernel:
    """The kernel objects use when none is given: ``CGBPF_KERNEL=host|model``, else host."""
    choice = os.environ.get("CGBPF_KERNEL", "host")
    if choice == "host":
        return host()
    raise BpfError(errno.EINVAL, f"CGBPF_KERNEL={choice!r}", hint="use host")
