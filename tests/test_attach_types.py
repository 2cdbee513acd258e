"""Every cgroup attach type on the real kernel: link, query, link info, close, legacy
attach/detach; and the attach-type/program-type rules of docs/kernel.md §2."""

from __future__ import annotations

import errno
import struct
from operator import attrgetter

import pytest

from cgbpf import (
    AttachMode,
    AttachType,
    BpfError,
    Cgroup,
    LinkInfo,
    LinkType,
    Program,
    ProgType,
    VerifierError,
    asm,
)
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel, probe
from cgbpf.model.profiles import ATTACH_TYPE_FEATURE
from cgbpf.program import LoadOptions
from cgbpf.uapi import CGROUP_PROG_TYPE
from cgtest import host_only, requires

A, P = AttachType, ProgType
LSM = A.LSM_CGROUP
#: Every cgroup attach type but LSM_CGROUP (its programs do not load here: test_lsm_cgroup).
TYPES = [at for at in CGROUP_PROG_TYPE if at is not LSM]
BY_NAME = attrgetter("name")


def load(kernel: Kernel, prog_type: ProgType, eat: AttachType | None, ret: int = 1,
         btf_id: int = 0) -> Program:
    """``r0 = ret; exit`` (1 is a legal return value for every cgroup hook)."""
    return Program.load(asm.return_program(ret), prog_type, expected_attach_type=eat,
                        name="attach_types", options=LoadOptions(attach_btf_id=btf_id),
                        kernel=kernel)


def requires_type(kernel: Kernel, at: AttachType | None) -> None:
    """Skip where the probe says the kernel lacks the attach type ``at``."""
    if at in ATTACH_TYPE_FEATURE:
        requires(kernel, ATTACH_TYPE_FEATURE[at])


def assert_empty(cg: Cgroup, at: AttachType) -> None:
    q = cg.query(at)
    assert (q.mode, q.ids) == (AttachMode.EXCLUSIVE, [])


def assert_hook(cg: Cgroup, at: AttachType, mode: AttachMode, ids: list[int]) -> None:
    """The hook holds ``ids`` in ``mode``.  LSM_CGROUP's query spans one hook per LSM
    function, so its flags word is 0 and each entry carries its own hook's flags."""
    q = cg.query(at)
    if at is LSM:
        assert (q.mode, q.attach_flags, q.ids) == (AttachMode.EXCLUSIVE, 0, ids)
        assert [p.attach_flags for p in q.programs] == [int(mode)] * len(ids)
    else:
        assert (q.mode, q.attach_flags, q.ids) == (mode, int(mode), ids)


def check_link(cg: Cgroup, prog: Program, at: AttachType, *, explicit: bool = False) -> None:
    """Link ``prog`` to ``at`` (taken from the program unless ``explicit``), check query and
    link info, close the link and check that the hook is empty again."""
    with cg.link(prog, at if explicit else None) as link:
        assert_hook(cg, at, AttachMode.MULTI, [prog.id])
        assert cg.query(at, effective=True).ids == [prog.id]
        assert link.info() == LinkInfo(link.id, LinkType.CGROUP, prog.id, cg.id, at)
        assert link.attach_type is at
    assert_empty(cg, at)


def check_attach(cg: Cgroup, prog: Program, at: AttachType, *, explicit: bool = False) -> None:
    """Legacy attach in each mode, query, detach, query."""
    for mode in AttachMode:
        cg.attach(prog, at if explicit else None, mode=mode)
        assert_hook(cg, at, mode, [prog.id])
        cg.detach(prog, at if explicit else None)
        assert_empty(cg, at)


def test_every_cgroup_attach_type_is_covered() -> None:
    assert len(CGROUP_PROG_TYPE) == 29
    assert len(TYPES) == 28 and set(TYPES) | {LSM} == set(CGROUP_PROG_TYPE) == set(AttachType)


@pytest.mark.parametrize("at", TYPES, ids=BY_NAME)
def test_link_each_type(kernel: Kernel, scratch: Scratch, at: AttachType) -> None:
    requires_type(kernel, at)
    cg = scratch.cgroup("a")
    assert_empty(cg, at)
    with load(kernel, CGROUP_PROG_TYPE[at], at) as prog:
        check_link(cg, prog, at)


@pytest.mark.parametrize("at", TYPES, ids=BY_NAME)
def test_legacy_attach_each_type(kernel: Kernel, scratch: Scratch, at: AttachType) -> None:
    requires_type(kernel, at)
    cg = scratch.cgroup("a")
    with load(kernel, CGROUP_PROG_TYPE[at], at) as prog:
        check_attach(cg, prog, at)


# ------------------------------------------------------------------------------ LSM_CGROUP


def bpf_lsm_active() -> bool:
    """Whether "bpf" is in the active LSM list (no securityfs file: not known to be)."""
    try:
        with open("/sys/kernel/security/lsm") as f:
            return "bpf" in f.read().strip().split(",")
    except FileNotFoundError:
        return False


#: BTF kinds -> bytes after the 12-byte type header: fixed, and per ``vlen`` entry.
_BTF_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}
_BTF_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
BTF_KIND_FUNC = 12


def btf_func_id(name: str, path: str = "/sys/kernel/btf/vmlinux") -> int:
    """The BTF type id of the kernel function ``name`` (0 if absent): one pass over the
    type section of vmlinux BTF (~0.1 s)."""
    with open(path, "rb") as f:
        data = f.read()
    _magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data)
    strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
    at = strings.find(b"\0" + name.encode() + b"\0")
    if at < 0:
        return 0
    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 1
    while pos < end:
        name_off, info, _ = struct.unpack_from("<III", data, pos)
        kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
        if kind == BTF_KIND_FUNC and name_off == at + 1:
            return type_id
        pos += 12 + _BTF_EXTRA.get(kind, 0) + _BTF_PER_MEMBER.get(kind, 0) * vlen
        type_id += 1
    return 0


@host_only
def test_lsm_cgroup(kernel: Kernel, scratch: Scratch) -> None:
    """LSM_CGROUP needs an LSM program (attach_btf_id of a hook) and the BPF LSM active.
    Without it this kernel (6.18.44, no securityfs) refuses PROG_LOAD with EPERM even for
    root, with or without a valid attach_btf_id (§2.1 note).  With it (Debian's kernels
    in the kernel matrix) links and every legacy mode work."""
    requires(kernel, "lsm_cgroup")
    btf_id = btf_func_id("bpf_lsm_socket_create")
    assert btf_id > 0
    if not bpf_lsm_active():
        with pytest.raises(BpfError) as e:
            load(kernel, P.LSM, LSM, btf_id=btf_id).close()
        assert e.value.errno == errno.EPERM
        assert e.value.command == "PROG_LOAD" and "LSM_CGROUP" in str(e.value)
        return
    cg = scratch.cgroup("a")
    with load(kernel, P.LSM, LSM, btf_id=btf_id) as prog:
        check_link(cg, prog, LSM)
        check_attach(cg, prog, LSM)


def test_query_lsm_cgroup_hook(kernel: Kernel, scratch: Scratch) -> None:
    requires(kernel, "lsm_cgroup")
    cg = scratch.cgroup("a")
    q = cg.query(LSM)
    assert (q.mode, q.ids) == (AttachMode.EXCLUSIVE, [])


# -------------------------------------------------------------------- §2.2 mismatch table

Case = tuple[ProgType, AttachType | None, int, AttachType]


def case_id(case: Case) -> str:
    prog_type, eat, ret, at = case
    return f"{prog_type.name}-{eat.name if eat is not None else 'eat0'}-r{ret}-to-{at.name}"


#: (program type, expected attach type at load, return value, attach type): refused, EINVAL.
REFUSED: list[Case] = [
    # program type != the attach type's
    (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, 1, A.CGROUP_INET_SOCK_CREATE),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, 1, A.CGROUP_INET_INGRESS),
    (P.CGROUP_DEVICE, A.CGROUP_DEVICE, 1, A.CGROUP_SYSCTL),
    (P.SOCKET_FILTER, None, 1, A.CGROUP_INET_INGRESS),
    # expected attach type enforced
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, 1, A.CGROUP_INET6_CONNECT),
    (P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, 1, A.CGROUP_INET6_POST_BIND),
    (P.CGROUP_SOCK, None, 1, A.CGROUP_INET4_POST_BIND),  # eat 0 became SOCK_CREATE
    (P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, 1, A.CGROUP_SETSOCKOPT),
    # an EGRESS program that can return 2 or 3 is enforced to EGRESS
    (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, 2, A.CGROUP_INET_INGRESS),
    (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, 3, A.CGROUP_INET_INGRESS),
]

#: Cross-type attachments the kernel accepts.
ACCEPTED: list[Case] = [
    (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, 1, A.CGROUP_INET_EGRESS),
    (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, 1, A.CGROUP_INET_INGRESS),
    (P.CGROUP_SKB, None, 1, A.CGROUP_INET_EGRESS),
    (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, 3, A.CGROUP_INET_EGRESS),
    (P.CGROUP_SOCK, None, 1, A.CGROUP_INET_SOCK_CREATE),
    (P.SOCK_OPS, A.CGROUP_DEVICE, 1, A.CGROUP_SOCK_OPS),
    (P.SOCK_OPS, None, 1, A.CGROUP_SOCK_OPS),
    (P.CGROUP_DEVICE, A.CGROUP_SYSCTL, 1, A.CGROUP_DEVICE),
    (P.CGROUP_DEVICE, A.CGROUP_UNIX_GETSOCKNAME, 1, A.CGROUP_DEVICE),
    (P.CGROUP_SYSCTL, A.CGROUP_INET4_CONNECT, 1, A.CGROUP_SYSCTL),
    (P.CGROUP_SYSCTL, None, 1, A.CGROUP_SYSCTL),
]

#: (program type, expected attach type, return value) that PROG_LOAD refuses with EINVAL.
LOAD_REFUSED: list[tuple[ProgType, AttachType | None, int]] = [
    (P.CGROUP_SOCK_ADDR, None, 1),  # sock_addr needs its eat
    (P.CGROUP_SOCKOPT, None, 1),
    (P.CGROUP_SKB, A.CGROUP_INET_SOCK_CREATE, 1),  # skb eat must be INGRESS/EGRESS/0
    (P.CGROUP_SOCK, A.CGROUP_INET4_CONNECT, 1),
    (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, 3),  # only EGRESS may return 2/3
    (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, 0),  # these hooks must return 1
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, 0),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME, 0),
]


@pytest.mark.parametrize("verb", ["link", "attach"])
@pytest.mark.parametrize("case", REFUSED, ids=case_id)
def test_mismatch_refused(kernel: Kernel, scratch: Scratch, case: Case, verb: str) -> None:
    prog_type, eat, ret, at = case
    cg = scratch.cgroup("a")
    if (verb == "link" and prog_type is P.CGROUP_SKB and CGROUP_PROG_TYPE[at] is not P.CGROUP_SKB
            and probe.check(kernel, "skb_link_type_check") is False):
        # before 6.9 (and its backports) LINK_CREATE did not check a CGROUP_SKB program's
        # attach type (§2.2, §9 step 3): the link is made
        with load(kernel, prog_type, eat, ret) as prog, cg.link(prog, at) as link:
            assert_hook(cg, at, AttachMode.MULTI, [prog.id])
            assert link.info().prog_id == prog.id
        assert_empty(cg, at)
        return
    with load(kernel, prog_type, eat, ret) as prog, pytest.raises(BpfError) as e:
        if verb == "link":
            cg.link(prog, at).close()
        else:
            cg.attach(prog, at)
    assert e.value.errno == errno.EINVAL
    assert e.value.command == ("LINK_CREATE" if verb == "link" else "PROG_ATTACH")
    assert_empty(cg, at)


@pytest.mark.parametrize("case", ACCEPTED, ids=case_id)
def test_cross_type_accepted(kernel: Kernel, scratch: Scratch, case: Case) -> None:
    prog_type, eat, ret, at = case
    cg = scratch.cgroup("a")
    with load(kernel, prog_type, eat, ret) as prog:
        check_link(cg, prog, at, explicit=True)
        check_attach(cg, prog, at, explicit=True)


@pytest.mark.parametrize("case", LOAD_REFUSED,
                         ids=lambda c: f"{c[0].name}-{getattr(c[1], 'name', 'eat0')}-r{c[2]}")
def test_load_refused(kernel: Kernel, case: tuple[ProgType, AttachType | None, int]) -> None:
    """A wrong expected attach type is refused before the verifier runs (no log: the error
    names the attribute); a wrong return value by the verifier (VerifierError, log)."""
    prog_type, eat, ret = case
    requires_type(kernel, eat)
    with pytest.raises(BpfError) as e:
        load(kernel, prog_type, eat, ret).close()
    assert e.value.errno == errno.EINVAL and e.value.command == "PROG_LOAD"
    if ret == 1:
        assert type(e.value).__name__ == "BpfError" and "need expected_attach_type" in e.value.hint
    else:
        assert isinstance(e.value, VerifierError) and e.value.log


def test_sock_ops_accepts_any_int_eat(kernel: Kernel) -> None:
    with load(kernel, P.SOCK_OPS, 999) as prog:  # type: ignore[arg-type]
        assert prog.type is P.SOCK_OPS
