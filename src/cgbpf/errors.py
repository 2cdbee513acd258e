"""Errors.  Every failure of a kernel request is a :class:`BpfError` (an ``OSError``) that
keeps the kernel's ``errno`` and says which bpf command failed, on which objects, and
what to do about it.  Subclasses exist where a caller would want to catch one case.

Like a plain ``OSError``, a ``BpfError`` is also the built-in subclass for its errno:
ENOENT is a ``FileNotFoundError``, EPERM and EACCES a ``PermissionError``, EEXIST a
``FileExistsError`` (and so on), so ``except FileNotFoundError`` catches "nothing is
pinned there" as it catches a missing file.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, ClassVar

from ._doc import DocType
from .uapi import ENOTSUPP

#: errno names, with the kernel's own ENOTSUPP (BTF_LOAD, PROG_TEST_RUN), which Python's
#: errno module does not know.
_NAMES = {**_errno.errorcode, ENOTSUPP: "ENOTSUPP"}
#: errno -> the built-in OSError subclass Python raises for it (PEP 3151).
_BUILTIN: dict[int, type[OSError]] = {
    _errno.ENOENT: FileNotFoundError, _errno.EEXIST: FileExistsError,
    _errno.EPERM: PermissionError, _errno.EACCES: PermissionError,
    _errno.ENOTDIR: NotADirectoryError, _errno.EISDIR: IsADirectoryError,
    _errno.EAGAIN: BlockingIOError, _errno.ESRCH: ProcessLookupError,
    _errno.EINTR: InterruptedError, _errno.ETIMEDOUT: TimeoutError,
    _errno.ECHILD: ChildProcessError,
}


class BpfError(OSError, metaclass=DocType):
    """A bpf(2) request (or a check the library made on the kernel's behalf) failed.

    ``errno`` is the kernel's errno (the one the kernel gives for the same request, even
    when the library noticed first); ``command`` names the bpf command, ``detail`` the
    objects involved and ``hint`` what to do.
    """

    #: (class, built-in subclass) -> the class that is both (made once, named as ``cls``).
    _both: ClassVar[dict[tuple[type, type], type]] = {}

    #: The errno of a class whose constructor does not take one (NotSupported).
    fixed_errno: ClassVar[int] = 0

    def __new__(cls, err: Any, *args: Any, **kwargs: Any) -> BpfError:
        # OSError.__new__ sets errno and strerror (a class with its own __new__ is not
        # given them again by OSError.__init__).
        code = err if isinstance(err, int) else cls.fixed_errno
        builtin = _BUILTIN.get(code)
        if builtin is not None and not issubclass(cls, builtin):
            both = BpfError._both.get((cls, builtin))
            if both is None:
                both = type(cls.__name__, (cls, builtin), {
                    "__module__": cls.__module__, "__qualname__": cls.__qualname__,
                    "__doc__": cls.__doc__, "_plain": cls})
                BpfError._both[cls, builtin] = both
            cls = both
        return super().__new__(cls, code, os.strerror(code))

    def __init__(self, err: int, detail: str, *, command: str = "", hint: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.command = command
        self.detail = detail
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the public class (the built-in mix-in is made again on load)."""
        return _restore, (getattr(type(self), "_plain", type(self)), self.errno,
                          dict(self.__dict__))

    def __str__(self) -> str:
        name = _NAMES.get(self.errno or 0, str(self.errno))
        head = f"{self.command}: " if self.command else ""
        tail = f" ({self.hint})" if self.hint else ""
        return f"{head}{self.detail}: {name} {self.strerror}{tail}"


def _restore(cls: type[BpfError], err: int, state: dict[str, Any]) -> BpfError:
    error = BpfError.__new__(cls, err)
    error.__dict__.update(state)
    return error


class VerifierError(BpfError):
    """PROG_LOAD was refused; ``log`` holds the verifier's log (empty if it gave none)."""

    def __init__(self, err: int, detail: str, *, log: str, command: str = "PROG_LOAD") -> None:
        last = [line for line in log.splitlines() if line.strip()][-3:]
        hint = "verifier log: " + " | ".join(last) if last else "the verifier gave no log"
        super().__init__(err, detail, command=command, hint=hint)
        self.log = log


class NotSupported(BpfError):
    """The running kernel lacks a feature (found by probing, never by version string)."""

    fixed_errno = _errno.EOPNOTSUPP

    def __init__(self, feature: str, since: str, *, how: str = "") -> None:
        hint = f"needs Linux {since} or a kernel with it backported"
        super().__init__(_errno.EOPNOTSUPP, f"{feature} is not supported by this kernel"
                         + (f" ({how})" if how else ""), hint=hint)
        self.feature = feature
        self.since = since


class StaleRevision(BpfError):
    """``expected_revision`` did not match the hook's revision (ESTALE)."""


class ExpectedProgramMismatch(BpfError):
    """LINK_UPDATE with ``expected=``: the link runs another program (EPERM)."""


class LinkDefunct(BpfError):
    """The link was detached or its cgroup died; it can no longer be updated (ENOLINK)."""


class MissingPrivilege(BpfError):
    """The caller lacks the capability the kernel asks for; ``capability`` names it."""

    def __init__(self, err: int, detail: str, *, capability: str, command: str = "") -> None:
        super().__init__(err, detail, command=command,
                         hint=f"needs {capability}: run as root or grant the capability")
        self.capability = capability


class NotACgroup2(BpfError):
    """The path is not a cgroup v2 directory (the kernel says EBADF for such targets)."""


class ClosedError(BpfError):
    """An operation on an object whose fd was already closed (EBADF)."""


class MalformedObject(BpfError):
    """A BPF object file (ELF, BTF, ``.BTF.ext``) cannot be read: ``path`` names the file,
    ``section`` the part that is wrong (EINVAL; nothing was loaded)."""

    fixed_errno = _errno.EINVAL

    def __init__(self, detail: str, *, path: str = "", section: str = "", hint: str = "") -> None:
        where = ", ".join(x for x in (path, section and f"section {section}") if x)
        super().__init__(_errno.EINVAL, f"{where}: {detail}" if where else detail,
                         hint=hint or "rebuild the object with clang -target bpf -g -O2")
        self.path = path
        self.section = section
