"""Differential test: host and model driven by the same random operation sequences
(driver and operations in :mod:`differential`; the long fuzz is
``python tests/differential.py --steps 10000``).

The model is calibrated from the host (``Profile.host()``), so the two must agree.  That
the test can tell kernels apart at all is checked by mutation: the calibrated profile with
one feature flipped must be caught, by a sequence that ends with the request the feature
is about."""

from __future__ import annotations

import pytest

from cgbpf import asm
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel, Profile
from cgbpf.model.verifier import check_return, decode
from cgbpf.uapi import ProgType
from differential import (
    CONNECT4,
    EGRESS,
    INGRESS,
    PROG_INDEX,
    PROGRAMS,
    ZERO,
    Divergence,
    LinkCreate,
    LinkUpdate,
    Pair,
    Ref,
    check,
)


@pytest.mark.parametrize("kernel", ["host"], indirect=True)  # the conftest fixture
def test_host_and_model_agree(kernel: Kernel) -> None:
    """150 sequences of up to 50 steps (about 7,000), derandomized: the same sequences
    every run.  A divergence is raised with the minimised sequence, step by step, and the
    difference."""
    check(kernel, examples=150, steps=50, derandomize=True)


#: Feature -> the kinds of step that may show it (None: any, the setup included).
MUTATIONS: dict[str, tuple[str, ...] | None] = {
    "update_eat_check": ("LinkUpdate",),
    "skb_link_type_check": ("LinkCreate", "Child"),
    "preorder_link": ("LinkCreate", "Child"),
    "mprog_cgroup": None,
    "bpf_net_capable": ("Restricted",),
}


@pytest.mark.parametrize("kernel", ["host"], indirect=True)
@pytest.mark.parametrize("feature", MUTATIONS)
def test_a_flipped_feature_is_found(kernel: Kernel, feature: str) -> None:
    """The model of this kernel with ``feature`` flipped diverges, and the minimised
    sequence is short and ends with the step the feature is about."""
    host = Profile.host()
    flipped = host.without(feature) if host.has(feature) else host.with_(feature)
    with pytest.raises(Divergence) as found:
        check(kernel, examples=100, steps=40, derandomize=True, profile=flipped)
    ops = found.value.ops
    kinds = MUTATIONS[feature]
    if kinds is not None:
        assert ops, str(found.value)
        assert type(ops[-1]).__name__ in kinds, str(found.value)
        assert len(ops) <= 6, str(found.value)


def test_egress_enforced_program() -> None:
    """The sequences' ``eg2`` is egress-enforced in the model's verifier (it returns 2),
    the other EGRESS programs are not."""
    for spec in PROGRAMS:
        if spec.ptype == ProgType.CGROUP_SKB:
            insns = decode(asm.assemble(asm.return_program(spec.ret)))
            assert check_return(spec.ptype, spec.eat, insns) == (spec.enforced == EGRESS)
    assert [p.name for p in PROGRAMS if p.ptype == ProgType.CGROUP_SKB and p.enforced] == ["eg2"]


@pytest.mark.parametrize("kernel", ["host"], indirect=True)
def test_update_to_another_expected_attach_type(kernel: Kernel) -> None:
    """What ``update_eat_check`` is about, step by step, on the host and the calibrated
    model (any difference raises): an egress-enforced program cannot be linked to INGRESS,
    and swapped into an INGRESS link only without the check; a sock_addr program for
    INET6_CONNECT likewise into an INET4_CONNECT link."""
    host = Profile.host()
    refused = ("EINVAL",) if host.has("update_eat_check") else ("ok", 0)
    eg, eg2 = Ref("prog", PROG_INDEX["eg"]), Ref("prog", PROG_INDEX["eg2"])
    c4, c6 = Ref("prog", PROG_INDEX["connect4"]), Ref("prog", PROG_INDEX["connect6"])
    a = Ref("cg", "a")
    pair = Pair(kernel, ModelKernel(host), ("skb", "sock_addr"))
    try:
        assert pair.step(LinkCreate(a, eg2, INGRESS, 0, ZERO, 0)) == ("EINVAL",)
        assert pair.step(LinkCreate(a, eg, INGRESS, 0, ZERO, 0)) == ("ok", "link0")
        assert pair.step(LinkUpdate(Ref("link", 0), eg2, 0, ZERO)) == refused
        assert pair.step(LinkCreate(a, c4, CONNECT4, 0, ZERO, 0))[0] == "ok"
        assert pair.step(LinkUpdate(Ref("link", 1), c6, 0, ZERO)) == refused
        assert pair.step(LinkUpdate(Ref("link", 1), eg, 0, ZERO)) == ("EINVAL",)  # a type
        pair.finish()
    finally:
        pair.close()


@pytest.mark.parametrize("version", ["6.1.192", "6.12.100"])
def test_older_kernels_model_against_itself(version: str) -> None:
    """The driver on kernels without the mprog API, revisions or PREORDER for links (no
    root needed): the model of such a kernel standing in for the host agrees with itself,
    and the 6.18 model does not."""
    check(ModelKernel(version), examples=10, steps=30, seed=1, profile=version)
    with pytest.raises(Divergence):
        check(ModelKernel(version), examples=10, steps=30, seed=1, profile="6.18", shrink=False)
