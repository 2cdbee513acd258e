"""The base of every object that owns a file descriptor, shaped like ``socket.socket``:
``fileno()``, ``close()``, ``closed``, ``with`` blocks, ``detach()``-free, and a
``ResourceWarning`` when an unclosed one is garbage-collected."""

from __future__ import annotations

import errno
import warnings
from contextlib import suppress
from types import TracebackType
from typing import TypeVar

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

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _leak_message(self) -> str:
        """What collecting this object unclosed does (links say: detaches)."""
        return f"unclosed {self!r}"

    def __del__(self) -> None:
        if self._fd >= 0:
            warnings.warn(self._leak_message(), ResourceWarning, stacklevel=2, source=self)
            self.close()
