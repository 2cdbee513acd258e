"""The differential test's driver: the same random sequence of raw bpf(2) requests (and the
file operations around them) runs on the real kernel and on a model machine, and after
every step every observable is compared, with IDs renamed (KERNEL-SEMANTICS.md §18).

* Each kernel works in its own scratch subtree ``<cgroup2>/cgbpf-test-*`` holding the
  cgroups ``. a a/b a/b/c d`` (names are compared, never paths), with a bpffs for pins
  and five programs: P0-P2 CGROUP_SKB for EGRESS, P3 CGROUP_SKB for INGRESS, P4
  CGROUP_SOCK_ADDR for INET4_CONNECT.
* A step is an :class:`Op` that builds the raw attr from :mod:`cgbpf.uapi` per kernel.
  ``L3`` is the 4th fd the sequence obtained (LINK_CREATE, dup, OBJ_GET, GET_FD_BY_ID);
  ``Lnewest`` the newest open link.  A :class:`Ref` names an fd for both kernels and can
  be of the wrong kind, a closed handle, fd 0 or a never-open fd; under ``BPF_F_ID`` the
  same ``Ref`` names an ID (an object of the wrong kind names a bogus ID).
* Observables after each step: the result (value or errno name), then, for every live
  cgroup and attach type, the normal and the effective query; the info of every open
  handle; which known links LINK_GET_NEXT_ID still lists.  Every ID is renamed: programs
  P0-P4, cgroups ``name#incarnation``, links ``link<n>`` in the order first seen.
* Asynchronous kernel work (§11 last pin unlinked, §12 rmdir): the model runs
  ``settle()`` after every step; the host is polled (at most 5 s, 1 ms sleeps) until no
  known link without an owner (an open handle or a pin) is still listed and no listed
  known link still names a removed cgroup, then given 2 ms more (a link's ID is freed
  just before its detach).  No sockets are made, so nothing holds a removed cgroup's
  state and its links always auto-detach.
* "Process exit": :class:`Child` forks (``os.fork`` on the host, ``process(fork=True)``
  in the model), creates a link with the inherited fds and exits without closing it.

``python tests/differential.py --steps 10000`` runs the long fuzz (random seeds).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import functools
import json
import operator
import os
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

import cgbpf
from cgbpf import Program, asm, uapi
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import ProgType as PT

PREFIX = "cgbpf-test"
EGRESS, INGRESS = AT.CGROUP_INET_EGRESS, AT.CGROUP_INET_INGRESS
CONNECT = AT.CGROUP_INET4_CONNECT
ATTACH_TYPES = (EGRESS, INGRESS, CONNECT)
UNKNOWN_TYPE = 200
CGROUPS = ("", "a", "a/b", "a/b/c", "d")
PROGS = ((PT.CGROUP_SKB, EGRESS),) * 3 + ((PT.CGROUP_SKB, INGRESS),
                                          (PT.CGROUP_SOCK_ADDR, CONNECT))
PINS = ("pin0", "pin1")
MAX_HANDLES = 8
BAD_FD = 99_999  # never open
BOGUS_ID = 0x7FFF_FFF0  # no such program or link
SENTINEL = 0xFFFF_FFFF  # query buffer slots the kernel must not write
BIT7 = 1 << 7  # not a flag
FLAG_NAMES = {uapi.F_ALLOW_OVERRIDE: "OVERRIDE", uapi.F_ALLOW_MULTI: "MULTI",
              uapi.F_REPLACE: "REPLACE", uapi.F_BEFORE: "BEFORE", uapi.F_AFTER: "AFTER",
              uapi.F_ID: "ID", uapi.F_PREORDER: "PREORDER", uapi.F_LINK: "LINK", BIT7: "BIT7"}
TYPE_NAMES = {EGRESS: "EGRESS", INGRESS: "INGRESS", CONNECT: "CONNECT"}

Result = tuple[Any, ...]


def errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def attempt(fn: Callable[[], Any]) -> Result:
    """``("ok", value)`` or ``(errno name,)``."""
    try:
        value = fn()
    except OSError as e:
        return (errname(e),)
    return ("ok",) if value is None else ("ok", value)


def flag_text(flags: int) -> str:
    names = [n for bit, n in FLAG_NAMES.items() if flags & bit]
    rest = flags & ~functools.reduce(operator.or_, FLAG_NAMES)
    return "|".join(names + ([hex(rest)] if rest else [])) or "0"


@dataclass(frozen=True)
class Ref:
    """An fd named the same way for both kernels (or, under ``BPF_F_ID``, an ID): a
    program, a handle, a cgroup directory, a never-open fd, or 0."""

    kind: str  # "prog" | "link" | "last" (the newest open link) | "cg" | "bad" | "zero"
    key: int | str = 0

    def __repr__(self) -> str:
        return {"prog": f"P{self.key}", "link": f"L{self.key}", "last": "Lnewest",
                "cg": f"cg:{self.key or '.'}", "bad": "BAD", "zero": "0"}[self.kind]


@dataclass
class Handle:
    """An fd the sequence obtained: ``fd`` is None once closed; ``ident`` is the raw ID."""

    fd: int | None
    kind: str
    ident: int


class Side:
    """One kernel's half of a run: its scratch subtree, its fds and its ID renaming."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.scratch = Scratch(kernel, PREFIX)
        self.handles: list[Handle] = []
        self.dirs: dict[str, int] = {}  # current directory fd per cgroup name
        self.old_dirs: list[int] = []  # fds of removed incarnations, replaced by mkdir
        self.live: set[str] = set()
        self.cg_ids: dict[str, int] = {}
        self.removed: set[int] = set()
        self.pins: dict[str, tuple[str, int]] = {}
        self.names: dict[tuple[str, int], str] = {}
        self.seen: Counter[str] = Counter()
        self.gen: Counter[str] = Counter()
        self.progs: list[Program] = []
        try:
            self.bpffs = self.scratch.bpffs()
            for ptype, eat in PROGS:
                prog = Program.load(asm.return_program(1), ptype, expected_attach_type=eat,
                                    kernel=kernel)
                self.progs.append(prog)
                self.names["prog", self.identify(prog.fileno())[1]] = f"P{len(self.progs) - 1}"
            for name in CGROUPS:
                if name:
                    kernel.mkdir(self.scratch.path(name))
                self.created(name)
        except BaseException:
            self.close()
            raise

    # --- names ---------------------------------------------------------------------------

    def created(self, name: str) -> None:
        """A new incarnation of cgroup ``name``: open it, name its ID."""
        path = self.scratch.path(name)
        if name in self.dirs:
            self.old_dirs.append(self.dirs[name])
        self.dirs[name] = self.k.open_dir(path)
        self.live.add(name)
        self.gen[name] += 1
        self.cg_ids[name] = raw = self.k.cgroup_id(path)
        self.names["cg", raw] = f"{name or '.'}#{self.gen[name]}"

    def norm(self, space: str, raw: int) -> str | int:
        """The name of an ID: given at creation, else ``<space><n>`` in first-seen order."""
        if raw == 0:
            return 0
        if (space, raw) not in self.names:
            self.names[space, raw] = f"{space}{self.seen[space]}"
            self.seen[space] += 1
        return self.names[space, raw]

    def handle(self, key: int | str) -> Handle | None:
        i = int(key)
        return self.handles[i] if i < len(self.handles) else None

    def newest(self) -> Handle | None:
        """The newest open link handle."""
        return next((h for h in reversed(self.handles) if h.fd is not None and h.kind == "link"),
                    None)

    def lookup(self, ref: Ref) -> Handle | None:
        return self.newest() if ref.kind == "last" else self.handle(ref.key)

    def fd(self, ref: Ref) -> int:
        if ref.kind == "prog":
            return self.progs[int(ref.key)].fileno()
        if ref.kind in ("link", "last"):
            h = self.lookup(ref)
            return h.fd if h is not None and h.fd is not None else BAD_FD
        if ref.kind == "cg":
            return self.dirs.get(str(ref.key), BAD_FD)
        return 0 if ref.kind == "zero" else BAD_FD

    def ident(self, ref: Ref, space: str) -> int:
        """The ID a ``Ref`` names under ``BPF_F_ID`` (a closed handle keeps its ID).  An
        object of another kind than ``space`` names no object: on the host, a program's
        ID may well be some unrelated link's ID."""
        if self.kind(ref) != space:
            return 0 if ref.kind == "zero" else BOGUS_ID
        if ref.kind == "prog":
            return self.identify(self.progs[int(ref.key)].fileno())[1]
        h = self.lookup(ref)
        return h.ident if h is not None else BOGUS_ID

    def relative(self, ref: Ref, flags: int) -> int:
        if flags & uapi.F_ID:
            return self.ident(ref, "link" if flags & uapi.F_LINK else "prog")
        return self.fd(ref)

    def kind(self, ref: Ref) -> str:
        if ref.kind in ("link", "last"):
            h = self.lookup(ref)
            return h.kind if h is not None else "bad"
        return ref.kind

    def identify(self, fd: int, k: Kernel | None = None) -> tuple[str, int]:
        """(kind, raw ID) of a bpf fd, from GET_INFO."""
        k = k or self.k
        info = (ctypes.c_uint32 * 2)()
        k.bpf(Cmd.OBJ_GET_INFO_BY_FD, uapi.InfoAttr(bpf_fd=fd, info_len=8,
                                                    info=ctypes.addressof(info)))
        return k.fd_kind(fd), int(info[1])

    def adopt(self, fd: int) -> str | int:
        """A new handle for ``fd``; returns the name of its object."""
        kind, ident = self.identify(fd)
        self.handles.append(Handle(fd, kind, ident))
        return self.norm(kind, ident)

    # --- observing -----------------------------------------------------------------------

    def listed(self) -> set[int]:
        """The known link IDs LINK_GET_NEXT_ID still lists."""
        known = {raw for space, raw in self.names if space == "link"}
        found: set[int] = set()
        if not known:
            return found
        attr = uapi.GetIdAttr(start_id=min(known) - 1)
        while attr.start_id < max(known):
            try:
                self.k.bpf(Cmd.LINK_GET_NEXT_ID, attr)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    break
                raise
            found |= {attr.next_id} & known
            attr.start_id = attr.next_id
        return found

    def observe(self) -> dict[str, Any]:
        """Every observable, IDs renamed."""
        out: dict[str, Any] = {}
        for name in sorted(self.live):
            for at in ATTACH_TYPES:
                for eff in (False, True):
                    q = Query(Ref("cg", name), at, eff, uapi.MAX_PROGS, True, False, 0)
                    out[f"{q.kind} {name or '.'} {TYPE_NAMES[at]}"] = q.run(self)
        for j, h in enumerate(self.handles):
            if h.fd is not None:
                out[f"info L{j}"] = attempt(functools.partial(
                    Info(Ref("link", j), 64, False).run, self))
        out["links listed"] = sorted(str(self.norm("link", raw)) for raw in self.listed())
        return out

    # --- asynchronous kernel work --------------------------------------------------------

    def unsettled(self) -> bool:
        """Whether deferred kernel work is visibly pending: a known link without an owner
        is still listed, or a listed one still names a removed cgroup."""
        owned = {h.ident for h in self.handles if h.fd is not None and h.kind == "link"}
        owned |= {ident for kind, ident in self.pins.values() if kind == "link"}
        listed = self.listed()
        if listed - owned:
            return True
        for raw in listed:
            with contextlib.suppress(OSError):
                fd = self.k.bpf(Cmd.LINK_GET_FD_BY_ID, uapi.GetIdAttr(start_id=raw))
                try:
                    info = uapi.LinkInfo()
                    self.k.bpf(Cmd.OBJ_GET_INFO_BY_FD, uapi.InfoAttr(
                        bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)))
                finally:
                    self.k.close(fd)
                if info.cgroup_id in self.removed:
                    return True
        return False

    def settle(self) -> None:
        if isinstance(self.k, ModelKernel):
            self.k.settle()
            return
        deadline, waited = time.monotonic() + 5, False
        while self.unsettled() and time.monotonic() < deadline:
            time.sleep(0.001)
            waited = True
        if waited:
            time.sleep(0.002)

    def in_child(self, fn: Callable[[Kernel], Result]) -> Result:
        """Run ``fn`` in a forked child with this process's fds; the child exits
        without closing anything.  ``fn`` returns a small tuple of ints and strings."""
        if isinstance(self.k, ModelKernel):
            child = self.k.process(fork=True)
            try:
                return fn(child)
            finally:
                child.exit()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns into the caller
            try:
                os.write(w, json.dumps(fn(self.k)).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return tuple(json.loads(data)) if data else ("child died", 0)

    def close(self) -> None:
        """Close every fd, remove the cgroups (deepest first) and the scratch subtree."""
        fds = [h.fd for h in self.handles if h.fd is not None]
        fds += list(self.dirs.values()) + self.old_dirs
        for fd in fds:
            with contextlib.suppress(OSError):
                self.k.close(fd)
        self.handles, self.dirs, self.old_dirs = [], {}, []
        for p in self.progs:
            p.close()
        for name in sorted(self.live - {""}, key=lambda n: n.count("/"), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                self.k.rmdir(self.scratch.path(name))
        self.live = set()
        self.scratch.close()


# --- operations ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Op:
    """One step; :meth:`run` does it on one side and returns its renamed result."""

    def __repr__(self) -> str:
        def show(name: str, value: Any) -> str:
            if name == "at":
                return TYPE_NAMES.get(value, str(value))
            return flag_text(value) if name == "flags" else repr(value)
        args = ", ".join(f"{f.name}={show(f.name, getattr(self, f.name))}" for f in fields(self))
        return f"{type(self).__name__}({args})"

    def run(self, s: Side) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class Mkdir(Op):
    cg: str

    def run(self, s: Side) -> None:
        s.k.mkdir(s.scratch.path(self.cg))
        s.created(self.cg)


@dataclass(frozen=True, repr=False)
class Rmdir(Op):
    cg: str

    def run(self, s: Side) -> None:
        s.k.rmdir(s.scratch.path(self.cg))
        s.live.discard(self.cg)
        s.removed.add(s.cg_ids[self.cg])


@dataclass(frozen=True, repr=False)
class Legacy(Op):
    """The fields PROG_ATTACH and PROG_DETACH share."""

    cg: Ref
    prog: Ref
    at: int
    flags: int

    def attr(self, s: Side, **more: int) -> Any:
        return uapi.ProgAttachAttr(target_fd=s.fd(self.cg), attach_bpf_fd=s.fd(self.prog),
                                   attach_type=self.at, attach_flags=self.flags, **more)


@dataclass(frozen=True, repr=False)
class Attach(Legacy):
    """PROG_ATTACH (§4)."""

    replace: Ref
    rel: Ref
    rev: int

    def run(self, s: Side) -> Any:
        return s.k.bpf(Cmd.PROG_ATTACH, self.attr(
            s, replace_bpf_fd=s.fd(self.replace), relative_fd=s.relative(self.rel, self.flags),
            expected_revision=self.rev))


@dataclass(frozen=True, repr=False)
class Detach(Legacy):
    """PROG_DETACH (§7)."""

    rev: int

    def run(self, s: Side) -> Any:
        return s.k.bpf(Cmd.PROG_DETACH, self.attr(s, expected_revision=self.rev))


@dataclass(frozen=True, repr=False)
class LinkCreate(Op):
    """LINK_CREATE (§9); the new fd becomes the next handle."""

    cg: Ref
    prog: Ref
    at: int
    flags: int
    rel: Ref
    rev: int

    def create(self, s: Side, k: Kernel) -> int:
        return k.bpf(Cmd.LINK_CREATE, uapi.LinkCreateAttr(
            prog_fd=s.fd(self.prog), target_fd=s.fd(self.cg), attach_type=self.at,
            flags=self.flags, relative_fd=s.relative(self.rel, self.flags),
            expected_revision=self.rev))

    def run(self, s: Side) -> Any:
        return s.adopt(self.create(s, s.k))


@dataclass(frozen=True, repr=False)
class Child(Op):
    """A forked child does ``link`` with the inherited fds and exits without closing."""

    link: LinkCreate

    def run(self, s: Side) -> Any:
        def child(k: Kernel) -> Result:
            try:
                return (0, s.identify(self.link.create(s, k), k)[1])
            except OSError as e:
                return (errname(e), 0)
        result, ident = s.in_child(child)
        if result:
            raise OSError(getattr(errno, result, 0), result)
        return s.norm("link", ident)


@dataclass(frozen=True, repr=False)
class LinkUpdate(Op):
    """LINK_UPDATE (§10)."""

    link: Ref
    prog: Ref
    flags: int
    old: Ref

    def run(self, s: Side) -> Any:
        return s.k.bpf(Cmd.LINK_UPDATE, uapi.LinkUpdateAttr(
            link_fd=s.fd(self.link), new_prog_fd=s.fd(self.prog), flags=self.flags,
            old_prog_fd=s.fd(self.old)))


@dataclass(frozen=True, repr=False)
class LinkDetach(Op):
    """LINK_DETACH (§11)."""

    link: Ref

    def run(self, s: Side) -> Any:
        return s.k.bpf(Cmd.LINK_DETACH, uapi.LinkDetachAttr(link_fd=s.fd(self.link)))


@dataclass(frozen=True, repr=False)
class OnHandle(Op):
    """Something done to handle ``h`` if it is open (else nothing happens)."""

    h: int

    def run(self, s: Side) -> Any:
        h = s.handle(self.h)
        return "not open" if h is None or h.fd is None else self.act(s, h, h.fd)

    def act(self, s: Side, h: Handle, fd: int) -> Any:
        raise NotImplementedError


class Close(OnHandle):
    """close() a handle."""

    def act(self, s: Side, h: Handle, fd: int) -> Any:
        s.k.close(fd)
        h.fd = None


class Dup(OnHandle):
    """dup() a handle into a new one."""

    def act(self, s: Side, h: Handle, fd: int) -> Any:
        return s.adopt(s.k.dup(fd))


def pin_path(s: Side, pin: str) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(os.path.join(s.bpffs, pin).encode())


@dataclass(frozen=True, repr=False)
class Pin(Op):
    """OBJ_PIN (§11)."""

    obj: Ref
    pin: str

    def run(self, s: Side) -> Any:
        path, fd = pin_path(s, self.pin), s.fd(self.obj)
        s.k.bpf(Cmd.OBJ_PIN, uapi.ObjAttr(pathname=ctypes.addressof(path), bpf_fd=fd))
        s.pins[self.pin] = s.identify(fd)


@dataclass(frozen=True, repr=False)
class Unpin(Op):
    """unlink() a pin; a link's last owner going is deferred kernel work (§11)."""

    pin: str

    def run(self, s: Side) -> Any:
        s.k.unlink(os.path.join(s.bpffs, self.pin))
        del s.pins[self.pin]


@dataclass(frozen=True, repr=False)
class ObjGet(Op):
    """OBJ_GET (§11); the new fd becomes the next handle."""

    pin: str
    file_flags: int

    def run(self, s: Side) -> Any:
        path = pin_path(s, self.pin)
        return s.adopt(s.k.bpf(Cmd.OBJ_GET, uapi.ObjAttr(pathname=ctypes.addressof(path),
                                                         file_flags=self.file_flags)))


@dataclass(frozen=True, repr=False)
class GetById(Op):
    """LINK_GET_FD_BY_ID of the ID ``ref`` names (§13); the new fd becomes a handle."""

    ref: Ref
    open_flags: int

    def run(self, s: Side) -> Any:
        return s.adopt(s.k.bpf(Cmd.LINK_GET_FD_BY_ID, uapi.GetIdAttr(
            start_id=s.ident(self.ref, "link"), open_flags=self.open_flags)))


@dataclass(frozen=True, repr=False)
class Query(Op):
    """PROG_QUERY (§8) with capacity ``cap``; all outputs, written or not."""

    cg: Ref
    at: int
    effective: bool
    cap: int
    ids: bool  # pass a prog_ids buffer
    with_flags: bool  # pass a prog_attach_flags buffer
    extra_flags: int  # query_flags bits besides EFFECTIVE

    @property
    def kind(self) -> str:
        return "effective" if self.effective else "query"

    def run(self, s: Side) -> Any:
        n = self.cap + 2
        ids, flags, link_ids = ((ctypes.c_uint32 * n).from_buffer_copy(b"\xff" * 4 * n)
                                for _ in range(3))
        attr = uapi.QueryAttr(
            target_fd=s.fd(self.cg), attach_type=self.at, attach_flags=0xAAAA,
            query_flags=self.extra_flags | (uapi.F_QUERY_EFFECTIVE if self.effective else 0),
            prog_ids=ctypes.addressof(ids) if self.ids else 0, prog_cnt=self.cap,
            prog_attach_flags=ctypes.addressof(flags) if self.with_flags else 0,
            link_ids=ctypes.addressof(link_ids), revision=0x5555)
        res = attempt(lambda: s.k.bpf(Cmd.PROG_QUERY, attr))
        return (*res, attr.attach_flags, attr.prog_cnt, attr.revision,
                [s.norm("prog", i) if i != SENTINEL else "-" for i in written(ids)],
                written(flags), written(link_ids))


def written(buf: ctypes.Array[ctypes.c_uint32]) -> list[int]:
    """A query buffer without its trailing never-written (``SENTINEL``) slots."""
    values = struct.unpack(f"<{len(buf)}I", bytes(buf))
    n = len(values)
    while n and values[n - 1] == SENTINEL:
        n -= 1
    return list(values[:n])


@dataclass(frozen=True, repr=False)
class Info(Op):
    """OBJ_GET_INFO_BY_FD with ``info_len`` = ``size``; ``dirty``: a non-zero byte at 100."""

    obj: Ref
    size: int
    dirty: bool

    def run(self, s: Side) -> Any:
        buf = (ctypes.c_uint8 * 128)()
        buf[100] = int(self.dirty)
        attr = uapi.InfoAttr(bpf_fd=s.fd(self.obj), info_len=self.size,
                             info=ctypes.addressof(buf))
        s.k.bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
        if s.kind(self.obj) == "prog":
            p = uapi.ProgInfo.from_buffer(buf)
            return attr.info_len, p.type, s.norm("prog", p.id)
        i = uapi.LinkInfo.from_buffer(buf)
        return (attr.info_len, i.type, s.norm("link", i.id), s.norm("prog", i.prog_id),
                s.norm("cg", i.cgroup_id), i.attach_type, any(i._reserved))


# --- strategies ---------------------------------------------------------------------------


def _flags(base: Sequence[int], extra: Sequence[int]) -> st.SearchStrategy[int]:
    """A common combination, one time in five with one or two more bits."""
    more = st.lists(st.sampled_from(extra), min_size=1, max_size=2)
    return st.builds(lambda b, bits: functools.reduce(operator.or_, bits, b),
                     st.sampled_from(base), _weighted((4, st.just(())), (1, more)))


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, with these weights (``one_of`` ignores repetitions)."""
    return st.sampled_from([s for w, s in choices for _ in range(w)]).flatmap(lambda s: s)


def _mostly(usual: st.SearchStrategy[Any], *odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else one of ``odd``."""
    return _weighted((4, usual), (1, st.one_of(*odd)))


_PROG = st.integers(0, len(PROGS) - 1).map(lambda i: Ref("prog", i))
_HANDLE = _weighted((3, st.integers(0, 2)), (1, st.integers(3, MAX_HANDLES - 1)))
_LINK = _weighted((1, st.just(Ref("last"))), (2, _HANDLE.map(lambda j: Ref("link", j))))
_CG = st.sampled_from(CGROUPS * 3 + CGROUPS[:3] * 3).map(lambda n: Ref("cg", n))
_ODD = st.sampled_from([Ref("bad"), Ref("zero")])
_PROGS = _mostly(_PROG, _LINK, _CG, _ODD)
_LINKS = _mostly(_LINK, _PROG, _ODD)
_CGS = _mostly(_CG, _PROG, _ODD)
_TYPES = st.sampled_from((EGRESS, EGRESS, INGRESS, CONNECT, UNKNOWN_TYPE))
#: (program, attach type), mostly a pair that fits (§2: skb programs take either skb type).
_PROG_AT = _mostly(
    st.sampled_from([(i, at) for i in range(4) for at in (EGRESS, EGRESS, INGRESS)]
                    + [(4, CONNECT)] * 3).map(lambda t: (Ref("prog", t[0]), t[1])),
    st.tuples(_PROGS, _TYPES))
_REV = _weighted((6, st.just(0)), (1, st.integers(1, 5)))
_OVR, _MULTI, _REPL = uapi.F_ALLOW_OVERRIDE, uapi.F_ALLOW_MULTI, uapi.F_REPLACE
_BEF, _AFT, _ID, _PRE, _LNK = uapi.F_BEFORE, uapi.F_AFTER, uapi.F_ID, uapi.F_PREORDER, uapi.F_LINK
_ATTACH_FLAGS = _flags(
    (0, _OVR, _MULTI, _MULTI, _MULTI, _MULTI | _BEF, _MULTI | _AFT, _MULTI | _AFT | _ID,
     _MULTI | _PRE, _MULTI | _REPL),
    (_OVR, _MULTI, _REPL, _BEF, _AFT, _ID, _PRE, _LNK, BIT7))
_LINK_FLAGS = _flags(
    (0, 0, 0, 0, _PRE, _BEF, _AFT, _BEF | _PRE, _BEF | _AFT, _BEF | _LNK, _AFT | _LNK,
     _BEF | _LNK | _ID, _AFT | _LNK | _ID, _AFT | _LNK | _PRE),
    (_BEF, _AFT, _ID, _PRE, _LNK, _MULTI, BIT7))


def _relative(draw: st.DrawFn, flags: int, refs: st.SearchStrategy[Ref]) -> Ref:
    """An anchor when ``flags`` name its kind, often with BEFORE/AFTER alone (else head
    or tail), one time in ten anyway (a stray one); else 0."""
    odds = 10 if flags & (_ID | _LNK) else 5 if flags & (_BEF | _AFT) else 1
    return draw(refs) if draw(st.integers(0, 9)) >= 10 - odds else Ref("zero")


@st.composite
def _attach(draw: st.DrawFn) -> Attach:
    prog, at = draw(_PROG_AT)
    flags = draw(_ATTACH_FLAGS)
    rel = _relative(draw, flags, _weighted((1, st.just(Ref("zero"))), (2, _PROG), (1, _LINK)))
    replace = draw(_PROGS) if flags & _REPL or draw(st.integers(0, 9)) == 9 else Ref("zero")
    return Attach(draw(_CGS), prog, at, flags, replace, rel, draw(_REV))


@st.composite
def _link_create(draw: st.DrawFn) -> LinkCreate:
    prog, at = draw(_PROG_AT)
    flags = draw(_LINK_FLAGS)
    rel = _relative(draw, flags, _weighted((1, st.just(Ref("zero"))), (2, _LINK), (1, _PROG)))
    return LinkCreate(draw(_CGS), prog, at, flags, rel, draw(_REV))


@st.composite
def _detach(draw: st.DrawFn) -> Detach:
    prog, at = draw(_PROG_AT)
    flags = draw(st.sampled_from((0,) * 6 + (_MULTI, _PRE)))
    return Detach(draw(_CGS), prog, at, flags, draw(_REV))


@st.composite
def _link_update(draw: st.DrawFn) -> LinkUpdate:
    flags = draw(st.sampled_from((0, 0, 0, _REPL, _REPL, _MULTI)))
    old = draw(_PROGS) if flags & _REPL or draw(st.integers(0, 9)) == 9 else Ref("zero")
    return LinkUpdate(draw(_LINKS), draw(_PROGS), flags, old)


#: One step.
OPS: st.SearchStrategy[Op] = _weighted(
    (4, _attach()),
    (4, _link_create()),
    (2, _detach()),
    (2, _link_update()),
    (2, st.builds(LinkDetach, _LINKS)),
    (1, st.builds(Close, _HANDLE)),
    (1, st.builds(Dup, _HANDLE)),
    (2, st.builds(Pin, st.one_of(_LINKS, _PROG), st.sampled_from(PINS))),
    (1, st.builds(Unpin, st.sampled_from(PINS))),
    (1, st.builds(ObjGet, st.sampled_from(PINS),
                  st.sampled_from((0, 0, 0, uapi.F_RDONLY, uapi.F_WRONLY, BIT7)))),
    (1, st.builds(GetById, _mostly(_LINK, _ODD),
                  st.sampled_from((0, 0, 0, uapi.F_RDONLY, BIT7)))),
    (1, st.builds(Query, _CGS, _TYPES, st.booleans(), st.integers(0, 4), st.booleans(),
                  st.booleans(), st.sampled_from((0, 0, 0, 2)))),
    (1, st.builds(Info, _LINKS, st.sampled_from((8, 16, 32, 64, 100)), st.booleans())),
    (1, st.builds(Mkdir, st.sampled_from(CGROUPS[1:]))),
    (1, st.builds(Rmdir, st.sampled_from(CGROUPS[1:]))),
    (1, st.builds(Child, _link_create())),
)


# --- running both -------------------------------------------------------------------------


class Divergence(AssertionError):
    """Host and model disagree; the message shows the steps so far and the difference."""


class Pair:
    """The host and a fresh model machine, stepped together."""

    steps = 0  # steps run by every Pair of this process (the long fuzz reports it)
    outcomes: ClassVar[Counter[tuple[str, str]]] = Counter()  # (op, host result) -> count

    def __init__(self, host: Kernel, model: Kernel | None = None) -> None:
        try:  # fd 0 stands for "an open file that is not bpf", as in the model
            os.fstat(0)
        except OSError:
            os.open(os.devnull, os.O_RDONLY)  # takes the lowest free fd: 0
        self.trace: list[str] = []
        self.sides: list[Side] = []
        try:
            self.sides = [Side(host)]
            self.sides.append(Side(model or ModelKernel()))
            self.compare("setup", ("ok",), ("ok",))
        except BaseException:
            self.close()
            raise

    def step(self, op: Op) -> None:
        results = []
        for side in self.sides:
            results.append(attempt(functools.partial(op.run, side)))
            side.settle()
        Pair.steps += 1
        Pair.outcomes[type(op).__name__, str(results[0][0])] += 1
        self.compare(repr(op), *results)

    def compare(self, what: str, host: Result, model: Result) -> None:
        self.trace.append(f"{len(self.trace):3} {what}: host {host}"
                          + ("" if host == model else f" <> model {model}"))
        seen = [s.observe() for s in self.sides]
        diff = [f"  {key}: host {seen[0].get(key)} <> model {seen[1].get(key)}"
                for key in sorted(seen[0].keys() | seen[1].keys())
                if seen[0].get(key) != seen[1].get(key)]
        if host != model or diff:
            raise Divergence("host and model diverge:\n" + "\n".join(self.trace + diff))

    def close(self) -> None:
        for side in self.sides:
            side.close()


def run_pair(ops: Sequence[Op], host: Kernel | None = None) -> None:
    """Run ``ops`` on the host and a fresh model; :class:`Divergence` at the first
    difference."""
    pair = Pair(host or cgbpf.host())
    try:
        for op in ops:
            pair.step(op)
    finally:
        pair.close()


class Machine(RuleBasedStateMachine):
    """Hypothesis drives a :class:`Pair` one :data:`OPS` step at a time."""

    def __init__(self, host: Kernel) -> None:
        super().__init__()
        self.pair = Pair(host)

    @rule(op=OPS)
    def step(self, op: Op) -> None:
        self.pair.step(op)

    def teardown(self) -> None:
        self.pair.close()


def check(host: Kernel, *, examples: int, steps: int, derandomize: bool) -> None:
    """``examples`` random sequences of up to ``steps`` steps; the first divergence is
    minimised and raised."""
    class OnHost(Machine):
        def __init__(self) -> None:
            super().__init__(host)

    run_state_machine_as_test(OnHost, settings=settings(
        max_examples=examples, stateful_step_count=steps, derandomize=derandomize,
        database=None, deadline=None, suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink]))


def main(argv: Sequence[str] | None = None) -> int:
    """The long fuzz: batches of random sequences until ``--steps`` steps have run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="total steps to run")
    parser.add_argument("--length", type=int, default=40, help="steps per sequence")
    parser.add_argument("--batch", type=int, default=25, help="sequences per batch")
    args = parser.parse_args(argv)
    host = cgbpf.host()
    found: dict[str, str] = {}
    start = time.monotonic()
    while Pair.steps < args.steps:
        try:
            check(host, examples=args.batch, steps=args.length, derandomize=False)
        except Divergence as e:
            text = str(e)
            found.setdefault(text.splitlines()[-1], text)
            print(text, file=sys.stderr)
        print(f"{Pair.steps} steps, {len(found)} distinct divergences, "
              f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    for text in found.values():
        print(text, end="\n\n")
    ops = sorted({op for op, _ in Pair.outcomes})
    for op in ops:
        seen = {r: n for (o, r), n in Pair.outcomes.items() if o == op}
        print(f"{op:11}", " ".join(f"{r}:{n}" for r, n in sorted(seen.items())))
    print(f"{Pair.steps} steps run; {len(found)} distinct divergences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
