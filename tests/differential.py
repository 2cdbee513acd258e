"""The differential test's driver: the same random sequence of raw bpf(2) requests (and the
file operations around them) runs on the real kernel and on a model machine, and after
every step every observable is compared, with IDs renamed (KERNEL-SEMANTICS.md §18).

* The model is the running kernel's, calibrated by probing it (``Profile.host()``), unless
  told otherwise (``--against NAME``, ``check(profile=...)``): a named profile differs
  from a given host in its backports, which is not what this test is looking for.
* Each kernel works in its own scratch subtree ``<cgroup2>/cgbpf-test-*`` holding the
  cgroups ``. a a/b a/b/c d`` (names are compared, never paths), with a bpffs for pins
  and one program of each cgroup program type and expected attach type
  (:data:`PROGRAMS`): CGROUP_SKB for EGRESS (twice, and once returning 2: egress-enforced)
  and INGRESS, CGROUP_SOCK for SOCK_CREATE (and with expected attach type 0) and
  INET4_POST_BIND, CGROUP_SOCK_ADDR for INET4_CONNECT (twice), INET6_CONNECT, INET4_BIND,
  CGROUP_SOCKOPT for GET/SETSOCKOPT, CGROUP_DEVICE (twice), CGROUP_SYSCTL, SOCK_OPS.
* Each sequence first draws the program families it uses (:data:`FAMILIES`, one to three:
  swarm testing, so that each hook sees several requests and the observation stays
  cheap), then its steps.  A step is an :class:`Op` that builds the raw attr from
  :mod:`cgbpf.uapi` per kernel.  It is drawn for the state the sequence is in
  (:class:`Gen`): mostly a request that can succeed there (a program that fits the attach
  type, a mode the hook accepts, an open link, a pin that exists, a missing cgroup, an
  empty leaf), sometimes a near miss (a program of the link's type but of another
  expected attach type, a stale revision), and a sixth of the time a blind one
  (:data:`BLIND`: any fd, flag or type).  Besides the bpf commands: close, dup, mkdir,
  rmdir, unlink of a pin, fdinfo, a forked child, and 4 to 64 links at once (E2BIG).
* ``L3`` is the 4th fd the sequence obtained (LINK_CREATE, dup, OBJ_GET, GET_FD_BY_ID);
  ``Lnewest`` the newest open link.  A :class:`Ref` names an fd for both kernels and can
  be of the wrong kind, a closed handle, fd 0 or a never-open fd; under ``BPF_F_ID`` the
  same ``Ref`` names an ID (an object of the wrong kind names a bogus ID).
* Observables after each step: the result (value or errno name); the info of every open
  handle; which known links LINK_GET_NEXT_ID still lists; and the normal and the
  effective query of the hooks the step may have changed (:meth:`Op.affects`: its attach
  type, or its link's, in the cgroup it names or its link's and every cgroup below), of
  every live cgroup and every attach type the sequence uses after a mkdir or rmdir, and
  every :attr:`Pair.FULL_EVERY` steps; none after a step that failed on both kernels or
  only reads.  At the end of a sequence: every attach type of :data:`ATTACH_TYPES`.
  Every ID is renamed: programs by name (``connect4``), cgroups ``name#incarnation``,
  links ``link<n>`` in the order first seen.
* Asynchronous kernel work (§11 last pin unlinked, §12 rmdir): after a step that may
  have changed something and succeeded, the model runs ``settle()``; the host is polled
  (at most 5 s, 1 ms sleeps) until no known link without an owner (an open handle or a
  pin) is still listed and no listed known link still names a removed cgroup, then
  given 2 ms more (a link's ID is freed just before its detach).  No sockets are made,
  so nothing holds a removed cgroup's state and its links always auto-detach.
* "Process exit": :class:`Child` forks (``os.fork`` on the host, ``process(fork=True)``
  in the model), creates a link with the inherited fds and exits without closing it.

A divergence is minimised by :func:`minimise` (runs of steps left out, ddmin), not by
hypothesis: its shrinker needs thousands of runs, each on the real kernel.

``python tests/differential.py --steps 10000`` runs the long fuzz; ``--against 6.1``
compares with a named profile, ``--without update_eat_check`` with one feature less;
``--seed N`` makes a run reproducible.  It prints the divergences (minimised), then how
often each kind of step succeeded on the host (:func:`ok_table`), and exits 1 if there
was any divergence.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import copy
import ctypes
import dataclasses
import errno
import functools
import importlib.util
import itertools
import json
import operator
import os
import random
import signal
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

if importlib.util.find_spec("cgbpf") is None:  # a checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import cgbpf
from cgbpf import Program, asm, uapi
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgbpf.kernel.probe import supported
from cgbpf.model import ModelKernel, Profile
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import ProgType as PT

PREFIX = "cgbpf-test"
EGRESS, INGRESS = AT.CGROUP_INET_EGRESS, AT.CGROUP_INET_INGRESS
SOCK_CREATE, POST_BIND4 = AT.CGROUP_INET_SOCK_CREATE, AT.CGROUP_INET4_POST_BIND
CONNECT4, CONNECT6, BIND4 = AT.CGROUP_INET4_CONNECT, AT.CGROUP_INET6_CONNECT, AT.CGROUP_INET4_BIND
GETSOCKOPT, SETSOCKOPT = AT.CGROUP_GETSOCKOPT, AT.CGROUP_SETSOCKOPT
DEVICE, SYSCTL, SOCK_OPS = AT.CGROUP_DEVICE, AT.CGROUP_SYSCTL, AT.CGROUP_SOCK_OPS
#: Every attach type the sequences use, by its short name (as steps and observables show it).
TYPE_NAMES: dict[int, str] = {
    EGRESS: "EGRESS", INGRESS: "INGRESS", SOCK_CREATE: "SOCK_CREATE", POST_BIND4: "POST_BIND4",
    CONNECT4: "CONNECT4", CONNECT6: "CONNECT6", BIND4: "BIND4", GETSOCKOPT: "GETSOCKOPT",
    SETSOCKOPT: "SETSOCKOPT", DEVICE: "DEVICE", SYSCTL: "SYSCTL", SOCK_OPS: "SOCK_OPS"}
ATTACH_TYPES: tuple[int, ...] = tuple(TYPE_NAMES)
UNKNOWN_TYPE = 200
CGROUPS = ("", "a", "a/b", "a/b/c", "d")
PINS = ("pin0", "pin1", "pin2")
MAX_HANDLES = 8  # blind requests name handles 0-7
BAD_FD = 99_999  # never open
BOGUS_ID = 0x7FFF_FFF0  # no such program or link
SENTINEL = 0xFFFF_FFFF  # query buffer slots the kernel must not write
BIT7 = 1 << 7  # not a flag
FLAG_NAMES = {uapi.F_ALLOW_OVERRIDE: "OVERRIDE", uapi.F_ALLOW_MULTI: "MULTI",
              uapi.F_REPLACE: "REPLACE", uapi.F_BEFORE: "BEFORE", uapi.F_AFTER: "AFTER",
              uapi.F_ID: "ID", uapi.F_PREORDER: "PREORDER", uapi.F_LINK: "LINK", BIT7: "BIT7"}
#: Program types whose attach type must be the program's expected attach type (§2.1).
EAT_ENFORCED = frozenset({PT.CGROUP_SOCK, PT.CGROUP_SOCK_ADDR, PT.CGROUP_SOCKOPT})


@dataclass(frozen=True)
class Spec:
    """A program of the sequences: ``ret`` is what it returns (2: congestion notification,
    which makes an EGRESS skb program egress-enforced, §2.1 note a)."""

    name: str
    ptype: PT
    eat: int = 0
    ret: int = 1

    @property
    def enforced(self) -> AT | None:
        """The only attach type it may be attached to, if it has one (§2.1)."""
        if self.ptype in EAT_ENFORCED:
            # CGROUP_SOCK loaded with expected attach type 0 is loaded for SOCK_CREATE
            return AT(self.eat or SOCK_CREATE)
        if self.ptype == PT.CGROUP_SKB and self.eat == EGRESS and self.ret > 1:
            return EGRESS
        return None

    def fits(self, at: int) -> bool:
        """Whether it can be attached (or linked, or swapped into a link) to ``at``."""
        return uapi.CGROUP_PROG_TYPE.get(at) == self.ptype and self.enforced in (None, at)


PROGRAMS: tuple[Spec, ...] = (
    Spec("eg", PT.CGROUP_SKB, EGRESS), Spec("eg'", PT.CGROUP_SKB, EGRESS),
    Spec("in", PT.CGROUP_SKB, INGRESS), Spec("eg2", PT.CGROUP_SKB, EGRESS, ret=2),
    Spec("create", PT.CGROUP_SOCK, SOCK_CREATE), Spec("create0", PT.CGROUP_SOCK, 0),
    Spec("postbind4", PT.CGROUP_SOCK, POST_BIND4),
    Spec("connect4", PT.CGROUP_SOCK_ADDR, CONNECT4),
    Spec("connect4'", PT.CGROUP_SOCK_ADDR, CONNECT4),
    Spec("connect6", PT.CGROUP_SOCK_ADDR, CONNECT6), Spec("bind4", PT.CGROUP_SOCK_ADDR, BIND4),
    Spec("getsockopt", PT.CGROUP_SOCKOPT, GETSOCKOPT),
    Spec("setsockopt", PT.CGROUP_SOCKOPT, SETSOCKOPT),
    Spec("device", PT.CGROUP_DEVICE), Spec("device'", PT.CGROUP_DEVICE),
    Spec("sysctl", PT.CGROUP_SYSCTL), Spec("sockops", PT.SOCK_OPS),
)
PROG_INDEX = {p.name: i for i, p in enumerate(PROGRAMS)}


def _family(ptype: PT, *types: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(i for i, p in enumerate(PROGRAMS) if p.ptype == ptype), types


#: A sequence's programs and attach types come from one to three of these families.
FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "skb": _family(PT.CGROUP_SKB, EGRESS, INGRESS),
    "sock": _family(PT.CGROUP_SOCK, SOCK_CREATE, POST_BIND4),
    "sock_addr": _family(PT.CGROUP_SOCK_ADDR, CONNECT4, CONNECT6, BIND4),
    "sockopt": _family(PT.CGROUP_SOCKOPT, GETSOCKOPT, SETSOCKOPT),
    "device": _family(PT.CGROUP_DEVICE, DEVICE),
    "sysctl": _family(PT.CGROUP_SYSCTL, SYSCTL),
    "sock_ops": _family(PT.SOCK_OPS, SOCK_OPS),
}

Result = tuple[Any, ...]
#: The attach types a step may change, and the cgroup below which (``""``: anywhere).
Scope = tuple[set[int], str]


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
        if self.kind == "prog":
            return PROGRAMS[int(self.key)].name
        return {"link": f"L{self.key}", "last": "Lnewest", "cg": f"cg:{self.key or '.'}",
                "bad": "BAD", "zero": "0"}[self.kind]


ZERO = Ref("zero")


@dataclass
class Handle:
    """An fd the sequence obtained: ``fd`` is None once closed; ``ident`` is the raw ID."""

    fd: int | None
    kind: str
    ident: int


@dataclass(frozen=True)
class LinkView:
    """A link as its last info showed it: attach type, cgroup name (None: defunct or its
    cgroup removed) and program (index into :data:`PROGRAMS`, None if unknown)."""

    at: int
    cg: str | None
    prog: int | None


@dataclass(frozen=True)
class HookView:
    """A (cgroup, attach type) as its last query showed it."""

    mode: int = 0
    progs: tuple[int, ...] = ()
    revision: int = 0


EMPTY = HookView()


class Side:
    """One kernel's half of a run: its scratch subtree, its fds and its ID renaming, and
    what the last observation showed (which the next step is drawn from)."""

    def __init__(self, kernel: Kernel, mprog_uapi: bool = True) -> None:
        """``mprog_uapi``: whether queries pass ``link_ids`` and ``revision`` (6.6; before,
        a non-zero byte there is EINVAL): as the host has it, for both kernels."""
        self.k = kernel
        self.mprog_uapi = mprog_uapi
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
        self.hooks: dict[tuple[str, int], HookView] = {}
        self.links: dict[int, LinkView] = {}  # raw link ID -> its last info
        self.listed_now: set[int] = set()
        try:
            self.bpffs = self.scratch.bpffs()
            for spec in PROGRAMS:
                prog = Program.load(asm.return_program(spec.ret), spec.ptype,
                                    expected_attach_type=spec.eat or None, kernel=kernel)
                self.progs.append(prog)
                self.names["prog", self.identify(prog.fileno())[1]] = spec.name
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

    # --- what the steps are drawn from ---------------------------------------------------

    def open_handles(self, kind: str | None = None) -> list[int]:
        return [j for j, h in enumerate(self.handles)
                if h.fd is not None and kind in (None, h.kind)]

    def link_view(self, j: int) -> LinkView | None:
        h = self.handles[j]
        return self.links.get(h.ident) if h.kind == "link" else None

    def link_scope(self, ref: Ref) -> Scope | None:
        """What a change to the link ``ref`` names may change (:meth:`Op.affects`)."""
        h = self.lookup(ref)
        if h is None or h.fd is None or h.kind != "link":
            return set(), ""  # not a link: nothing changes
        view = self.links.get(h.ident)
        return ({view.at}, view.cg or "") if view is not None else None

    def attached(self, name: str | None = None, at: int | None = None) -> list[int]:
        """Open link handles whose link is attached (to ``name``/``at`` if given)."""
        out = []
        for j in self.open_handles("link"):
            v = self.link_view(j)
            if v is not None and v.cg is not None and name in (None, v.cg) and at in (None, v.at):
                out.append(j)
        return out

    def hook(self, name: str, at: int) -> HookView:
        return self.hooks.get((name, at), EMPTY)

    def legacy(self, name: str, at: int) -> list[int]:
        """The programs of the hook that no known link holds: its legacy entries, as far
        as the observations tell."""
        progs = Counter(self.hook(name, at).progs)
        for v in self.links.values():
            if v.cg == name and v.at == at and v.prog is not None:
                progs[v.prog] -= 1
        return sorted(p for p, n in progs.items() if n > 0)

    def leaves(self) -> list[str]:
        return sorted(n for n in self.live - {""}
                      if not any(m.startswith(n + "/") for m in self.live))

    def missing(self) -> list[str]:
        """Cgroups that do not exist and whose parent does."""
        return [n for n in CGROUPS if n not in self.live
                and (n.rpartition("/")[0] in self.live)]

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
                if e.errno in (errno.ENOENT, errno.EINVAL):  # EINVAL: no link IDs (5.7)
                    break
                raise
            found |= {attr.next_id} & known
            attr.start_id = attr.next_id
        return found

    def observe(self, types: Iterable[int], below: str = "") -> dict[str, Any]:
        """Every observable (the queries: of ``types``, in ``below`` and the cgroups
        under it), IDs renamed; remembers what the steps are drawn from."""
        out: dict[str, Any] = {}
        types = sorted(types, key=lambda t: (t not in TYPE_NAMES, t))
        hooks = {}
        for name in sorted(n for n in self.live
                           if not below or n == below or n.startswith(below + "/")):
            for at in types:
                for eff in (False, True):
                    q = Query(Ref("cg", name), at, eff, uapi.MAX_PROGS, True, False, 0)
                    res = out[f"{q.kind} {name or '.'} {TYPE_NAMES.get(at, at)}"] = q.run(self)
                    if not eff and res[0] == "ok":
                        mode, _, revision, progs = res[-6:-2]
                        hooks[name, at] = HookView(mode, tuple(
                            PROG_INDEX.get(str(p), -1) for p in progs), revision)
        self.hooks = {k: v for k, v in self.hooks.items() if k[0] in self.live} | hooks
        links = {}
        for j, h in enumerate(self.handles):
            if h.fd is not None:
                res = out[f"info L{j}"] = attempt(functools.partial(
                    Info(Ref("link", j), 64, False).run, self))
                if h.kind == "link" and res[0] == "ok":
                    _, _, _, prog, cg, at, _ = res[1]
                    name = str(cg).partition("#")[0].replace(".", "")
                    current = (name in self.live and cg == self.names["cg", self.cg_ids[name]])
                    links[h.ident] = LinkView(at, name if current else None,
                                              PROG_INDEX.get(str(prog)))
        self.listed_now = self.listed()
        out["links listed"] = sorted(str(self.norm("link", raw)) for raw in self.listed_now)
        # a link that only a pin (or a closed handle's other owners) keeps: its last view
        self.links = {i: v for i, v in self.links.items() if i in self.listed_now} | links
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

    #: Whether it may change what is attached where: if not, or if it failed on both
    #: kernels, the queries are not repeated after it (the next one would show a change).
    mutates: ClassVar[bool] = True

    def __repr__(self) -> str:
        def show(name: str, value: Any) -> str:
            if name == "at":
                return TYPE_NAMES.get(value, str(value))
            return flag_text(value) if name == "flags" else repr(value)
        args = ", ".join(f"{f.name}={show(f.name, getattr(self, f.name))}" for f in fields(self))
        return f"{type(self).__name__}({args})"

    def run(self, s: Side) -> Any:
        raise NotImplementedError

    def types(self) -> set[int]:
        """The attach types it names (their hooks are observed from then on)."""
        at = getattr(self, "at", None)
        return {at} if at is not None else set()

    def affects(self, s: Side) -> Scope | None:
        """The attach types whose hooks it may change and the cgroup below which they
        are (``""``: all), from the state before it runs; None: anything.  Only those
        are queried after it (everything now and then)."""
        types, cg = self.types(), getattr(self, "cg", None)
        if not types:
            return None
        below = cg.key if isinstance(cg, Ref) and cg.kind == "cg" and cg.key in s.live else ""
        return types, str(below)


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

    def types(self) -> set[int]:
        return self.link.types()

    def affects(self, s: Side) -> Scope | None:
        return self.link.affects(s)


@dataclass(frozen=True, repr=False)
class LinkUpdate(Op):
    """LINK_UPDATE (§10)."""

    link: Ref
    prog: Ref
    flags: int
    old: Ref

    def affects(self, s: Side) -> Scope | None:
        return s.link_scope(self.link)

    def run(self, s: Side) -> Any:
        return s.k.bpf(Cmd.LINK_UPDATE, uapi.LinkUpdateAttr(
            link_fd=s.fd(self.link), new_prog_fd=s.fd(self.prog), flags=self.flags,
            old_prog_fd=s.fd(self.old)))


@dataclass(frozen=True, repr=False)
class LinkDetach(Op):
    """LINK_DETACH (§11)."""

    link: Ref

    def affects(self, s: Side) -> Scope | None:
        return s.link_scope(self.link)

    def run(self, s: Side) -> Any:
        return s.k.bpf(Cmd.LINK_DETACH, uapi.LinkDetachAttr(link_fd=s.fd(self.link)))


@dataclass(frozen=True, repr=False)
class OnHandle(Op):
    """Something done to handle ``h`` if it is open; else EBADF without asking the kernel
    (the fd number may be some other file's by now)."""

    h: int

    def run(self, s: Side) -> Any:
        h = s.handle(self.h)
        if h is None or h.fd is None:
            raise OSError(errno.EBADF, "not an open handle")
        return self.act(s, h, h.fd)

    def act(self, s: Side, h: Handle, fd: int) -> Any:
        raise NotImplementedError


class Close(OnHandle):
    """close() a handle."""

    def affects(self, s: Side) -> Scope | None:
        return s.link_scope(Ref("link", self.h))

    def act(self, s: Side, h: Handle, fd: int) -> Any:
        s.k.close(fd)
        h.fd = None


class Dup(OnHandle):
    """dup() a handle into a new one."""

    mutates = False

    def act(self, s: Side, h: Handle, fd: int) -> Any:
        return s.adopt(s.k.dup(fd))


def pin_path(s: Side, pin: str) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(os.path.join(s.bpffs, pin).encode())


@dataclass(frozen=True, repr=False)
class Pin(Op):
    """OBJ_PIN (§11)."""

    obj: Ref
    pin: str
    mutates = False

    def run(self, s: Side) -> Any:
        path, fd = pin_path(s, self.pin), s.fd(self.obj)
        s.k.bpf(Cmd.OBJ_PIN, uapi.ObjAttr(pathname=ctypes.addressof(path), bpf_fd=fd))
        s.pins[self.pin] = s.identify(fd)


@dataclass(frozen=True, repr=False)
class Unpin(Op):
    """unlink() a pin; a link's last owner going is deferred kernel work (§11)."""

    pin: str

    def affects(self, s: Side) -> Scope | None:
        kind, ident = s.pins.get(self.pin, ("", 0))
        if kind != "link":
            return set(), ""  # a program's pin (or none): nothing is detached
        view = s.links.get(ident)
        return ({view.at}, view.cg or "") if view is not None else None

    def run(self, s: Side) -> Any:
        s.k.unlink(os.path.join(s.bpffs, self.pin))
        del s.pins[self.pin]


@dataclass(frozen=True, repr=False)
class ObjGet(Op):
    """OBJ_GET (§11); the new fd becomes the next handle."""

    pin: str
    file_flags: int
    mutates = False

    def run(self, s: Side) -> Any:
        path = pin_path(s, self.pin)
        return s.adopt(s.k.bpf(Cmd.OBJ_GET, uapi.ObjAttr(pathname=ctypes.addressof(path),
                                                         file_flags=self.file_flags)))


@dataclass(frozen=True, repr=False)
class GetById(Op):
    """LINK_GET_FD_BY_ID of the ID ``ref`` names (§13); the new fd becomes a handle."""

    ref: Ref
    open_flags: int
    mutates = False

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
    mutates = False

    @property
    def kind(self) -> str:
        return "effective" if self.effective else "query"

    def run(self, s: Side) -> Any:
        n = self.cap + 2
        ids, flags, link_ids = ((ctypes.c_uint32 * n).from_buffer_copy(b"\xff" * 4 * n)
                                for _ in range(3))
        mprog = {"link_ids": ctypes.addressof(link_ids), "revision": 0x5555}
        attr = uapi.QueryAttr(
            target_fd=s.fd(self.cg), attach_type=self.at, attach_flags=0xAAAA,
            query_flags=self.extra_flags | (uapi.F_QUERY_EFFECTIVE if self.effective else 0),
            prog_ids=ctypes.addressof(ids) if self.ids else 0, prog_cnt=self.cap,
            prog_attach_flags=ctypes.addressof(flags) if self.with_flags else 0,
            **(mprog if s.mprog_uapi else {}))
        res = attempt(lambda: s.k.bpf(Cmd.PROG_QUERY, attr))
        return (*res, attr.attach_flags, attr.prog_cnt, attr.revision,
                [s.norm("prog", i) if i != SENTINEL else "-" for i in written(ids)],
                written(flags),
                [s.norm("link", i) if i != SENTINEL else "-" for i in written(link_ids)])


def written(buf: ctypes.Array[ctypes.c_uint32]) -> list[int]:
    """A query buffer without its trailing never-written (``SENTINEL``) slots."""
    n = (len(bytes(buf).rstrip(b"\xff")) + 3) // 4
    return list(struct.unpack_from(f"<{n}I", buf))


@dataclass(frozen=True, repr=False)
class Info(Op):
    """OBJ_GET_INFO_BY_FD with ``info_len`` = ``size``; ``dirty``: a non-zero byte at 80
    (past the 64 bytes of a link info: E2BIG when ``size`` covers it, §13)."""

    obj: Ref
    size: int
    dirty: bool
    mutates = False

    def run(self, s: Side) -> Any:
        buf = (ctypes.c_uint8 * 512)()  # more than any info struct
        buf[80] = int(self.dirty)
        attr = uapi.InfoAttr(bpf_fd=s.fd(self.obj), info_len=self.size,
                             info=ctypes.addressof(buf))
        s.k.bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
        if s.kind(self.obj) == "prog":  # what the model does not know: JIT, load time
            p = uapi.ProgInfo.from_buffer(buf)
            return (attr.info_len, p.type, s.norm("prog", p.id), bytes(p.tag).hex(),
                    p.xlated_prog_len, p.created_by_uid, p.nr_map_ids, bytes(p.name))
        i = uapi.LinkInfo.from_buffer(buf)
        return (attr.info_len, i.type, s.norm("link", i.id), s.norm("prog", i.prog_id),
                s.norm("cg", i.cgroup_id), i.attach_type, any(i._reserved))


@dataclass(frozen=True, repr=False)
class FdInfo(Op):
    """``/proc/self/fdinfo`` of a program or link fd (§13), IDs renamed; not the anon
    inode's mount and inode numbers."""

    obj: Ref
    mutates = False

    def run(self, s: Side) -> Any:
        spaces = {"link_id": "link", "prog_id": "prog", "cgroup_id": "cg"}
        return tuple((key, s.norm(spaces[key], int(v)) if key in spaces else v)
                     for key, v in sorted(s.k.fdinfo(s.fd(self.obj)).items())
                     if key not in ("mnt_id", "ino"))


@dataclass(frozen=True, repr=False)
class LinkMany(Op):
    """LINK_CREATE ``n`` times (to fill a hook: E2BIG at 64 entries, §3); the new fds
    become handles.  The result: how many were made, and the first errno."""

    cg: Ref
    prog: Ref
    at: int
    n: int

    def run(self, s: Side) -> Any:
        made, error = 0, None
        for _ in range(self.n):
            try:
                s.adopt(LinkCreate(self.cg, self.prog, self.at, 0, ZERO, 0).create(s, s.k))
                made += 1
            except OSError as e:
                if not made:
                    raise
                error = errname(e)
                break
        return made, error


#: The capability sets :class:`Restricted` steps keep (the ones §15 tells apart).
CAPS: tuple[tuple[str, ...], ...] = (
    (), ("CAP_BPF",), ("CAP_NET_ADMIN",), ("CAP_BPF", "CAP_NET_ADMIN"), ("CAP_SYS_ADMIN",),
    ("CAP_BPF", "CAP_SYS_ADMIN"))


@dataclass(frozen=True, repr=False)
class Restricted(Op):
    """``op`` from a forked child (uid 0) that keeps only ``caps`` (§15), with this
    process's fds; ok or its errno (a link it makes goes when the child exits).  ``op``
    is one that only asks the kernel: PROG_ATTACH/DETACH/QUERY, LINK_CREATE/UPDATE/DETACH."""

    op: Op
    caps: tuple[str, ...]

    @property
    def mutates(self) -> bool:
        return self.op.mutates

    def types(self) -> set[int]:
        return self.op.types()

    def affects(self, s: Side) -> Scope | None:
        return self.op.affects(s)

    def run(self, s: Side) -> Any:
        def child(k: Kernel) -> None:
            view = copy.copy(s)  # the child's bookkeeping is not this process's
            view.k, view.names, view.seen = k, dict(s.names), Counter(s.seen)
            if isinstance(self.op, LinkCreate):
                self.op.create(view, k)
            elif isinstance(self.op, Query):  # it returns its errno
                result = self.op.run(view)[0]
                if result != "ok":
                    raise OSError(getattr(errno, result), result)
            else:
                self.op.run(view)
        s.k.run_restricted(self.caps, child)


# --- blind steps: any fd, flag and type -----------------------------------------------------


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


_PROG = st.integers(0, len(PROGRAMS) - 1).map(lambda i: Ref("prog", i))
_HANDLE = _weighted((3, st.integers(0, 2)), (1, st.integers(3, MAX_HANDLES - 1)))
_LINK = _weighted((1, st.just(Ref("last"))), (2, _HANDLE.map(lambda j: Ref("link", j))))
_CG = st.sampled_from(CGROUPS * 3 + CGROUPS[:3] * 3).map(lambda n: Ref("cg", n))
_ODD = st.sampled_from([Ref("bad"), ZERO])
_PROGS = _mostly(_PROG, _LINK, _CG, _ODD)
_LINKS = _mostly(_LINK, _PROG, _ODD)
_CGS = _mostly(_CG, _PROG, _ODD)
_TYPES = st.sampled_from((*ATTACH_TYPES, UNKNOWN_TYPE))
#: (program, attach type), mostly a pair that fits.
_PROG_AT = _mostly(
    st.sampled_from([(i, at) for i, p in enumerate(PROGRAMS) for at in ATTACH_TYPES
                     if p.fits(at)]).map(lambda t: (Ref("prog", t[0]), t[1])),
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
    return draw(refs) if draw(st.integers(0, 9)) >= 10 - odds else ZERO


@st.composite
def _attach(draw: st.DrawFn) -> Attach:
    prog, at = draw(_PROG_AT)
    flags = draw(_ATTACH_FLAGS)
    rel = _relative(draw, flags, _weighted((1, st.just(ZERO)), (2, _PROG), (1, _LINK)))
    replace = draw(_PROGS) if flags & _REPL or draw(st.integers(0, 9)) == 9 else ZERO
    return Attach(draw(_CGS), prog, at, flags, replace, rel, draw(_REV))


@st.composite
def _link_create(draw: st.DrawFn) -> LinkCreate:
    prog, at = draw(_PROG_AT)
    flags = draw(_LINK_FLAGS)
    rel = _relative(draw, flags, _weighted((1, st.just(ZERO)), (2, _LINK), (1, _PROG)))
    return LinkCreate(draw(_CGS), prog, at, flags, rel, draw(_REV))


@st.composite
def _detach(draw: st.DrawFn) -> Detach:
    prog, at = draw(_PROG_AT)
    flags = draw(st.sampled_from((0,) * 6 + (_MULTI, _PRE)))
    return Detach(draw(_CGS), prog, at, flags, draw(_REV))


@st.composite
def _link_update(draw: st.DrawFn) -> LinkUpdate:
    flags = draw(st.sampled_from((0, 0, 0, _REPL, _REPL, _MULTI)))
    old = draw(_PROGS) if flags & _REPL or draw(st.integers(0, 9)) == 9 else ZERO
    return LinkUpdate(draw(_LINKS), draw(_PROGS), flags, old)


_FILE_FLAGS = st.sampled_from((0, 0, 0, uapi.F_RDONLY, uapi.F_WRONLY, BIT7))
_OPEN_FLAGS = st.sampled_from((0, 0, 0, uapi.F_RDONLY, BIT7))
_INFO_SIZES = st.sampled_from((8, 16, 32, 64, 100))

#: One blind step of each kind (what the whole sequence was drawn from before the state
#: guided it): the odd requests, which found real bugs.
BLIND: dict[str, st.SearchStrategy[Op]] = {
    "Attach": _attach(),
    "LinkCreate": _link_create(),
    "Child": st.builds(Child, _link_create()),
    "Detach": _detach(),
    "LinkUpdate": _link_update(),
    "LinkDetach": st.builds(LinkDetach, _LINKS),
    "Close": st.builds(Close, _HANDLE),
    "Dup": st.builds(Dup, _HANDLE),
    "Pin": st.builds(Pin, st.one_of(_LINKS, _PROG), st.sampled_from(PINS)),
    "Unpin": st.builds(Unpin, st.sampled_from(PINS)),
    "ObjGet": st.builds(ObjGet, st.sampled_from(PINS), _FILE_FLAGS),
    "GetById": st.builds(GetById, _mostly(_LINK, _ODD), _OPEN_FLAGS),
    "Query": st.builds(Query, _CGS, _TYPES, st.booleans(), st.integers(0, 4), st.booleans(),
                       st.booleans(), st.sampled_from((0, 0, 0, 2))),
    "Info": st.builds(Info, _LINKS, _INFO_SIZES, st.booleans()),
    "FdInfo": st.builds(FdInfo, _PROG),  # of a bad fd, host and model fail differently
    "Restricted": st.builds(Restricted, st.one_of(
        _attach(), _detach(), _link_create(), _link_update(), st.builds(LinkDetach, _LINKS),
        st.builds(Query, _CGS, _TYPES, st.booleans(), st.integers(0, 4), st.booleans(),
                  st.booleans(), st.just(0))), st.sampled_from(CAPS)),
    "LinkMany": _PROG_AT.flatmap(lambda pa: st.builds(
        LinkMany, _CGS, st.just(pa[0]), st.just(pa[1]), st.sampled_from((4, 30, 64)))),
    "Mkdir": st.builds(Mkdir, st.sampled_from(CGROUPS[1:])),
    "Rmdir": st.builds(Rmdir, st.sampled_from(CGROUPS[1:])),
}


# --- steps drawn for the state --------------------------------------------------------------


_BELOW: dict[int, st.SearchStrategy[int]] = {}


class Gen:
    """Draws one step for the state the host side is in (both sides are in the same state
    until they diverge, and a step is drawn before it runs): mostly a request that can
    succeed there, else a near miss, and one time in :attr:`BLIND_ODDS` a blind one."""

    BLIND_ODDS = 6

    def __init__(self, draw: st.DrawFn, pair: Pair) -> None:
        self.draw, self.s = draw, pair.sides[0]
        self.types, self.progs = pair.family_types, pair.family_progs
        self.has = pair.features.__contains__  # the host's: others are left to blind steps

    def below(self, n: int) -> int:
        """0 to ``n`` - 1 (shrinks to 0)."""
        if n not in _BELOW:
            _BELOW[n] = st.integers(0, n - 1)
        return int(self.draw(_BELOW[n]))

    def odds(self, n: int, of: int = 10) -> bool:
        """True ``n`` times in ``of`` (shrinks to True)."""
        return self.below(of) < n

    def pick(self, seq: Iterable[Any]) -> Any:
        """One of ``seq`` (shrinks to the first)."""
        items = list(seq)
        return items[self.below(len(items))]

    def weights(self) -> list[tuple[str, int]]:
        """How often each kind is drawn, in this state."""
        s = self.s
        links, attached, pins = s.open_handles("link"), s.attached(), bool(s.pins)
        legacy = any(s.legacy(n, at) for n, at in s.hooks)
        return [("Query", 2), ("Info", 2), ("Attach", 8), ("LinkCreate", 10), ("Child", 2),
                ("Detach", 5 if legacy else 2), ("LinkUpdate", 8 if attached else 2),
                ("LinkDetach", 4 if attached else 2 if links else 1),
                ("Close", 3 if s.open_handles() else 1), ("Dup", 2), ("Pin", 4),
                ("Unpin", 2 if pins else 1), ("ObjGet", 3 if pins else 1),
                ("GetById", 2 if s.listed_now else 1), ("Mkdir", 4 if s.missing() else 1),
                ("Rmdir", 3), ("FdInfo", 1), ("LinkMany", 1), ("Restricted", 2)]

    def op(self) -> Op:
        kinds = self.weights()
        bounds = list(itertools.accumulate(w for _, w in kinds))
        kind = kinds[bisect.bisect_right(bounds, self.below(bounds[-1]))][0]
        if not self.odds(self.BLIND_ODDS - 1, self.BLIND_ODDS):
            return self.draw(BLIND[kind])
        op: Op | None = getattr(self, kind.lower())()
        return op if op is not None else self.draw(BLIND[kind])

    # --- parts -------------------------------------------------------------------------

    def cgroup(self) -> str:
        """A live cgroup, one time in ten any cgroup."""
        live = sorted(self.s.live)
        return self.pick(live if live and self.odds(9) else CGROUPS)

    def prog_for(self, at: int) -> int:
        """A program of the families that fits ``at``; else one of its type that does
        not, or one of another type (often CGROUP_SKB: LINK_CREATE took those for any
        hook before 6.9, §2.2)."""
        fitting = [i for i in self.progs if PROGRAMS[i].fits(at)]
        if fitting and self.odds(8):
            return int(self.pick(fitting))
        ptype = uapi.CGROUP_PROG_TYPE[AT(at)]
        near = [i for i, p in enumerate(PROGRAMS) if p.ptype == ptype and not p.fits(at)]
        if near and self.odds(1, 2):
            return int(self.pick(near))
        skb = [i for i, p in enumerate(PROGRAMS) if p.ptype == PT.CGROUP_SKB != ptype]
        others = [i for i, p in enumerate(PROGRAMS) if p.ptype != ptype]
        return int(self.pick(skb if skb and self.odds(1, 2) else others))

    def revision(self, hook: HookView) -> int:
        """``expected_revision``: mostly 0, else the current one, or a stale one."""
        if self.odds(8) or not self.has("mprog_cgroup"):
            return 0
        return hook.revision if self.odds(7) else hook.revision + self.pick((1, 2))

    # --- one method per kind (None: nothing to draw from here, a blind step then) -----

    def query(self) -> Op:
        at = self.pick(self.types) if self.odds(8) else self.draw(_TYPES)
        return Query(Ref("cg", self.cgroup()), at, self.odds(5), self.pick((0, 1, 2, 64)),
                     self.odds(9), self.odds(5), 0)

    def info(self) -> Op | None:
        handles = self.s.open_handles()
        if not handles:
            return None
        return Info(Ref("link", self.pick(handles)), self.pick((64, 64, 16, 100, 8)),
                    not self.odds(9))

    def fdinfo(self) -> Op:
        handles = self.s.open_handles()
        if handles and self.odds(8):
            return FdInfo(Ref("link", self.pick(handles)))
        return FdInfo(Ref("prog", self.pick(self.progs)))

    def linkmany(self) -> Op:
        name, at = self.cgroup(), self.pick(self.types)
        return LinkMany(Ref("cg", name), Ref("prog", self.prog_for(at)), at,
                        self.pick((4, 8, 8, 30, 64)))

    def restricted(self) -> Op:
        kinds = (self.attach, self.detach, self.linkcreate, self.linkupdate, self.linkdetach,
                 self.query)
        op = self.pick(kinds)() or self.query()
        return Restricted(op, self.pick(CAPS))

    def attach(self) -> Op:
        name, at = self.cgroup(), self.pick(self.types)
        hook, legacy = self.s.hook(name, at), self.s.legacy(name, at)
        if hook.progs and self.odds(8):
            mode = hook.mode
        else:
            mode = self.pick((_MULTI,) * 6 + (0, 0, _OVR, _OVR))
        prog = self.prog_for(at)
        fresh = [i for i in self.progs if PROGRAMS[i].fits(at) and i not in legacy]
        if mode == _MULTI and prog in legacy and fresh and self.odds(8):
            prog = self.pick(fresh)  # a legacy MULTI duplicate is EINVAL (§4 step 14)
        flags, replace, rel = mode, ZERO, ZERO
        extra = self.below(10)
        if extra == 0 and legacy and mode == _MULTI:
            flags |= _REPL
            replace = Ref("prog", self.pick(legacy) if self.odds(8) else self.prog_for(at))
        elif extra in (1, 2) and mode == _MULTI and self.has("mprog_cgroup"):
            flags |= self.pick((_BEF, _AFT))
            if legacy and self.odds(7):
                rel = Ref("prog", self.pick(legacy))
                flags |= _ID if self.odds(3) else 0
            flags |= _PRE if self.odds(1, 4) else 0  # the anchor's preorder bit must match
        elif extra == 3 and self.has("preorder_attach"):
            flags |= _PRE
        return Attach(Ref("cg", name), Ref("prog", prog), at, flags, replace, rel,
                      self.revision(hook))

    def linkcreate(self) -> Op:
        name, at = self.cgroup(), self.pick(self.types)
        flags, rel, extra = 0, ZERO, self.below(10)
        if extra == 0 and self.has("preorder_link"):
            flags = _PRE
        elif extra in (1, 2) and self.has("mprog_cgroup"):
            flags = self.pick((_BEF, _AFT))
            anchors = self.s.attached(name, at)
            if anchors and self.odds(8):
                rel = Ref("link", self.pick(anchors))
                flags |= _LNK | (_ID if self.odds(3) else 0)
            flags |= _PRE if self.odds(1, 4) and self.has("preorder_link") else 0
        return LinkCreate(Ref("cg", name), Ref("prog", self.prog_for(at)), at, flags, rel,
                          self.revision(self.s.hook(name, at)))

    def child(self) -> Op:
        link = self.linkcreate()
        assert isinstance(link, LinkCreate)
        return Child(link)

    def detach(self) -> Op | None:
        s = self.s
        hooks = [(n, at) for n, at in sorted(s.hooks) if s.legacy(n, at) and n in s.live]
        if not hooks:
            return None
        name, at = self.pick(hooks)
        hook = s.hook(name, at)
        prog = Ref("prog", self.pick(s.legacy(name, at)) if self.odds(9) else self.prog_for(at))
        if hook.mode != _MULTI and not self.odds(7):
            prog = ZERO  # NONE and OVERRIDE hooks detach their program without its fd
        return Detach(Ref("cg", name), prog, at, 0, self.revision(hook))

    def linkupdate(self) -> Op | None:
        s = self.s
        attached, links = s.attached(), s.open_handles("link")
        if not links:
            return None
        j = self.pick(attached if attached and self.odds(8) else links)
        view = s.link_view(j)
        if view is None or view.prog is None:
            return None
        cur = PROGRAMS[view.prog]
        same = [i for i, p in enumerate(PROGRAMS) if p.ptype == cur.ptype]
        fit = [i for i in same if PROGRAMS[i].fits(view.at)]
        unfit = [i for i in same if i not in fit]
        choice = self.below(10)
        if choice < (5 if unfit else 7) and fit:
            new = self.pick(fit)
        elif choice < 8 and (unfit or fit):
            new = self.pick(unfit or fit)  # of the link's type, for another attach type
        else:
            new = self.pick(range(len(PROGRAMS)))
        flags, old, choice = 0, ZERO, self.below(10)
        if choice >= 7:
            flags = _REPL
            old = Ref("prog", view.prog if choice < 9 else self.pick(range(len(PROGRAMS))))
        return LinkUpdate(Ref("link", j), Ref("prog", new), flags, old)

    def linkdetach(self) -> Op | None:
        attached, links = self.s.attached(), self.s.open_handles("link")
        if not links:
            return None
        return LinkDetach(Ref("link", self.pick(attached if attached and self.odds(8)
                                                else links)))

    def close(self) -> Op | None:
        handles = self.s.open_handles()
        return Close(self.pick(handles)) if handles else None

    def dup(self) -> Op | None:
        handles = self.s.open_handles()
        return Dup(self.pick(handles)) if handles else None

    def pin(self) -> Op | None:
        handles = self.s.open_handles()
        free = [p for p in PINS if p not in self.s.pins]
        obj = (Ref("link", self.pick(handles)) if handles and self.odds(8)
               else Ref("prog", self.pick(self.progs)))
        return Pin(obj, self.pick(free if free and self.odds(9) else PINS))

    def unpin(self) -> Op | None:
        return Unpin(self.pick(sorted(self.s.pins))) if self.s.pins else None

    def objget(self) -> Op | None:
        if not self.s.pins:
            return None
        return ObjGet(self.pick(sorted(self.s.pins)), 0 if self.odds(8) else self.draw(_FILE_FLAGS))

    def getbyid(self) -> Op | None:
        handles = [j for j, h in enumerate(self.s.handles) if h.ident in self.s.listed_now]
        if not handles:
            return None
        flags = 0 if self.odds(9) else self.draw(_OPEN_FLAGS)
        return GetById(Ref("link", self.pick(handles)), flags)

    def mkdir(self) -> Op | None:
        missing = self.s.missing()
        return Mkdir(self.pick(missing)) if missing else None

    def rmdir(self) -> Op | None:
        leaves = self.s.leaves()
        return Rmdir(self.pick(leaves)) if leaves else None


@st.composite
def step_for(draw: st.DrawFn, pair: Pair) -> Op:
    """One step for the state ``pair`` is in."""
    return Gen(draw, pair).op()


_FAMILY_SETS = st.lists(st.sampled_from(sorted(FAMILIES)), min_size=1, max_size=3,
                        unique=True).map(lambda f: tuple(sorted(f)))


# --- running both -------------------------------------------------------------------------


class Divergence(AssertionError):
    """Host and model disagree; the message shows the steps so far and the difference.
    ``ops``: the steps, the last is the one after which they disagreed, unless ``final``
    (they disagreed in the final observation, after every step); no steps and not final:
    at the setup.  ``families``: the sequence's; ``made``: whether each step made a
    handle (for :func:`minimise`)."""

    def __init__(self, message: str, ops: Sequence[Op] = (), *, families: Sequence[str] = (),
                 made: Sequence[bool] = (), final: bool = False) -> None:
        super().__init__(message)
        self.ops, self.made, self.families = list(ops), list(made), tuple(families)
        self.final = final


class Pair:
    """The host and a model machine, stepped together."""

    FULL_EVERY = 8  # steps between observations of every attach type the sequence uses
    steps = 0  # steps run by every Pair of this process (the long fuzz reports it)
    outcomes: ClassVar[Counter[tuple[str, str]]] = Counter()  # (op, host result) -> count
    counting = True  # whether steps count in outcomes (not while minimising)
    stop = False  # set by a signal: the next step raises KeyboardInterrupt

    def __init__(self, host: Kernel, model: Kernel, families: Sequence[str] = ()) -> None:
        """``families``: the program families the steps use (also :meth:`choose`)."""
        try:  # fd 0 stands for "an open file that is not bpf", as in the model
            os.fstat(0)
        except OSError:
            os.open(os.devnull, os.O_RDONLY)  # takes the lowest free fd: 0
        self.trace: list[str] = []
        self.ops: list[Op] = []
        self.made: list[bool] = []  # per step: whether it made a handle
        self.finishing = False
        self.sides: list[Side] = []
        self.families: tuple[str, ...] = ()
        self.family_progs: tuple[int, ...] = tuple(range(len(PROGRAMS)))
        self.family_types: tuple[int, ...] = ATTACH_TYPES
        self.types: set[int] = set()  # the attach types observed after each step
        self.failed = False
        try:
            # what the host has of what the steps use (the same requests for both)
            self.features: set[str] = {k for k in ("mprog_uapi", "mprog_cgroup", "preorder_attach",
                                         "preorder_link") if supported(host, k)}
            mprog_uapi = "mprog_uapi" in self.features
            self.sides = [Side(host, mprog_uapi)]
            self.sides.append(Side(model, mprog_uapi))
            name = getattr(getattr(model, "profile", None), "name", repr(model))
            self.compare(f"setup, model {name}", ("ok",), ("ok",))
            if families:
                self.choose(families)
        except BaseException:
            self.close()
            raise

    def choose(self, families: Sequence[str]) -> None:
        """The program families the steps use (:data:`FAMILIES`); their hooks are
        observed from now on."""
        self.families = tuple(families)
        self.family_progs = tuple(i for f in families for i in FAMILIES[f][0])
        self.family_types = tuple(at for f in families for at in FAMILIES[f][1])
        self.types |= set(self.family_types)
        self.compare(f"families {', '.join(self.families)}", ("ok",), ("ok",))

    def step(self, op: Op) -> Result:
        """Run ``op`` on both; the host's result (the model's is the same)."""
        if Pair.stop:
            raise KeyboardInterrupt  # hypothesis lets it through (and tears down)
        self.ops.append(op)
        self.types |= op.types()
        scope = op.affects(self.sides[0])
        handles = len(self.sides[0].handles)
        try:
            results = []
            for side in self.sides:
                results.append(attempt(functools.partial(op.run, side)))
                if op.mutates and results[-1][0] == "ok":
                    side.settle()
            self.made.append(len(self.sides[0].handles) > handles)
            Pair.steps += 1
            if Pair.counting:
                Pair.outcomes[type(op).__name__, str(results[0][0])] += 1
            types: set[int] | None = set()  # no query: nothing changed
            below = ""
            if len(self.ops) % self.FULL_EVERY == 0:
                types = None
            elif op.mutates and "ok" in (results[0][0], results[1][0]):
                types, below = (None, "") if scope is None else (scope[0] & self.types, scope[1])
            self.compare(repr(op), *results, types, below)
        except BaseException:
            self.failed = True
            raise
        return results[0]

    def compare(self, what: str, host: Result, model: Result,
                types: Iterable[int] | None = None, below: str = "") -> None:
        self.trace.append(f"{len(self.trace):3} {what}: host {host}"
                          + ("" if host == model else f" <> model {model}"))
        types = set(self.types if types is None else types)
        seen = [s.observe(types, below) for s in self.sides]
        diff = [f"  {key}: host {seen[0].get(key)} <> model {seen[1].get(key)}"
                for key in sorted(seen[0].keys() | seen[1].keys())
                if seen[0].get(key) != seen[1].get(key)]
        if host != model or diff:
            self.failed = True
            head = f"host and model diverge (families {', '.join(self.families)}):\n"
            raise Divergence(head + "\n".join(self.trace + diff), self.ops,
                             families=self.families, made=self.made, final=self.finishing)

    def finish(self) -> None:
        """The final observation: every attach type's queries (not after a failure)."""
        if self.failed:
            return
        self.finishing = True
        self.compare("end: every attach type", ("ok",), ("ok",), self.types | set(ATTACH_TYPES))

    def close(self) -> None:
        for side in self.sides:
            side.close()


def resolve(profile: Profile | str | None = None) -> Profile:
    """The model's profile: a :class:`Profile`, a name for :meth:`Profile.of`, or the
    calibrated one (``Profile.host()``, the default)."""
    if isinstance(profile, Profile):
        return profile
    return Profile.of(profile or "host")


def run_pair(ops: Sequence[Op], host: Kernel | None = None, *,
             profile: Profile | str | None = None, families: Sequence[str] = (),
             finish: bool = True) -> None:
    """Run ``ops`` on the host and a fresh model (calibrated unless ``profile``), then
    (if ``finish``) the final observation; :class:`Divergence` at the first difference."""
    pair = Pair(host or cgbpf.host(), ModelKernel(resolve(profile)), families)
    try:
        for op in ops:
            pair.step(op)
        if finish:
            pair.finish()
    finally:
        pair.close()


def renumber(op: Op, gone: int) -> Op:
    """``op`` once handle ``gone`` is never made: later handles move down by one, and a
    reference to ``gone`` names no fd."""
    changes: dict[str, Any] = {}
    for f in fields(op):
        value = getattr(op, f.name)
        if isinstance(value, Ref) and value.kind == "link":
            k = int(value.key)
            changes[f.name] = Ref("bad") if k == gone else Ref("link", k - 1) if k > gone else value
        elif isinstance(value, Op):
            changes[f.name] = renumber(value, gone)
        elif isinstance(op, OnHandle) and f.name == "h":
            changes[f.name] = BAD_FD if value == gone else value - 1 if value > gone else value
    return dataclasses.replace(op, **changes)


def without(ops: Sequence[Op], made: Sequence[bool], drop: Iterable[int]) -> list[Op]:
    """``ops`` without the steps ``drop``, the later handle numbers adjusted."""
    ops = list(ops)
    for i in sorted(drop, reverse=True):
        if made[i]:
            gone = sum(made[:i])
            ops[i + 1:] = [renumber(op, gone) for op in ops[i + 1:]]
        del ops[i]
    return ops


def minimise(found: Divergence, host: Kernel, profile: Profile | str | None = None, *,
             seconds: float = 60) -> Divergence:
    """A shorter sequence with the same divergence: runs of ``found``'s steps left out
    (ddmin: halves, quarters, ... single steps; handle numbers adjusted), as long as it
    still diverges after a step of the same kind (or in the final observation, if that
    is where ``found`` did); for at most ``seconds``.  Hypothesis's own shrinking needs
    too many runs of a sequence on the real kernel."""
    if not found.ops:
        return found
    deadline = time.monotonic() + seconds
    best, kind = found, type(found.ops[-1])

    def diverges(ops: list[Op]) -> Divergence | None:
        try:
            run_pair(ops, host, profile=profile, families=found.families, finish=found.final)
        except Divergence as e:
            if e.final == found.final and e.ops and (e.final or type(e.ops[-1]) is kind):
                return e
        return None

    chunk, Pair.counting = len(best.ops) // 2, False
    try:
        while chunk >= 1 and time.monotonic() < deadline:
            removed = False
            start = len(best.ops) - (0 if best.final else 1) - chunk  # keep the diverging step
            while start >= 0 and time.monotonic() < deadline:
                smaller = diverges(without(best.ops, best.made, range(start, start + chunk)))
                if smaller is not None:
                    best, removed = smaller, True
                start -= chunk
            if not removed:
                chunk //= 2
            else:
                chunk = min(chunk, len(best.ops) // 2)
    finally:
        Pair.counting = True
    return best


class Machine(RuleBasedStateMachine):
    """Hypothesis drives a :class:`Pair`: the families first, then one step at a time,
    each drawn for the state the pair is in."""

    def __init__(self, host: Kernel, profile: Profile) -> None:
        super().__init__()
        self.pair = Pair(host, ModelKernel(profile))

    @initialize(families=_FAMILY_SETS)
    def choose(self, families: tuple[str, ...]) -> None:
        self.pair.choose(families)

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        self.pair.step(data.draw(step_for(self.pair)))

    def teardown(self) -> None:
        try:
            self.pair.finish()
        finally:
            self.pair.close()


def check(host: Kernel, *, examples: int, steps: int, derandomize: bool = False,
          seed: int | None = None, profile: Profile | str | None = None,
          shrink: bool = True) -> None:
    """``examples`` random sequences of up to ``steps`` steps against the model of
    ``profile`` (default: calibrated from the host, ``Profile.host()``); the first
    divergence is minimised (unless not ``shrink``) and raised.  ``seed`` or
    ``derandomize`` make the sequences the same every run."""
    model = resolve(profile)

    class OnHost(Machine):
        def __init__(self) -> None:
            super().__init__(host, model)

    if seed is not None:
        OnHost = hypothesis.seed(seed)(OnHost)
    try:
        run_state_machine_as_test(OnHost, settings=settings(
            max_examples=examples, stateful_step_count=steps,
            derandomize=derandomize and seed is None, database=None, deadline=None,
            suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
            phases=[Phase.explicit, Phase.generate], verbosity=Verbosity.quiet))
    except Divergence as e:
        if not shrink or not e.ops:
            raise
        t0 = time.monotonic()
        small = minimise(e, host, model)
        raise Divergence(
            f"minimised from {len(e.ops)} to {len(small.ops)} steps in "
            f"{time.monotonic() - t0:.0f} s; " + str(small), small.ops, families=small.families,
            made=small.made, final=small.final) from None


def ok_table(outcomes: Counter[tuple[str, str]] | None = None) -> str:
    """How often each kind of step succeeded on the host, and how the rest failed."""
    outcomes = Pair.outcomes if outcomes is None else outcomes
    lines = [f"{'step':11} {'runs':>6} {'ok':>5}  results"]
    for op in sorted({op for op, _ in outcomes}):
        seen = {r: n for (o, r), n in outcomes.items() if o == op}
        total = sum(seen.values())
        rest = " ".join(f"{r}:{n}" for r, n in sorted(seen.items(), key=lambda x: -x[1]))
        lines.append(f"{op:11} {total:6} {seen.get('ok', 0) / total:5.0%}  {rest}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The long fuzz: batches of random sequences until ``--steps`` steps have run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="total steps to run")
    parser.add_argument("--length", type=int, default=40, help="steps per sequence")
    parser.add_argument("--batch", type=int, default=25, help="sequences per batch")
    parser.add_argument("--against", default="host", metavar="host|PROFILE",
                        help="the model: 'host' (calibrated by probing this kernel, the"
                             " default) or a named profile (cgbpf.model.profiles.NAMES)")
    parser.add_argument("--with", dest="with_", action="append", default=[], metavar="FEATURE",
                        help="add a feature to the model's profile (repeatable)")
    parser.add_argument("--without", action="append", default=[], metavar="FEATURE",
                        help="remove a feature from the model's profile (repeatable)")
    parser.add_argument("--seed", type=int, help="batch i runs with seed SEED+i (default:"
                                                 " a random SEED, printed)")
    parser.add_argument("--no-shrink", dest="shrink", action="store_false",
                        help="report a divergence as found, without minimising it")
    parser.add_argument("--max-seconds", type=float, default=0,
                        help="start no new batch after this long (0: no limit)")
    args = parser.parse_args(argv)
    # SIGTERM (a timeout) and Ctrl-C stop the run at the next step, so that the scratch
    # cgroups and bpffs are removed; a second one stops it at once
    def interrupt(*_: object) -> None:
        if Pair.stop:
            raise KeyboardInterrupt
        Pair.stop = True

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    profile = resolve(args.against)
    if args.with_:
        profile = profile.with_(*args.with_)
    if args.without:
        profile = profile.without(*args.without)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    print(f"model: {profile.name}; differs from this kernel in "
          f"{Profile.diff(Profile.host(), profile) or 'nothing'}; seed {seed}", file=sys.stderr)
    host = cgbpf.host()
    found: dict[str, str] = {}
    start = time.monotonic()
    interrupted = False
    try:
        for batch in itertools.count():
            if Pair.steps >= args.steps or (
                    args.max_seconds and time.monotonic() - start > args.max_seconds):
                break
            left = -(-(args.steps - Pair.steps) // args.length)  # sequences still to run
            try:
                check(host, examples=min(args.batch, left), steps=args.length,
                      seed=seed + batch, profile=profile, shrink=args.shrink)
            except Divergence as e:
                text = str(e)
                found.setdefault(text.splitlines()[-1], f"seed {seed + batch}: {text}")
                print(text, file=sys.stderr)
            print(f"{Pair.steps} steps, {len(found)} distinct divergences, "
                  f"{time.monotonic() - start:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
    for text in found.values():
        print(text, end="\n\n")
    print(ok_table())
    print(f"{Pair.steps} steps run against model {profile.name}; "
          f"{len(found)} distinct divergences" + ("; interrupted" if interrupted else ""))
    return 1 if found or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
