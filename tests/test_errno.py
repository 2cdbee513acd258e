"""docs/kernel.md §4 and §7 to §11 on the host kernel, through the public API: every
reachable errno row, with its exception class, which check wins when two fail, the
mode and hierarchy matrices, the 64-entry limit, and the revision rules (§0 fact 1, §18).

Every refused request is also checked to change nothing: every hook the test opened
queries the same (entries, mode and revision) before and after.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial

import pytest

import cgbpf
from cgbpf import (
    HEAD,
    AttachMode,
    AttachType,
    BpfError,
    Cgroup,
    ClosedError,
    ExpectedProgramMismatch,
    Link,
    LinkDefunct,
    LinkInfo,
    LinkType,
    NotSupported,
    Program,
    ProgType,
    Query,
    StaleRevision,
    asm,
)
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgbpf.model import Profile
from cgtest import EGRESS, INGRESS

EXCL, OVER, MULTI = AttachMode.EXCLUSIVE, AttachMode.OVERRIDE, AttachMode.MULTI
LINK = "link"  # as a mode: attach through a bpf_link (implicitly MULTI, §0 fact 4)
Mode = AttachMode | str
MODES: list[Mode] = [EXCL, OVER, MULTI, LINK]
CONNECT4, CONNECT6 = AttachType.CGROUP_INET4_CONNECT, AttachType.CGROUP_INET6_CONNECT
#: The hooks whose state a refused request must leave alone.
WATCHED = (EGRESS, INGRESS, CONNECT4, CONNECT6)
MAX = 64


class Lab:
    """The programs, links and cgroups of one test; all closed (or removed) after it."""

    def __init__(self, kernel: Kernel, scratch: Scratch, stack: ExitStack) -> None:
        self.kernel, self.scratch, self.stack = kernel, scratch, stack
        self.cgroups: dict[str, Cgroup] = {}
        self.removed: set[str] = set()
        self.links: list[Link] = []
        self.loaded = 0

    def cg(self, rel: str = "a") -> Cgroup:
        if rel not in self.cgroups:
            self.cgroups[rel] = self.scratch.cgroup(rel)
        return self.cgroups[rel]

    def prog(self, prog_type: ProgType = ProgType.CGROUP_SKB,
             attach_type: AttachType = EGRESS, *, ret: int = 1) -> Program:
        self.loaded += 1
        return self.stack.enter_context(Program.load(
            asm.return_program(ret), prog_type, expected_attach_type=attach_type,
            name=f"p{self.loaded}", kernel=self.kernel))

    def progs(self, n: int) -> list[Program]:
        return [self.prog() for _ in range(n)]

    def other_type(self) -> Program:
        """A CGROUP_SOCK program: the wrong program type for the skb hooks."""
        return self.prog(ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE)

    def add(self, cg: Cgroup, prog: Program, mode: Mode = MULTI,
            at: AttachType = EGRESS, **kw: object) -> Link | None:
        """Legacy attach in ``mode``, or a link (closed after the test) for LINK."""
        if mode == LINK:
            link = self.stack.enter_context(cg.link(prog, at, **kw))
            self.links.append(link)
            return link
        cg.attach(prog, at, mode=AttachMode(mode), **kw)
        return None

    def link(self, cg: Cgroup, prog: Program, **kw: object) -> Link:
        link = self.add(cg, prog, LINK, **kw)
        assert link is not None
        return link

    def remove(self, rel: str = "a") -> Cgroup:
        """rmdir a leaf cgroup but keep its fd: commands on it then give ENOENT (§12)."""
        cg = self.cg(rel)
        self.kernel.rmdir(cg.path)
        self.scratch.forget(cg.path)
        self.removed.add(rel)
        return cg

    def state(self) -> dict[tuple[str, AttachType], Query]:
        return {(rel, at): cg.query(at) for rel, cg in self.cgroups.items()
                if rel not in self.removed for at in WATCHED}


@pytest.fixture
def lab(kernel: Kernel, scratch: Scratch) -> Iterator[Lab]:
    with ExitStack() as stack:
        yield Lab(kernel, scratch, stack)


def has(lab: Lab, key: str) -> bool:
    """Whether cgbpf's probe finds feature ``key`` (could not tell counts as present:
    the 6.18 expectation then applies, and a wrong behaviour fails)."""
    return probe.check(lab.kernel, key) is not False


def R(lab: Lab, n: int) -> int:
    """A hook's revision ``n`` (§0 fact 1: 1 + changes) where the kernel has the mprog
    API; without it ``query.revision`` is always 0 (§19)."""
    return n if has(lab, probe.MPROG) else 0


def check_fails(lab: Lab, action: Callable[[], object], err: int,
                cls: type[BpfError] = BpfError, needs: tuple[str, ...] = ()) -> None:
    """``action`` raises exactly ``cls`` with ``err``, and changes no hook.  Where the
    probe says the kernel lacks a feature of ``needs`` (the request uses it), cgbpf
    refuses it before asking the kernel: NotSupported naming that feature."""
    missing = [k for k in needs if not has(lab, k)]
    if missing:
        err, cls = errno.EOPNOTSUPP, NotSupported
    before = lab.state()
    with pytest.raises(BpfError) as info:
        action()
    assert isinstance(info.value, cls)  # exactly cls, by name (ENOENT is a FileNotFoundError too)
    assert (type(info.value).__name__, errno.errorcode[info.value.errno]) == \
        (cls.__name__, errno.errorcode[err]), str(info.value)
    if missing:
        assert isinstance(info.value, NotSupported)
        assert info.value.feature in {probe.FEATURES[k].name for k in missing}, str(info.value)
    after = lab.state()
    assert {k: after[k] for k in before} == before, "a refused request changed a hook"


def rev(cg: Cgroup, at: AttachType = EGRESS) -> int:
    return cg.query(at).revision


def ids(cg: Cgroup, at: AttachType = EGRESS, *, effective: bool = False) -> list[int]:
    return cg.query(at, effective=effective).ids


# --------------------------------------------------------------------------- refusals
# Each scenario builds its state and returns the request that must be refused.

Action = Callable[[], object]
Scenario = Callable[[Lab], Action]
CASES: dict[str, tuple[Scenario, int, type[BpfError], tuple[str, ...]]] = {}
MPROG = (probe.MPROG,)  # the request uses expected_revision or an anchor (6.17, §19)


def refused(err: int, cls: type[BpfError] = BpfError,
            needs: tuple[str, ...] = ()) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        CASES[fn.__name__.replace("_", "-")] = (fn, err, cls, needs)
        return fn
    return register


def late_exclusive_parent(lab: Lab, *child_progs: Program) -> Cgroup:
    """a/b holds ``child_progs`` (MULTI); then a attaches an EXCLUSIVE program, which
    only ancestors' checks see: a/b keeps its entries but may not add any (§4 step 11)."""
    child = lab.cg("a/b")
    for p in child_progs:
        lab.add(child, p, MULTI)
    lab.add(lab.cg("a"), lab.prog(), EXCL)
    return child


# §4 PROG_ATTACH, in check order.

@refused(errno.EINVAL)
def attach_wrong_prog_type(lab: Lab) -> Action:                       # step 4
    return lambda: lab.add(lab.cg(), lab.other_type())


@refused(errno.EBADF, ClosedError)
def attach_closed_prog(lab: Lab) -> Action:                           # step 4 (bad fd)
    p = lab.prog()
    p.close()
    return lambda: lab.add(lab.cg(), p)


@refused(errno.EINVAL)
def attach_expected_attach_type_mismatch(lab: Lab) -> Action:         # step 5
    p = lab.prog(ProgType.CGROUP_SOCK_ADDR, CONNECT4)
    return lambda: lab.add(lab.cg(), p, at=CONNECT6)


@refused(errno.EINVAL)
def attach_enforced_egress_prog_to_ingress(lab: Lab) -> Action:       # step 5, §2.1 note a
    p = lab.prog(ret=2)
    return lambda: lab.add(lab.cg(), p, at=INGRESS)


@refused(errno.EINVAL)
def attach_wrong_type_beats_removed_cgroup(lab: Lab) -> Action:       # 4 before 6
    cg = lab.remove()
    return lambda: lab.add(cg, lab.other_type())


@refused(errno.ENOENT)
def attach_removed_cgroup(lab: Lab) -> Action:                        # step 6
    cg = lab.remove()
    return lambda: lab.add(cg, lab.prog())


@refused(errno.ENOENT)
def attach_removed_cgroup_beats_bad_replace(lab: Lab) -> Action:      # 6 before 7
    cg = lab.remove()
    return lambda: lab.add(cg, lab.prog(), replace=lab.other_type())


@refused(errno.EINVAL)
def attach_replace_of_wrong_type(lab: Lab) -> Action:                 # step 7
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return lambda: lab.add(cg, lab.prog(), replace=lab.other_type())


@refused(errno.EINVAL, needs=MPROG)
def attach_bad_replace_beats_stale(lab: Lab) -> Action:               # 7 before 10
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return lambda: lab.add(cg, lab.prog(), replace=lab.other_type(), expected_revision=1)


@pytest.mark.parametrize("mode", [EXCL, OVER])
def test_replace_needs_multi(lab: Lab, mode: AttachMode) -> None:    # step 8, before 10-12
    """REPLACE without MULTI is EINVAL: on an empty hook, on a hook in that very mode
    holding the replaced program, and with a stale revision too."""
    cg, (p0, p1) = lab.cg(), lab.progs(2)
    check_fails(lab, lambda: lab.add(cg, p1, mode, replace=p0), errno.EINVAL)
    lab.add(cg, p0, mode)
    for stale in (0, 1):
        check_fails(lab, partial(lab.add, cg, p1, mode, replace=p0, expected_revision=stale),
                    errno.EINVAL, needs=MPROG if stale else ())


@refused(errno.EINVAL, needs=MPROG)
def attach_replace_with_anchor(lab: Lab) -> Action:                   # step 9
    cg, (p0, p1) = lab.cg(), lab.progs(2)
    lab.add(cg, p0)
    return lambda: lab.add(cg, p1, replace=p0, before=HEAD)


@refused(errno.EINVAL, needs=MPROG)
def attach_replace_with_anchor_beats_stale(lab: Lab) -> Action:       # 9 before 10
    cg, (p0, p1) = lab.cg(), lab.progs(2)
    lab.add(cg, p0)
    return lambda: lab.add(cg, p1, replace=p0, after=p0, expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def attach_stale_revision(lab: Lab) -> Action:                        # step 10
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return lambda: lab.add(cg, lab.prog(), expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def attach_stale_beats_hierarchy(lab: Lab) -> Action:                 # 10 before 11
    lab.add(lab.cg("a"), lab.prog(), EXCL)
    return lambda: lab.add(lab.cg("a/b"), lab.prog(), expected_revision=2)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def attach_stale_beats_mode_mismatch(lab: Lab) -> Action:             # 10 before 12
    cg = lab.cg()
    lab.add(cg, lab.prog(), EXCL)
    return lambda: lab.add(cg, lab.prog(), MULTI, expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def attach_stale_beats_duplicate(lab: Lab) -> Action:                 # 10 before 14
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p)
    return lambda: lab.add(cg, p, expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def attach_stale_beats_missing_anchor(lab: Lab) -> Action:            # 10 before 16
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return lambda: lab.add(cg, lab.prog(), before=lab.prog(), expected_revision=1)


@refused(errno.EPERM)
def attach_below_late_exclusive_parent(lab: Lab) -> Action:           # step 11
    child = late_exclusive_parent(lab, lab.prog())
    return lambda: lab.add(child, lab.prog())


@refused(errno.EPERM)
def attach_hierarchy_beats_duplicate(lab: Lab) -> Action:             # 11 before 14
    p = lab.prog()
    child = late_exclusive_parent(lab, p)
    return lambda: lab.add(child, p)


@refused(errno.EPERM)
def attach_hierarchy_beats_missing_replace(lab: Lab) -> Action:       # 11 before 15
    child = late_exclusive_parent(lab, lab.prog())
    return lambda: lab.add(child, lab.prog(), replace=lab.prog())


@refused(errno.EPERM)
def attach_mode_mismatch_beats_duplicate(lab: Lab) -> Action:         # 12 before 14
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p, EXCL)
    return lambda: lab.add(cg, p, MULTI)


@refused(errno.EINVAL)
def attach_duplicate_legacy_multi(lab: Lab) -> Action:                # step 14 (fact 6)
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p)
    return lambda: lab.add(cg, p)


@refused(errno.EINVAL)
def attach_duplicate_beats_missing_replace(lab: Lab) -> Action:       # 14 before 15
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p)
    return lambda: lab.add(cg, p, replace=lab.prog())


@refused(errno.EINVAL, needs=MPROG)
def attach_duplicate_beats_missing_anchor(lab: Lab) -> Action:        # 14 before 16
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p)
    return lambda: lab.add(cg, p, before=lab.prog())


@refused(errno.ENOENT)
def attach_replace_not_attached(lab: Lab) -> Action:                  # step 15
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return lambda: lab.add(cg, lab.prog(), replace=lab.prog())


@refused(errno.ENOENT)
def attach_replace_cannot_target_a_link(lab: Lab) -> Action:          # step 15 (fact 5)
    cg, p = lab.cg(), lab.prog()
    lab.link(cg, p)
    return lambda: lab.add(cg, lab.prog(), replace=p)


@refused(errno.ENOENT)
def attach_replace_of_a_parent_prog(lab: Lab) -> Action:              # step 15
    p = lab.prog()
    lab.add(lab.cg("a"), p)
    child = lab.cg("a/b")
    lab.add(child, lab.prog())
    return lambda: lab.add(child, lab.prog(), replace=p)


# §7 PROG_DETACH.

def detach(cg: Cgroup, prog: Program | None, **kw: int) -> Action:
    return lambda: cg.detach(prog, EGRESS, **kw)


@refused(errno.ENOENT)
def detach_removed_cgroup(lab: Lab) -> Action:                        # step 4
    return detach(lab.remove(), None)


@refused(errno.ENOENT, needs=MPROG)
def detach_removed_cgroup_beats_stale(lab: Lab) -> Action:            # 4 before 6
    return detach(lab.remove(), None, expected_revision=5)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def detach_stale_revision(lab: Lab) -> Action:                        # step 6
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p)
    return detach(cg, p, expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def detach_stale_beats_empty_hook(lab: Lab) -> Action:                # 6 before 7
    return detach(lab.cg(), None, expected_revision=2)


@refused(errno.ENOENT)
def detach_empty_hook(lab: Lab) -> Action:                            # step 7
    return detach(lab.cg(), None)


@refused(errno.ENOENT)
def detach_empty_hook_with_prog(lab: Lab) -> Action:                  # step 7
    return detach(lab.cg(), lab.prog())


@refused(errno.EINVAL)
def detach_multi_without_prog(lab: Lab) -> Action:                    # step 8
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return detach(cg, None)


@refused(errno.EINVAL)
def detach_multi_without_prog_links_only(lab: Lab) -> Action:         # step 8 (fact 5)
    cg = lab.cg()
    lab.link(cg, lab.prog())
    return detach(cg, None)


@refused(errno.EINVAL)
def detach_multi_prog_of_wrong_type(lab: Lab) -> Action:              # steps 5 + 8
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return detach(cg, lab.other_type())


@refused(errno.ENOENT)
def detach_multi_not_attached(lab: Lab) -> Action:                    # step 8
    cg = lab.cg()
    lab.add(cg, lab.prog())
    return detach(cg, lab.prog())


@refused(errno.ENOENT)
def detach_cannot_remove_a_link(lab: Lab) -> Action:                  # step 8 (fact 5)
    cg, p = lab.cg(), lab.prog()
    lab.link(cg, p)
    lab.add(cg, lab.prog())
    return detach(cg, p)


@refused(errno.ENOENT)
def detach_prog_of_the_parent(lab: Lab) -> Action:                    # step 8
    p = lab.prog()
    lab.add(lab.cg("a"), p)
    child = lab.cg("a/b")
    lab.add(child, lab.prog())
    return detach(child, p)


# §8 PROG_QUERY: only the target check is reachable (the library builds the rest).

@refused(errno.ENOENT)
def query_removed_cgroup(lab: Lab) -> Action:
    cg = lab.remove()
    return lambda: cg.query(EGRESS)


@refused(errno.ENOENT)
def query_removed_cgroup_effective(lab: Lab) -> Action:
    cg = lab.remove()
    return lambda: cg.query(EGRESS, effective=True)


# §9 LINK_CREATE.

@refused(errno.EBADF, ClosedError)
def link_closed_prog(lab: Lab) -> Action:                             # step 2
    p = lab.prog()
    p.close()
    return lambda: lab.link(lab.cg(), p)


@refused(errno.EINVAL)
def link_wrong_prog_type(lab: Lab) -> Action:                         # step 3
    return lambda: lab.link(lab.cg(), lab.other_type())


@refused(errno.EINVAL)
def link_expected_attach_type_mismatch(lab: Lab) -> Action:           # step 3
    p = lab.prog(ProgType.CGROUP_SOCK_ADDR, CONNECT4)
    return lambda: lab.add(lab.cg(), p, LINK, at=CONNECT6)


@refused(errno.EINVAL)
def link_enforced_egress_prog_to_ingress(lab: Lab) -> Action:         # step 3
    p = lab.prog(ret=3)
    return lambda: lab.add(lab.cg(), p, LINK, at=INGRESS)


@refused(errno.EINVAL)
def link_wrong_type_beats_removed_cgroup(lab: Lab) -> Action:         # 3 before 6
    cg = lab.remove()
    return lambda: lab.link(cg, lab.other_type())


@refused(errno.ENOENT)
def link_removed_cgroup(lab: Lab) -> Action:                          # step 6
    cg = lab.remove()
    return lambda: lab.link(cg, lab.prog())


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def link_stale_revision(lab: Lab) -> Action:                          # step 8 (§4 10)
    cg = lab.cg()
    lab.link(cg, lab.prog())
    return lambda: lab.link(cg, lab.prog(), expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def link_stale_beats_mode_mismatch(lab: Lab) -> Action:               # §4 10 before 12
    cg = lab.cg()
    lab.add(cg, lab.prog(), EXCL)
    return lambda: lab.link(cg, lab.prog(), expected_revision=1)


@refused(errno.ESTALE, StaleRevision, needs=MPROG)
def link_stale_beats_hierarchy(lab: Lab) -> Action:                   # §4 10 before 11
    lab.add(lab.cg("a"), lab.prog(), OVER)
    lab.add(lab.cg("a/b"), lab.prog(), EXCL)
    return lambda: lab.link(lab.cg("a/b/c"), lab.prog(), expected_revision=3)


@refused(errno.EPERM)
def link_below_late_exclusive_parent(lab: Lab) -> Action:             # §4 step 11
    child = late_exclusive_parent(lab, lab.prog())
    return lambda: lab.link(child, lab.prog())


@refused(errno.EPERM, needs=MPROG)
def link_mode_mismatch_beats_missing_anchor(lab: Lab) -> Action:      # §4 12 before 16
    cg, other = lab.cg("a"), lab.cg("b")
    lab.add(cg, lab.prog(), OVER)
    anchor = lab.link(other, lab.prog())
    return lambda: lab.link(cg, lab.prog(), before=anchor)


# §10 LINK_UPDATE.

def linked(lab: Lab) -> tuple[Link, Program]:
    """A link on cgroup a, with the program it runs."""
    p = lab.prog()
    return lab.link(lab.cg(), p), p


@refused(errno.EBADF, ClosedError)
def update_closed_link(lab: Lab) -> Action:                           # step 3
    link, _ = linked(lab)
    link.close()
    return lambda: link.update(lab.prog())


@refused(errno.ENOLINK, LinkDefunct)
def update_detached_link(lab: Lab) -> Action:                         # step 6
    link, _ = linked(lab)
    link.detach()
    return lambda: link.update(lab.prog())


@refused(errno.ENOLINK, LinkDefunct)
def update_detached_beats_expected_mismatch(lab: Lab) -> Action:      # 6 before 7
    link, _ = linked(lab)
    link.detach()
    return lambda: link.update(lab.prog(), expected=lab.prog())


@refused(errno.ENOLINK, LinkDefunct)
def update_detached_beats_wrong_type(lab: Lab) -> Action:             # 6 before 8
    link, _ = linked(lab)
    link.detach()
    return lambda: link.update(lab.other_type())


@refused(errno.EPERM, ExpectedProgramMismatch)
def update_expected_mismatch(lab: Lab) -> Action:                     # step 7
    link, _ = linked(lab)
    return lambda: link.update(lab.prog(), expected=lab.prog())


@refused(errno.EPERM, ExpectedProgramMismatch)
def update_expected_mismatch_beats_wrong_type(lab: Lab) -> Action:    # 7 before 8
    link, _ = linked(lab)
    return lambda: link.update(lab.other_type(), expected=lab.prog())


@refused(errno.EINVAL)
def update_to_prog_of_another_type(lab: Lab) -> Action:               # step 8
    link, _ = linked(lab)
    return lambda: link.update(lab.other_type())


@refused(errno.EINVAL)
def update_to_another_type_with_expected(lab: Lab) -> Action:         # step 8
    link, p = linked(lab)
    return lambda: link.update(lab.other_type(), expected=p)


# §11 OBJ_PIN / OBJ_GET.

@refused(errno.EEXIST)
def pin_twice_at_one_path(lab: Lab) -> Action:
    link, _ = linked(lab)
    path = os.path.join(lab.scratch.bpffs(), "pin")
    link.pin(path)
    lab.stack.callback(link.unpin, path)
    return lambda: link.pin(path)


@refused(errno.EPERM)
def pin_outside_bpffs(lab: Lab) -> Action:
    link, _ = linked(lab)
    return lambda: link.pin(os.path.join(lab.cg().path, "pin"))


@refused(errno.ENOENT)
def pin_missing_directory(lab: Lab) -> Action:
    link, _ = linked(lab)
    return lambda: link.pin(os.path.join(lab.scratch.bpffs(), "missing", "pin"))


@refused(errno.ENOENT)
def get_pin_missing(lab: Lab) -> Action:
    path = os.path.join(lab.scratch.bpffs(), "missing")
    return lambda: lab.stack.enter_context(Link.from_pin(path, kernel=lab.kernel))


@refused(errno.EACCES)
def get_pin_not_on_bpffs(lab: Lab) -> Action:
    path = os.path.join(lab.cg().path, "cgroup.procs")
    return lambda: lab.stack.enter_context(Link.from_pin(path, kernel=lab.kernel))


@pytest.mark.parametrize("name", list(CASES))
def test_refused(lab: Lab, name: str) -> None:
    scenario, err, cls, needs = CASES[name]
    check_fails(lab, scenario(lab), err, cls, needs)


# --------------------------------------------------------------------------- matrices


def test_fresh_hook(lab: Lab) -> None:
    """§8: nothing attached: mode 0, no entries, revision 1 (0 without the mprog API,
    §19); effective revision 0."""
    cg = lab.cg()
    assert cg.query(EGRESS) == Query(EXCL, 0, R(lab, 1), [])
    assert cg.query(EGRESS, effective=True) == Query(EXCL, 0, 0, [])


@pytest.mark.parametrize("preorder", [False, True], ids=["plain", "preorder"])
@pytest.mark.parametrize("new", MODES, ids=str)
@pytest.mark.parametrize("old", MODES, ids=str)
def test_mode_matrix(lab: Lab, old: Mode, new: Mode, preorder: bool) -> None:
    """§4 mode-change matrix and §9 coexistence: only the same non-MULTI mode (which
    replaces) or MULTI next to MULTI/links is accepted; PREORDER takes no part."""
    cg, (p0, p1) = lab.cg(), lab.progs(2)
    lab.add(cg, p0, old)
    multi = {old, new} <= {MULTI, LINK}
    needs = ((probe.PREORDER_LINK if new == LINK else probe.PREORDER_ATTACH),) \
        if preorder else ()
    if not (multi or old == new) or not all(has(lab, k) for k in needs):
        # without the PREORDER feature the request is refused whatever the modes
        check_fails(lab, lambda: lab.add(cg, p1, new, preorder=preorder), errno.EPERM,
                    needs=needs)
        return
    lab.add(cg, p1, new, preorder=preorder)
    expected = Query(MULTI, MULTI, R(lab, 3), []) if multi else \
        Query(AttachMode(old), old, R(lab, 3), [])
    q = cg.query(EGRESS)
    assert (q.mode, q.attach_flags, q.revision) == \
        (expected.mode, expected.attach_flags, expected.revision)
    assert q.ids == ([p0.id, p1.id] if multi else [p1.id])


@pytest.mark.parametrize("child", ["a/b", "a/x/b"], ids=["child", "grandchild"])
@pytest.mark.parametrize("new", MODES, ids=str)
@pytest.mark.parametrize("parent", MODES, ids=str)
def test_hierarchy(lab: Lab, parent: Mode, new: Mode, child: str) -> None:
    """§4 step 11: below an EXCLUSIVE ancestor nothing attaches, at any depth (empty
    levels in between are skipped); below OVERRIDE, MULTI or links every mode does."""
    lab.add(lab.cg("a"), lab.prog(), parent)
    cg, p = lab.cg(child), lab.prog()
    if parent == EXCL:
        check_fails(lab, lambda: lab.add(cg, p, new), errno.EPERM)
        return
    lab.add(cg, p, new)
    assert cg.query(EGRESS).ids == [p.id]


def test_nearest_non_empty_ancestor_decides(lab: Lab) -> None:
    """§4 step 11 walks up to the first non-empty ancestor: an OVERRIDE parent attached
    before an EXCLUSIVE grandparent still lets the child attach (fact 9)."""
    lab.add(lab.cg("a/b"), lab.prog(), OVER)
    lab.add(lab.cg("a"), lab.prog(), EXCL)
    child, p = lab.cg("a/b/c"), lab.prog()
    lab.add(child, p, EXCL)
    assert child.query(EGRESS).ids == [p.id]


@pytest.mark.parametrize("arg", ["none", "itself", "another", "wrong-type"])
@pytest.mark.parametrize("mode", [EXCL, OVER], ids=str)
def test_non_multi_detach_ignores_prog(lab: Lab, mode: AttachMode, arg: str) -> None:
    """§0 fact 2, §7 steps 5 and 7: the single entry goes whatever the prog argument;
    the revision goes up and the mode resets (a MULTI attach is then accepted)."""
    cg, p = lab.cg(), lab.prog()
    lab.add(cg, p, mode)
    prog = {"none": None, "itself": p, "another": lab.prog(),
            "wrong-type": lab.other_type()}[arg]
    cg.detach(prog, EGRESS)
    assert cg.query(EGRESS) == Query(EXCL, 0, R(lab, 3), [])
    lab.add(cg, p, MULTI)
    assert cg.query(EGRESS).mode == MULTI


@pytest.mark.parametrize("order", [["link", "link", "legacy"], ["legacy", "link", "link"]],
                         ids="-".join)
def test_one_prog_several_entries(lab: Lab, order: list[str]) -> None:
    """§0 fact 6: two links and a legacy MULTI attachment of one program coexist."""
    cg, p = lab.cg(), lab.prog()
    for kind in order:
        lab.add(cg, p, LINK if kind == "link" else MULTI)
    assert cg.query(EGRESS).ids == [p.id] * 3
    check_fails(lab, lambda: lab.add(cg, p, MULTI), errno.EINVAL)  # a second legacy one
    cg.detach(p, EGRESS)  # removes the legacy entry only
    assert (cg.query(EGRESS).ids, rev(cg)) == ([p.id] * 2, R(lab, 5))


def test_replace_in_place(lab: Lab) -> None:
    """§4 step 17: MULTI|REPLACE swaps the legacy entry in place; itself too (5.8+)."""
    cg, (p0, p1, p2, p3) = lab.cg(), lab.progs(4)
    for p in (p0, p1, p2):
        lab.add(cg, p)
    lab.add(cg, p3, replace=p1)
    assert (ids(cg), rev(cg)) == ([p0.id, p3.id, p2.id], R(lab, 5))
    if has(lab, probe.MPROG):
        lab.add(cg, p3, replace=p3, expected_revision=5)
    else:  # expected_revision is the mprog API's: refused, then replaced without it
        check_fails(lab, partial(lab.add, cg, p3, replace=p3, expected_revision=5),
                    errno.ESTALE, StaleRevision, needs=MPROG)
        lab.add(cg, p3, replace=p3)
    assert (ids(cg), rev(cg)) == ([p0.id, p3.id, p2.id], R(lab, 6))
    check_fails(lab, lambda: lab.add(cg, p2, replace=p0), errno.EINVAL)  # p2 is there


# --------------------------------------------------------------------------- revision


def test_revision_counts_every_change(lab: Lab) -> None:
    """§0 fact 1, §18: starts at 1, +1 per successful attach, replace, detach, link
    create, update (same prog too), close and LINK_DETACH; failures and a second
    LINK_DETACH add nothing.  Without the mprog API (§19) the revision stays 0 through
    the same changes (made without anchors and expected revisions, which it lacks)."""
    mprog = has(lab, probe.MPROG)
    cg, (p0, p1, p2, p3, p4) = lab.cg(), lab.progs(5)
    assert rev(cg) == R(lab, 1)
    links: list[Link] = []
    mp: dict[str, object] = {"before": HEAD, "expected_revision": 2} if mprog else {}
    steps: list[tuple[str, Callable[[], object], int]] = [
        ("attach", lambda: lab.add(cg, p0), 1),
        ("attach at head", lambda: lab.add(cg, p1, **mp), 1),
        ("replace", lambda: lab.add(cg, p2, replace=p1), 1),
        ("link", lambda: links.append(lab.link(cg, p3)), 1),
        ("update", lambda: links[0].update(p4), 1),
        ("update to the same prog", lambda: links[0].update(p4, expected=p4), 1),
        ("LINK_DETACH", lambda: links[0].detach(), 1),
        ("LINK_DETACH again", lambda: links[0].detach(), 0),
        ("link again", lambda: links.append(lab.link(cg, p3)), 1),
        ("close the link", lambda: links[1].close(), 1),
        ("detach", lambda: cg.detach(p0, EGRESS, expected_revision=10 if mprog else 0), 1),
        ("detach the last", lambda: cg.detach(p2, EGRESS), 1),
        ("exclusive attach", lambda: lab.add(cg, p0, EXCL), 1),
        ("exclusive re-attach, same prog", lambda: lab.add(cg, p0, EXCL), 1),
        ("exclusive replace", lambda: lab.add(cg, p1, EXCL), 1),
        ("detach (no prog)", lambda: cg.detach(None, EGRESS), 1),
    ]
    expected = 1
    for what, step, delta in steps:
        step()
        expected += delta
        assert rev(cg) == R(lab, expected), what
    check_fails(lab, lambda: cg.detach(None, EGRESS), errno.ENOENT)
    assert rev(cg) == R(lab, expected) == R(lab, 16)


def test_revision_is_per_hook(lab: Lab) -> None:
    """§3: one revision per (cgroup, attach type); a parent's change reaches a child's
    effective array but not the child's revision."""
    parent, child = lab.cg("a"), lab.cg("a/b")
    p = lab.prog()
    lab.add(parent, p)
    lab.link(parent, p)
    assert (rev(parent), rev(parent, INGRESS), rev(child)) == (R(lab, 3), R(lab, 1), R(lab, 1))
    assert ids(child, effective=True) == [p.id, p.id]


# --------------------------------------------------------------------------- LINK_UPDATE


def test_update_accepts_what_the_kernel_accepts(lab: Lab) -> None:
    """§10 "allowed and surprising": the same prog, a prog already in the list (legacy or
    linked), a matching expected=, and no expected-attach-type check."""
    cg, (p0, p1, p2) = lab.cg(), lab.progs(3)
    link = lab.link(cg, p0)
    lab.add(cg, p1)
    other = lab.link(cg, p2)
    for new, expected in ((p0, None), (p1, p0), (p2, None), (p2, p2)):
        link.update(new, expected=expected)
        assert link.info().prog_id == new.id
    assert (ids(cg), rev(cg)) == ([p2.id, p1.id, p2.id], R(lab, 8))
    other.close()
    c4, c4b = lab.prog(ProgType.CGROUP_SOCK_ADDR, CONNECT4), \
        lab.prog(ProgType.CGROUP_SOCK_ADDR, CONNECT4)
    sock_link = lab.add(cg, c4, LINK, at=CONNECT4)
    assert sock_link is not None
    sock_link.update(c4b)
    info = sock_link.info()
    assert (info.prog_id, info.attach_type) == (c4b.id, CONNECT4)
    assert ids(cg, CONNECT4) == [c4b.id]


SOCK_ADDR, SOCK, SOCKOPT = (ProgType.CGROUP_SOCK_ADDR, ProgType.CGROUP_SOCK,
                            ProgType.CGROUP_SOCKOPT)
#: (link's program type, link's attach type, new program's expected attach type, its
#: return value): a new program of the link's type, loaded for another attach type.
EAT_MISMATCH = {
    "sock_addr": (SOCK_ADDR, CONNECT4, CONNECT6, 1),
    "sock_addr-bind": (SOCK_ADDR, CONNECT4, AttachType.CGROUP_INET6_BIND, 1),
    "sock": (SOCK, AttachType.CGROUP_INET_SOCK_CREATE, AttachType.CGROUP_INET4_POST_BIND, 1),
    "sockopt": (SOCKOPT, AttachType.CGROUP_GETSOCKOPT, AttachType.CGROUP_SETSOCKOPT, 1),
    "skb-egress-enforced": (ProgType.CGROUP_SKB, INGRESS, EGRESS, 3),
}


def update_to_other_eat(lab: Lab, case: str) -> bool:
    """LINK_UPDATE of an EAT_MISMATCH case; whether it was refused.  A refusal is EINVAL,
    changes nothing, and its hint names the expected attach types, not the program type,
    which agrees; an accepted update swaps the program."""
    ptype, at, new_eat, ret = EAT_MISMATCH[case]
    cg, old = lab.cg(), lab.prog(ptype, at)
    link = lab.add(cg, old, LINK, at=at)
    assert link is not None
    new = lab.prog(ptype, new_eat, ret=ret)
    before = lab.state()
    try:
        link.update(new)
    except BpfError as e:
        assert (type(e).__name__, e.errno) == ("BpfError", errno.EINVAL), str(e)
        hint = e.hint
        assert hint in str(e)
        assert hint.startswith(f"the program types agree ({ptype.name}) but the expected "
                               "attach types differ"), hint
        assert f"loaded for {new_eat.name}" in hint and at.name in hint, hint
        assert link.info().prog_id == old.id and lab.state() == before
        return True
    assert link.info().prog_id == new.id
    assert ids(cg, at) == [new.id]
    return False


@pytest.mark.parametrize("case", EAT_MISMATCH)
def test_update_to_another_expected_attach_type(lab: Lab, case: str) -> None:
    """The 6.18 host refuses (EINVAL) a program of the link's type loaded for another
    attach type, and an egress-enforced skb program on an INGRESS link; §10 (and the
    model without ``update_eat_check``) accepts them.  Refused exactly where the probe
    finds the check."""
    has_check = probe.check(lab.kernel, probe.UPDATE_EAT_CHECK)
    refused = update_to_other_eat(lab, case)
    assert has_check is None or refused == has_check


@pytest.mark.parametrize("case", EAT_MISMATCH)
def test_update_to_another_expected_attach_type_model_with_check(case: str) -> None:
    """The refusal and its hint on a model with ``update_eat_check``, whatever the host."""
    k = cgbpf.model(Profile.of("6.18").with_(probe.UPDATE_EAT_CHECK))
    with Scratch(k, "cgbpf-test") as scratch, ExitStack() as stack:
        assert update_to_other_eat(Lab(k, scratch, stack), case)


@pytest.mark.parametrize(("link_eat", "new_eat", "ret"), [
    (INGRESS, EGRESS, 1), (EGRESS, INGRESS, 1), (EGRESS, EGRESS, 3), (INGRESS, INGRESS, 1)])
def test_update_skb_accepts_either_direction(lab: Lab, link_eat: AttachType,
                                             new_eat: AttachType, ret: int) -> None:
    """A CGROUP_SKB program fits either skb hook unless it is egress-enforced."""
    cg = lab.cg()
    link = lab.add(cg, lab.prog(attach_type=link_eat), LINK, at=link_eat)
    assert link is not None
    new = lab.prog(attach_type=new_eat, ret=ret)
    link.update(new)
    assert link.info().prog_id == new.id


def test_update_to_another_program_type_hint(lab: Lab) -> None:
    """§10 step 8 on every kernel: the hint names both program types."""
    cg = lab.cg()
    link = lab.link(cg, lab.prog())
    new = lab.other_type()
    with pytest.raises(BpfError) as e:
        link.update(new)
    assert e.value.errno == errno.EINVAL
    hint = e.value.hint
    assert hint == "the new program's type CGROUP_SOCK differs from the link's CGROUP_SKB"
    assert hint in str(e.value)


def test_link_detach_twice(lab: Lab) -> None:
    """§11: LINK_DETACH removes the entry (+1), a second one is a no-op; the defunct
    link keeps its id, program and attach type, with cgroup_id 0."""
    link, p = linked(lab)
    cg = lab.cg()
    before = link.info()
    assert before.cgroup_id == cg.id != 0
    link.detach()
    link.detach()
    assert (ids(cg), rev(cg), link.defunct) == ([], R(lab, 3), True)
    assert link.info() == LinkInfo(before.id, LinkType.CGROUP, p.id, 0, EGRESS)


def test_update_after_cgroup_removed(lab: Lab) -> None:
    """§12: rmdir auto-detaches asynchronously; then update gives LinkDefunct."""
    link, _ = linked(lab)
    lab.remove()
    deadline = time.monotonic() + 5
    while not link.defunct:
        assert time.monotonic() < deadline, "not auto-detached within 5 s"
        time.sleep(0.002)
    with pytest.raises(LinkDefunct) as e:
        link.update(lab.prog())
    assert e.value.errno == errno.ENOLINK
    link.detach()  # still a no-op, no error


# --------------------------------------------------------------------------- 64 entries

FILLS = ["legacy", "links", "mixed"]


def fill(lab: Lab, cg: Cgroup, how: str) -> list[Program]:
    """Attach 64 distinct programs to ``cg`` EGRESS; return them in list order."""
    progs = lab.progs(MAX)
    for i, p in enumerate(progs):
        lab.add(cg, p, LINK if how == "links" or (how == "mixed" and i % 2) else MULTI)
    return progs


@pytest.mark.parametrize("how", FILLS)
def test_full_list(lab: Lab, how: str) -> None:
    """§3: 64 entries (links and legacy together), all queried in order; the 65th gives
    E2BIG, and there is room again after one goes."""
    cg = lab.cg()
    progs = fill(lab, cg, how)
    q = cg.query(EGRESS)
    assert (q.mode, q.ids, q.revision) == (MULTI, [p.id for p in progs], R(lab, 1 + MAX))
    extra = lab.prog()
    check_fails(lab, lambda: lab.add(cg, extra), errno.E2BIG)
    check_fails(lab, lambda: lab.link(cg, extra), errno.E2BIG)
    if how == "links":
        lab.links[0].close()
    else:
        cg.detach(progs[0], EGRESS)
    lab.add(cg, extra)
    assert ids(cg) == [p.id for p in progs[1:]] + [extra.id]


#: Requests on a full list: (scenario on the lab, the hook and its programs, errno, the
#: features the request uses).
FullAttempt = Callable[[Lab, Cgroup, list[Program]], Action]
FULL: dict[str, tuple[FullAttempt, int, tuple[str, ...]]] = {
    "duplicate": (lambda lab, cg, ps: lambda: lab.add(cg, ps[0]), errno.E2BIG, ()),
    "relink": (lambda lab, cg, ps: lambda: lab.link(cg, ps[0]), errno.E2BIG, ()),
    "replace": (lambda lab, cg, ps: lambda: lab.add(cg, lab.prog(), replace=ps[0]),
                errno.E2BIG, ()),
    "replace-itself": (lambda lab, cg, ps: lambda: lab.add(cg, ps[0], replace=ps[0]),
                       errno.E2BIG, ()),
    "replace-missing": (lambda lab, cg, ps: lambda: lab.add(cg, ps[0], replace=lab.prog()),
                        errno.E2BIG, ()),
    "missing-anchor": (lambda lab, cg, ps: lambda: lab.add(cg, lab.prog(), after=lab.prog()),
                       errno.E2BIG, MPROG),
    "stale-beats-e2big": (lambda lab, cg, ps: lambda: lab.add(cg, ps[0], expected_revision=1),
                          errno.ESTALE, MPROG),
    "stale-link-beats-e2big": (
        lambda lab, cg, ps: lambda: lab.link(cg, lab.prog(), expected_revision=1),
        errno.ESTALE, MPROG),
}


@pytest.mark.parametrize("attempt", list(FULL))
@pytest.mark.parametrize("how", FILLS)
def test_full_list_precedence(lab: Lab, how: str, attempt: str) -> None:
    """§0 fact 7, §4 step 13: E2BIG is checked before the duplicate, replace and anchor
    lookups, and after the revision check."""
    cg = lab.cg("a/b")
    scenario, err, needs = FULL[attempt]
    action = scenario(lab, cg, fill(lab, cg, how))
    check_fails(lab, action, err, StaleRevision if err == errno.ESTALE else BpfError, needs)


def test_full_list_below_late_exclusive_parent(lab: Lab) -> None:
    """§4 step 11 before 13: the hierarchy EPERM wins over E2BIG."""
    child = lab.cg("a/b")
    progs = fill(lab, child, "mixed")
    lab.add(lab.cg("a"), lab.prog(), EXCL)
    check_fails(lab, lambda: lab.add(child, lab.prog()), errno.EPERM)
    check_fails(lab, lambda: lab.add(child, progs[0]), errno.EPERM)


def test_effective_query_of_a_deep_chain(lab: Lab) -> None:
    """§6/§8: 3 levels of 30 (legacy, links, legacy): the effective query returns all 90
    ids bottom-up, more than the 64 a single hook holds."""
    levels = ["a", "a/b", "a/b/c"]
    attached: dict[str, list[int]] = {}
    for i, rel in enumerate(levels):
        progs = lab.progs(30)
        for p in progs:
            lab.add(lab.cg(rel), p, LINK if i == 1 else MULTI)
        attached[rel] = [p.id for p in progs]
    eff = lab.cg("a/b/c").query(EGRESS, effective=True)
    assert eff.ids == attached["a/b/c"] + attached["a/b"] + attached["a"]
    # effective attach_flags: 0 since 6.0, the hook's mode before (§8)
    flags = 0 if has(lab, "prog_attach_flags_query") else MULTI
    assert (eff.revision, eff.attach_flags) == (0, flags)
    assert ids(lab.cg("a/b")) == attached["a/b"]
