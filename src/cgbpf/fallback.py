"""A stand-in for a link on kernels without cgroup bpf_link (before Linux 5.7): a legacy
PROG_ATTACH in MULTI mode, updated with BPF_F_REPLACE (5.6) and detached on close.

It behaves like a :class:`~cgbpf.link.Link` where it can, and says where it cannot: it is
**not** detached when the process dies (nothing in the kernel owns it), it cannot be
pinned, it has no id, and its programs can be removed by anyone's PROG_DETACH.  Made only
when asked for (``cg.link(..., fallback=True)``), always with a :class:`FallbackWarning`.
"""

from __future__ import annotations

import errno
import warnings
from typing import NoReturn

from . import _bpf
from ._fd import FdObject
from .errors import BpfError, ExpectedProgramMismatch, LinkDefunct, NotSupported
from .kernel import Kernel
from .link import LinkInfo
from .program import Program
from .uapi import F_REPLACE, AttachMode, AttachType, LinkType, name_of


class FallbackWarning(UserWarning):
    """A link was emulated with a legacy attachment: it will outlive a crash."""


def _no(what: str) -> NoReturn:
    raise NotSupported(f"{what} of a legacy stand-in for a link (it is no kernel object)",
                       "5.7")


class LegacyLink(FdObject):
    """A legacy MULTI attachment that acts like a :class:`~cgbpf.link.Link` (``mode ==
    "legacy"``): the same methods, with :class:`NotSupported` where the kernel has no
    link to do it with.  It owns its own fds of the cgroup (its ``fileno()``) and of the
    program; closing it detaches the program."""

    mode = "legacy"
    #: No kernel object, so no id; :meth:`info` reports 0.
    id = 0

    def __init__(self, kernel: Kernel, cgroup_fd: int, cgroup_path: str, prog: Program,
                 attach_type: AttachType | int) -> None:
        self._prog = prog.dup()
        try:
            super().__init__(kernel, kernel.dup(cgroup_fd))
        except BaseException:
            self._prog.close()
            raise
        self._path, self._cgroup_id = cgroup_path, kernel.cgroup_id(self._fd)
        self.attach_type = attach_type
        #: Always empty: a legacy attachment cannot be pinned.
        self.pins: list[str] = []
        self._attached = False
        try:
            self._attach(prog)
        except BaseException:
            self.close()
            raise
        self._attached = True
        warnings.warn(f"{self!r}: this kernel has no cgroup bpf_link (Linux 5.7); the "
                      "program was attached with legacy PROG_ATTACH (MULTI) and stays "
                      "attached if this process dies before close()", FallbackWarning,
                      stacklevel=3)

    def __repr__(self) -> str:
        state = f"prog {self._prog.id} on {self._path}" if self._attached else "detached"
        return f"<LegacyLink {name_of(self.attach_type)} {state}>"

    def _attach(self, prog: Program, replace: Program | None = None) -> None:
        _bpf.prog_attach(self.kernel, self.fd, prog.fd, prog.type, self.attach_type,
                         lambda: f"{self!r}: attach {prog!r}",
                         flags=AttachMode.MULTI | (F_REPLACE if replace else 0),
                         replace_fd=replace.fd if replace else 0)

    def update(self, new: Program, *, expected: Program | None = None) -> None:
        """Swap the program in place (PROG_ATTACH MULTI|REPLACE).  ``expected`` is checked
        by the library: the kernel cannot compare-and-swap a legacy entry."""
        if not self._attached:
            raise LinkDefunct(errno.ENOLINK, f"{self!r}", command="PROG_ATTACH",
                              hint="the program was detached")
        if expected is not None and expected.id != self._prog.id:
            raise ExpectedProgramMismatch(errno.EPERM, f"{self!r} expecting {expected!r}",
                                          command="PROG_ATTACH",
                                          hint="the attachment runs another program")
        self._attach(new, replace=self._prog)
        old, self._prog = self._prog, new.dup()
        old.close()

    def detach(self) -> None:
        """PROG_DETACH of the current program; idempotent, like LINK_DETACH."""
        if self._attached:
            _bpf.prog_detach(self.kernel, self.fd, self._prog.fd, self.attach_type,
                             lambda: f"{self!r}: detach")
            self._attached = False

    @property
    def defunct(self) -> bool:
        return not self._attached

    def info(self) -> LinkInfo:
        """What a link would report: id 0 (no kernel object), the cgroup id (0 once
        detached), the current program and the attach type."""
        return LinkInfo(0, LinkType.CGROUP, self._prog.id,
                        self._cgroup_id if self._attached else 0, self.attach_type)

    def pin(self, path: str) -> None:
        _no(f"pinning at {path}")

    def unpin(self, path: str | None = None) -> None:
        _no("unpinning")

    def fdinfo(self) -> dict[str, str]:
        _no("fdinfo")

    @classmethod
    def from_pin(cls, path: str, *, kernel: Kernel | None = None) -> LegacyLink:
        _no(f"opening a pin ({path})")

    @classmethod
    def from_id(cls, obj_id: int, *, kernel: Kernel | None = None) -> LegacyLink:
        _no(f"opening by id ({obj_id})")

    def _clone(self, fd: int) -> LegacyLink:
        _no("a second owner (dup)")

    def detach_fd(self) -> int:
        _no("taking the fd out")

    def close(self) -> None:
        """Detach (a cgroup already removed has nothing left to detach), then close."""
        if self.closed:
            return
        try:
            self.detach()
        except BpfError as e:
            if e.errno != errno.ENOENT:
                raise
        finally:
            self._prog.close()
            super().close()
