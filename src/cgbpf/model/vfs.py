"""A tiny virtual file system: directories, files, mounts and path lookup.

The root is a tmpfs with ``/tmp`` (mode 1777), the cgroup2 hierarchy is mounted at
``/sys/fs/cgroup`` (see :mod:`.cgroupfs`) and a bpffs at ``/sys/fs/bpf`` (see
:mod:`.bpffs`); more bpffs can be mounted on any directory.  Nothing here touches the
host's files.  Simplifications: no symlinks, no cwd (a relative path is relative to ``/``
unless a directory fd is given), no search-permission checks on the way down, and uid 0
passes every permission check (as if it had CAP_DAC_OVERRIDE).
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass

from .. import uapi
from .memory import fail

PATH_MAX = 4096
NAME_MAX = 255
R, W = 4, 2


@dataclass
class Cred:
    """Who a process is, for file permissions (§11, §15)."""

    uid: int = 0
    umask: int = 0o022


class Filesystem:
    """One mounted file system (superblock): its ``statfs`` magic and inode numbers."""

    _mnt_ids = itertools.count(20)

    def __init__(self, magic: int) -> None:
        self.magic = magic
        self.mnt_id = next(self._mnt_ids)
        self._inos = itertools.count(1)

    def next_ino(self) -> int:
        return next(self._inos)


class Node:
    """An inode with a mode and an owner."""

    def __init__(self, fs: Filesystem, mode: int, uid: int) -> None:
        self.fs, self.mode, self.uid = fs, mode, uid
        self.ino = fs.next_ino()

    def may(self, cred: Cred, want: int) -> bool:
        """``inode_permission``: owner bits for the owner, "other" bits for the rest."""
        if cred.uid == 0:
            return True
        bits = self.mode >> 6 if cred.uid == self.uid else self.mode
        return bits & want == want

    def unlinked(self) -> None:
        """The last name of this inode is gone."""


class Dir(Node):
    """A directory of a tmpfs-like file system (mkdir, rmdir, unlink all allowed)."""

    def __init__(self, fs: Filesystem, mode: int, uid: int, parent: Dir | None) -> None:
        super().__init__(fs, mode, uid)
        self.parent = parent
        self.children: dict[str, Node] = {}
        self.mounted: Dir | None = None  # root of the file system mounted on this dir
        self.covers: Dir | None = None  # for a mount root: the directory it is mounted on

    def mkdir(self, name: str, cred: Cred) -> Dir:
        """Create a subdirectory (the caller checked that ``name`` is free)."""
        child = type(self)(self.fs, 0o777 & ~cred.umask, cred.uid, self)
        self.children[name] = child
        return child

    def rmdir(self, name: str) -> None:
        child = self.children[name]
        if not isinstance(child, Dir):
            raise fail(errno.ENOTDIR)
        if child.mounted is not None:
            raise fail(errno.EBUSY)
        if child.children:
            raise fail(errno.ENOTEMPTY)
        del self.children[name]

    def unlink(self, name: str) -> None:
        child = self.children[name]
        if isinstance(child, Dir):
            raise fail(errno.EISDIR)
        del self.children[name]
        child.unlinked()

    def walk(self) -> list[Node]:
        """Every node below this directory (not following mounts), depth first."""
        out: list[Node] = []
        for child in self.children.values():
            out.append(child)
            if isinstance(child, Dir):
                out += child.walk()
        return out


def top(node: Node) -> Node:
    """The root of the topmost file system mounted on ``node`` (or ``node``)."""
    while isinstance(node, Dir) and node.mounted is not None:
        node = node.mounted
    return node


class Vfs:
    """Path lookup over the mount tree."""

    def __init__(self) -> None:
        self.root = Dir(Filesystem(uapi.TMPFS_MAGIC), 0o755, 0, None)
        for path, mode in (("/tmp", 0o1777), ("/sys", 0o555), ("/sys/fs", 0o755)):
            self.root_dir(path).mode = mode

    def root_dir(self, path: str) -> Dir:
        """Create a directory as root during setup."""
        parent, name = self.parent(path)
        return parent.mkdir(name, Cred(0, 0))

    @staticmethod
    def mount(on: Dir, root: Dir) -> None:
        """Mount the file system whose root is ``root`` on ``on`` (a looked-up, topmost dir)."""
        on.mounted, root.covers = root, on

    def lookup(self, path: str, base: Dir | None = None) -> Node:
        """The node at ``path`` (ENOENT, ENOTDIR, ENAMETOOLONG)."""
        if not path:
            raise fail(errno.ENOENT)
        if len(path) >= PATH_MAX:
            raise fail(errno.ENAMETOOLONG)
        node: Node = top(self.root if path.startswith("/") or base is None else base)
        for part in path.split("/"):
            if not isinstance(node, Dir):
                raise fail(errno.ENOTDIR)
            if part in ("", "."):
                continue
            if len(part) > NAME_MAX:
                raise fail(errno.ENAMETOOLONG)
            if part == "..":
                while node.covers is not None:
                    node = node.covers
                node = top(node.parent or node)
                continue
            child = node.children.get(part)
            if child is None:
                raise fail(errno.ENOENT)
            node = top(child)
        return node

    def parent(self, path: str, base: Dir | None = None) -> tuple[Dir, str]:
        """The directory that would hold ``path`` and the last name (for create/remove)."""
        head, _, name = path.rstrip("/").rpartition("/")
        if name in ("", ".", ".."):
            raise fail(errno.EBUSY if path.strip("/") == "" else errno.EINVAL)
        if len(name) > NAME_MAX:
            raise fail(errno.ENAMETOOLONG)
        head = head or ("/" if path.startswith("/") or base is None else ".")
        parent = self.lookup(head, base)
        if not isinstance(parent, Dir):
            raise fail(errno.ENOTDIR)
        return parent, name
