"""A scratch cgroup subtree and bpffs mounts that are removed on exit, even on error or
Ctrl-C: what the demo and the tests work in.  Everything goes through the kernel seam."""

from __future__ import annotations

import errno
import itertools
import os
import time
from types import TracebackType

from .cgroup import Cgroup
from .kernel import Kernel

_serial = itertools.count()


class Scratch:
    """``<cgroup2 mount>/<prefix>-<pid>-<n>``: nested cgroups made with :meth:`cgroup`,
    bpffs mounts with :meth:`bpffs`; :meth:`close` removes all of them."""

    def __init__(self, kernel: Kernel, prefix: str = "cgbpf") -> None:
        self.kernel = kernel
        self.base = os.path.join(kernel.cgroup_root, f"{prefix}-{os.getpid()}-{next(_serial)}")
        self._dirs: list[str] = []
        self._known: set[str] = set()  # the same paths, for fast lookups
        self._open: list[Cgroup] = []
        self._mounts: list[str] = []
        kernel.mkdir(self.base)
        self._dirs.append(self.base)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def path(self, rel: str = "") -> str:
        return os.path.join(self.base, rel) if rel else self.base

    def mkdir(self, rel: str) -> str:
        """Create ``rel`` (e.g. "a/b/c") below the base, with missing levels; its path."""
        path = self.base
        for part in filter(None, rel.split("/")):
            path = os.path.join(path, part)
            if path not in self._known:
                self.kernel.mkdir(path)
                self._dirs.append(path)
                self._known.add(path)
        return path

    def cgroup(self, rel: str = "") -> Cgroup:
        """Open ``rel`` below the base, creating missing levels."""
        cg = Cgroup.open(self.mkdir(rel), kernel=self.kernel)
        self._open.append(cg)
        return cg

    def bpffs(self) -> str:
        """A fresh bpffs mount on a new directory."""
        path = f"/tmp/cgbpf-bpffs-{os.getpid()}-{next(_serial)}"
        self.kernel.mkdir(path)
        try:
            self.kernel.mount_bpffs(path)
        except BaseException:
            self.kernel.rmdir(path)
            raise
        self._mounts.append(path)
        return path

    def forget(self, path: str) -> None:
        """Stop tracking a cgroup the caller removed itself."""
        self._dirs.remove(path)
        self._known.discard(path)

    def close(self) -> None:
        """Close fds, unmount bpffs, rmdir every cgroup deepest first.  A cgroup whose
        last task is still exiting is busy for a moment, so EBUSY is retried for 5 s."""
        for cg in self._open:
            cg.close()
        for m in reversed(self._mounts):
            self.kernel.umount(m)
            self.kernel.rmdir(m)
        self._open, self._mounts = [], []
        for d in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            deadline = time.monotonic() + 5
            while True:
                try:
                    self.kernel.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        self._dirs, self._known = [], set()
