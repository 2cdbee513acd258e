"""cgbpf doctor / prune on a prepared mess, on both kernels: a defunct link pinned, a link
on a removed cgroup, a stale pin, an exclusive program at the scratch root; a live pinned
link next to them that must be left alone.  Always scoped to the scratch subtree and the
test's own bpffs mount."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from cgbpf import AttachMode, Cgroup, Link, Program
from cgbpf.cli import doctor
from cgbpf.kernel import Kernel
from cgbpf.testing import Scratch
from cgtest import EGRESS, load


@dataclass
class Mess:
    root: str
    bpffs: str
    defunct: int  # link ids
    gone: int
    live: Link
    stale_prog: int
    exclusive: int  # prog id


def _pin_link(kernel: Kernel, cg: Cgroup, path: str) -> int:
    with load(kernel) as prog, cg.link(prog) as link:
        link.pin(path)
        return link.info().id


@pytest.fixture
def mess(kernel: Kernel, scratch: Scratch) -> Mess:
    m = scratch.bpffs()
    a, b, c = scratch.cgroup("a"), scratch.cgroup("b"), scratch.cgroup("c")
    defunct = _pin_link(kernel, a, f"{m}/defunct")
    with Link.from_pin(f"{m}/defunct", kernel=kernel) as link:
        link.detach()
    gone = _pin_link(kernel, b, f"{m}/gone")
    b.close()
    kernel.rmdir(b.path)
    scratch.forget(b.path)
    prog = load(kernel)
    live = c.link(prog)
    live.pin(f"{m}/live")
    prog.close()
    with load(kernel, name="stale") as stale:
        stale.pin(f"{m}/stale")
        stale_id = stale.info().id
    with load(kernel, name="excl") as excl:
        scratch.cgroup().attach(excl, mode=AttachMode.EXCLUSIVE)
        excl_id = excl.info().id
    return Mess(scratch.path(), m, defunct, gone, live, stale_id, excl_id)


def _kinds(found: list[doctor.Finding]) -> dict[str, list[doctor.Finding]]:
    out: dict[str, list[doctor.Finding]] = {}
    for f in found:
        out.setdefault(f.kind, []).append(f)
    return out


def _pinned(kernel: Kernel, path: str) -> bool:
    try:
        Program.from_pin(path, kernel=kernel).close()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # a link or map is pinned there
    return True


def test_doctor_and_prune_on_a_mess(kernel: Kernel, mess: Mess) -> None:
    try:
        found = doctor.findings(kernel, mess.root, [mess.bpffs])
        kinds = _kinds(found)
        assert [f.link_id for f in kinds["defunct_link"] if f.pins == [f"{mess.bpffs}/defunct"]
                ] == [mess.defunct]
        # The removed cgroup's link: still attached to the dying cgroup, or already
        # released (defunct), depending on when the kernel gets to it.
        gone = [f for f in found if f.link_id == mess.gone]
        assert len(gone) == 1 and gone[0].kind in ("cgroup_gone", "defunct_link")
        assert gone[0].pins == [f"{mess.bpffs}/gone"]
        assert [(f.prog_id, f.pins) for f in kinds["stale_pin"]] == \
            [(mess.stale_prog, [f"{mess.bpffs}/stale"])]
        assert [(f.prog_id, f.cgroup, f.attach_type) for f in kinds["exclusive_at_root"]] == \
            [(mess.exclusive, mess.root, EGRESS.name.lower())]
        assert "legacy_orphan" not in kinds
        assert len(found) == 4
        live_id = mess.live.info().id
        assert all(f.link_id != live_id for f in found)

        pins = ["defunct", "gone", "stale", "live"]
        dry = doctor.prune(kernel, found, dry_run=True, root=mess.root)
        assert len(dry) == 4 and not any(a.done for a in dry)
        assert all(_pinned(kernel, f"{mess.bpffs}/{p}") for p in pins)
        with Cgroup.open(mess.root, kernel=kernel) as root:
            assert root.query(EGRESS).ids == [mess.exclusive]

        acts = doctor.prune(kernel, found, dry_run=False, root=mess.root)
        assert [a.error for a in acts] == [""] * 4 and all(a.done for a in acts)
        assert [p for p in pins if _pinned(kernel, f"{mess.bpffs}/{p}")] == ["live"]
        with Cgroup.open(mess.root, kernel=kernel) as root:
            assert root.query(EGRESS).ids == []
        with Cgroup.open(f"{mess.root}/c", kernel=kernel) as c:
            assert c.query(EGRESS).ids == [mess.live.info().prog_id]
        assert not mess.live.defunct
        assert doctor.findings(kernel, mess.root, [mess.bpffs]) == []
    finally:
        mess.live.unpin()
        mess.live.close()


def test_doctor_on_a_clean_subtree(kernel: Kernel, scratch: Scratch) -> None:
    m = scratch.bpffs()
    cg = scratch.cgroup("x")
    with load(kernel) as prog, cg.link(prog) as link:
        link.pin(f"{m}/ok")
        assert doctor.findings(kernel, scratch.path(), [m]) == []
        assert doctor.prune(kernel, [], dry_run=False) == []
        link.unpin()


def _command(kernel: Kernel, argv: list[str]) -> int:
    """``cgbpf doctor|prune ...`` through the parsers doctor registers, in this process
    (the model's state lives here)."""
    p = argparse.ArgumentParser(prog="cgbpf")
    doctor.register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    args.kernel_obj = kernel
    return int(args.func(args))


def test_the_commands_on_a_mess(kernel: Kernel, mess: Mess,
                                capsys: pytest.CaptureFixture[str]) -> None:
    scope = [mess.root, "--bpffs", mess.bpffs]
    try:
        assert _command(kernel, ["doctor", "-j", *scope]) == 1
        found = json.loads(capsys.readouterr().out)
        assert sorted(f["kind"] for f in found if f["link_id"] != mess.gone) == \
            ["defunct_link", "exclusive_at_root", "stale_pin"]
        assert _command(kernel, ["doctor", *scope]) == 1
        text = capsys.readouterr().out
        assert f"prune: unpin {mess.bpffs}/stale" in text and text.endswith("4 findings"
            " (cgbpf prune [--dry-run] removes what has a 'prune:' line)\n")
        assert _command(kernel, ["prune", "--dry-run", *scope]) == 0
        assert capsys.readouterr().out.count("would ") == 4
        assert _pinned(kernel, f"{mess.bpffs}/stale")
        assert _command(kernel, ["prune", "-j", *scope]) == 0
        assert [a["done"] for a in json.loads(capsys.readouterr().out)] == [True] * 4
        assert _command(kernel, ["doctor", *scope]) == 0
        assert capsys.readouterr().out == "no findings\n"
        assert _pinned(kernel, f"{mess.bpffs}/live")
    finally:
        mess.live.unpin()
        mess.live.close()
