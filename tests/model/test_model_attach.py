"""§4 PROG_ATTACH, §5 insertion, §7 PROG_DETACH, §8 PROG_QUERY, §18 revisions, on 6.18.

Precedence is tested as ladders: a request that breaks every check at once, fixed one
check at a time in the table's order; each step must fail with that row's errno."""

from __future__ import annotations

import ctypes
import errno as E
from collections.abc import Callable
from typing import Any

import pytest
from model_abi import (
    AFTER,
    BEFORE,
    CONN4,
    CONN6,
    EG,
    ID,
    ING,
    LINK,
    MULTI,
    OVR,
    PRE,
    REPL,
    RET1,
    attach,
    cgroup,
    detach,
    err,
    ids,
    link_create,
    prog_for,
    prog_id,
    prog_load,
    query,
    ret,
)

from cgbpf import uapi
from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import ProgType as PT


def raw_attach(k: ModelKernel, r: dict[str, Any]) -> int:
    """PROG_ATTACH from a request dict; ``size``/``tail`` make an oversized attr."""
    a = uapi.ProgAttachAttr(target_fd=r["target"], attach_bpf_fd=r["prog"],
                            attach_type=r["atype"], attach_flags=r["flags"],
                            replace_bpf_fd=r["replace"], relative_fd=r.get("relative", 0),
                            expected_revision=r["revision"])
    raw = ctypes.create_string_buffer(bytes(a).ljust(48, b"\0"), 48)
    if r.get("tail"):
        raw[40] = 1
    return err(k.bpf, Cmd.PROG_ATTACH, raw, 48)


def run_ladder(k: ModelKernel, req: dict[str, Any],
               steps: list[tuple[int, Callable[[], None]]], call: Callable[..., int]) -> None:
    for i, (expect, fix) in enumerate(steps, 1):
        assert call(k, req) == expect, f"step {i}"
        fix()
    assert call(k, req) == 0


def test_prog_attach_precedence_ladder(k: ModelKernel) -> None:
    """§4 rows 1-15 in order."""
    p, c = cgroup(k, "p"), cgroup(k, "p/c")
    pa, p6, r = prog_for(k, CONN4), prog_for(k, CONN6), prog_for(k, CONN4)
    attach(k, c, prog_for(k, CONN4), CONN4)  # NONE child: row 12
    attach(k, p, prog_for(k, CONN4), CONN4)  # NONE parent (attached later): row 11
    req: dict[str, Any] = dict(tail=1, atype=200, flags=MULTI | REPL | OVR | BEFORE | 1 << 7,
                               prog=9999, target=9999, replace=9999, revision=99)
    fill: list[int] = []

    def fill_64() -> None:
        detach(k, c, 0, CONN4)
        fill.extend(prog_for(k, CONN4) for _ in range(63))
        for fd in [pa, *fill]:
            attach(k, c, fd, CONN4, MULTI)

    steps: list[tuple[int, Callable[[], None]]] = [
        (E.EINVAL, lambda: req.update(tail=0)),  # 1
        (E.EINVAL, lambda: req.update(atype=CONN4)),  # 2
        (E.EINVAL, lambda: req.update(flags=req["flags"] & ~(1 << 7))),  # 3
        (E.EBADF, lambda: req.update(prog=p)),  # 4: bad fd, then not a prog
        (E.EINVAL, lambda: req.update(prog=p6)),  # 4
        (E.EINVAL, lambda: req.update(prog=pa)),  # 5: eat mismatch
        (E.EBADF, lambda: req.update(target=c)),  # 6
        (E.EBADF, lambda: req.update(replace=r)),  # 7
        (E.EINVAL, lambda: req.update(flags=req["flags"] & ~OVR)),  # 8
        (E.EINVAL, lambda: req.update(flags=req["flags"] & ~BEFORE)),  # 9
        (E.ESTALE, lambda: req.update(revision=0)),  # 10
        (E.EPERM, lambda: detach(k, p, 0, CONN4)),  # 11
        (E.EPERM, fill_64),  # 12
        (E.E2BIG, lambda: detach(k, c, fill[-1], CONN4)),  # 13
        (E.EINVAL, lambda: req.update(prog=prog_for(k, CONN4))),  # 14: pa already there
        (E.ENOENT, lambda: req.update(replace=fill[0])),  # 15
    ]
    run_ladder(k, req, steps, raw_attach)
    assert len(ids(k, c, CONN4)) == 63


@pytest.mark.parametrize("atype", [200, 58, 4, 7])
def test_unknown_attach_type(k: ModelKernel, atype: int) -> None:
    assert err(attach, k, cgroup(k, "a"), prog_for(k, EG), atype) == E.EINVAL


@pytest.mark.parametrize("bit", [7, 8, 9, 10, 11, 12, 14, 15, 31])
def test_unknown_flag_bits(k: ModelKernel, bit: int) -> None:
    assert err(attach, k, cgroup(k, "a"), prog_for(k, EG), EG, MULTI | 1 << bit) == E.EINVAL


def test_prog_fd_rows(k: ModelKernel) -> None:
    """§2.2 rows for PROG_ATTACH."""
    c = cgroup(k, "a")
    assert err(attach, k, c, 9999, EG) == E.EBADF
    assert err(attach, k, c, c, EG) == E.EINVAL  # a cgroup dir fd
    assert err(attach, k, c, 0, EG) == E.EINVAL  # stdin
    skb = prog_for(k, EG)
    assert err(attach, k, c, skb, AT.CGROUP_INET_SOCK_CREATE) == E.EINVAL
    assert err(attach, k, c, prog_for(k, CONN4), ING) == E.EINVAL
    assert err(attach, k, c, prog_for(k, AT.CGROUP_DEVICE), AT.CGROUP_SYSCTL) == E.EINVAL
    assert err(attach, k, c, prog_load(k, PT.SOCKET_FILTER), ING) == E.EINVAL
    assert err(attach, k, c, prog_for(k, CONN4), CONN6) == E.EINVAL
    sock0 = prog_load(k, PT.CGROUP_SOCK, 0)  # eat 0 -> SOCK_CREATE
    assert err(attach, k, c, sock0, AT.CGROUP_INET4_POST_BIND) == E.EINVAL
    assert attach(k, c, sock0, AT.CGROUP_INET_SOCK_CREATE) == 0


def test_skb_eat_is_not_enforced_unless_it_returns_2_or_3(k: ModelKernel) -> None:
    """§2.1 note (a)."""
    c = cgroup(k, "a")
    assert attach(k, c, prog_load(k, PT.CGROUP_SKB, EG), ING, MULTI) == 0
    assert attach(k, c, prog_load(k, PT.CGROUP_SKB, ING), EG, MULTI) == 0
    cn = prog_load(k, PT.CGROUP_SKB, EG, ret(3))
    assert err(attach, k, c, cn, ING, MULTI) == E.EINVAL
    assert err(link_create, k, cn, c, ING) == E.EINVAL
    assert attach(k, c, cn, EG, MULTI) == 0
    assert err(prog_load, k, PT.CGROUP_SKB, ING, ret(3)) == E.EINVAL


@pytest.mark.parametrize("atype", sorted(set(uapi.CGROUP_PROG_TYPE) - {AT.LSM_CGROUP}))
def test_every_attach_type_attaches_queries_detaches_links(k: ModelKernel, atype: int) -> None:
    """§2.1: all cgroup attach types (LSM_CGROUP is out of scope)."""
    c, prog = cgroup(k, "a"), prog_for(k, atype)
    assert attach(k, c, prog, atype) == 0
    assert ids(k, c, atype) == [prog_id(k, prog)]
    assert detach(k, c, 0, atype) == 0
    assert link_create(k, prog, c, atype) >= 3


MODES = {"NONE": 0, "OVERRIDE": OVR, "MULTI": MULTI, "link": None}


@pytest.mark.parametrize("old", MODES)
@pytest.mark.parametrize("new", MODES)
def test_mode_change_matrix(k: ModelKernel, old: str, new: str) -> None:
    """§4 mode-change matrix (and §9 coexistence)."""
    c = cgroup(k, "a")

    def add(mode: str) -> int:
        prog, flags = prog_for(k, EG), MODES[mode]
        return link_create(k, prog, c) if flags is None else attach(k, c, prog, EG, flags)

    add(old)
    same = old == new or {old, new} == {"MULTI", "link"}
    assert err(add, new) == (0 if same else E.EPERM)


def test_hierarchy_check(k: ModelKernel) -> None:
    """§4 step 11: the first non-empty ancestor decides; only ancestors are checked."""
    a, b, c = cgroup(k, "a"), cgroup(k, "a/b"), cgroup(k, "a/b/c")
    attach(k, a, prog_for(k, EG), EG, 0)  # NONE blocks every descendant
    assert err(attach, k, c, prog_for(k, EG), EG, MULTI) == E.EPERM
    assert err(link_create, k, prog_for(k, EG), b) == E.EPERM
    detach(k, a, 0, EG)
    attach(k, a, prog_for(k, EG), EG, OVR)
    assert attach(k, b, prog_for(k, EG), EG, 0) == 0  # OVERRIDE allows
    assert err(attach, k, c, prog_for(k, EG), EG, MULTI) == E.EPERM  # b (NONE) is nearer
    detach(k, b, 0, EG)
    attach(k, b, prog_for(k, EG), EG, MULTI)
    assert attach(k, c, prog_for(k, EG), EG, 0) == 0
    d = cgroup(k, "d")
    attach(k, cgroup(k, "d/e"), prog_for(k, EG), EG, MULTI)
    assert attach(k, d, prog_for(k, EG), EG, 0) == 0  # descendants are never checked


def test_replace_rules(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    p1, p2, p3 = (prog_for(k, EG) for _ in range(3))
    attach(k, c, p1, EG, MULTI)
    attach(k, c, p2, EG, MULTI)
    assert attach(k, c, p3, EG, MULTI | REPL, replace=p1) == 0
    assert ids(k, c) == [prog_id(k, p3), prog_id(k, p2)]  # in place
    assert attach(k, c, p3, EG, MULTI | REPL, replace=p3) == 0  # itself (5.8+)
    assert err(attach, k, c, p1, EG, MULTI | REPL, replace=0) == E.EINVAL
    assert err(attach, k, c, p1, EG, MULTI | REPL, replace=9999) == E.EBADF
    assert err(attach, k, c, p1, EG, MULTI | REPL,
               replace=prog_for(k, AT.CGROUP_DEVICE)) == E.EINVAL
    assert err(attach, k, c, p1, EG, REPL, replace=p2) == E.EINVAL  # REPLACE without MULTI
    assert err(attach, k, c, p1, EG, MULTI | OVR) == E.EINVAL
    assert err(attach, k, c, p1, EG, MULTI | REPL | AFTER, replace=p2) == E.EINVAL
    # a program attached through a link is not a replace target (§0 fact 5)
    lk_prog = prog_for(k, EG)
    link_create(k, lk_prog, c)
    assert err(attach, k, c, p1, EG, MULTI | REPL, replace=lk_prog) == E.ENOENT


def test_non_multi_reattach_replaces_and_ignores_anchors(k: ModelKernel) -> None:
    """§4 step 17 and §0 fact 16."""
    c = cgroup(k, "a")
    p1, p2 = prog_for(k, EG), prog_for(k, EG)
    for flags in (0, OVR):
        attach(k, c, p1, EG, flags)
        rev = query(k, c).revision
        assert attach(k, c, p2, EG, flags | BEFORE | AFTER | ID, relative=12345) == 0
        assert attach(k, c, p2, EG, flags) == 0  # the same prog again
        q = query(k, c)
        assert (q.ids[: q.prog_cnt], q.attach_flags, q.revision) == (
            [prog_id(k, p2)], flags, rev + 2)
        detach(k, c, 0, EG)


def test_duplicates(k: ModelKernel) -> None:
    """§0 fact 6 / §18: duplicate legacy MULTI is EINVAL; all other duplicates are fine."""
    p, c = cgroup(k, "p"), cgroup(k, "p/c")
    prog = prog_for(k, EG)
    attach(k, c, prog, EG, MULTI)
    assert err(attach, k, c, prog, EG, MULTI) == E.EINVAL
    link_create(k, prog, c)
    link_create(k, prog, c)
    attach(k, p, prog, EG, MULTI)
    assert ids(k, c, effective=True) == [prog_id(k, prog)] * 4


def test_64_entry_limit_counts_links_and_wins_over_dup_and_replace(k: ModelKernel) -> None:
    """§3, §0 fact 7."""
    c = cgroup(k, "a")
    progs = [prog_for(k, EG) for _ in range(64)]
    for i, fd in enumerate(progs):
        assert (attach(k, c, fd, EG, MULTI) if i % 2 else link_create(k, fd, c)) >= 0
    assert err(attach, k, c, prog_for(k, EG), EG, MULTI) == E.E2BIG
    assert err(link_create, k, prog_for(k, EG), c) == E.E2BIG
    assert err(attach, k, c, progs[1], EG, MULTI) == E.E2BIG  # duplicate
    assert err(attach, k, c, progs[3], EG, MULTI | REPL, replace=progs[1]) == E.E2BIG
    assert err(attach, k, c, prog_for(k, EG), EG, MULTI, revision=1) == E.ESTALE
    other = cgroup(k, "b")
    assert attach(k, other, progs[0], EG, MULTI) == 0  # per (cgroup, attach type)


# --- §5 insertion position -----------------------------------------------------------


def test_insertion_positions(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    a, b, x, y, z = (prog_for(k, EG) for _ in range(5))
    attach(k, c, a, EG, MULTI)
    attach(k, c, b, EG, MULTI)  # FIFO
    attach(k, c, x, EG, MULTI | BEFORE)  # head
    attach(k, c, y, EG, MULTI | AFTER, relative=a)  # after a (by fd)
    attach(k, c, z, EG, MULTI | BEFORE | ID, relative=prog_id(k, b))  # before b (by ID)
    assert ids(k, c) == [prog_id(k, p) for p in (x, a, y, z, b)]
    lk = link_create(k, prog_for(k, EG), c)
    l2_prog = prog_for(k, EG)
    link_create(k, l2_prog, c, EG, BEFORE | LINK, relative=lk)
    assert ids(k, c)[-2:] == [prog_id(k, l2_prog), ids(k, c)[-1]]


def test_anchor_errors(k: ModelKernel) -> None:
    """§5 table, in a non-empty MULTI list."""
    c, other = cgroup(k, "a"), cgroup(k, "b")
    anchor, new = prog_for(k, EG), prog_for(k, EG)
    attach(k, c, anchor, EG, MULTI)
    lk = link_create(k, prog_for(k, EG), c)
    cases = [  # (flags, relative, errno)
        (MULTI, anchor, E.EINVAL),  # anchored, neither BEFORE nor AFTER
        (MULTI | BEFORE | AFTER, anchor, E.EINVAL),
        (MULTI | BEFORE | AFTER, 0, E.EINVAL),  # unanchored both, non-empty list
        (MULTI | BEFORE | LINK, lk, E.EINVAL),  # legacy with LINK
        (MULTI | BEFORE, 9999, E.EBADF),
        (MULTI | BEFORE, c, E.EINVAL),  # not a prog
        (MULTI | BEFORE | ID, 0, E.ENOENT),
        (MULTI | BEFORE | ID, 99999, E.ENOENT),
        (MULTI | BEFORE, prog_for(k, EG), E.ENOENT),  # not in this list
        (MULTI | BEFORE, prog_for(k, AT.CGROUP_DEVICE), E.ENOENT),  # other type: no check
        (MULTI | BEFORE | PRE, anchor, E.EINVAL),  # preorder mismatch
    ]
    attach(k, other, cases[8][1], EG, MULTI)
    for flags, rel, expect in cases:
        assert err(attach, k, c, new, EG, flags, relative=rel) == expect, (flags, rel)
    link_cases = [
        (BEFORE, anchor, E.EINVAL),  # LINK_CREATE needs LINK for an anchor
        (BEFORE | LINK, 0, E.EINVAL),  # fd 0 is not a link
        (BEFORE | LINK, 9999, E.EBADF),
        (BEFORE | LINK, anchor, E.EINVAL),  # a prog fd is not a link
        (BEFORE | LINK | ID, 99999, E.ENOENT),
        (BEFORE | LINK, link_create(k, prog_for(k, EG), other), E.ENOENT),
        (BEFORE | AFTER | LINK, lk, E.EINVAL),
        (BEFORE | LINK | PRE, lk, E.EINVAL),
    ]
    for flags, rel, expect in link_cases:
        assert err(link_create, k, new, c, EG, flags, relative=rel) == expect, (flags, rel)


def test_anchor_errors_come_after_estale_eperm_e2big(k: ModelKernel) -> None:
    """§5 last bullet."""
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG, OVR)
    bad = dict(relative=9999)
    assert err(attach, k, c, prog_for(k, EG), EG, MULTI | BEFORE, revision=7, **bad) == E.ESTALE
    assert err(attach, k, c, prog_for(k, EG), EG, MULTI | BEFORE, **bad) == E.EPERM
    assert err(link_create, k, prog_for(k, EG), c, EG, BEFORE | LINK, **bad) == E.EPERM


def test_empty_list_anchor_rules(k: ModelKernel) -> None:
    """§5: with an empty list BEFORE|AFTER unanchored is fine; an anchor is not found."""
    c = cgroup(k, "a")
    assert attach(k, c, prog_for(k, EG), EG, BEFORE | AFTER) == 0  # NONE mode, empty
    detach(k, c, 0, EG)
    assert err(attach, k, c, prog_for(k, EG), EG, BEFORE, relative=prog_for(k, EG)) == E.ENOENT


# --- §7 PROG_DETACH --------------------------------------------------------------------


def test_prog_detach_ladder(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    req: dict[str, Any] = dict(tail=1, atype=200, flags=MULTI, relative=prog, target=9999,
                               prog=prog, revision=5, replace=0)

    def call(k: ModelKernel, r: dict[str, Any]) -> int:
        a = uapi.ProgAttachAttr(target_fd=r["target"], attach_bpf_fd=r["prog"],
                                attach_type=r["atype"], attach_flags=r["flags"],
                                relative_fd=r["relative"], expected_revision=r["revision"])
        raw = ctypes.create_string_buffer(bytes(a).ljust(48, b"\0"), 48)
        raw[32] = r["tail"]
        return err(k.bpf, Cmd.PROG_DETACH, raw, 48)

    def mk_multi() -> None:
        attach(k, c, prog_for(k, EG), EG, MULTI)
        link_create(k, prog, c)  # a link entry never matches
        req.update(prog=9999)  # lenient: "no prog"

    steps: list[tuple[int, Callable[[], None]]] = [
        (E.EINVAL, lambda: req.update(tail=0)),  # 1
        (E.EINVAL, lambda: req.update(atype=EG)),  # 2
        (E.EINVAL, lambda: req.update(flags=0)),  # 3
        (E.EINVAL, lambda: req.update(relative=0)),  # 3
        (E.EBADF, lambda: req.update(target=c)),  # 4
        (E.ESTALE, lambda: req.update(revision=0)),  # 6
        (E.ENOENT, mk_multi),  # 7: empty
        (E.EINVAL, lambda: req.update(prog=prog)),  # 8: no prog
        (E.ENOENT, lambda: attach(k, c, prog, EG, MULTI)),  # 8: only a link holds it
    ]
    run_ladder(k, req, steps, call)


def test_non_multi_detach_ignores_prog_fd(k: ModelKernel) -> None:
    """§0 fact 2."""
    c = cgroup(k, "a")
    for fd in (0, 9999, prog_for(k, EG), prog_for(k, AT.CGROUP_DEVICE)):
        for mode in (0, OVR):
            attach(k, c, prog_for(k, EG), EG, mode)
            assert detach(k, c, fd, EG) == 0
            assert query(k, c).prog_cnt == 0


def test_detach_resets_mode(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    attach(k, c, prog, EG, MULTI)
    detach(k, c, prog, EG)
    assert query(k, c).attach_flags == 0
    assert attach(k, c, prog, EG, 0) == 0  # the mode was reset: NONE is accepted


# --- §8 PROG_QUERY ---------------------------------------------------------------------


def test_query_ladder(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    weak = k.process(caps={"CAP_BPF"}, fork=True)
    req: dict[str, Any] = dict(kernel=weak, tail=1, qflags=3, atype=200, target=9999, pflags=1)

    def call(_: ModelKernel, r: dict[str, Any]) -> int:
        flg = (ctypes.c_uint32 * 4)()
        a = uapi.QueryAttr(target_fd=r["target"], attach_type=r["atype"],
                           query_flags=r["qflags"],
                           prog_attach_flags=ctypes.addressof(flg) if r["pflags"] else 0)
        raw = ctypes.create_string_buffer(bytes(a).ljust(72, b"\0"), 72)
        raw[64] = r["tail"]
        return err(r["kernel"].bpf, Cmd.PROG_QUERY, raw, 72)

    steps: list[tuple[int, Callable[[], None]]] = [
        (E.EPERM, lambda: req.update(kernel=k)),
        (E.EINVAL, lambda: req.update(tail=0)),
        (E.EINVAL, lambda: req.update(qflags=1)),
        (E.EINVAL, lambda: req.update(atype=EG)),
        (E.EBADF, lambda: req.update(target=c)),
        (E.EINVAL, lambda: req.update(pflags=0)),
    ]
    run_ladder(k, req, steps, call)


def test_query_outputs(k: ModelKernel) -> None:
    """§8 outputs, arrays, ENOSPC, sentinels."""
    p, c = cgroup(k, "p"), cgroup(k, "p/c")
    fresh = query(k, c, with_flags=True)
    assert (fresh.errno, fresh.attach_flags, fresh.prog_cnt, fresh.revision) == (0, 0, 0, 1)
    assert fresh.ids[0] == fresh.flags[0] == 0xDEADBEEF
    progs = [prog_for(k, EG) for _ in range(3)]
    attach(k, c, progs[0], EG, MULTI | PRE)
    link_create(k, progs[1], c)
    attach(k, p, progs[2], EG, MULTI)
    q = query(k, c, with_flags=True, attach_flags=77, revision=99)
    assert (q.attach_flags, q.prog_cnt, q.revision) == (MULTI, 2, 3)
    assert q.ids[:3] == [prog_id(k, progs[0]), prog_id(k, progs[1]), 0xDEADBEEF]
    assert q.flags[:3] == [MULTI, MULTI, 0xDEADBEEF]  # the mode, never PREORDER
    small = query(k, c, cap=1, with_flags=True)
    assert (small.errno, small.prog_cnt, small.ids, small.flags) == (
        E.ENOSPC, 2, [prog_id(k, progs[0])], [MULTI])
    eff = query(k, c, effective=True, cap=2)
    assert (eff.errno, eff.prog_cnt, eff.attach_flags, eff.revision) == (E.ENOSPC, 3, 0, 0)
    assert eff.ids == [prog_id(k, progs[0]), prog_id(k, progs[1])]
    zero = query(k, c, cap=0)
    assert (zero.errno, zero.prog_cnt, zero.ids) == (0, 2, [])
    link_ids = (ctypes.c_uint32 * 4)(*[7] * 4)
    query(k, c, link_ids=ctypes.addressof(link_ids), link_attach_flags=ctypes.addressof(link_ids))
    assert list(link_ids) == [7] * 4  # never written for cgroups


def test_query_null_ids_writes_counts_only(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG, MULTI)
    a = uapi.QueryAttr(target_fd=c, attach_type=EG, prog_cnt=5)
    assert k.bpf(Cmd.PROG_QUERY, a) == 0
    assert (a.prog_cnt, a.attach_flags, a.revision) == (1, MULTI, 2)


# --- §18 revisions ---------------------------------------------------------------------


def test_revision_bumps(k: ModelKernel) -> None:
    """§18: +1 on every successful mutation, never on failures or no-op LINK_DETACH."""
    from model_abi import link_detach, link_update

    c = cgroup(k, "a")
    p1, p2 = prog_for(k, EG), prog_for(k, EG)

    def rev() -> int:
        return query(k, c).revision

    ops: list[tuple[Callable[[], object], int]] = [
        (lambda: attach(k, c, p1, EG, 0), 1),
        (lambda: attach(k, c, p1, EG, 0), 1),  # NONE re-attach of the same prog
        (lambda: err(attach, k, c, p2, EG, MULTI), 0),  # failure
        (lambda: detach(k, c, 0, EG), 1),
        (lambda: attach(k, c, p1, EG, MULTI), 1),
        (lambda: attach(k, c, p2, EG, MULTI | REPL, replace=p1), 1),
        (lambda: detach(k, c, p2, EG), 1),
    ]
    for op, delta in ops:
        before = rev()
        op()
        assert rev() == before + delta
    lk = link_create(k, p1, c)
    assert rev() == 8
    link_update(k, lk, p1)  # same prog: still +1
    assert rev() == 9
    assert err(attach, k, c, p1, EG, MULTI, revision=8) == E.ESTALE
    assert attach(k, c, p2, EG, MULTI, revision=9) == 0
    link_detach(k, lk)
    link_detach(k, lk)  # no-op
    assert rev() == 11
    lk2 = link_create(k, p1, c)
    k.close(lk2)  # close of the last fd detaches
    assert rev() == 13
    assert detach(k, c, p2, EG, revision=13) == 0
    assert err(detach, k, c, p2, EG, revision=13) == E.ESTALE


def test_revision_is_per_cgroup_and_attach_type(k: ModelKernel) -> None:
    a, b = cgroup(k, "a"), cgroup(k, "b")
    attach(k, a, prog_for(k, EG), EG)
    assert (query(k, a).revision, query(k, a, ING).revision, query(k, b).revision) == (2, 1, 1)


@pytest.mark.parametrize("mode", [0, OVR, MULTI])
def test_preorder_flag_is_not_part_of_the_mode(k: ModelKernel, mode: int) -> None:
    """§4: NONE|PREORDER, OVERRIDE|PREORDER, MULTI|PREORDER are valid; the mode is
    compared (and reported) without it."""
    c = cgroup(k, "a")
    assert attach(k, c, prog_for(k, EG), EG, mode | PRE) == 0
    assert query(k, c).attach_flags == mode
    assert attach(k, c, prog_for(k, EG), EG, mode) == 0


def test_ret1_constant_is_the_minimal_program() -> None:
    assert RET1.hex() == "b7000000010000009500000000000000"
