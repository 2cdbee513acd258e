"""Probes agree with what the kernel really does: each probed feature is used for real
right after, and must work exactly when the probe says it is there."""

from __future__ import annotations

from contextlib import suppress

import pytest

from cgbpf import HEAD, BpfError, Cgroup, Link, NotSupported, Program
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgtest import EGRESS, load


class Uses:
    """Requests that each need one feature; ``close`` undoes them."""

    def __init__(self, cg: Cgroup, prog: Program) -> None:
        self.cg, self.prog, self.links = cg, prog, list[Link]()

    def link(self, **kw: object) -> Link:
        self.links.append(self.cg.link(self.prog, EGRESS, **kw))  # type: ignore[arg-type]
        return self.links[-1]

    def use(self, feature: str) -> None:
        cg, prog = self.cg, self.prog
        {
            probe.LINKS: lambda: self.link(),
            probe.LINK_INFO: lambda: self.link().info(),
            probe.LINK_DETACH: lambda: self.link().detach(),
            probe.PREORDER_ATTACH: lambda: cg.attach(prog, EGRESS, preorder=True),
            probe.PREORDER_LINK: lambda: self.link(preorder=True),
            probe.ORDERING: lambda: self.link(before=HEAD),
            probe.REVISION: lambda: self.link(expected_revision=cg.query(EGRESS).revision),
        }[feature]()

    def close(self) -> None:
        for link in self.links:
            link.close()
        with suppress(BpfError):
            self.cg.detach(self.prog, EGRESS)


@pytest.mark.parametrize("feature", sorted(probe.FEATURES))
def test_probe_matches_real_use(kernel: Kernel, scratch: Scratch, feature: str) -> None:
    with load(kernel) as prog:
        uses = Uses(scratch.cgroup("a"), prog)
        try:
            if probe.supported(kernel, feature):
                uses.use(feature)
            else:
                with pytest.raises(NotSupported) as e:
                    uses.use(feature)
                assert probe.FEATURES[feature].since in str(e.value)
        finally:
            uses.close()
        assert uses.cg.query(EGRESS).ids == []
