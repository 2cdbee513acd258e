"""§6: every effective-order example, recomputation on each change, inheritance at mkdir,
and LINK_UPDATE keeping (PREORDER) positions."""

from __future__ import annotations

import pytest
from model_abi import attach, cgroup, detach, ids, link_create, link_update, prog_for, prog_id

from cgbpf import uapi
from cgbpf.model import ModelKernel

EG = uapi.AttachType.CGROUP_INET_EGRESS
MODE = {"MULTI": uapi.F_ALLOW_MULTI, "OVERRIDE": uapi.F_ALLOW_OVERRIDE, "NONE": 0}


def build(k: ModelKernel, tree: list[tuple[str, str, str]]) -> tuple[dict[str, int],
                                                                      dict[str, int]]:
    """``tree``: (path, mode, "P0 P1p ...") attached in order; "p" marks PREORDER.
    Returns (cgroup fds by leaf name, prog fds by name)."""
    cgs, progs = {}, {}
    for path, mode, names in tree:
        fd = cgroup(k, path)
        cgs[path.rsplit("/", 1)[-1]] = fd
        for name in names.split():
            pre = name.endswith("p")
            progs[name.rstrip("p")] = p = prog_for(k, EG)
            flags = MODE[mode] | (uapi.F_PREORDER if pre else 0)
            attach(k, fd, p, EG, flags)
    return cgs, progs


def eff(k: ModelKernel, progs: dict[str, int], cg: int) -> str:
    by_id = {prog_id(k, fd): name for name, fd in progs.items()}
    return " ".join(by_id[i] for i in ids(k, cg, effective=True))


EXAMPLES = [  # (tree, cgroup, expected effective order) — §6, all [V]
    ([("A", "MULTI", "P0 P1"), ("A/B", "MULTI", "P2 P3"), ("A/B/C", "MULTI", "P4")],
     "C", "P4 P2 P3 P0 P1"),
    ([("A", "MULTI", "P0 P1"), ("A/B", "OVERRIDE", "P2"), ("A/B/C", "NONE", "P3")],
     "B", "P2 P0 P1"),
    ([("A", "MULTI", "P0 P1"), ("A/B", "OVERRIDE", "P2"), ("A/B/C", "NONE", "P3")],
     "C", "P3 P0 P1"),
    ([("A", "OVERRIDE", "P0"), ("A/B", "NONE", "P1"), ("A/B/C", "NONE", "")], "C", "P1"),
    ([("A", "MULTI", "P0 P1p"), ("A/B", "MULTI", "P2 P3p")], "B", "P1 P3 P2 P0"),
    ([("A", "MULTI", "P0 P1p P4p"), ("A/B", "MULTI", "P2 P3p P5p"),
      ("A/B/C", "MULTI", "P6p P7")], "C", "P1 P4 P3 P5 P6 P7 P2 P0"),
    ([("A", "MULTI", "P0p P1"), ("A/B", "OVERRIDE", "P2p"), ("A/B/C", "MULTI", "P3p P4")],
     "C", "P0 P3 P4 P1"),
    ([("A", "MULTI", "P0p P1"), ("A/B", "OVERRIDE", "P2p"), ("A/B/C", "MULTI", "P3p P4")],
     "B", "P0 P2 P1"),
    ([("A", "MULTI", "P0 P1p P4p"), ("A/D", "NONE", "P8p")], "D", "P1 P4 P8 P0"),
    ([("A/B", "MULTI", "P1"), ("A", "NONE", "P0")], "B", "P1"),  # NONE attached later
    ([("A/B", "MULTI", "P1"), ("A", "NONE", "P0")], "A", "P0"),
]


@pytest.mark.parametrize(("tree", "at", "expected"), EXAMPLES)
def test_effective_examples(k: ModelKernel, tree: list[tuple[str, str, str]], at: str,
                            expected: str) -> None:
    cgs, progs = build(k, tree)
    assert eff(k, progs, cgs[at]) == expected


def test_detach_recomputes_descendants(k: ModelKernel) -> None:
    """§6 example 3, second half: if B is detached, eff(C) = P0."""
    cgs, progs = build(k, [("A", "OVERRIDE", "P0"), ("A/B", "NONE", "P1"), ("A/B/C", "NONE", "")])
    detach(k, cgs["B"], 0, EG)
    assert eff(k, progs, cgs["C"]) == "P0"


def test_mkdir_inherits(k: ModelKernel) -> None:
    _cgs, progs = build(k, [("A", "MULTI", "P0 P1p")])
    assert eff(k, progs, cgroup(k, "A/new")) == "P1 P0"


def test_empty_levels_do_not_stop_collection(k: ModelKernel) -> None:
    cgs, progs = build(k, [("A", "OVERRIDE", "P0"), ("A/B", "NONE", ""), ("A/B/C", "NONE", "")])
    assert eff(k, progs, cgs["C"]) == "P0"


def test_link_update_keeps_positions_including_preorder(k: ModelKernel) -> None:
    """§6 last paragraph, §10 step 9 (the CVE-2026-72427 fix is in the model)."""
    _cgs, progs = build(k, [("A", "MULTI", "P0p P1")])
    c = cgroup(k, "A/B")
    links = {name: link_create(k, progs[name], c, EG, flags)
             for name, flags in (("P0", uapi.F_PREORDER), ("P1", 0))}
    progs["X"], progs["Y"] = prog_for(k, EG), prog_for(k, EG)
    assert eff(k, progs, c) == "P0 P0 P1 P1"
    link_update(k, links["P0"], progs["X"])
    link_update(k, links["P1"], progs["Y"])
    assert eff(k, progs, c) == "P0 X Y P1"
    k.close(links["P0"])
    assert eff(k, progs, c) == "P0 Y P1"
