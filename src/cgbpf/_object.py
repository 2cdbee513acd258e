"""The base of programs, maps and links: a bpf object behind an fd, found by id or pin,
pinned and unpinned, described by OBJ_GET_INFO_BY_FD."""

from __future__ import annotations

import errno
from enum import IntEnum
from typing import Any, ClassVar, TypeVar

from . import _bpf, _check
from ._fd import FdObject
from .errors import BpfError
from .kernel import Kernel, default_kernel
from .uapi import Cmd

E = TypeVar("E", bound=IntEnum)
Obj = TypeVar("Obj", bound="BpfObject")


def as_enum(enum: type[E], value: int) -> E | int:
    """``value`` as a member of ``enum`` where it names one, else the plain int."""
    return enum._value2member_map_.get(value, value)  # type: ignore[return-value]


class BpfObject(FdObject):
    """An fd for a program, map or link.  The constructor reads the object's info (so a
    wrong fd fails at once) and takes ownership of ``fd``."""

    #: What ``Kernel.fd_kind`` says for this class, and the command that opens it by id.
    kind: ClassVar[str]
    by_id: ClassVar[Cmd]
    _reopen = "open it again (from_id / from_pin)"

    def __init__(self, kernel: Kernel, fd: int, info: Any = None) -> None:
        """Own ``fd``; ``info`` describes the object where the kernel cannot (links on
        5.7), else it is read from the kernel."""
        super().__init__(kernel, fd)
        #: Paths where this object pinned the kernel object (or opened it from).
        self.pins: list[str] = []
        try:
            self._describe(self.info() if info is None else info)
        except BaseException:
            self.close()
            raise

    def info(self) -> Any:
        """OBJ_GET_INFO_BY_FD, as the subclass's info record."""
        raise NotImplementedError

    def _describe(self, info: Any) -> None:
        """Keep what the object is (id, type, name…) from its first info."""
        raise NotImplementedError

    @classmethod
    def from_id(cls: type[Obj], obj_id: int, *, kernel: Kernel | None = None) -> Obj:
        """``*_GET_FD_BY_ID``: a new fd (owner) for the object with that id.  Needs
        CAP_SYS_ADMIN."""
        _check.arg(f"{cls.__name__}.from_id", "obj_id", obj_id, int, "an int id")
        k = kernel or default_kernel()
        return cls(k, _bpf.fd_by_id(k, cls.by_id, obj_id, cls.kind))

    @classmethod
    def from_pin(cls: type[Obj], path: str, *, kernel: Kernel | None = None) -> Obj:
        """OBJ_GET: a new fd (owner) for the object pinned at ``path`` (then in
        :attr:`pins`); EINVAL if another kind of object is pinned there."""
        path = _check.path(f"{cls.__name__}.from_pin", "path", path)
        k = kernel or default_kernel()
        fd = _bpf.obj_get(k, path)
        actual = k.fd_kind(fd)
        if actual != cls.kind:
            k.close(fd)
            raise BpfError(errno.EINVAL, f"{path} holds a {actual}, not a {cls.kind}",
                           command="OBJ_GET", hint=f"open it as a {actual}")
        obj = cls(k, fd)
        obj.pins.append(path)
        return obj

    def pin(self, path: str) -> None:
        """OBJ_PIN at ``path`` on a bpffs mount: the object lives on without fds, until
        :meth:`unpin`.  Linux 4.4."""
        path = _check.path(f"{type(self).__name__}.pin", "path", path)
        _bpf.obj_pin(self.kernel, self.fd, path, repr(self))
        self.pins.append(path)

    def unpin(self, path: str | None = None) -> None:
        """Remove a pin (unlink on bpffs; default: the one this object made or opened
        last).  With no pin and no fd left, the kernel frees the object.  Linux 4.4."""
        name = f"{type(self).__name__}.unpin"
        if path is None:
            if not self.pins:
                raise BpfError(errno.ENOENT, f"{self!r} has no pin known to this object",
                               command="unlink", hint="pass the pin's path")
            path = self.pins[-1]
        path = _check.path(name, "path", path)
        try:
            self.kernel.unlink(path)
        except OSError as e:
            raise BpfError(e.errno or errno.EIO, f"{self!r} pin {path}",
                           command="unlink") from e
        if path in self.pins:
            self.pins.remove(path)
