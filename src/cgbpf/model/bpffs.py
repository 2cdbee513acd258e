"""bpffs: pinning objects as files (docs/kernel.md §11).

A pin is a regular file with mode ``0600 & ~umask`` owned by the pinning uid; it holds one
reference on its object.  Removing the last name of a pin (``unlink``, or unmounting the
bpffs) puts that reference the way inode eviction does: for a link the final put is
deferred kernel work, so the detach happens "eventually" (§11).
"""

from __future__ import annotations

import errno

from .. import uapi
from .memory import fail
from .objects import Obj
from .vfs import Cred, Dir, Filesystem, Node, Vfs


class BpfDir(Dir):
    """A bpffs directory (the root of a mount, or made with mkdir)."""


class Pin(Node):
    """A pinned object."""

    def __init__(self, fs: Filesystem, obj: Obj, cred: Cred) -> None:
        super().__init__(fs, 0o600 & ~cred.umask, cred.uid)
        self.obj = obj.get()

    def unlinked(self) -> None:
        self.obj.put(evict=True)


def new_mount() -> BpfDir:
    """A fresh bpffs; its root is mode 0777 like ``mount -t bpf``."""
    return BpfDir(Filesystem(uapi.BPF_FS_MAGIC), 0o777, 0, None)


def pin(vfs: Vfs, obj: Obj, path: str, base: Dir | None, cred: Cred) -> None:
    """OBJ_PIN after the fd was resolved: ENOENT/ENOTDIR (path), EEXIST, EPERM (not
    bpffs), EACCES (no write permission on the directory)."""
    parent, name = vfs.parent(path, base)
    if name in parent.children:
        raise fail(errno.EEXIST)
    if not isinstance(parent, BpfDir):
        raise fail(errno.EPERM)
    if not parent.may(cred, 2):
        raise fail(errno.EACCES)
    parent.children[name] = Pin(parent.fs, obj, cred)


def get(vfs: Vfs, path: str, base: Dir | None, cred: Cred, want: int) -> Obj:
    """OBJ_GET's lookup: ENOENT, EACCES (permission ``want``; not a bpffs pin)."""
    node = vfs.lookup(path, base)
    if not node.may(cred, want) or not isinstance(node, Pin):
        raise fail(errno.EACCES)
    return node.obj


def unmount(root: BpfDir) -> None:
    """The superblock dies: every pin in it is evicted."""
    for node in root.walk():
        node.unlinked()
    root.children.clear()
