"""Visible fallback on kernels without cgroup links (model profiles 5.6 and 5.7):
``fallback=True`` gives a legacy MULTI attachment that acts like a link and says so;
without it the caller gets NotSupported.  Never silent."""

from __future__ import annotations

import errno
import warnings
from collections.abc import Iterator

import pytest

import cgbpf
from cgbpf import (
    AttachMode,
    ExpectedProgramMismatch,
    FallbackWarning,
    LegacyLink,
    Link,
    LinkDefunct,
    NotSupported,
    Program,
)
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgtest import EGRESS, load


@pytest.fixture(params=["5.6", "5.7"])
def old(request: pytest.FixtureRequest) -> Iterator[tuple[Kernel, Scratch, Program, Program]]:
    k = cgbpf.model(request.param)
    with Scratch(k, "cgbpf-test") as s, load(k, name="a") as a, load(k, name="b") as b:
        yield k, s, a, b


def test_no_links_without_fallback_is_not_supported() -> None:
    k = cgbpf.model("5.6")
    with Scratch(k, "cgbpf-test") as s, load(k) as p, pytest.raises(NotSupported) as e:
        s.cgroup("a").link(p)
    assert "bpf_link" in str(e.value) and "5.7" in str(e.value)
    assert e.value.errno == errno.EOPNOTSUPP


def test_fallback_acts_like_a_link_and_says_so(
        old: tuple[Kernel, Scratch, Program, Program]) -> None:
    """5.6: a LegacyLink, with a warning; 5.7 has links: a real Link, silently."""
    k, s, a, b = old
    cg = s.cgroup("a")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        link = cg.link(a, fallback=True)
    emulated = not probe.supported(k, probe.LINKS)
    assert isinstance(link, LegacyLink if emulated else Link)
    assert link.mode == ("legacy" if emulated else "link")
    assert [w.category for w in caught] == ([FallbackWarning] if emulated else [])
    with link:
        q = cg.query(EGRESS)
        assert (q.mode, q.ids) == (AttachMode.MULTI, [a.id])
        link.update(b, expected=a)
        assert cg.query(EGRESS).ids == [b.id]
        with pytest.raises(ExpectedProgramMismatch) as mismatch:
            link.update(a, expected=a)
        assert mismatch.value.errno == errno.EPERM
        cg.attach(a, EGRESS)  # coexists with legacy MULTI entries, like a link
        assert cg.query(EGRESS).ids == [b.id, a.id]
    assert cg.query(EGRESS).ids == [a.id]  # close detached it, and only it
    assert link.closed


def test_legacy_link_limits_are_explicit() -> None:
    k = cgbpf.model("5.6")
    with Scratch(k, "cgbpf-test") as s, load(k) as p, \
            pytest.warns(FallbackWarning), s.cgroup("a").link(p, fallback=True) as link:
        with pytest.raises(NotSupported):
            link.pin(s.bpffs() + "/x")
        with pytest.raises(NotSupported):
            s.cgroup("a").link(p, before=cgbpf.HEAD, fallback=True)
        assert link.info().id == 0 and not link.defunct
        link.detach()
        assert link.defunct and link.info().cgroup_id == 0
        with pytest.raises(LinkDefunct):
            link.update(p)
        link.detach()  # idempotent, like LINK_DETACH


def test_links_on_5_7_work_without_link_info() -> None:
    """5.7 has LINK_CREATE/UPDATE but no link ids, info (5.8) or LINK_DETACH (5.9)."""
    k = cgbpf.model("5.7")
    with Scratch(k, "cgbpf-test") as s, load(k) as p, s.cgroup("a").link(p) as link:
        assert link.id == 0 and link.attach_type == EGRESS
        for unsupported, since in ((link.info, "5.8"), (link.detach, "5.9")):
            with pytest.raises(NotSupported) as e:
                unsupported()
            assert since in str(e.value)


def test_one_link_interface() -> None:
    """Everything a user can call on a Link exists on a LegacyLink (NotSupported where a
    legacy attachment cannot), and the other way round."""
    def public(obj: object) -> set[str]:
        return {n for n in dir(obj) if not n.startswith("_")} - {"kind", "by_id"}
    names = []
    for version in ("6.18", "5.6"):
        k = cgbpf.model(version)
        with Scratch(k, "cgbpf-test") as s, load(k) as prog, warnings.catch_warnings():
            warnings.simplefilter("ignore", FallbackWarning)
            with s.cgroup("a").link(prog, fallback=True) as link:
                names.append(public(link))
    assert names[0] == names[1], names[0] ^ names[1]


def test_legacy_link_says_not_supported() -> None:
    k = cgbpf.model("5.6")
    with Scratch(k, "cgbpf-test") as s, load(k) as prog, pytest.warns(FallbackWarning):
        legacy = s.cgroup("a").link(prog, fallback=True)
    with legacy:
        for call in (lambda: legacy.pin("/sys/fs/bpf/x"), legacy.unpin, legacy.fdinfo,
                     legacy.dup, legacy.detach_fd,
                     lambda: LegacyLink.from_pin("/sys/fs/bpf/x", kernel=k),
                     lambda: LegacyLink.from_id(1, kernel=k)):
            with pytest.raises(NotSupported):
                call()
        assert legacy.pins == [] and not legacy.defunct
