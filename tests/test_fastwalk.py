"""The host's compiled walks (``_fastwalk.c``): ``query_tree`` and ``all_links`` give
what the same walks in Python give, on a subtree with links, legacy entries, an
effective array, names that sort by code point and a file system mounted inside it."""

from __future__ import annotations

import os
from contextlib import ExitStack

import pytest

import cgbpf
from cgbpf import AttachMode, _fastwalk
from cgbpf._scratch import Scratch
from cgbpf.cgroup import TreeEntry, query_tree
from cgbpf.kernel import Kernel
from cgbpf.link import all_links
from cgbpf.testing.pytest_plugin import host_only
from cgtest import EGRESS, INGRESS, load

NAMES = ("a", "a/B", "a/b.slice", "a/b.slice/x", "z", "z/é", "a/b.slice/x/y")


def both(monkeypatch: pytest.MonkeyPatch, fn: object, *args: object, **kw: object) -> tuple:
    """``fn(*args, **kw)`` with the compiled walks, then with the Python ones."""
    assert callable(fn)
    fast = fn(*args, **kw)
    with monkeypatch.context() as m:
        m.setattr(_fastwalk, "_lib", [None])  # as where the library was not built
        slow = fn(*args, **kw)
    return fast, slow


def walker_or_skip() -> None:
    """Under CI the library must be there (make install builds it): CI tests it, not the
    fallback alone."""
    if _fastwalk.walker() is None:
        assert os.environ.get("CI") != "true", f"{_fastwalk.PATH} missing: make install"
        pytest.skip(f"{_fastwalk.PATH} not built (make install builds it)")


@host_only
def test_query_tree_compiled_and_python_agree(kernel: Kernel, scratch: Scratch,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    walker_or_skip()
    with ExitStack() as stack:
        p = stack.enter_context(load(kernel, name="fw_p"))
        q = stack.enter_context(load(kernel, name="fw_q"))
        i = stack.enter_context(load(kernel, attach_type=INGRESS, name="fw_i"))
        cgs = {rel: scratch.cgroup(rel) for rel in NAMES}
        for rel in ("a", "a/b.slice", "z/é"):
            stack.enter_context(cgs[rel].link(p, EGRESS))
        cgs["a/b.slice/x"].attach(q, EGRESS, mode=AttachMode.MULTI)
        stack.enter_context(cgs["a/B"].link(i, INGRESS))
        covered = scratch.mkdir("covered")
        kernel.mount_bpffs(covered)
        try:
            for effective in (False, True):
                fast, slow = both(monkeypatch, query_tree, scratch.path(), [INGRESS, EGRESS],
                                  effective=effective, kernel=kernel)
                assert fast == slow
        finally:
            kernel.umount(covered)
        cgs["a/b.slice/x"].detach(q, EGRESS)
    by_path = {e.path: e for e in fast}
    assert [e.path for e in fast] == [scratch.path()] + [  # parents first, by code point
        scratch.path(r) for r in ("a", "a/B", "a/b.slice", "a/b.slice/x", "a/b.slice/x/y",
                                  "z", "z/é")]
    deep = by_path[scratch.path("a/b.slice/x/y")]
    assert isinstance(deep, TreeEntry) and deep.id == cgs["a/b.slice/x/y"].id
    assert [(at, qy.ids) for at, qy in deep.hooks] == [(EGRESS, [q.id, p.id, p.id])]


@host_only
def test_links_compiled_and_python_agree(kernel: Kernel, scratch: Scratch,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    walker_or_skip()
    with load(kernel, name="fw_l") as p, scratch.cgroup("l").link(p, EGRESS) as link:
        fast, slow = both(monkeypatch, all_links, kernel=kernel)
        assert link.info() in fast
    assert fast == slow


def test_query_tree_errors(kernel: Kernel, scratch: Scratch) -> None:
    """A root that is not a cgroup2 directory is refused as Cgroup.open refuses it."""
    with pytest.raises(cgbpf.BpfError) as e:
        query_tree(scratch.path("missing"), [EGRESS], kernel=kernel)
    assert e.value.errno == 2
    with pytest.raises(cgbpf.NotACgroup2):
        query_tree(os.path.join(scratch.path(), "cgroup.procs"), [EGRESS], kernel=kernel)
