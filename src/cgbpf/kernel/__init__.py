"""Kernels cgbpf can talk to, behind one protocol (the seam), and the default one."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from ..errors import BpfError
from .host import HostKernel
from .protocol import Kernel

if TYPE_CHECKING:
    from ..model import ModelKernel, Profile

__all__ = ["HostKernel", "Kernel", "default_kernel", "host", "model"]

_host: HostKernel | None = None
_model: Kernel | None = None


def host() -> HostKernel:
    """The running kernel.  Raises :class:`BpfError` if it has no bpf(2) or no cgroup2
    mount, saying which."""
    global _host
    if _host is None:
        from .._sys import invalid  # (the syscall layer sits on this package)

        k = HostKernel()
        try:
            invalid(k)  # EINVAL if bpf(2) exists
        except OSError as e:
            if e.errno == errno.ENOSYS:
                raise BpfError(errno.ENOSYS, "this kernel has no bpf(2) syscall",
                               hint="needs CONFIG_BPF_SYSCALL=y") from e
        try:
            k.cgroup_root  # noqa: B018 - find the mount now, to fail early and clearly
        except OSError as e:
            raise BpfError(errno.ENOENT, str(e.strerror),
                           hint="mount it: mount -t cgroup2 none /sys/fs/cgroup") from e
        _host = k
    return _host


def model(version: str | Profile = "6.18", **options: Any) -> ModelKernel:
    """A fresh model machine (pure Python, no privileges needed), behaving like Linux
    ``version``: a named profile ("5.6" ... "6.18" as released, "6.12.100" ... as a
    distribution ships it), ``"host"`` (the running kernel, probed: a model of the machine
    you deploy to; probing needs root) or a :class:`~cgbpf.model.Profile`.  ``options`` go to
    :class:`~cgbpf.model.ModelKernel` (``lag``, ``caps``, ``uid``, ``umask``…)."""
    from ..model import ModelKernel

    return ModelKernel(version, **options)


def default_kernel() -> Kernel:
    """The kernel objects use when none is given: ``CGBPF_KERNEL=host|model`` (one model
    machine per process), else host."""
    global _model
    choice = os.environ.get("CGBPF_KERNEL", "host")
    if choice == "host":
        return host()
    if choice == "model":
        if _model is None:
            _model = model()
        return _model
    raise BpfError(errno.EINVAL, f"CGBPF_KERNEL={choice!r}", hint="use host or model")
