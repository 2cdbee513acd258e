"""§16/§19: kernel-version profiles.  One table: for each profile, the result of a few
characteristic requests (-errno, or the value the request returns)."""

from __future__ import annotations

import errno as E
from collections.abc import Callable

import pytest
from model_abi import (
    ROOT,
    attach,
    cgroup,
    detach,
    info,
    link_create,
    link_detach,
    link_update,
    next_id,
    prog_for,
    prog_load,
    query,
)

from cgbpf import uapi
from cgbpf.model import FEATURES, ModelKernel, Profile
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import ProgType as PT

EG = AT.CGROUP_INET_EGRESS
MULTI, OVR, PRE, BEFORE = uapi.F_ALLOW_MULTI, uapi.F_ALLOW_OVERRIDE, uapi.F_PREORDER, uapi.F_BEFORE
VERSIONS = ["5.6", "5.7", "5.8", "5.9", "6.0", "6.1.192", "6.6", "6.12.100", "6.15", "6.17",
            "6.18"]


def result(fn: Callable[[], int]) -> int:
    try:
        value = fn()
    except OSError as e:
        return -(e.errno or 0)
    return value


def link_preorder(k: ModelKernel) -> int:
    return min(link_create(k, prog_for(k, EG), cgroup(k, "a"), EG, PRE), 0)


def attach_preorder(k: ModelKernel) -> int:
    return attach(k, cgroup(k, "a"), prog_for(k, EG), EG, MULTI | PRE)


def override_preorder_over_none(k: ModelKernel) -> int:
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG)
    return attach(k, c, prog_for(k, EG), EG, OVR | PRE)


def before_unanchored(k: ModelKernel) -> int:
    return attach(k, cgroup(k, "a"), prog_for(k, EG), EG, MULTI | BEFORE)


def anchor_missing(k: ModelKernel) -> int:
    return attach(k, cgroup(k, "a"), prog_for(k, EG), EG, MULTI | BEFORE,
                  relative=prog_for(k, EG))


def expected_revision(k: ModelKernel) -> int:
    return attach(k, cgroup(k, "a"), prog_for(k, EG), EG, MULTI, revision=5)


def query_revision(k: ModelKernel) -> int:
    return query(k, cgroup(k, "a")).revision


def unix_load(k: ModelKernel) -> int:
    return min(prog_load(k, PT.CGROUP_SOCK_ADDR, AT.CGROUP_UNIX_CONNECT), 0)


def link_info_len(k: ModelKernel) -> int:
    return info(k, link_create(k, prog_for(k, EG), cgroup(k, "a")), size=100)[1]


def update_defunct(k: ModelKernel) -> int:
    lk = link_create(k, prog_for(k, EG), cgroup(k, "a"))
    k.rmdir(f"{ROOT}/a")
    k.settle()
    return link_update(k, lk, prog_for(k, EG))


def detach_link(k: ModelKernel) -> int:
    return link_detach(k, link_create(k, prog_for(k, EG), cgroup(k, "a")))


def link_next_id(k: ModelKernel) -> int:
    link_create(k, prog_for(k, EG), cgroup(k, "a"))
    return next_id(k, 0)


def sys_admin_without_net_admin(k: ModelKernel) -> int:
    c, prog = cgroup(k, "a"), prog_for(k, EG)
    weak = k.process(caps={"CAP_SYS_ADMIN", "CAP_BPF"}, fork=True)
    return attach(weak, c, prog, EG)


def detach_without_caps(k: ModelKernel) -> int:
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG)
    return detach(k.process(caps=set(), fork=True), c, 0, EG)


def replace_self(k: ModelKernel) -> int:
    c, prog = cgroup(k, "a"), prog_for(k, EG)
    attach(k, c, prog, EG, MULTI)
    return attach(k, c, prog, EG, MULTI | uapi.F_REPLACE, replace=prog)


def effective_attach_flags(k: ModelKernel) -> int:
    c = cgroup(k, "a")
    attach(k, c, prog_for(k, EG), EG, MULTI)
    return query(k, c, effective=True).attach_flags


def skb_link_to_sock_create(k: ModelKernel) -> int:
    return min(link_create(k, prog_for(k, EG), cgroup(k, "a"), AT.CGROUP_INET_SOCK_CREATE), 0)


def getpeername_attach(k: ModelKernel) -> int:
    prog = prog_load(k, PT.CGROUP_SOCK_ADDR, AT.CGROUP_INET4_GETPEERNAME)
    return attach(k, cgroup(k, "a"), prog, AT.CGROUP_INET4_GETPEERNAME)


EI, P, N, S, L = -E.EINVAL, -E.EPERM, -E.ENOENT, -E.ESTALE, -E.ENOLINK
TABLE: dict[Callable[[ModelKernel], int], list[int]] = {
    #                             5.6 5.7 5.8 5.9 6.0 6.1 6.6 .100 6.15 6.17 6.18
    link_preorder:               [EI, EI, EI, EI, EI, EI, EI, EI, EI, 0, 0],
    attach_preorder:             [EI, EI, EI, EI, EI, EI, EI, 0, 0, 0, 0],
    override_preorder_over_none: [EI, EI, EI, EI, EI, EI, EI, P, P, P, P],
    before_unanchored:           [EI, EI, EI, EI, EI, EI, EI, EI, EI, 0, 0],
    anchor_missing:              [EI, EI, EI, EI, EI, EI, EI, EI, EI, N, N],
    expected_revision:           [EI, EI, EI, EI, EI, EI, EI, EI, EI, S, S],
    query_revision:              [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    unix_load:                   [EI, EI, EI, EI, EI, EI, EI, 0, 0, 0, 0],
    link_info_len:               [EI, EI, 48, 48, 48, 48, 64, 64, 64, 64, 64],
    update_defunct:              [EI, EI, L, L, L, L, L, L, L, L, L],
    detach_link:                 [EI, EI, EI, 0, 0, 0, 0, 0, 0, 0, 0],
    link_next_id:                [EI, EI, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    sys_admin_without_net_admin: [P, P, EI, EI, EI, EI, EI, 0, 0, 0, 0],
    detach_without_caps:         [P, P, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    replace_self:                [EI, EI, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    effective_attach_flags:      [2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0],
    skb_link_to_sock_create:     [EI, 0, 0, 0, 0, EI, 0, EI, EI, EI, EI],  # 6.1: Debian backport
    getpeername_attach:          [EI, EI, 0, 0, 0, 0, 0, 0, 0, 0, 0],
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("request_", TABLE, ids=lambda f: f.__name__)
def test_profile_table(version: str, request_: Callable[[ModelKernel], int]) -> None:
    expect = TABLE[request_][VERSIONS.index(version)]
    assert result(lambda: request_(ModelKernel(version))) == expect


def test_custom_profiles() -> None:
    p = Profile.of("6.18").without("mprog_cgroup", name="no-mprog")
    assert (p.name, p.has("preorder_link"), p.has("mprog_cgroup")) == ("no-mprog", True, False)
    assert result(lambda: before_unanchored(ModelKernel(p))) == EI
    assert result(lambda: before_unanchored(ModelKernel(Profile.of("6.1.192").with_(
        "mprog_cgroup")))) == 0
    assert Profile.of("6.12.100") == Profile("6.12.100", Profile.of("6.12.100").features)
    with pytest.raises(ValueError):
        Profile("x", frozenset({"warp_drive"}))
    with pytest.raises(ValueError):
        Profile.of("4.19")
    with pytest.raises(ValueError, match="host"):
        Profile.of("6.18.44")  # a stable version string does not tell the backports
    # mainline 6.18 as released has every feature but the backports (CVE-2025-40123's,
    # the detach capability check)
    assert set(Profile.of("6.18").features) == set(FEATURES) - {"update_eat_check",
                                                               "detach_other_net_admin"}
