"""The base of every object that owns a file descriptor, shaped like ``socket.socket``:
``fileno()``, ``close()``, ``closed``, ``with`` blocks, ``dup()`` for a second owner,
``detach_fd()`` to take the fd out (``socket.detach()``), a ``ResourceWarning`` when an
unclosed one is garbage-collected, and no copies: ``copy``, ``deepcopy`` and ``pickle``
raise ``TypeError`` (a copy would be a second owner of one fd, closing it under the
first).  A ``fork()`` child that collects an object its parent made only drops its own
copy of the fd, silently: it never closes or detaches what the parent owns."""

from __future__ import annotations

import errno
import os
import warnings
from contextlib import suppress
from types import TracebackType
from typing import NoReturn, SupportsIndex, TypeVar

from .errors import ClosedError
from .kernel.protocol import Kernel

Self = TypeVar("Self", bound="FdObject")


class FdObject:
    """Owns one fd on one kernel.  ``fileno()`` is -1 once closed, like a socket's."""

    _fd: int = -1
    #: How to get a usable object again, for the error on a closed one.
    _reopen = "open it again (from_id / from_pin)"

    def __init__(self, kernel: Kernel, fd: int) -> None:
        self.kernel = kernel
        self._fd = fd
        self._pid = os.getpid()

    @property
    def fd(self) -> int:
        """The fd; raises :class:`ClosedError` (EBADF) once closed."""
        if self._fd < 0:
            raise ClosedError(errno.EBADF, f"{self!r} is closed",
                              hint=self._reopen)
        return self._fd

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the fd (idempotent).  An fd whose process has exited (a model process)
        went with it: nothing to close."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with suppress(ProcessLookupError):
                self.kernel.close(fd)

    def _clone(self: Self, fd: int) -> Self:
        """A new object like this one that owns ``fd`` (another fd for the same object)."""
        twin = object.__new__(type(self))
        twin.__dict__.update({k: list(v) if isinstance(v, list) else v
                              for k, v in self.__dict__.items()})
        twin._fd, twin._pid = fd, os.getpid()
        return twin

    def dup(self: Self) -> Self:
        """dup(2): a new, independent owner of the same kernel object (closing one leaves
        the other open)."""
        fd = self.kernel.dup(self.fd)
        try:
            return self._clone(fd)
        except BaseException:
            self.kernel.close(fd)
            raise

    def detach_fd(self) -> int:
        """Take the fd out of this object, like ``socket.detach()``: the object is closed
        and the caller owns the fd."""
        fd, self._fd = self.fd, -1
        return fd

    def __copy__(self) -> NoReturn:
        raise TypeError(f"cannot copy {self!r}: it owns an fd; use dup() for a second owner")

    def __deepcopy__(self, memo: object) -> NoReturn:
        self.__copy__()

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError(f"cannot pickle {self!r}: an fd means nothing in another process")

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _leak_message(self) -> str:
        """What collecting this object unclosed does (links say: detaches)."""
        return f"unclosed {self!r}"

    def _leak_effect(self) -> type[Warning] | None:
        """A warning category Python shows by default, for a leak that changes the
        system (an unpinned link detaches), to go alongside the ResourceWarning."""
        return None

    def __del__(self) -> None:
        if self._fd < 0:
            return
        if self._pid == os.getpid():
            warnings.warn(self._leak_message(), ResourceWarning, stacklevel=2, source=self)
            effect = self._leak_effect()
            if effect is not None:
                warnings.warn(self._leak_message(), effect, stacklevel=2)
        with suppress(OSError):  # closed under it already: nothing left to do
            self.close()
