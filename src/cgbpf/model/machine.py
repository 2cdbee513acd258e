"""The machine: everything processes share, and the deferred kernel work.

Deferred work (§11: the detach after the last pin of a link is unlinked; §12: the release
of a removed cgroup's BPF state) is queued with :meth:`Machine.defer` and runs at the
start of a later system call: ``lag`` calls (any model call of any process) still see the
old state, the next one sees the new.  With the default ``lag=1`` the first query after
``unlink`` still shows the link, the second does not, so a test that polls (as it must on
the real kernel) passes and one that assumes a synchronous detach fails.
:meth:`Machine.settle` runs all pending work at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import uapi
from .bpffs import new_mount
from .cgroupfs import Cgroup
from .objects import BtfObj, IdSpace, Link, Map, Prog
from .profiles import Profile
from .vfs import Filesystem, Vfs

if TYPE_CHECKING:
    from .process import Process

CGROUP_ROOT = "/sys/fs/cgroup"
BPFFS_ROOT = "/sys/fs/bpf"


class Machine:
    """Shared state: file systems, the program/map/link/BTF ID tables, the process table,
    the work queue."""

    def __init__(self, profile: Profile, *, lag: int = 1, id_start: int = 1) -> None:
        self.profile = profile
        self.lag = lag
        self.clock = 0
        self._work: list[tuple[int, Callable[[], None]]] = []
        self.progs: IdSpace[Prog] = IdSpace(id_start)
        self.maps: IdSpace[Map] = IdSpace(id_start)
        self.links: IdSpace[Link] = IdSpace(id_start)
        self.btfs: IdSpace[BtfObj] = IdSpace(id_start)
        self.vfs = Vfs()
        self.cgroup_root = Cgroup(Filesystem(uapi.CGROUP2_MAGIC), 0o755, 0, None, self.defer)
        self.vfs.mount(self.vfs.root_dir(CGROUP_ROOT), self.cgroup_root)
        self.vfs.mount(self.vfs.root_dir(BPFFS_ROOT), new_mount())
        self.next_pid = 1
        self.procs: dict[int, Process] = {}  # live processes by pid

    def defer(self, work: Callable[[], None]) -> None:
        """Queue kernel work (RCU callback + workqueue) to run after ``lag`` more calls."""
        self._work.append((self.clock + self.lag + 1, work))

    def enter(self) -> None:
        """A system call starts: run the work that is due."""
        self.clock += 1
        self._run(lambda due: due <= self.clock)

    def settle(self) -> None:
        """Run all pending work now (including work queued by that work)."""
        self._run(lambda due: True)

    def _run(self, ready: Callable[[int], bool]) -> None:
        while any(ready(due) for due, _ in self._work):
            now = [w for w in self._work if ready(w[0])]
            self._work = [w for w in self._work if not ready(w[0])]
            for _, work in now:
                work()

    @property
    def pending(self) -> int:
        """How many pieces of deferred work are queued."""
        return len(self._work)

    def link_by_id(self, ident: int) -> Link | None:
        """``bpf_link_by_id``: a link with owners (a link being freed is not found)."""
        link = self.links.get(ident)
        return link if link is not None and link.refs > 0 else None
