"""§15: permissions on 6.18 (``unprivileged_bpf_disabled=2``), with processes that lack
capabilities and hold fds inherited from a privileged parent."""

from __future__ import annotations

import errno as E

import pytest
from model_abi import (
    attach,
    cgroup,
    detach,
    err,
    fd_by_id,
    info,
    link_create,
    link_detach,
    link_id,
    link_update,
    map_create,
    next_id,
    pin,
    prog_for,
    prog_load,
    query,
)

from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import ProgType as PT

EG, CONN4 = AT.CGROUP_INET_EGRESS, AT.CGROUP_INET4_CONNECT
NONE: set[str] = set()
BPF, NET, SYS = {"CAP_BPF"}, {"CAP_NET_ADMIN"}, {"CAP_SYS_ADMIN"}


@pytest.mark.parametrize(("ptype", "eat", "caps", "expect"), [
    (PT.CGROUP_SKB, EG, NONE, E.EPERM), (PT.CGROUP_SKB, EG, BPF, 0),
    (PT.CGROUP_SKB, EG, SYS, 0), (PT.CGROUP_SKB, EG, NET, E.EPERM),
    (PT.CGROUP_SOCK_ADDR, CONN4, BPF, E.EPERM), (PT.CGROUP_SOCK_ADDR, CONN4, BPF | NET, 0),
    (PT.CGROUP_SOCK_ADDR, CONN4, SYS, 0), (PT.CGROUP_DEVICE, 0, BPF, E.EPERM),
])
def test_prog_load(k: ModelKernel, ptype: int, eat: int, caps: set[str], expect: int) -> None:
    assert err(prog_load, k.process(caps=caps), ptype, eat) == expect


@pytest.mark.parametrize(("caps", "attach_err", "link_err"), [
    (NONE, E.EINVAL, E.EPERM), (BPF, E.EINVAL, E.EPERM), (NET, 0, 0), (SYS, 0, 0)])
def test_skb_attach_needs_net_admin(k: ModelKernel, caps: set[str], attach_err: int,
                                    link_err: int) -> None:
    c, prog = cgroup(k, "a"), prog_for(k, EG)
    weak = k.process(caps=caps, fork=True)
    assert err(attach, weak, c, prog, EG, 2) == attach_err
    assert err(link_create, weak, prog, c) == link_err


def test_other_types_attach_and_detach_with_nothing(k: ModelKernel) -> None:
    c, prog = cgroup(k, "a"), prog_for(k, CONN4)
    nobody = k.process(caps=NONE, uid=65534, fork=True)
    assert attach(nobody, c, prog, CONN4) == 0
    assert detach(nobody, c, 0, CONN4) == 0
    lk = link_create(nobody, prog, c, CONN4)
    assert link_update(nobody, lk, prog) == 0
    assert info(nobody, lk)[0].type == 3
    assert pin(nobody, lk, "/sys/fs/bpf/nobody") == 0  # the bpffs root is 0777
    assert link_detach(nobody, lk) == 0
    attach(k, c, prog_for(k, EG), EG)  # NONE-mode skb: detach needs no prog fd, no caps
    fresh = k.process(caps=NONE, uid=65534)
    assert detach(fresh, fresh.open_dir("/sys/fs/cgroup/a"), 0, EG) == 0


@pytest.mark.parametrize(("caps", "expect"), [(NONE, E.EPERM), (BPF, E.EPERM), (NET, 0),
                                              (SYS, 0)])
def test_query_needs_net_admin_or_sys_admin(k: ModelKernel, caps: set[str], expect: int) -> None:
    c = cgroup(k, "a")
    assert err(query, k.process(caps=caps, fork=True), c) == expect


@pytest.mark.parametrize(("caps", "expect"), [(BPF | NET, E.EPERM), (SYS, 0)])
def test_ids_need_sys_admin(k: ModelKernel, caps: set[str], expect: int) -> None:
    lk = link_create(k, prog_for(k, EG), cgroup(k, "a"))
    weak = k.process(caps=caps)
    for cmd in (Cmd.LINK_GET_NEXT_ID, Cmd.PROG_GET_NEXT_ID, Cmd.MAP_GET_NEXT_ID):
        assert err(next_id, weak, 0, cmd) == (expect if cmd != Cmd.MAP_GET_NEXT_ID or expect
                                               else E.ENOENT)
    assert err(fd_by_id, weak, link_id(k, lk)) == expect


def test_map_create_and_capabilities(k: ModelKernel) -> None:
    assert err(map_create, k.process(caps=NONE)) == E.EPERM
    assert err(map_create, k.process(caps=BPF)) == 0
    weak = k.process(caps=BPF)
    assert (weak.has_capability("CAP_BPF"), weak.has_capability("CAP_SYS_ADMIN")) == (True, False)
    assert ModelKernel("5.7").has_capability("CAP_BPF") is False  # no CAP_BPF before 5.8
