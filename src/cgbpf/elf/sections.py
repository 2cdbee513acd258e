"""libbpf's section names: which program type and expected attach type a program in a
section gets (libbpf's ``section_defs``, the cgroup types in full)."""

from __future__ import annotations

from dataclasses import dataclass

from ..uapi import AttachType, ProgType

_A = AttachType


@dataclass(frozen=True)
class SectionDef:
    """``name`` is matched whole, or with ``prefix`` as ``name`` or ``name/<anything>``
    (``lsm_cgroup/<hook>``, ``kprobe/<function>``).  ``attach_type`` None: loaded without
    an expected attach type, attached with an explicit one."""

    name: str
    prog_type: ProgType | int
    attach_type: AttachType | None = None
    prefix: bool = False
    #: True where cgbpf attaches it to a cgroup (``cg.link(prog)``).
    cgroup: bool = True


# Program types cgbpf does not name in uapi.ProgType (the kernel's numbering).
TRACEPOINT, PERF_EVENT, RAW_TRACEPOINT, SK_MSG, FLOW_DISSECTOR = 5, 7, 17, 16, 22
SCHED_ACT = 4

SECTION_DEFS: tuple[SectionDef, ...] = (
    SectionDef("cgroup_skb/ingress", ProgType.CGROUP_SKB, _A.CGROUP_INET_INGRESS),
    SectionDef("cgroup_skb/egress", ProgType.CGROUP_SKB, _A.CGROUP_INET_EGRESS),
    SectionDef("cgroup/skb", ProgType.CGROUP_SKB),
    SectionDef("cgroup/sock_create", ProgType.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE),
    SectionDef("cgroup/sock_release", ProgType.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE),
    SectionDef("cgroup/sock", ProgType.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE),
    SectionDef("cgroup/post_bind4", ProgType.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND),
    SectionDef("cgroup/post_bind6", ProgType.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND),
    SectionDef("cgroup/dev", ProgType.CGROUP_DEVICE, _A.CGROUP_DEVICE),
    SectionDef("sockops", ProgType.SOCK_OPS, _A.CGROUP_SOCK_OPS),
    SectionDef("cgroup/bind4", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND),
    SectionDef("cgroup/bind6", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND),
    SectionDef("cgroup/connect4", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT),
    SectionDef("cgroup/connect6", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT),
    SectionDef("cgroup/connect_unix", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_CONNECT),
    SectionDef("cgroup/sendmsg4", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG),
    SectionDef("cgroup/sendmsg6", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG),
    SectionDef("cgroup/sendmsg_unix", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_SENDMSG),
    SectionDef("cgroup/recvmsg4", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG),
    SectionDef("cgroup/recvmsg6", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG),
    SectionDef("cgroup/recvmsg_unix", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_RECVMSG),
    SectionDef("cgroup/getpeername4", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME),
    SectionDef("cgroup/getpeername6", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME),
    SectionDef("cgroup/getpeername_unix", ProgType.CGROUP_SOCK_ADDR,
               _A.CGROUP_UNIX_GETPEERNAME),
    SectionDef("cgroup/getsockname4", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME),
    SectionDef("cgroup/getsockname6", ProgType.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME),
    SectionDef("cgroup/getsockname_unix", ProgType.CGROUP_SOCK_ADDR,
               _A.CGROUP_UNIX_GETSOCKNAME),
    SectionDef("cgroup/sysctl", ProgType.CGROUP_SYSCTL, _A.CGROUP_SYSCTL),
    SectionDef("cgroup/getsockopt", ProgType.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT),
    SectionDef("cgroup/setsockopt", ProgType.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT),
    SectionDef("lsm_cgroup", ProgType.LSM, _A.LSM_CGROUP, prefix=True),
    # Not cgroup programs: loadable where the kernel allows, not attachable by cgbpf.
    SectionDef("socket", ProgType.SOCKET_FILTER, cgroup=False),
    SectionDef("xdp", ProgType.XDP, cgroup=False),
    SectionDef("tc", ProgType.SCHED_CLS, cgroup=False),
    SectionDef("classifier", ProgType.SCHED_CLS, cgroup=False),
    SectionDef("action", SCHED_ACT, cgroup=False),
    SectionDef("kprobe", ProgType.KPROBE, prefix=True, cgroup=False),
    SectionDef("kretprobe", ProgType.KPROBE, prefix=True, cgroup=False),
    SectionDef("tracepoint", TRACEPOINT, prefix=True, cgroup=False),
    SectionDef("tp", TRACEPOINT, prefix=True, cgroup=False),
    SectionDef("raw_tracepoint", RAW_TRACEPOINT, prefix=True, cgroup=False),
    SectionDef("raw_tp", RAW_TRACEPOINT, prefix=True, cgroup=False),
    SectionDef("perf_event", PERF_EVENT, cgroup=False),
    SectionDef("sk_msg", SK_MSG, cgroup=False),
    SectionDef("flow_dissector", FLOW_DISSECTOR, cgroup=False),
)

_EXACT = {d.name: d for d in SECTION_DEFS if not d.prefix}
_PREFIX = [d for d in SECTION_DEFS if d.prefix]


def section_def(name: str) -> SectionDef | None:
    """The definition for section ``name``, as libbpf matches it; None if unknown."""
    found = _EXACT.get(name)
    if found is not None:
        return found
    return next((d for d in _PREFIX if name == d.name or name.startswith(d.name + "/")),
                None)
