"""The one seam: everything cgbpf asks of a kernel goes through a :class:`Kernel`.

``bpf`` takes the same ``union bpf_attr`` bytes the real syscall takes (pointers inside
are real addresses in this process), returns the syscall's result and raises ``OSError``
with the kernel's errno.  The file operations are the few the library needs around it.
:class:`~cgbpf.kernel.host.HostKernel` is the real kernel; the model kernel implements the
same protocol in pure Python.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

# The ``statfs`` magic numbers and capability numbers are defined in uapi; these names
# stay here for the code that imports them from the seam.
from ..uapi import BPF_FS_MAGIC as BPF_FS_MAGIC
from ..uapi import CAPABILITIES as CAPABILITIES
from ..uapi import CGROUP1_MAGIC as CGROUP1_MAGIC
from ..uapi import CGROUP2_MAGIC as CGROUP2_MAGIC


@runtime_checkable
class Kernel(Protocol):
    """What the library needs from a kernel.  All methods raise ``OSError`` on failure."""

    #: "host" or "model": for messages only, never for behaviour.
    name: str

    @property
    def cgroup_root(self) -> str:
        """Mount point of the cgroup2 hierarchy (raises ``OSError(ENOENT)`` if none)."""
        ...

    def bpf(self, cmd: int, attr: ctypes.Structure, size: int | None = None) -> int:
        """The bpf(2) syscall; ``size`` defaults to ``sizeof(attr)``."""
        ...

    def open_dir(self, path: str, *, path_only: bool = False) -> int:
        """Open a directory read-only (``O_PATH`` if ``path_only``), close-on-exec."""
        ...

    def close(self, fd: int) -> None: ...

    def dup(self, fd: int) -> int: ...

    def mkdir(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def fs_magic(self, target: str | int) -> int:
        """``statfs(path).f_type`` (``fstatfs`` of an fd): tells cgroup2, cgroup v1 and
        bpffs apart."""
        ...

    def fd_kind(self, fd: int) -> str:
        """What an fd is: "link", "prog", "map", "btf" (bpf objects) or "other"; raises
        ``OSError(EBADF)`` for a closed fd."""
        ...

    def fdinfo(self, fd: int) -> dict[str, str]:
        """``/proc/self/fdinfo/FD`` as key -> value, in the kernel's line order."""
        ...

    def cgroup_id(self, target: str | int) -> int:
        """The cgroup id of a cgroup2 directory, by path or open fd (its inode number)."""
        ...

    def cgroup_children(self, path: str) -> dict[str, int]:
        """The child cgroups of the cgroup2 directory ``path``: name -> cgroup id."""
        ...

    def move_process(self, cgroup_path: str, pid: int) -> None:
        """Write ``pid`` to ``cgroup_path``/cgroup.procs: move that process (all its
        threads; 0: the caller) into the cgroup.  ESRCH: no such process."""
        ...

    def cgroup_processes(self, cgroup_path: str) -> list[int]:
        """The pids in ``cgroup_path``/cgroup.procs, as listed (unsorted)."""
        ...

    def possible_cpus(self) -> int:
        """``num_possible_cpus()``: a per-CPU map value holds one copy per possible CPU."""
        ...

    def has_capability(self, name: str) -> bool:
        """Whether the calling process has capability ``name`` (e.g. "CAP_BPF")."""
        ...

    def run_restricted(self, caps: Iterable[str], fn: Callable[[Kernel], object]) -> None:
        """Run ``fn(kernel)`` in a child process that shares this one's fds and has only
        the capabilities ``caps`` (uid unchanged); raise the ``OSError`` it raised."""
        ...

    def mount_bpffs(self, path: str) -> None: ...

    def bpffs_mounts(self) -> list[str]:
        """Where bpffs is mounted, as this process sees it."""
        ...

    def list_dir(self, path: str) -> list[tuple[str, bool]]:
        """(name, whether it is a directory) of each entry of a directory."""
        ...

    def open_bpf_objects(self) -> list[tuple[str, int]]:
        """(kind: "prog", "map" or "link"; id) of every bpf object some process of the
        machine has an fd for (the host's: those whose /proc it may read)."""
        ...

    def umount(self, path: str) -> None: ...
