"""The real kernel: bpf(2) through ctypes, files through ``os``."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .. import uapi
from ..uapi import CAPABILITIES

if TYPE_CHECKING:
    from .protocol import Kernel


class _Statfs(ctypes.Structure):
    # Only f_type is read; the rest of struct statfs is room for the kernel to write.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 160)]


def _load_libc() -> ctypes.CDLL:
    """The C library: glibc's soname first (``find_library`` runs a subprocess, 50-100 ms
    of every command's start-up), then whatever ``find_library`` finds (musl, ...)."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - not glibc
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = _load_libc()
#: syscall(2) without ``argtypes``: ctypes' conversion of declared arguments costs more
#: than the syscall itself (2.3 us against 0.9 us per bpf call, measured here), so the
#: hot call passes plain ints and ``byref``.
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_byref, _sizeof, _get_errno = ctypes.byref, ctypes.sizeof, ctypes.get_errno
_BPF = uapi.BPF_SYSCALL
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _keep_only(caps: Iterable[str]) -> None:
    """capset(2): effective = permitted = ``caps`` (uid stays); capabilities this kernel
    does not know (CAP_BPF before 5.8) are left out."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    mask = sum(1 << CAPABILITIES[c] for c in caps if CAPABILITIES[c] <= last)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = data[i].permitted = (mask >> (32 * i)) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(_CapHeader(uapi.CAPABILITY_VERSION_3, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


#: Anon-inode names of bpf fds -> kind.  Links were "bpf_link" before 6.x and are
#: "bpf-link" on 6.18 (docs/kernel.md §1.3).
_KINDS = {"anon_inode:bpf_link": "link", "anon_inode:bpf-link": "link",
          "anon_inode:bpf-prog": "prog", "anon_inode:bpf-map": "map", "anon_inode:btf": "btf"}


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return ret


def mount_points(fstype: str, mounts: str = "/proc/self/mounts") -> list[str]:
    """The mount points of file systems of type ``fstype`` listed in ``mounts`` (the
    kernel writes a space in a path as ``\\040``)."""
    with open(mounts) as f:
        found = [r[1] for r in (line.split() for line in f) if len(r) > 2 and r[2] == fstype]
    if any("\\" in p for p in found):
        import re

        found = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), p) for p in found]
    return found


def find_cgroup2_mount(mounts: str = "/proc/self/mounts") -> str:
    """The first cgroup2 mount point listed in ``mounts``; ``OSError(ENOENT)`` if none."""
    found = mount_points("cgroup2", mounts)
    if not found:
        raise OSError(errno.ENOENT, "no cgroup2 filesystem is mounted (see /proc/self/mounts)")
    return found[0]


class HostKernel:
    """The running Linux kernel.  Requires ``CONFIG_BPF_SYSCALL`` and, for cgroups,
    a mounted cgroup2 hierarchy."""

    name = "host"

    def __init__(self) -> None:
        self._cgroup_root: str | None = None
        self._cgroup_dev: int | None = None
        self._cpus: int | None = None

    def __repr__(self) -> str:
        return f"HostKernel({os.uname().release})"

    @property
    def cgroup_root(self) -> str:
        if self._cgroup_root is None:
            self._cgroup_root = find_cgroup2_mount()
        return self._cgroup_root

    def bpf(self, cmd: int, attr: ctypes.Structure, size: int | None = None) -> int:
        ret: int = _syscall(_BPF, cmd, _byref(attr), _sizeof(attr) if size is None else size)
        if ret < 0:
            err = _get_errno()
            raise OSError(err, os.strerror(err), "bpf")
        return ret

    def open_dir(self, path: str, *, path_only: bool = False) -> int:
        flags = (os.O_PATH if path_only else os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
        return os.open(path, flags)

    def close(self, fd: int) -> None:
        os.close(fd)

    def dup(self, fd: int) -> int:
        return os.dup(fd)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def fs_magic(self, target: str | int) -> int:
        buf = _Statfs()  # (f)statfs without argtypes, like bpf: an int or bytes and byref
        if isinstance(target, int):
            _check(_libc.fstatfs(target, _byref(buf)), f"fd {target}")
        else:
            _check(_libc.statfs(os.fsencode(target), _byref(buf)), target)
        return int(buf.f_type) & 0xFFFFFFFF

    def fd_kind(self, fd: int) -> str:
        try:
            return _KINDS.get(os.readlink(f"/proc/self/fd/{fd}"), "other")
        except FileNotFoundError as e:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF), f"fd {fd}") from e

    def fdinfo(self, fd: int) -> dict[str, str]:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            pairs = (line.rstrip("\n").split(":", 1) for line in f if ":" in line)
            return {k: v.strip() for k, v in pairs}

    def cgroup_id(self, target: str | int) -> int:
        return os.stat(target).st_ino

    def cgroup_children(self, path: str) -> dict[str, int]:
        """Subdirectories by name, with their inode numbers from the directory itself
        (no stat of each: a cgroup directory lists some 50 files).  Nothing below a
        directory of another file system (something mounted inside cgroup2); a child
        that goes during the listing is left out."""
        if self._cgroup_dev is None:
            self._cgroup_dev = os.stat(self.cgroup_root).st_dev
        if os.stat(path).st_dev != self._cgroup_dev:
            return {}
        with os.scandir(path) as entries:
            # cgroup2 (kernfs) gives each entry's type: is_dir() makes no syscall and
            # cannot fail
            return {e.name: e.inode() for e in entries if e.is_dir(follow_symlinks=False)}

    def move_process(self, cgroup_path: str, pid: int) -> None:
        fd = os.open(os.path.join(cgroup_path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)

    def cgroup_processes(self, cgroup_path: str) -> list[int]:
        with open(os.path.join(cgroup_path, "cgroup.procs")) as f:
            return [int(line) for line in f]

    def possible_cpus(self) -> int:
        if self._cpus is None:  # fixed at boot: read once
            with open("/sys/devices/system/cpu/possible") as f:  # e.g. "0-1" or "0,2-5"
                spans = [part.split("-") for part in f.read().strip().split(",")]
            self._cpus = sum(int(s[-1]) - int(s[0]) + 1 for s in spans)
        return self._cpus

    def has_capability(self, name: str) -> bool:
        with open("/proc/self/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
        return bool(eff >> CAPABILITIES[name] & 1)

    def run_restricted(self, caps: Iterable[str], fn: Callable[[Kernel], object]) -> None:
        """A forked child drops to ``caps`` and runs ``fn``; its errno comes back through
        a pipe.  A child that cannot drop its capabilities raises ``RuntimeError``."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            result = "0"
            try:
                os.close(r)
                try:
                    _keep_only(caps)
                except OSError as e:
                    raise RuntimeError(f"capset: {e.strerror}") from e
                fn(self)
            except OSError as e:
                result = str(e.errno)
            except BaseException as e:
                result = f"the child failed: {e!r}"
            os.write(w, result.encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            result = f.read()
        os.waitpid(pid, 0)
        if not result.isdigit():
            raise RuntimeError(result or "the child died")
        if int(result):
            raise OSError(int(result), os.strerror(int(result)))

    def mount_bpffs(self, path: str) -> None:
        _check(_libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, None), f"mount bpffs {path}")

    def umount(self, path: str) -> None:
        _check(_libc.umount2(os.fsencode(path), 0), f"umount {path}")

    def bpffs_mounts(self) -> list[str]:
        return mount_points("bpf")

    def list_dir(self, path: str) -> list[tuple[str, bool]]:
        with os.scandir(path) as entries:
            return [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]

    def open_bpf_objects(self) -> list[tuple[str, int]]:
        """From /proc/PID/fd (the fd's kind) and fdinfo (``prog_id``, ``map_id``,
        ``link_id``); a process or fd that goes meanwhile is passed over."""
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    kind = _KINDS.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if kind not in ("prog", "map", "link"):
                        continue
                    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                        key = f"{kind}_id:"
                        out += [(kind, int(line[len(key):])) for line in f
                                if line.startswith(key)]
                except (OSError, ValueError):
                    continue
        return out
