"""The JSON of ``cgbpf cgroup show``, ``cgroup tree`` and ``link show`` against
``bpftool -j`` on the same state, key by key: every key bpftool gives that cgbpf promises
(its names, never renamed) has bpftool's value; cgbpf's additions are keys bpftool does
not have.  Programs attached by legacy PROG_ATTACH (multi, override) and by links, one of
them defunct.  Host only (bpftool runs on the real kernel)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from cgbpf import AttachMode, Kernel, ProgType
from cgbpf.cli import main
from cgbpf.testing import Scratch
from cgtest import EGRESS, INGRESS, host_only, load

BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"
#: The keys cgbpf gives with bpftool's names, per command.
PROG_KEYS = {"id", "attach_type", "attach_flags", "name"}
LINK_KEYS = {"id", "type", "prog_id", "cgroup_id", "attach_type", "pinned"}
#: cgbpf's own keys: bpftool must not have them (they would be renamed ones otherwise).
OURS = {"link_id", "cgroup_path", "defunct"}

pytestmark = [host_only, pytest.mark.skipif(not shutil.which(BPFTOOL),
                                            reason="bpftool is not installed")]


def bpftool(*args: str) -> Any:
    r = subprocess.run([BPFTOOL, "-j", *args], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # bpftool prints no JSON at all for a cgroup without programs; cgbpf prints []
    return json.loads(r.stdout) if r.stdout.strip() else []


def same(ours: dict[str, Any], theirs: dict[str, Any], keys: set[str]) -> None:
    """Key by key: the promised keys bpftool has are ours with its values."""
    for key in keys & set(theirs):
        assert key in ours, (key, ours, theirs)
        assert ours[key] == theirs[key], (key, ours, theirs)
    assert not OURS & set(theirs), theirs
    assert set(ours) <= keys | OURS, ours


def same_list(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], keys: set[str]
              ) -> None:
    assert len(ours) == len(theirs), (ours, theirs)
    for o, t in zip(ours, theirs, strict=True):
        same(o, t, keys)


@pytest.fixture
def state(kernel: Kernel, scratch: Scratch) -> Iterator[tuple[Scratch, str, list[int]]]:
    """a: a link (egress) and a legacy multi program (ingress); a/b: legacy multi on
    egress under a's link; d: an override program; e: a link made defunct, still pinned."""
    fs = scratch.bpffs()
    a, d, e = scratch.cgroup("a"), scratch.cgroup("d"), scratch.cgroup("e")
    b = scratch.cgroup("a/b")
    scratch.mkdir("a/b/c")
    with load(kernel, name="cmp_one") as p1, \
            load(kernel, ProgType.CGROUP_SKB, INGRESS, name="cmp_two") as p2:
        with a.link(p1) as l1, e.link(p2) as l2, d.link(p1, INGRESS) as l3:
            for link, pin in ((l1, "l1"), (l2, "l2"), (l3, "l3")):
                link.pin(f"{fs}/{pin}")
            l2.detach()
            a.attach(p2, INGRESS)
            b.attach(p2, EGRESS)
            d.attach(p2, EGRESS, mode=AttachMode.OVERRIDE)
            ids = [l1.id, l2.id, l3.id]
        yield scratch, fs, ids
        for pin in ("l1", "l2", "l3"):
            kernel.unlink(f"{fs}/{pin}")


def ours(kernel: Kernel, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    assert main(["-j", *args], kernel=kernel) == 0
    return json.loads(capsys.readouterr().out)


def test_cgroup_show_and_tree(kernel: Kernel, capsys: pytest.CaptureFixture[str],
                              state: tuple[Scratch, str, list[int]]) -> None:
    s, _, (l1, _, l3) = state
    for rel in ("a", "a/b", "a/b/c", "d", "e"):
        for extra in ((), ("effective",)):
            mine = ours(kernel, capsys, "cgroup", "show", s.path(rel), *extra)
            same_list(mine, bpftool("cgroup", "show", s.path(rel), *extra), PROG_KEYS)
            if not extra:
                assert all("link_id" in p for p in mine)
            else:
                assert all("attach_flags" not in p for p in mine)
    a = ours(kernel, capsys, "cgroup", "show", s.path("a"))
    assert [p["link_id"] for p in a] == [None, l1]  # ingress: legacy; egress: the link
    assert [p["link_id"] for p in ours(kernel, capsys, "cgroup", "show", s.path("d"))] == \
        [l3, None]
    for extra in ((), ("effective",)):
        mine = ours(kernel, capsys, "cgroup", "tree", s.path(), *extra)
        theirs = bpftool("cgroup", "tree", s.path(), *extra)
        assert sorted(t["cgroup"] for t in mine) == sorted(t["cgroup"] for t in theirs)
        by_path = {t["cgroup"]: t["programs"] for t in theirs}
        for t in mine:
            assert set(t) == {"cgroup", "programs"}
            same_list(t["programs"], by_path[t["cgroup"]], PROG_KEYS)
    assert len(ours(kernel, capsys, "cgroup", "tree", s.path(), "effective")) == 4  # a..c, d


def test_link_show(kernel: Kernel, capsys: pytest.CaptureFixture[str],
                   state: tuple[Scratch, str, list[int]]) -> None:
    s, fs, ids = state
    theirs = {d["id"]: d for d in bpftool("-f", "link", "show") if d["id"] in ids}
    mine = {d["id"]: d for d in ours(kernel, capsys, "link", "show") if d["id"] in ids}
    assert set(mine) == set(theirs) == set(ids)
    for i in ids:
        same(mine[i], theirs[i], LINK_KEYS)
        assert mine[i]["pinned"] == theirs[i]["pinned"] == [f"{fs}/l{ids.index(i) + 1}"]
        one = ours(kernel, capsys, "link", "show", "id", str(i))
        same(one, bpftool("-f", "link", "show", "id", str(i)), LINK_KEYS)
    assert [mine[i]["defunct"] for i in ids] == [False, True, False]
    assert [mine[i]["cgroup_path"] for i in ids] == [s.path("a"), None, s.path("d")]
