"""The cgroup2 hierarchy and each cgroup's BPF state (docs/kernel.md §3, §6, §12).

A :class:`Cgroup` is a directory of the cgroup2 file system; its ``ino`` is its cgroup ID
(§13).  Per attach type it keeps a :class:`Hook`: the entry list, the mode, the revision
and the effective array.  :meth:`Cgroup.commit` is the one place a change becomes visible:
revision + 1, mode reset when the list empties, effective arrays of the whole subtree
recomputed (§6; a cgroup with an empty list shares its parent's array).

Processes: ``procs`` holds the pids of the model processes in the cgroup (each process
is in one cgroup, see :mod:`.process`); a cgroup with processes cannot be removed (EBUSY).

Cgroup death (§12): ``rmdir`` takes the cgroup out of the tree at once (old directory fds
see ENOENT); its BPF state is *released* later, as deferred kernel work, once nothing
holds it: sockets created in it (:meth:`hold`/:meth:`unhold`) and child cgroups whose own
state is not released yet.  Release auto-detaches links and drops legacy programs.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import uapi
from .memory import fail
from .objects import Defer, Link, Prog
from .vfs import Dir, Filesystem, Node

if TYPE_CHECKING:
    from .vm.storage import Storage

#: The control files every cgroup directory shows (enough to exercise "a cgroup2 file").
CONTROL_FILES = ("cgroup.procs", "cgroup.controllers", "cgroup.subtree_control")
MULTI = uapi.AttachMode.MULTI


@dataclass(eq=False)
class Entry:
    """One entry of a list (§3): a legacy program or a link, with its own preorder bit
    and the cgroup storages its program was given when attached (by storage map type,
    :mod:`.vm.storage`; kept across LINK_UPDATE)."""

    prog: Prog | None = None
    link: Link | None = None
    preorder: bool = False
    storage: dict[int, Storage] = field(default_factory=dict)

    @property
    def current(self) -> Prog:
        """The program this entry runs (a link's current program)."""
        prog = self.link.prog if self.link is not None else self.prog
        assert prog is not None
        return prog


@dataclass
class Hook:
    """``list[C,T]``, ``mode[C,T]``, ``revision[C,T]`` and ``effective[C,T]`` (§3); the
    effective array holds the entries (each runs its current program with its storage)."""

    entries: list[Entry] = field(default_factory=list)
    mode: int = uapi.AttachMode.EXCLUSIVE
    revision: int = 1
    effective: list[Entry] = field(default_factory=list)

    def legacy_entry(self, prog: Prog) -> Entry | None:
        """The legacy entry holding ``prog`` (link entries never match, §0 fact 5)."""
        return next((e for e in self.entries if e.link is None and e.prog is prog), None)


class Cgroup(Dir):
    """A cgroup v2 directory and its BPF state."""

    defer: Defer  # queues deferred kernel work (the release, §12)

    def __init__(self, fs: Filesystem, mode: int, uid: int, parent: Dir | None,
                 defer: Defer | None = None) -> None:
        super().__init__(fs, mode, uid, parent)
        if defer is None:
            assert isinstance(parent, Cgroup), "only the root cgroup is made without a parent"
            defer = parent.defer
        self.defer = defer
        self.alive = True
        self.released = False
        self.holds = 0  # sockets born here + child cgroups with unreleased state
        self.hooks: dict[int, Hook] = {}
        self.procs: set[int] = set()  # pids of the processes in this cgroup
        self.storages: list[Storage] = []  # cgroup storages made here, freed at release
        for name in CONTROL_FILES:
            self.children[name] = Node(fs, 0o644, 0)
        if isinstance(parent, Cgroup):
            parent.hold()
            for t, above in parent.hooks.items():  # inheritance at mkdir (§3, §6): with
                if above.effective:  # an empty list, the parent's array
                    self.hook(t).effective = above.effective

    # --- the tree ----------------------------------------------------------------------

    @property
    def up(self) -> Cgroup | None:
        return self.parent if isinstance(self.parent, Cgroup) else None

    def ancestors(self) -> list[Cgroup]:
        """Parent, grandparent, ..., root."""
        out, c = [], self.up
        while c is not None:
            out.append(c)
            c = c.up
        return out

    def rmdir(self, name: str) -> None:
        """rmdir is allowed with links and programs attached (§12); processes in it or
        child cgroups: EBUSY."""
        child = self.children[name]
        if not isinstance(child, Cgroup):
            raise fail(errno.ENOTDIR)
        if child.mounted is not None or child.procs or any(isinstance(c, Cgroup)
                                                           for c in child.children.values()):
            raise fail(errno.EBUSY)
        del self.children[name]
        child.alive = False
        child._maybe_release()

    def unlink(self, name: str) -> None:
        raise fail(errno.EISDIR if isinstance(self.children[name], Dir) else errno.EPERM)

    # --- holding and releasing the BPF state (§12) ----------------------------------------

    def hold(self) -> None:
        self.holds += 1

    def unhold(self) -> None:
        self.holds -= 1
        self._maybe_release()

    def _maybe_release(self) -> None:
        if not self.alive and self.holds == 0 and not self.released:
            self.released = True  # queued once
            self.defer(self._release)

    def _release(self) -> None:
        """§12 "At release": links auto-detach (defunct), legacy programs are put."""
        for hook in self.hooks.values():
            for entry in hook.entries:
                if entry.link is not None:
                    entry.link.cgroup = None
                else:
                    entry.current.put()
        self.hooks.clear()
        for st in self.storages:
            st.map.drop(st)
        self.storages.clear()
        if self.up is not None:
            self.up.unhold()

    # --- BPF state (§3, §6) --------------------------------------------------------------

    def hook(self, attach_type: int) -> Hook:
        hook = self.hooks.get(attach_type)
        if hook is None:
            hook = self.hooks[attach_type] = Hook()
        return hook

    def compute_effective(self, attach_type: int) -> list[Entry]:
        """§6: walk C, parent, ..., root; a level counts if nothing was collected below it
        or it is MULTI.  PREORDER entries first, root-most level first; then the others,
        C's level first; list order within a level."""
        levels: list[list[Entry]] = []  # the counted (non-empty) lists, C's first
        c: Dir | None = self
        while isinstance(c, Cgroup):
            hook = c.hooks.get(attach_type)
            if hook is not None and hook.entries and (not levels or hook.mode == MULTI):
                levels.append(hook.entries)
            c = c.parent
        out = [e for level in reversed(levels) for e in level if e.preorder]
        out += [e for level in levels for e in level if not e.preorder]
        return out

    def commit(self, attach_type: int) -> None:
        """A successful change of ``list[C,T]``: revision + 1, mode reset if the list is
        empty, effective arrays of the subtree recomputed (§4 step 17, §6)."""
        hook = self.hook(attach_type)
        hook.revision += 1
        if not hook.entries:
            hook.mode = uapi.AttachMode.EXCLUSIVE
        hook.effective = self.compute_effective(attach_type)
        self._inherit(attach_type, hook.effective)

    def _inherit(self, attach_type: int, effective: list[Entry]) -> None:
        """Recompute the effective arrays below this cgroup, whose own array is
        ``effective``, parents first.  A cgroup with an empty list has its parent's
        array (§6: it adds no level), so it shares that list object and costs one
        assignment: a link at the root of 10,000 empty cgroups walks nothing else.
        (The arrays are never changed in place, only replaced.)"""
        stack = [(self, effective)]
        while stack:
            parent, inherited = stack.pop()
            for child in parent.children.values():
                if not isinstance(child, Cgroup):
                    continue
                hook = child.hook(attach_type)
                if hook.entries:
                    hook.effective = child.compute_effective(attach_type)
                else:
                    hook.effective = inherited
                stack.append((child, hook.effective))

    def detach_link(self, link: Link) -> None:
        """Remove a link's entry; the link becomes defunct (§11 release, LINK_DETACH)."""
        hook = self.hook(link.attach_type)
        hook.entries = [e for e in hook.entries if e.link is not link]
        link.cgroup = None
        self.commit(link.attach_type)
