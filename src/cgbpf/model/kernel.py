"""``ModelKernel``: the :class:`~cgbpf.kernel.Kernel` protocol on a model machine.

One ``ModelKernel`` is one process on one :class:`~.machine.Machine`; :meth:`process`
starts another process on the same machine.  Every method is a system call: it first
runs the deferred kernel work that is due (see :mod:`.machine`), then fails with
``OSError(errno)`` exactly where the kernel would.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable, Iterable

from .. import uapi
from . import bpffs, commands
from .bpffs import BpfDir
from .cgroupfs import Cgroup
from .machine import CGROUP_ROOT, Machine
from .memory import fail
from .process import POSSIBLE_CPUS, DirFile, ObjFile, Process, SocketFile
from .profiles import Profile
from .vfs import Cred, Dir, Node, R, W, top
from .vm import events


class ModelKernel:
    """A pure-Python kernel (Linux 6.18 by default) behind the ``Kernel`` protocol.

    ``version``: a version string known to :meth:`Profile.of` or a :class:`Profile`.
    ``lag``: how many system calls still see the state before deferred kernel work runs.
    ``id_start``: the first program/map/link ID (to exercise wrap-around near INT_MAX).
    ``caps``, ``uid``, ``umask``: the first process's credentials (default: all of
    CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF; uid 0; umask 022).
    """

    name = "model"

    def __init__(self, version: str | Profile = "6.18", *, lag: int = 1, id_start: int = 1,
                 caps: Iterable[str] | None = None, uid: int = 0, umask: int = 0o022) -> None:
        profile = version if isinstance(version, Profile) else Profile.of(version)
        self._machine = Machine(profile, lag=lag, id_start=id_start)
        self._proc = self._spawn(caps, uid, umask)

    def _spawn(self, caps: Iterable[str] | None, uid: int, umask: int,
               home: Cgroup | None = None) -> Process:
        m = self._machine
        m.next_pid += 1
        all_caps = frozenset(uapi.CAPABILITIES) if caps is None else frozenset(caps)
        return Process(m, m.next_pid, all_caps, Cred(uid, umask), home)

    def __repr__(self) -> str:
        return f"ModelKernel({self.profile.name!r}, pid={self._proc.pid})"

    # --- model-only ------------------------------------------------------------------

    @property
    def profile(self) -> Profile:
        return self._machine.profile

    @property
    def pid(self) -> int:
        return self._proc.pid

    def process(self, *, caps: Iterable[str] | None = None, uid: int | None = None,
                umask: int | None = None, fork: bool = False) -> ModelKernel:
        """Another process on the same machine, with its own fd table.  ``fork=True``
        copies this process's fds (shared open files, like ``fork()``), its cgroup and,
        unless given, its credentials; otherwise it has all capabilities, uid 0 and
        umask 022, in the root cgroup."""
        parent = self._proc
        view = object.__new__(ModelKernel)
        view._machine = self._machine
        view._proc = view._spawn(
            caps if caps is not None else parent.caps if fork else None,
            uid if uid is not None else parent.cred.uid if fork else 0,
            umask if umask is not None else parent.cred.umask if fork else 0o022,
            parent.home if fork else None)
        if fork:
            for fd, file in parent.fds.items():
                view._proc.fds[fd] = file
                file.count += 1
        return view

    def exit(self) -> None:
        """The process exits: all its fds are closed (later calls give ESRCH)."""
        self._enter()
        self._proc.exit()

    def socket(self, cgroup_path: str) -> int:
        """A socket created by a task in ``cgroup_path``: it holds that cgroup's BPF state
        until closed, so a removed cgroup's links are not auto-detached before (§12)."""
        self._enter()
        node = self._machine.vfs.lookup(cgroup_path)
        if not isinstance(node, Cgroup):
            raise fail(errno.EINVAL)
        return self._proc.install(SocketFile(node))

    # --- events: system calls that run cgroup programs (:mod:`.vm.events`) ----------

    def enter(self, cgroup_path: str) -> None:
        """Move this process into ``cgroup_path`` (its later sockets belong there)."""
        self.move_process(cgroup_path, 0)

    def send_udp(self, host: str, port: int, data: bytes = b"x") -> int:
        """``sendto()`` of one datagram from a new UDP socket: bytes sent (EPERM when
        an egress program denies)."""
        self._enter()
        return events.send_udp(self._proc, host, port, data)

    def bind(self, host: str, port: int) -> tuple[str, int]:
        """``bind()`` of a new UDP socket kept open as a receiver: the bound address."""
        self._enter()
        return events.bind(self._proc, host, port)

    def recv(self, host: str, port: int) -> bytes | None:
        """The next datagram that reached this process's socket bound to (host, port),
        or None."""
        self._enter()
        return events.recv(self._proc, host, port)

    def connect(self, host: str, port: int) -> tuple[str, int] | int:
        """``connect()`` of a new UDP socket: the address connected to (as connect
        programs rewrote it), or the positive value a program made connect() return."""
        self._enter()
        return events.connect(self._proc, host, port)

    def setsockopt(self, level: int, name: int, value: int | bytes) -> None:
        """``setsockopt()`` on a new UDP socket (an int value: 4 bytes)."""
        self._enter()
        events.setsockopt(self._proc, level, name, value)

    def getsockopt(self, level: int, name: int, optlen: int = 4) -> bytes:
        """``getsockopt()`` on a new UDP socket: the bytes the caller receives."""
        self._enter()
        return events.getsockopt(self._proc, level, name, optlen)

    def sysctl_read(self, name: str) -> str:
        """One read of ``/proc/sys/<name>`` ("net/ipv4/ip_default_ttl" or dotted)."""
        self._enter()
        return events.sysctl_read(self._proc, name)

    def sysctl_write(self, name: str, value: str) -> None:
        """A write of ``value`` to ``/proc/sys/<name>``."""
        self._enter()
        events.sysctl_write(self._proc, name, value)

    def open_device(self, kind: str, major: int, minor: int, access: str = "r") -> None:
        """Open (``access`` "r", "w", "rw") or mknod ("m") a device ``kind`` "c" or
        "b": EPERM when a device program denies."""
        self._enter()
        events.open_device(self._proc, kind, major, minor, access)

    def settle(self) -> None:
        """Run all deferred kernel work now (pin-unlink detach, cgroup release)."""
        self._machine.settle()

    @property
    def pending(self) -> int:
        """How many pieces of deferred kernel work are queued."""
        return self._machine.pending

    # --- the Kernel protocol ---------------------------------------------------------

    def _enter(self) -> None:
        if self._proc.exited:
            raise fail(errno.ESRCH)
        self._machine.enter()

    @property
    def cgroup_root(self) -> str:
        return CGROUP_ROOT

    def bpf(self, cmd: int, attr: ctypes.Structure, size: int | None = None) -> int:
        self._enter()
        return commands.bpf(self._proc, cmd, attr, size)

    def open_dir(self, path: str, *, path_only: bool = False) -> int:
        self._enter()
        node = self._machine.vfs.lookup(path)
        if not isinstance(node, Dir):
            raise fail(errno.ENOTDIR)
        if not path_only and not node.may(self._proc.cred, R):
            raise fail(errno.EACCES)
        return self._proc.install(DirFile(node, path_only))

    def close(self, fd: int) -> None:
        self._enter()
        self._proc.close(fd)

    def dup(self, fd: int) -> int:
        self._enter()
        return self._proc.install(self._proc.file(fd))

    def _parent(self, path: str, *, exists: bool) -> tuple[Dir, str]:
        """The directory holding ``path`` (which must or must not exist), writable."""
        parent, name = self._machine.vfs.parent(path)
        if (name in parent.children) != exists:
            raise fail(errno.EEXIST if not exists else errno.ENOENT)
        if not parent.may(self._proc.cred, W):
            raise fail(errno.EACCES)
        return parent, name

    def mkdir(self, path: str) -> None:
        self._enter()
        parent, name = self._parent(path, exists=False)
        parent.mkdir(name, self._proc.cred)

    def rmdir(self, path: str) -> None:
        self._enter()
        parent, name = self._parent(path, exists=True)
        parent.rmdir(name)

    def unlink(self, path: str) -> None:
        self._enter()
        parent, name = self._parent(path, exists=True)
        parent.unlink(name)

    def _node(self, target: str | int) -> Node | None:
        """The directory a path names, or an fd has open (None: an anon-inode fd)."""
        if isinstance(target, str):
            return self._machine.vfs.lookup(target)
        file = self._proc.file(target)
        return file.node if isinstance(file, DirFile) else None

    def fs_magic(self, target: str | int) -> int:
        self._enter()
        node = self._node(target)
        return node.fs.magic if node is not None else uapi.ANON_INODE_FS_MAGIC

    def fd_kind(self, fd: int) -> str:
        self._enter()
        return self._proc.file(fd).kind

    def fdinfo(self, fd: int) -> dict[str, str]:
        self._enter()
        return dict(self._proc.file(fd).fdinfo(self._machine))

    def cgroup_id(self, target: str | int) -> int:
        self._enter()
        node = self._node(target)
        return node.ino if node is not None else self._proc.file(int(target)).ino

    def _cgroup(self, path: str) -> Cgroup:
        """The cgroup directory at ``path``: a file is ENOTDIR, another directory has no
        cgroup.procs (ENOENT)."""
        node = self._machine.vfs.lookup(path)
        if not isinstance(node, Dir):
            raise fail(errno.ENOTDIR)
        if not isinstance(node, Cgroup):
            raise fail(errno.ENOENT)
        return node

    def cgroup_children(self, path: str) -> dict[str, int]:
        self._enter()
        node = self._machine.vfs.lookup(path)
        if not isinstance(node, Dir):
            raise fail(errno.ENOTDIR)
        if not node.may(self._proc.cred, R):
            raise fail(errno.EACCES)
        return {name: child.ino for name, child in node.children.items()
                if isinstance(child, Dir) and child.mounted is None}

    def move_process(self, cgroup_path: str, pid: int) -> None:
        """As a write to cgroup.procs: opening it for writing (EACCES), the pid (EINVAL if
        negative, ESRCH if no live process has it, 0 is the caller), then write access to
        the cgroup.procs of the common ancestor of the two cgroups (EACCES)."""
        self._enter()
        cgroup, cred = self._cgroup(cgroup_path), self._proc.cred
        if not cgroup.children["cgroup.procs"].may(cred, W):
            raise fail(errno.EACCES)
        if pid < 0:
            raise fail(errno.EINVAL)
        proc = self._proc if pid == 0 else self._machine.procs.get(pid)
        if proc is None:
            raise fail(errno.ESRCH)
        src = [proc.home, *proc.home.ancestors()]
        common = next(c for c in [cgroup, *cgroup.ancestors()] if c in src)
        if not common.children["cgroup.procs"].may(cred, W):
            raise fail(errno.EACCES)
        proc.move_to(cgroup)

    def cgroup_processes(self, cgroup_path: str) -> list[int]:
        self._enter()
        cgroup = self._cgroup(cgroup_path)
        if not cgroup.children["cgroup.procs"].may(self._proc.cred, R):
            raise fail(errno.EACCES)
        return sorted(cgroup.procs)

    def has_capability(self, name: str) -> bool:
        return self._proc.capable(name)

    def possible_cpus(self) -> int:
        return POSSIBLE_CPUS

    def run_restricted(self, caps: Iterable[str], fn: Callable[[ModelKernel], object]) -> None:
        """``fn`` in a forked model process with only ``caps``; it exits after."""
        child = self.process(caps=caps, fork=True)
        try:
            fn(child)
        finally:
            child.exit()

    def mount_bpffs(self, path: str) -> None:
        self._enter()
        if not self._proc.capable("CAP_SYS_ADMIN"):
            raise fail(errno.EPERM)
        node = self._machine.vfs.lookup(path)
        if not isinstance(node, Dir):
            raise fail(errno.ENOTDIR)
        self._machine.vfs.mount(node, bpffs.new_mount())

    def umount(self, path: str) -> None:
        """Unmount a bpffs (its pins are evicted); the model's other mounts are busy."""
        self._enter()
        if not self._proc.capable("CAP_SYS_ADMIN"):
            raise fail(errno.EPERM)
        node = self._machine.vfs.lookup(path)
        if not isinstance(node, Dir) or node.covers is None:
            raise fail(errno.EINVAL)
        if not isinstance(node, BpfDir):
            raise fail(errno.EBUSY)
        node.covers.mounted, node.covers = None, None
        bpffs.unmount(node)

    def bpffs_mounts(self) -> list[str]:
        out: list[str] = []

        def walk(d: Dir, path: str) -> None:
            for name, child in d.children.items():
                if isinstance(child, Dir):
                    if child.mounted is None:
                        walk(child, f"{path}/{name}")
                    elif child.mounted.fs.magic == uapi.BPF_FS_MAGIC:
                        out.append(f"{path}/{name}")

        walk(self._machine.vfs.root, "")
        return out

    def list_dir(self, path: str) -> list[tuple[str, bool]]:
        self._enter()
        node = top(self._machine.vfs.lookup(path))
        if not isinstance(node, Dir):
            raise fail(errno.ENOTDIR)
        return [(name, isinstance(child, Dir)) for name, child in node.children.items()]

    def open_bpf_objects(self) -> list[tuple[str, int]]:
        return [(f.obj.kind, f.obj.id) for proc in self._machine.procs.values()
                for f in proc.fds.values()
                if isinstance(f, ObjFile) and f.obj.kind in ("prog", "map", "link")]
