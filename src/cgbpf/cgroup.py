"""cgroup v2 directories as attachment targets: link, legacy attach/detach, query; found
by path or id; their processes."""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple, overload

from . import _bpf, _check, _fastwalk, _sys, uapi
from ._fd import FdObject
from ._object import as_enum
from .errors import BpfError, LinkDefunct, NotACgroup2
from .fallback import LegacyLink
from .kernel import Kernel, default_kernel, probe
from .kernel.protocol import BPF_FS_MAGIC, CGROUP1_MAGIC, CGROUP2_MAGIC
from .link import Link, LinkInfo
from .program import Program
from .uapi import AttachMode, AttachType, Cmd, LinkType


class End(enum.Enum):
    """An unanchored position: the head or the tail of the hook's list."""

    HEAD = "head"
    TAIL = "tail"


HEAD, TAIL = End.HEAD, End.TAIL
#: A result tuple made without the Python-level ``__new__`` (a third of a 64-entry query).
_ref = tuple.__new__
#: A hook's mode by the low bits of its flags (3, both bits, is not a mode the kernel
#: sets; it reads as MULTI, the bit that decides how entries combine).
_MODES = (AttachMode.EXCLUSIVE, AttachMode.OVERRIDE, AttachMode.MULTI, AttachMode.MULTI)
Anchor = Link | Program | End


class ProgramRef(NamedTuple):
    """One entry of a query.  ``attach_flags`` is the hook's flags word, as the kernel
    reports it for every entry; ``link_id`` is None because the kernel does not report
    link ids for cgroup hooks (§8)."""

    id: int
    attach_flags: int
    link_id: int | None = None


class Query(NamedTuple):
    """PROG_QUERY of one hook.  For an effective query ``mode`` is EXCLUSIVE, and
    ``attach_flags`` and ``revision`` are 0, as the kernel reports them."""

    mode: AttachMode
    attach_flags: int
    revision: int
    programs: list[ProgramRef]

    @property
    def ids(self) -> list[int]:
        return [p.id for p in self.programs]


class _Placement(NamedTuple):
    """Where a new entry goes, and the revision it expects: flags and attr fields (§5)."""

    flags: int = 0
    relative_fd: int = 0
    expected_revision: int = 0

    @classmethod
    def of(cls, k: Kernel, *, link: bool, before: Anchor | None, after: Anchor | None,
           preorder: bool, expected_revision: int) -> _Placement:
        command = "LINK_CREATE" if link else "PROG_ATTACH"
        if before is not None and after is not None:
            raise BpfError(errno.EINVAL, "both before= and after= given", command=command,
                           hint="a new entry goes either before or after one anchor")
        if before is TAIL or after is HEAD:
            raise BpfError(errno.EINVAL, "before=TAIL" if before is TAIL else "after=HEAD",
                           command=command, hint="use before=HEAD or after=TAIL")
        if before is None and after is None and not preorder and not expected_revision:
            return _AT_TAIL  # the common case, decided without building anything
        flags, rel = 0, 0
        anchor = before if before is not None else after
        if anchor is not None:
            probe.require(k, probe.MPROG)
            flags |= uapi.F_BEFORE if before is not None else uapi.F_AFTER
            if isinstance(anchor, Link):
                flags |= uapi.F_LINK
            if not isinstance(anchor, End):
                rel = anchor.fd
        if preorder:
            probe.require(k, probe.PREORDER_LINK if link else probe.PREORDER_ATTACH)
            flags |= uapi.F_PREORDER
        if expected_revision:
            probe.require(k, probe.MPROG)
        return cls(flags, rel, expected_revision)

    @property
    def errors(self) -> _bpf.ErrorMap:
        """The request's errors: a stale revision; for an entry placed next to another,
        what EINVAL means there (KERNEL-SEMANTICS §5: the anchor must be in this hook,
        and share the new entry's PREORDER bit)."""
        if not self.relative_fd:
            return _bpf.REVISION_ERRORS
        return {**_bpf.REVISION_ERRORS, errno.EINVAL: (BpfError, _ANCHOR_HINT)}


_AT_TAIL = _Placement()
_ANCHOR_HINT = ("the anchor must be an entry of this very hook, and an entry placed before or "
                "after it must match its preorder setting (both preorder=True, or neither)")
#: Why writing a pid to cgroup.procs fails, by errno.
_MOVE_HINTS = {
    errno.ESRCH: "no process has that pid (it may have exited)",
    errno.ENOENT: "the cgroup was removed",
    errno.EINVAL: "a negative pid, or a kernel thread (they stay in the root cgroup)",
    errno.EBUSY: "cgroup v2 keeps processes out of a cgroup that enables controllers for "
    "its children (cgroup.subtree_control)",
    errno.EACCES: "moving needs write access to cgroup.procs of this cgroup and of the "
    "common ancestor of the process's cgroup and this one",
}


def tree(k: Kernel) -> Iterator[tuple[str, int]]:
    """Every cgroup of the cgroup2 tree as (path, cgroup id), the root first, breadth
    first (a cgroup removed during the walk is passed over)."""
    todo = [k.cgroup_root]
    yield todo[0], k.cgroup_id(todo[0])
    while todo:
        path = todo.pop(0)
        try:
            children = k.cgroup_children(path)
        except OSError:
            continue
        for name, child_id in children.items():
            todo.append(os.path.join(path, name))
            yield todo[-1], child_id


class TreeEntry(NamedTuple):
    """A cgroup of :func:`query_tree`: its path and id, and its hooks with entries."""

    path: str
    id: int
    hooks: list[tuple[AttachType | int, Query]]


def query_tree(root: str, types: Iterable[AttachType | int], *, effective: bool = False,
               kernel: Kernel | None = None) -> list[TreeEntry]:
    """PROG_QUERY of ``types`` on every cgroup of the subtree at ``root`` (relative: from
    the cgroup2 mount), parents first, children by name.
    Cgroups removed during the walk, and file systems mounted inside cgroup2, are passed
    over.  On the host one call does it all when the compiled walker is built
    (``make install``; bpftool-like speed), else the same walk runs in Python.  Needs
    CAP_NET_ADMIN; the types must be ones the kernel has (probe them)."""
    k = kernel or default_kernel()
    types = list(types)
    with Cgroup.open(root, kernel=k) as top:  # checks the root is cgroup v2
        root = top.path
    # The walker asks LSM_CGROUP for no per-entry flags, which that hook requires (§8).
    fast = _fastwalk.walker() if k.name == "host" and (
        effective or AttachType.LSM_CGROUP not in types) else None
    if fast is not None:
        try:
            found = _fastwalk.tree_query(fast, root, [int(t) for t in types], effective)
        except OSError as e:
            raise _bpf.error(k, Cmd.PROG_QUERY, e.errno or errno.EIO,
                             f"{root} subtree {uapi.name_of(e.filename)}") from e
        return [TreeEntry(p, cid, [(as_enum(AttachType, at), Query(
            _MODES[f & 3], f, rev, [ProgramRef(i, f) for i in ids]))
            for at, f, rev, ids in hooks]) for p, cid, hooks in found]
    out: list[TreeEntry] = []
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            with Cgroup.open(path, kernel=k) as cg:
                cgroup_id = cg.id
                queries = [(at, cg.query(at, effective=effective)) for at in types]
            children = k.cgroup_children(path)
        except (FileNotFoundError, NotACgroup2):
            continue  # removed during the walk, or another file system mounted there
        out.append(TreeEntry(path, cgroup_id, [(at, q) for at, q in queries if q.programs]))
        stack.extend(os.path.join(path, n) for n in sorted(children, reverse=True))
    return out


def _find(k: Kernel, cgroup_id: int) -> str | None:
    """The path of the cgroup with that id (a walk of the tree, stopped when found)."""
    return next((path for path, i in tree(k) if i == cgroup_id), None)


def _not_cgroup2(k: Kernel, path: str, magic: int) -> NotACgroup2:
    what = {CGROUP1_MAGIC: "a cgroup v1 hierarchy", BPF_FS_MAGIC: "a bpffs"}.get(
        magic, f"a filesystem of type {magic:#x}")
    return NotACgroup2(errno.EBADF, f"{path} is on {what}, not cgroup v2", command="open",
                       hint="cgroup BPF needs a cgroup v2 directory; cgroup2 is mounted at "
                       f"{k.cgroup_root}")


class Cgroup(FdObject):
    """An open cgroup v2 directory.  Every attach type is one hook with its own list of
    up to 64 entries, mode, and (Linux 6.17+) revision."""

    _reopen = "open it again with Cgroup.open(path)"

    def __init__(self, kernel: Kernel, fd: int, path: str) -> None:
        super().__init__(kernel, fd)
        self.path = path
        self.id = kernel.cgroup_id(fd)

    def __repr__(self) -> str:
        return f"<Cgroup {self.path}{' closed' if self.closed else ''}>"

    @classmethod
    def open(cls, path: str, *, kernel: Kernel | None = None, path_only: bool = False) -> Cgroup:
        """Open a cgroup v2 directory.  A relative path is taken from the cgroup2 mount.

        Raises :class:`NotACgroup2` (EBADF, what the kernel answers for such a target) for
        a cgroup v1 directory or any other non-cgroup2 path, and ENOENT if it is missing.
        The checks look at the fd opened, so the path is looked up once.
        """
        k = kernel or default_kernel()
        path = os.path.join(k.cgroup_root, _check.path("Cgroup.open", "path", path))
        try:
            fd = k.open_dir(path, path_only=path_only)
        except NotADirectoryError as e:
            magic = k.fs_magic(path)
            if magic == CGROUP2_MAGIC:
                raise NotACgroup2(errno.EBADF, f"{path} is a cgroup2 file, not a cgroup "
                                  "directory", command="open",
                                  hint="pass the cgroup's directory") from e
            raise _not_cgroup2(k, path, magic) from e
        except OSError as e:
            raise BpfError(e.errno or errno.EIO, f"cgroup {path}", command="open",
                           hint=f"cgroup2 is mounted at {k.cgroup_root}") from e
        try:
            magic = k.fs_magic(fd)
            if magic != CGROUP2_MAGIC:
                raise _not_cgroup2(k, path, magic)
            return cls(k, fd, path)
        except BaseException:
            k.close(fd)
            raise

    @classmethod
    def create(cls, path: str, *, kernel: Kernel | None = None) -> Cgroup:
        """mkdir a cgroup (relative paths from the cgroup2 mount) and open it.  A parent
        that is not cgroup v2 is refused before anything is made."""
        k = kernel or default_kernel()
        path = os.path.join(k.cgroup_root, _check.path("Cgroup.create", "path", path))
        parent = os.path.dirname(path.rstrip("/")) or "/"
        try:
            magic = k.fs_magic(parent)
        except OSError as e:
            raise BpfError(e.errno or errno.EIO, f"cgroup {path}", command="mkdir",
                           hint=f"its parent {parent} must exist; cgroup2 is mounted at "
                           f"{k.cgroup_root}") from e
        if magic != CGROUP2_MAGIC:
            raise _not_cgroup2(k, parent, magic)
        try:
            k.mkdir(path)
        except OSError as e:
            raise BpfError(e.errno or errno.EIO, f"cgroup {path}", command="mkdir") from e
        return cls.open(path, kernel=k)

    @classmethod
    def from_id(cls, cgroup_id: int, *, kernel: Kernel | None = None) -> Cgroup:
        """Open the cgroup whose id is ``cgroup_id`` (as :attr:`id`, ``LinkInfo.cgroup_id``
        and ``bpf_get_current_cgroup_id`` give it), found by walking the cgroup2 tree;
        ENOENT if none has it.  Linux 5.5 (the id is the directory's inode number)."""
        _check.arg("Cgroup.from_id", "cgroup_id", cgroup_id, int, "an int cgroup id")
        k = kernel or default_kernel()
        path = _find(k, cgroup_id)
        if path is not None:
            cg = cls.open(path, kernel=k)
            if cg.id == cgroup_id:
                return cg
            cg.close()  # replaced or renamed since the walk
        raise BpfError(errno.ENOENT, f"cgroup id {cgroup_id}", command="open",
                       hint=f"no cgroup below {k.cgroup_root} has that id (it may have "
                       "been removed)")

    @classmethod
    def from_link(cls, link: Link | LegacyLink) -> Cgroup:
        """Open the cgroup ``link`` is attached to (its info's cgroup id, then
        :meth:`from_id`); :class:`LinkDefunct` once the link is detached.  Linux 5.8."""
        _check.arg("Cgroup.from_link", "link", link, (Link, LegacyLink), "a cgbpf.Link")
        info = link.info()
        if info.cgroup_id is None:
            raise BpfError(errno.EINVAL, f"{link!r} is a {uapi.name_of(info.type)} link",
                           command="open", hint="only a cgroup link has a cgroup")
        if info.cgroup_id == 0:
            raise LinkDefunct(errno.ENOLINK, f"{link!r}", command="open",
                              hint="the link was detached or its cgroup was removed")
        return cls.from_id(info.cgroup_id, kernel=link.kernel)

    def add_process(self, pid: int) -> None:
        """Move process ``pid`` (with all its threads; 0: the caller) into this cgroup:
        write it to cgroup.procs.  ESRCH if there is no such process.  Linux 4.5."""
        _check.arg("Cgroup.add_process", "pid", pid, int, "an int pid")
        self.fd  # noqa: B018 - ClosedError on a closed cgroup
        try:
            self.kernel.move_process(self.path, pid)
        except OSError as e:
            err = e.errno or errno.EIO
            raise BpfError(err, f"pid {pid} into {self.path}", command="cgroup.procs",
                           hint=_MOVE_HINTS.get(err, "")) from e

    def processes(self) -> list[int]:
        """The pids of the processes in this cgroup (not its descendants), from
        cgroup.procs, sorted.  Linux 4.5."""
        self.fd  # noqa: B018 - ClosedError on a closed cgroup
        try:
            return sorted(set(self.kernel.cgroup_processes(self.path)))
        except OSError as e:
            raise BpfError(e.errno or errno.EIO, f"processes of {self.path}",
                           command="cgroup.procs", hint="the cgroup was removed"
                           if e.errno == errno.ENOENT else "") from e

    def remove(self) -> None:
        """rmdir the cgroup and close this fd.  Its links are auto-detached (and become
        defunct) once the kernel releases the cgroup, asynchronously."""
        try:
            self.kernel.rmdir(self.path)
        except OSError as e:
            raise BpfError(e.errno or errno.EIO, f"cgroup {self.path}", command="rmdir",
                           hint="remove child cgroups and move processes out first"
                           if e.errno == errno.EBUSY else "") from e
        self.close()

    def _attach_type(self, call: str, prog: Program | None,
                     attach_type: AttachType | int | None) -> AttachType | int:
        """The attach type asked for, else the program's expected attach type, else the
        one hook its program type has (CGROUP_DEVICE, CGROUP_SYSCTL, SOCK_OPS)."""
        _check.arg(call, "prog", prog, Program, "a cgbpf.Program", none=call.endswith("detach"))
        _check.arg(call, "attach_type", attach_type, int, "a cgbpf.AttachType", none=True)
        at = attach_type if attach_type is not None or prog is None else \
            prog.expected_attach_type
        if at is None and prog is not None:
            hooks = [t for t, p in uapi.CGROUP_PROG_TYPE.items() if p == prog.type]
            if not hooks:
                raise BpfError(errno.EINVAL, f"{prog!r} is not a cgroup program: it cannot "
                               f"be attached to {self.path}", hint="cgroup hooks take "
                               + ", ".join(sorted({uapi.name_of(p) for p in
                                                   uapi.CGROUP_PROG_TYPE.values()}))
                               + " programs")
            at = hooks[0] if len(hooks) == 1 else None
        if at is None:
            raise BpfError(errno.EINVAL, f"{prog!r} and {self.path}: no attach type",
                           hint="pass attach_type, or load the program with "
                           "expected_attach_type")
        return at

    def _detail(self, verb: str, prog: Program | None, at: int) -> _bpf.Detail:
        return lambda: f"{verb} {prog!r} {'from' if verb == 'detach' else 'to'} {self.path} " \
            f"{uapi.name_of(at)}"

    @overload
    def link(self, prog: Program, attach_type: AttachType | int | None = None, *,
             before: Anchor | None = None, after: Anchor | None = None,
             preorder: bool = False, expected_revision: int = 0,
             fallback: Literal[False] = False) -> Link: ...

    @overload
    def link(self, prog: Program, attach_type: AttachType | int | None = None, *,
             before: Anchor | None = None, after: Anchor | None = None,
             preorder: bool = False, expected_revision: int = 0,
             fallback: bool) -> Link | LegacyLink: ...

    def link(self, prog: Program, attach_type: AttachType | int | None = None, *,
             before: Anchor | None = None, after: Anchor | None = None,
             preorder: bool = False, expected_revision: int = 0,
             fallback: bool = False) -> Link | LegacyLink:
        """LINK_CREATE: attach ``prog`` through a new bpf_link (Linux 5.7).

        The attach type defaults to the program's expected attach type.  ``before`` /
        ``after`` take a :class:`Link` of this hook or HEAD/TAIL, ``preorder`` runs the
        program before descendants' programs, ``expected_revision`` fails with
        :class:`StaleRevision` if the hook changed (all Linux 6.17).  Links need the hook
        (and ancestors) in MULTI mode or empty.  Closing the link detaches it.

        On a kernel without cgroup links this raises :class:`NotSupported`, unless
        ``fallback=True``: then a :class:`~cgbpf.fallback.LegacyLink` (legacy MULTI
        attach, ``mode == "legacy"``, with a :class:`~cgbpf.fallback.FallbackWarning`)
        stands in for the link.
        """
        if fallback and not probe.supported(self.kernel, probe.LINKS):
            if before is not None or after is not None or preorder or expected_revision:
                probe.require(self.kernel, probe.MPROG)  # none of them predates links
            return LegacyLink(self.kernel, self.fd, self.path, prog,
                              self._attach_type("Cgroup.link", prog, attach_type))
        probe.require(self.kernel, probe.LINKS)
        at = self._attach_type("Cgroup.link", prog, attach_type)
        pl = _Placement.of(self.kernel, link=True, before=before, after=after,
                           preorder=preorder, expected_revision=expected_revision)
        fd = _bpf.call(self.kernel, Cmd.LINK_CREATE, lambda: _sys.link_create(
            self.kernel, prog.fd, self.fd, at, flags=pl.flags, relative_fd=pl.relative_fd,
            expected_revision=pl.expected_revision), self._detail("link", prog, at),
            needs=_bpf.attach_needs(prog.type), errors=pl.errors)
        # What the link is, the request said; its id (none on 5.7) is read when asked for.
        return Link(self.kernel, fd, LinkInfo(0, LinkType.CGROUP, prog.id, self.id, at),
                    lazy_id=probe.supported(self.kernel, probe.LINK_INFO))

    def attach(self, prog: Program, attach_type: AttachType | int | None = None, *,
               mode: AttachMode = AttachMode.MULTI, replace: Program | None = None,
               before: Anchor | None = None, after: Anchor | None = None,
               preorder: bool = False, expected_revision: int = 0) -> None:
        """Legacy PROG_ATTACH (no fd owns the attachment; :meth:`detach` removes it).

        ``mode`` EXCLUSIVE/OVERRIDE keep one program (re-attaching replaces it); MULTI
        appends, or swaps ``replace`` in place (Linux 5.6).  Ordering, ``preorder`` and
        ``expected_revision`` as for :meth:`link` (anchors are programs attached here
        with PROG_ATTACH; PREORDER needs Linux 6.15).
        """
        at = self._attach_type("Cgroup.attach", prog, attach_type)
        pl = _Placement.of(self.kernel, link=False, before=before, after=after,
                           preorder=preorder, expected_revision=expected_revision)
        _check.arg("Cgroup.attach", "replace", replace, Program, "a cgbpf.Program", none=True)
        _bpf.prog_attach(self.kernel, self.fd, prog.fd, prog.type, at,
                         self._detail("attach", prog, at),
                         flags=int(mode) | pl.flags | (uapi.F_REPLACE if replace else 0),
                         replace_fd=replace.fd if replace else 0, relative_fd=pl.relative_fd,
                         expected_revision=pl.expected_revision, errors=pl.errors)

    def detach(self, prog: Program | None, attach_type: AttachType | int | None = None, *,
               expected_revision: int = 0) -> None:
        """Legacy PROG_DETACH.  In EXCLUSIVE/OVERRIDE mode the hook's one program goes,
        whatever ``prog`` is; in MULTI mode ``prog`` must be attached here by PROG_ATTACH
        (ENOENT otherwise: links are detached through the link)."""
        at = self._attach_type("Cgroup.detach", prog, attach_type)
        if expected_revision:
            probe.require(self.kernel, probe.MPROG)
        _bpf.prog_detach(self.kernel, self.fd, prog.fd if prog else 0, at,
                         self._detail("detach", prog, at), expected_revision=expected_revision)

    def query(self, attach_type: AttachType | int, *, effective: bool = False) -> Query:
        """PROG_QUERY: every entry of the hook (or the effective array that runs for
        this cgroup), however many.  Needs CAP_NET_ADMIN."""
        _check.arg("Cgroup.query", "attach_type", attach_type, int, "a cgbpf.AttachType")
        raw = _bpf.prog_query(self.kernel, self.fd, attach_type, effective=effective,
                              detail=lambda: f"{self.path} {uapi.name_of(attach_type)}"
                              + (" effective" if effective else ""))
        return Query(_MODES[raw.attach_flags & 3], raw.attach_flags, raw.revision,
                     [_ref(ProgramRef, (i, f, None))
                      for i, f in zip(raw.prog_ids, raw.prog_flags, strict=True)])
