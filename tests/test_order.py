"""docs/kernel.md §5 and §6 on the host kernel: the effective order (every example
of §6, for legacy attachments and for links), insertion with before=/after= and its
errnos, expected_revision=, and LINK_UPDATE keeping positions.

The order is read twice: from the effective query, and from a real packet.  Program Pi
does ``slot = slot * 16 + (i + 1)`` on one shared u64, so after one packet (the effective
array runs sequentially for it) the hex digits of the slot are the run order.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from cgbpf import (
    HEAD,
    TAIL,
    AttachMode,
    AttachType,
    BpfError,
    Cgroup,
    Link,
    Map,
    MapType,
    Program,
    ProgType,
    Query,
    StaleRevision,
    asm,
)
from cgbpf._scratch import Scratch
from cgbpf._traffic import send_from
from cgbpf.asm import R1, R2
from cgbpf.kernel import Kernel
from cgbpf.kernel.probe import MPROG, PREORDER_ATTACH, PREORDER_LINK
from cgtest import EGRESS, INGRESS, load, requires

N = 15  # P0..P14: one hex digit each (i + 1), so 0 means "did not run"
MODES = {"N": AttachMode.EXCLUSIVE, "O": AttachMode.OVERRIDE, "M": AttachMode.MULTI}
KEY = struct.pack("<I", 0)


def order_program(slot: Map, i: int) -> list[asm.Item]:
    """slot = slot * 16 + (i + 1); return 1 (let the packet through)."""
    return [asm.ld_map_value(R1, slot, 0), asm.ldx("dw", R2, R1, 0), asm.lsh64(R2, 4),
            asm.add64(R2, i + 1), asm.stx("dw", R1, 0, R2), *asm.return_program(1)]


class Tree:
    """Cgroups of one test with P0..P14 attached (legacy or by link) and the recorder
    slot; everything opened here is closed after the test."""

    def __init__(self, kernel: Kernel, scratch: Scratch, stack: ExitStack) -> None:
        self.kernel, self.scratch, self.stack = kernel, scratch, stack
        self.slot = stack.enter_context(Map.create(
            MapType.ARRAY, key_size=4, value_size=8, max_entries=1, name="order",
            kernel=kernel))
        self.p = [stack.enter_context(Program.load(
            order_program(self.slot, i), ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
            name=f"P{i}", kernel=kernel)) for i in range(N)]
        self.index = {p.id: i for i, p in enumerate(self.p)}
        self.cgroups: dict[str, Cgroup] = {}
        self.links: dict[int, Link] = {}  # by the index of the program it was made with

    def cg(self, rel: str) -> Cgroup:
        if rel not in self.cgroups:
            self.cgroups[rel] = self.scratch.cgroup(rel)
        return self.cgroups[rel]

    def add(self, rel: str, i: int, mode: str = "M", *, at: AttachType = EGRESS,
            **kw: object) -> None:
        """Attach Pi to ``rel``: legacy in mode N/O/M, or by link (L).  The test skips
        here if the kernel lacks what the request uses (the probe says so)."""
        if kw.get("preorder"):
            requires(self.kernel, PREORDER_LINK if mode == "L" else PREORDER_ATTACH)
        if (kw.get("before") not in (None, TAIL) or kw.get("after") not in (None, HEAD)
                or kw.get("expected_revision")):  # before=TAIL, after=HEAD: refused anyway
            requires(self.kernel, MPROG)
        if mode == "L":
            self.links[i] = self.stack.enter_context(self.cg(rel).link(self.p[i], at, **kw))
        else:
            self.cg(rel).attach(self.p[i], at, mode=MODES[mode], **kw)

    def build(self, spec: str) -> None:
        """Run a spec of space-separated steps: ``a/b=M:0,1p`` attaches P0 then P1
        (ᵖ: preorder) to a/b EGRESS in mode M (N, O, M, or L for links; ``a/b@in=``
        for INGRESS); ``a/b`` only creates the cgroup; ``-a/b`` detaches its one
        program; ``!1`` detaches (LINK_DETACH) the link made with P1; ``a/b?3,0,1``
        checks that a/b runs P3 P0 P1."""
        for step in spec.split():
            if step.startswith("-"):
                self.cg(step[1:]).detach(None, EGRESS)
            elif step.startswith("!"):
                self.links[int(step[1:])].detach()
            elif "?" in step:
                rel, want = step.split("?")
                self.check(rel, [int(i) for i in want.split(",")])
            elif "=" in step:
                target, attach = step.split("=")
                rel, _, hook = target.partition("@")
                mode, items = attach.split(":")
                for item in items.split(","):
                    self.add(rel, int(item.rstrip("p")), mode, preorder=item.endswith("p"),
                             at=INGRESS if hook == "in" else EGRESS)
            else:
                self.cg(step)

    def names(self, ids: list[int]) -> list[int]:
        return [self.index.get(i, -1) for i in ids]

    def ran(self, rel: str) -> list[int]:
        """Send one packet from inside ``rel``; the programs that ran, in order."""
        self.slot.update(KEY, bytes(8))
        assert send_from(self.cg(rel).path, 1, kernel=self.kernel) == 1
        (value,) = struct.unpack("<Q", self.slot.lookup(KEY) or b"")
        return [int(d, 16) - 1 for d in f"{value:x}"] if value else []

    def check(self, rel: str, want: list[int], *, hook: list[int] | None = None) -> None:
        """``rel`` runs ``want`` (effective query and real packet); its own list holds
        ``hook`` if given."""
        assert self.names(self.cg(rel).query(EGRESS, effective=True).ids) == want, rel
        assert self.ran(rel) == want, f"{rel}: run order"
        if hook is not None:
            assert self.names(self.cg(rel).query(EGRESS).ids) == hook, rel

    def other_type(self, rel: str) -> Program:
        """A CGROUP_SOCK program, attached to ``rel``'s SOCK_CREATE hook."""
        at = AttachType.CGROUP_INET_SOCK_CREATE
        p = self.stack.enter_context(load(self.kernel, ProgType.CGROUP_SOCK, at, "sock"))
        self.cg(rel).attach(p, at)
        return p

    def state(self) -> dict[tuple[str, AttachType], Query]:
        return {(rel, at): cg.query(at) for rel, cg in self.cgroups.items()
                for at in (EGRESS, INGRESS)}


@pytest.fixture
def tree(kernel: Kernel, scratch: Scratch) -> Iterator[Tree]:
    with ExitStack() as stack:
        yield Tree(kernel, scratch, stack)


# --------------------------------------------------------------------------- §6 examples

EXAMPLES = {
    # §6, legacy attachments, bullet by bullet.
    "multi-chain": "a=M:0,1 a/b=M:2,3 a/b/c=M:4 a/b/c?4,2,3,0,1",
    "override-dropped-below-none": "a=M:0,1 a/b=O:2 a/b/c=N:3 a/b?2,0,1 a/b/c?3,0,1",
    "none-below-override": "a=O:0 a/b=N:1 a/b/c a/b/c?1 -a/b a/b/c?0",
    "preorder-commit-message": "a=M:0,1p a/b=M:2,3p a/b?1,3,2,0",
    "preorder-three-levels": "a=M:0,1p,4p a/b=M:2,3p,5p a/b/c=M:6p,7 a/b/c?1,4,3,5,6,7,2,0",
    "preorder-override-middle": "a=M:0p,1 a/b=O:2p a/b/c=M:3p,4 a/b/c?0,3,4,1 a/b?0,2,1",
    "preorder-none-child": "a=M:0,1p,4p a/d=N:8p a/d?1,4,8,0",
    "late-none-parent": "a a/b=M:1 a=N:0 a/b?1 a?0",
    # The same rules with links, alone or next to legacy MULTI entries.
    "links-multi-chain": "a=L:0,1 a/b=L:2,3 a/b/c=L:4 a/b/c?4,2,3,0,1",
    "links-preorder-commit-message": "a=L:0,1p a/b=L:2,3p a/b?1,3,2,0",
    "links-preorder-three-levels": "a=M:0 a=L:1p,4p a/b=L:2 a/b=M:3p a/b=L:5p "
                                   "a/b/c=L:6p a/b/c=M:7 a/b/c?1,4,3,5,6,7,2,0",
    "links-preorder-override-middle": "a=L:0p,1 a/b=O:2p a/b/c=L:3p,4 a/b/c?0,3,4,1 a/b?0,2,1",
    "links-preorder-none-child": "a=L:0 a=M:1p a=L:4p a/d=N:8p a/d?1,4,8,0",
    "late-none-parent-of-links": "a a/b=L:1,2p a=N:0 a/b?2,1 a?0",
}


@pytest.mark.parametrize("spec", list(EXAMPLES.values()), ids=list(EXAMPLES))
def test_effective_order(tree: Tree, spec: str) -> None:
    """§6: preorder entries top-down, then the others bottom-up; a level counts if
    nothing was collected below it or it is MULTI (checked by query and by a packet)."""
    tree.build(spec)


# --------------------------------------------------------------------------- anchors

#: (program, anchor) in attach order: an int anchor is the program (legacy) or the link
#: (links) made with that program; after them the list is 4 0 3 2 1 5 6.
ANCHORED: list[tuple[int, tuple[str, int | object] | None]] = [
    (0, None), (1, None), (2, ("before", 1)), (3, ("after", 0)), (4, ("before", HEAD)),
    (5, ("after", TAIL)), (6, None)]


@pytest.mark.parametrize("preorder", [False, True], ids=["plain", "preorder"])
@pytest.mark.parametrize("mode", ["M", "L"], ids=["legacy", "links"])
def test_before_after(tree: Tree, mode: str, preorder: bool) -> None:
    """§5: anchored entries go right before/after the anchor, HEAD/TAIL to the ends, the
    rest to the tail; preorder entries may anchor on preorder entries (one level, so the
    effective order is the list order)."""
    for i, placed in ANCHORED:
        kw: dict[str, object] = {"preorder": preorder}
        if placed is not None:
            where, anchor = placed
            if isinstance(anchor, int):
                anchor = tree.links[anchor] if mode == "L" else tree.p[anchor]
            kw[where] = anchor
        tree.add("a", i, mode, **kw)
    tree.check("a", [4, 0, 3, 2, 1, 5, 6], hook=[4, 0, 3, 2, 1, 5, 6])


def test_before_after_mixed_list(tree: Tree) -> None:
    """§5: links anchor on links and legacy entries on programs, in one list; HEAD and
    TAIL are the ends of the whole list."""
    tree.add("a", 0)
    tree.add("a", 1, "L", before=HEAD)
    tree.add("a", 2, before=tree.p[0])
    tree.add("a", 3, "L", after=tree.links[1])
    tree.add("a", 4, after=TAIL)
    tree.add("a", 5, "L", before=HEAD)
    tree.check("a", [5, 1, 3, 2, 0, 4], hook=[5, 1, 3, 2, 0, 4])


def test_preorder_anchor_in_two_levels(tree: Tree) -> None:
    """§5 + §6: anchoring moves an entry within its own part (preorder or not)."""
    tree.build("a=M:0,1p a/b=L:2,3p")
    tree.add("a/b", 4, "L", preorder=True, before=tree.links[3])
    tree.add("a/b", 5, "L", after=TAIL)
    tree.add("a", 6, preorder=True, before=tree.p[1])
    tree.check("a/b", [6, 1, 4, 3, 2, 5, 0], hook=[2, 4, 3, 5])


#: Refused placements: (setup spec, the refused request, errno).  P9 is never in a setup.
ANCHOR_ERRORS: dict[str, tuple[str, Callable[[Tree], object], int]] = {
    "legacy-anchor-not-attached": (
        "a=M:0", lambda t: t.add("a", 9, before=t.p[1]), errno.ENOENT),
    "legacy-anchor-in-parent": (
        "p=M:0 p/a=M:1", lambda t: t.add("p/a", 9, before=t.p[0]), errno.ENOENT),
    "legacy-anchor-on-other-attach-type": (
        "a=M:0 a@in=M:1", lambda t: t.add("a", 9, after=t.p[1]), errno.ENOENT),
    "legacy-anchor-attached-by-link": (
        "a=M:0 a=L:1", lambda t: t.add("a", 9, before=t.p[1]), errno.ENOENT),
    "legacy-anchor-of-other-prog-type": (
        "a=M:0", lambda t: t.add("a", 9, before=t.other_type("a")), errno.ENOENT),
    "legacy-anchor-is-a-link": (
        "a=M:0 a=L:1", lambda t: t.add("a", 9, before=t.links[1]), errno.EINVAL),
    "legacy-anchor-preorder-mismatch": (
        "a=M:0p", lambda t: t.add("a", 9, before=t.p[0]), errno.EINVAL),
    "legacy-anchor-preorder-mismatch-reverse": (
        "a=M:0", lambda t: t.add("a", 9, after=t.p[0], preorder=True), errno.EINVAL),
    "legacy-anchor-on-empty-exclusive-hook": (
        "a", lambda t: t.add("a", 9, "N", before=t.p[0]), errno.ENOENT),
    "link-anchor-is-a-program": (
        "a=M:0", lambda t: t.add("a", 9, "L", before=t.p[0]), errno.EINVAL),
    "link-anchor-is-a-linked-program": (
        "a=L:0", lambda t: t.add("a", 9, "L", after=t.p[0]), errno.EINVAL),
    "link-anchor-in-other-cgroup": (
        "a=L:0 b=L:1", lambda t: t.add("a", 9, "L", before=t.links[1]), errno.ENOENT),
    "link-anchor-on-other-attach-type": (
        "a=L:0 a@in=L:1", lambda t: t.add("a", 9, "L", before=t.links[1]), errno.ENOENT),
    "link-anchor-detached": (
        "a=L:0,1 !1", lambda t: t.add("a", 9, "L", before=t.links[1]), errno.ENOENT),
    "link-anchor-preorder-mismatch": (
        "a=L:0p", lambda t: t.add("a", 9, "L", after=t.links[0]), errno.EINVAL),
    "link-anchor-preorder-mismatch-reverse": (
        "a=L:0", lambda t: t.add("a", 9, "L", before=t.links[0], preorder=True),
        errno.EINVAL),
    "link-stale-revision-with-anchor": (
        "a=L:0", lambda t: t.add("a", 9, "L", before=t.links[0], expected_revision=1),
        errno.ESTALE),
    "legacy-stale-revision-with-anchor": (
        "a=M:0", lambda t: t.add("a", 9, after=t.p[0], expected_revision=1), errno.ESTALE),
}


@pytest.mark.parametrize("name", list(ANCHOR_ERRORS))
def test_anchor_errors(tree: Tree, name: str) -> None:
    """§5: anchor not in this hook ENOENT, wrong anchor kind or PREORDER mismatch
    EINVAL (plain BpfError); a stale revision StaleRevision.  Nothing changes."""
    spec, request, err = ANCHOR_ERRORS[name]
    tree.build(spec)
    before = tree.state()
    with pytest.raises(BpfError) as e:
        request(tree)
    cls = StaleRevision if err == errno.ESTALE else BpfError
    assert isinstance(e.value, cls)  # the class by name: ENOENT is also a FileNotFoundError
    assert (type(e.value).__name__, errno.errorcode[e.value.errno]) == (
        cls.__name__, errno.errorcode[err])
    if err == errno.EINVAL and "preorder" in name:  # the kernel says only EINVAL: we say why
        assert "match its preorder setting" in str(e.value), str(e.value)
    assert tree.state() == before


@pytest.mark.parametrize("mode", ["N", "O"])
def test_anchor_ignored_when_replacing(tree: Tree, mode: str) -> None:
    """§0 fact 16: a non-MULTI hook with an entry replaces it; the anchor (here one that
    is attached nowhere) is not even looked at."""
    tree.build(f"a={mode}:0")
    tree.add("a", 1, mode, before=tree.p[9])
    tree.add("a", 2, mode, after=tree.p[9], preorder=True)
    tree.check("a", [2], hook=[2])


def test_expected_revision(tree: Tree) -> None:
    """§5 with expected_revision=: the current revision is accepted, links and legacy
    attach alike; a used one is StaleRevision (errno ESTALE)."""
    tree.add("a", 0, "L")
    tree.add("a", 1, "L", before=tree.links[0], expected_revision=2)
    tree.add("a", 2, after=TAIL, expected_revision=3)
    for request in (lambda: tree.add("a", 3, "L", before=HEAD, expected_revision=3),
                    lambda: tree.add("a", 3, before=HEAD, expected_revision=2)):
        with pytest.raises(StaleRevision) as e:
            request()
        assert e.value.errno == errno.ESTALE
    assert tree.cg("a").query(EGRESS).revision == 4
    tree.check("a", [1, 0, 2], hook=[1, 0, 2])


# --------------------------------------------------------------------------- replacing


#: (setup, effective a/b after the updates, then after closing the links of P4 and P0).
UPDATES = {
    "preorder": ("a=L:0p a=M:1 a=L:2 a/b=L:3,4p a/b=M:5p a/b?0,4,5,3,1,2 a?0,1,2",
                 [6, 9, 5, 8, 1, 7], [6, 5, 8, 1, 7], [5, 8, 1, 7]),
    "plain": ("a=L:0 a=M:1 a=L:2 a/b=L:3,4 a/b=M:5 a/b?3,4,5,0,1,2 a?0,1,2",
              [8, 9, 5, 6, 1, 7], [8, 5, 6, 1, 7], [8, 5, 1, 7]),
}


@pytest.mark.parametrize("case", list(UPDATES))
def test_link_update_keeps_positions(tree: Tree, case: str) -> None:
    """§6 last paragraph (CVE-2026-72427 fix): LINK_UPDATE swaps the program in place,
    preorder or not, in every effective array; closing links afterwards removes the
    right slots.  (Without preorder entries: every kernel with links.)"""
    spec, updated, without4, without0 = UPDATES[case]
    tree.build(spec)
    for old, new in ((0, 6), (2, 7), (3, 8), (4, 9)):
        tree.links[old].update(tree.p[new], expected=tree.p[old])
    tree.check("a/b", updated, hook=[8, 9, 5])
    tree.check("a", [6, 1, 7], hook=[6, 1, 7])
    tree.links[4].close()
    tree.check("a/b", without4)
    tree.links[0].close()
    tree.check("a/b", without0)
    tree.check("a", [1, 7])


def test_legacy_replace_keeps_list_position(tree: Tree) -> None:
    """§3/§4 step 17: MULTI|REPLACE keeps the list position; the preorder bit is the
    new request's, so the effective position follows it."""
    tree.build("a=M:0,1,2 a/b=M:3 a/b?3,0,1,2")
    tree.add("a", 4, replace=tree.p[1], preorder=True)
    tree.check("a/b", [4, 3, 0, 2], hook=[3])
    tree.add("a", 5, replace=tree.p[4])
    tree.check("a/b", [3, 0, 5, 2])
    tree.check("a", [0, 5, 2], hook=[0, 5, 2])


def test_head_and_tail_go_with_their_keyword(tree: Tree) -> None:
    """before=TAIL and after=HEAD mean nothing: refused with EINVAL, nothing attached."""
    for kw in ({"before": TAIL}, {"after": HEAD}):
        for kind in ("L", "M"):
            with pytest.raises(BpfError) as e:
                tree.add("a", 0, kind, **kw)
            assert e.value.errno == errno.EINVAL and "HEAD" in str(e.value)
    assert tree.cg("a").query(EGRESS).ids == []
