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
from typing import TYPE_CHECKING

from ._fd import FdObject
from .errors import BpfError, ExpectedProgramMismatch, LinkDefunct, NotSupported
from .link import LinkInfo
from .program import Program
from .uapi import AttachMode, AttachType, LinkType, name_of

if TYPE_CHECKING:
    from .cgroup import Cgroup


class FallbackWarning(UserWarning):
    """A link was emulated with a legacy attachment: it will outlive a crash."""


class LegacyLink(FdObject):
    """A legacy MULTI attachment that acts like a link (``mode == "legacy"``).  It owns
    its own cgroup and program fds; closing it detaches the program."""

    mode = "legacy"
    #: No kernel object, so no id; :meth:`info` reports 0.
    id = 0

    def __init__(self, cg: Cgroup, prog: Program, attach_type: AttachType | int) -> None:
        k = cg.kernel
        self._cg = type(cg)(k, k.dup(cg.fd), cg.path)
        super().__init__(k, self._cg.fd)
        self._prog = Program(k, k.dup(prog.fd))
        self.attach_type = attach_type
        self.attached = False
        try:
            self._cg.attach(prog, attach_type, mode=AttachMode.MULTI)
        except BaseException:
            self.close()
            raise
        self.attached = True
        warnings.warn(f"{self!r}: this kernel has no cgroup bpf_link (Linux 5.7); the "
                      "program was attached with legacy PROG_ATTACH (MULTI) and stays "
                      "attached if this process dies before close()", FallbackWarning,
                      stacklevel=3)

    def __repr__(self) -> str:
        state = f"prog {self._prog.id} on {self._cg.path}" if self.attached else "detached"
        return f"<LegacyLink {name_of(self.attach_type)} {state}>"

    def update(self, new: Program, *, expected: Program | None = None) -> None:
        """Swap the program in place (PROG_ATTACH MULTI|REPLACE).  ``expected`` is checked
        by the library: the kernel cannot compare-and-swap a legacy entry."""
        if not self.attached:
            raise LinkDefunct(errno.ENOLINK, f"{self!r}", command="PROG_ATTACH",
                              hint="the program was detached")
        if expected is not None and expected.id != self._prog.id:
            raise ExpectedProgramMismatch(errno.EPERM, f"{self!r} expecting {expected!r}",
                                          command="PROG_ATTACH",
                                          hint="the attachment runs another program")
        self._cg.attach(new, self.attach_type, mode=AttachMode.MULTI, replace=self._prog)
        old, self._prog = self._prog, Program(self.kernel, self.kernel.dup(new.fd))
        old.close()

    def detach(self) -> None:
        """PROG_DETACH of the current program; idempotent, like LINK_DETACH."""
        if self.attached:
            self._cg.detach(self._prog, self.attach_type)
            self.attached = False

    @property
    def defunct(self) -> bool:
        return not self.attached

    def info(self) -> LinkInfo:
        """What a link would report: id 0 (no kernel object), the cgroup id (0 once
        detached), the current program and the attach type."""
        return LinkInfo(0, LinkType.CGROUP, self._prog.id,
                        self._cg.id if self.attached else 0, self.attach_type)

    def _clone(self, fd: int) -> LegacyLink:
        raise NotSupported(f"a second owner of {self!r} (a legacy attachment has one: "
                           "this object)", "5.7")

    def detach_fd(self) -> int:
        raise NotSupported(f"taking the fd out of {self!r} (it stands for no kernel object)",
                           "5.7")

    def pin(self, path: str) -> None:
        raise NotSupported(f"pinning {self!r} at {path} (a legacy attachment is no object)",
                           "5.7")

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
            self._fd = -1
            self._prog.close()
            self._cg.close()
