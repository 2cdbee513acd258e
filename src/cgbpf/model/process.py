"""Processes: credentials, capabilities and fd tables; open files and their fdinfo.

An fd refers to an open :class:`File` (shared by ``dup`` and ``fork``); the file is
released when its last fd is closed.  Releasing a BPF object file puts the object
*synchronously* (closing the last link fd detaches at once, §11); releasing a socket
drops its hold on the cgroup it was created in (§12).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, TypeVar

from .. import uapi
from ..asm import LD_IMM64
from .cgroupfs import Cgroup
from .memory import PAGE, fail
from .objects import F_NO_PREALLOC, BtfObj, Link, Map, Obj, Prog
from .vfs import Cred, Dir

if TYPE_CHECKING:
    from .machine import Machine

#: The anonymous-inode mount every BPF fd lives on, and its inode (§13).  The kernel
#: gives every program, map and link fd the *same* inode (``anon_inode_getfd``: ``fstat``
#: of any two says the same ``st_ino``, as for an eventfd), so ``ino`` is one number, not
#: one per object.  Both numbers are fixed at boot on a real kernel; these are the model's
#: own, chosen equal to the reference machine's (mnt_id 17, ino 1038).  The model's other
#: mounts (cgroup2, bpffs) number from 20.
ANON_MNT_ID, ANON_INO = 17, 1038
#: ``num_possible_cpus()`` of the model machine (the reference VM's: possible 0-1); the
#: hash-map memlock depends on it.
POSSIBLE_CPUS = 2
PAGE_SIZE = 4096
#: Struct sizes behind ``memlock`` (x86_64 6.18, measured through fdinfo): struct
#: bpf_prog (before its instructions), struct bpf_array, struct bpf_htab, a hash bucket,
#: struct htab_elem (before key and value), and HASHTAB_MAP_LOCK_COUNT.
PROG_HEAD, ARRAY_HEAD, HTAB_HEAD, HTAB_BUCKET, HTAB_ELEM_HEAD, HTAB_LOCKS = \
    96, 312, 896, 16, 48, 8
LLIST_NODE = 8  # struct llist_node
ObjT = TypeVar("ObjT", bound=Obj)


class File:
    """An open file description."""

    kind = "other"
    flags = os.O_RDWR | os.O_CLOEXEC
    mnt_id, ino = 0, 0

    def __init__(self) -> None:
        self.count = 0  # fds referring to this file, in every process

    def release(self) -> None:
        """The last fd was closed."""

    def fdinfo(self, machine: Machine) -> list[tuple[str, str]]:
        """``/proc/PID/fdinfo/FD`` lines: the common head (§13 line order)."""
        return [("pos", "0"), ("flags", f"0{self.flags:o}"), ("mnt_id", str(self.mnt_id)),
                ("ino", str(self.ino))]


class DirFile(File):
    """An open directory (``O_PATH`` or read-only)."""

    def __init__(self, node: Dir, path_only: bool) -> None:
        super().__init__()
        self.node = node
        self.flags = os.O_CLOEXEC | os.O_DIRECTORY | (os.O_PATH if path_only else os.O_RDONLY)
        self.mnt_id, self.ino = node.fs.mnt_id, node.ino


class SocketFile(File):
    """A socket created in a cgroup: it holds that cgroup's BPF state (§12)."""

    def __init__(self, cgroup: Cgroup) -> None:
        super().__init__()
        self.cgroup = cgroup
        cgroup.hold()

    def release(self) -> None:
        self.cgroup.unhold()


class ObjFile(File):
    """An anonymous-inode fd for a program, map, link or BTF; holds one reference."""

    mnt_id, ino = ANON_MNT_ID, ANON_INO

    def __init__(self, obj: Obj, access: int = os.O_RDWR) -> None:
        super().__init__()
        self.obj = obj.get()
        self.kind = obj.kind
        # bpf_link_new_fd opens links with O_CLOEXEC only (§13: "flags: 02000000"), and
        # so does btf_new_fd (measured).
        self.flags = os.O_CLOEXEC | (0 if isinstance(obj, (Link, BtfObj)) else access)

    def release(self) -> None:
        self.obj.put()

    def fdinfo(self, machine: Machine) -> list[tuple[str, str]]:
        """``bpf_prog_show_fdinfo``, ``bpf_map_show_fdinfo``, ``bpf_link_show_fdinfo`` +
        ``bpf_cgroup_link_show_fdinfo``: the keys and their order as on 6.18.

        ``prog_jited`` is 1 as on the x86_64 kernels measured (JIT always on), though the
        model has no machine code; ``memlock`` and ``verified_insns`` are derived (see
        :func:`prog_memlock`, :func:`map_memlock`, :func:`verified_insns`); the run
        statistics stay 0, as on a kernel without ``kernel.bpf_stats_enabled``."""
        obj, lines = self.obj, super().fdinfo(machine)
        if isinstance(obj, Prog):
            lines += [("prog_type", str(obj.type)), ("prog_jited", "1"),
                      ("prog_tag", obj.tag.hex()), ("memlock", str(prog_memlock(obj))),
                      ("prog_id", str(obj.id)), ("run_time_ns", "0"), ("run_cnt", "0"),
                      ("recursion_misses", "0"), ("verified_insns", str(verified_insns(obj)))]
        elif isinstance(obj, Map):
            lines += [("map_type", str(obj.type)), ("key_size", str(obj.key_size)),
                      ("value_size", str(obj.value_size)),
                      ("max_entries", str(obj.max_entries)), ("map_flags", f"{obj.flags:#x}"),
                      ("map_extra", "0x0"), ("memlock", str(map_memlock(obj))),
                      ("map_id", str(obj.id)), ("frozen", str(int(obj.frozen)))]
        elif isinstance(obj, BtfObj):
            lines += [("btf_id", str(obj.id))]
        elif isinstance(obj, Link) and machine.profile.has("link_ids"):
            cgroup_id = obj.cgroup.ino if obj.cgroup is not None else 0
            lines += [("link_type", "cgroup"), ("link_id", str(obj.id)),
                      ("prog_tag", obj.prog.tag.hex()), ("prog_id", str(obj.prog.id)),
                      ("cgroup_id", str(cgroup_id)), ("attach_type", str(obj.attach_type))]
        return lines


def _round(n: int, to: int) -> int:
    return -(-n // to) * to


def prog_memlock(prog: Prog) -> int:
    """``prog->pages * PAGE_SIZE``: ``bpf_prog_size(insn_cnt)`` rounded up to pages (the
    kernel can grow a program when the verifier patches it; the model patches nothing)."""
    return _round(PROG_HEAD + len(prog.insns), PAGE_SIZE)


def map_memlock(m: Map) -> int:
    """``map_mem_usage``: of an ARRAY or PERCPU_ARRAY (``array_map_mem_usage``; a per-CPU
    array adds a pointer per entry; an MMAPABLE array's head and values take whole
    pages), or of a hash (``htab_map_mem_usage``): buckets for max_entries rounded up to
    a power of two, per-CPU lock counters, and the elements (a per-CPU one holds a pointer
    to its copies): not preallocated, those there are with their list nodes; else
    max_entries of them and, for a plain HASH, one extra element and one element pointer
    per possible CPU.  Checked against 6.18.44 (whose hashes lack the lock counters)."""
    value = _round(m.value_size, 8)
    if m.is_array and m.flags & uapi.F_MMAPABLE:
        return _round(ARRAY_HEAD, PAGE) + _round(m.max_entries * value, PAGE)
    if m.is_array:
        return ARRAY_HEAD + m.max_entries * (value if m.ncopies == 1 else 8 + value * m.ncopies)
    buckets = 1 << (m.max_entries - 1).bit_length()
    head = HTAB_HEAD + HTAB_BUCKET * buckets + 4 * POSSIBLE_CPUS * HTAB_LOCKS
    elem = HTAB_ELEM_HEAD + _round(m.key_size, 8)
    # a per-CPU element holds a pointer to its copies
    elem += 8 + value * m.ncopies if m.ncopies > 1 else value
    if m.flags & F_NO_PREALLOC:  # the elements there are, with llist nodes
        return head + (elem + LLIST_NODE + (LLIST_NODE + 8 if m.ncopies > 1 else 0)) * len(m.data)
    if m.ncopies > 1 or m.is_lru:
        return head + elem * m.max_entries
    return head + elem * (m.max_entries + POSSIBLE_CPUS) + 8 * POSSIBLE_CPUS


def verified_insns(prog: Prog) -> int:
    """The verifier's ``insn_processed``, approximated by the number of instructions (a
    ``ld_imm64`` counts once; the model refuses unreachable ones).  Exact for straight-line
    code and for branches the verifier prunes where they join; it counts more for paths
    it has to walk twice."""
    n, i = 0, 0
    while i < len(prog.insns):
        n += 1
        i += 16 if prog.insns[i] == LD_IMM64 else 8
    return n


class Process:
    """A process: credentials, capabilities, an fd table (0-2 are open "other" files) and
    the cgroup it is in (``home``: the root cgroup unless given); it is in the machine's
    process table until it exits."""

    def __init__(self, machine: Machine, pid: int, caps: frozenset[str], cred: Cred,
                 home: Cgroup | None = None) -> None:
        unknown = caps - uapi.CAPABILITIES.keys()
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)};"
                             f" known: {list(uapi.CAPABILITIES)}")
        self.machine, self.pid, self.caps, self.cred = machine, pid, caps, cred
        self.fds: dict[int, File] = {}
        self.exited = False
        self.home = machine.cgroup_root
        self.move_to(home or machine.cgroup_root)
        machine.procs[pid] = self
        stdio = File()
        for _ in range(3):
            self.install(stdio)

    # --- credentials -----------------------------------------------------------------

    def capable(self, cap: str) -> bool:
        """Whether the process has ``cap`` (CAP_BPF exists from 5.8, §15)."""
        return cap in self.caps and (cap != "CAP_BPF" or self.machine.profile.has("cap_bpf"))

    def bpf_capable(self) -> bool:
        """``bpf_capable()``: CAP_BPF or CAP_SYS_ADMIN."""
        return self.capable("CAP_BPF") or self.capable("CAP_SYS_ADMIN")

    def net_capable(self) -> bool:
        """``bpf_net_capable()`` (6.7+: CAP_NET_ADMIN or CAP_SYS_ADMIN; before, only
        CAP_NET_ADMIN counts, §19)."""
        return self.capable("CAP_NET_ADMIN") or (
            self.machine.profile.has("bpf_net_capable") and self.capable("CAP_SYS_ADMIN"))

    # --- the fd table ----------------------------------------------------------------

    def install(self, file: File) -> int:
        """Give ``file`` the lowest free fd."""
        fd = next(i for i in range(len(self.fds) + 1) if i not in self.fds)
        self.fds[fd] = file
        file.count += 1
        return fd

    def file(self, fd: int) -> File:
        try:
            return self.fds[fd]
        except KeyError:
            raise fail(errno.EBADF) from None

    def close(self, fd: int) -> None:
        file = self.file(fd)
        del self.fds[fd]
        file.count -= 1
        if file.count == 0:
            file.release()

    def exit(self) -> None:
        """Exit (and be reaped): fds closed, out of its cgroup and the process table."""
        for fd in sorted(self.fds):
            self.close(fd)
        self.exited = True
        self.home.procs.discard(self.pid)
        self.machine.procs.pop(self.pid, None)

    def move_to(self, cgroup: Cgroup) -> None:
        """Into ``cgroup`` (a write of its pid to cgroup.procs, checked by the caller)."""
        self.home.procs.discard(self.pid)
        cgroup.procs.add(self.pid)
        self.home = cgroup

    # --- fds as the bpf commands resolve them ----------------------------------------

    def obj(self, fd: int, cls: type[ObjT]) -> ObjT:
        """The object behind ``fd``: bad fd EBADF, another kind of file EINVAL."""
        file = self.file(fd)
        if not isinstance(file, ObjFile) or not isinstance(file.obj, cls):
            raise fail(errno.EINVAL)
        return file.obj

    def prog(self, fd: int, prog_type: int | None = None) -> Prog:
        """``bpf_prog_get_type``: EBADF, EINVAL (not a program, or of another type)."""
        prog = self.obj(fd, Prog)
        if prog_type is not None and prog.type != prog_type:
            raise fail(errno.EINVAL)
        return prog

    def cgroup(self, fd: int) -> Cgroup:
        """The target cgroup (§14): anything but a cgroup2 directory is EBADF, a removed
        cgroup ENOENT."""
        file = self.fds.get(fd)
        if not isinstance(file, DirFile) or not isinstance(file.node, Cgroup):
            raise fail(errno.EBADF)
        if not file.node.alive:
            raise fail(errno.ENOENT)
        return file.node

    def dir(self, fd: int) -> Dir:
        """A directory fd used as a path base (``path_fd``)."""
        file = self.file(fd)
        if not isinstance(file, DirFile):
            raise fail(errno.ENOTDIR)
        return file.node

    def access(self, fd: int) -> int:
        """The ``O_ACCMODE`` of ``fd``."""
        return self.file(fd).flags & os.O_ACCMODE


def open_flags(flags: int) -> int:
    """``bpf_get_file_flag``: BPF_F_RDONLY/WRONLY to O_ACCMODE (both: EINVAL)."""
    rd, wr = flags & uapi.F_RDONLY, flags & uapi.F_WRONLY
    if rd and wr:
        raise fail(errno.EINVAL)
    return os.O_RDONLY if rd else os.O_WRONLY if wr else os.O_RDWR
