"""Feature probes: ask the kernel, never parse its version string.

Each probe sends a request that a kernel with the feature rejects for one reason (a bad
fd: EBADF) and a kernel without it rejects for another (an unknown command or flag:
EINVAL).  Results are cached per kernel object.
"""

from __future__ import annotations

import errno
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .. import uapi
from ..errors import NotSupported
from ..uapi import AttachType, Cmd
from .protocol import Kernel

_BAD_FD = 0xFFFFFFFF  # -1 as u32: never a valid fd, so a kernel that gets this far says EBADF


LINKS, LINK_INFO, LINK_DETACH = "links", "link_info", "link_detach"
PREORDER_ATTACH, PREORDER_LINK, ORDERING, REVISION = (
    "preorder_attach", "preorder_link", "ordering", "revision")


@dataclass(frozen=True)
class Feature:
    """A kernel feature: its key, what it is, the first mainline release with it, how to
    probe it."""

    key: str
    name: str
    since: str
    how: str
    probe: Callable[[Kernel], bool]


def _ebadf(k: Kernel, cmd: Cmd, attr: object) -> bool:
    """True if ``cmd`` with ``attr`` gets as far as the fd check (EBADF)."""
    try:
        k.bpf(cmd, attr)  # type: ignore[arg-type]
    except OSError as e:
        return e.errno == errno.EBADF
    return True


def _attach_flags(flags: int, **extra: int) -> Callable[[Kernel], bool]:
    return lambda k: _ebadf(k, Cmd.PROG_ATTACH, uapi.ProgAttachAttr(
        target_fd=_BAD_FD, attach_bpf_fd=_BAD_FD, attach_type=AttachType.CGROUP_INET_EGRESS,
        attach_flags=uapi.F_ALLOW_MULTI | flags, **extra))


def _command_exists(cmd: Cmd, attr: object) -> Callable[[Kernel], bool]:
    """Unknown commands give EINVAL; a known one fails otherwise (EBADF, ENOENT, EPERM)."""
    def probe(k: Kernel) -> bool:
        try:
            k.bpf(cmd, attr)  # type: ignore[arg-type]
        except OSError as e:
            return e.errno != errno.EINVAL
        return True
    return probe


def _link_preorder(k: Kernel) -> bool:
    """LINK_CREATE checks the prog fd before the flags, so this probe needs a program."""
    from ..asm import return_program
    from ..program import Program

    with Program.load(return_program(1), uapi.ProgType.CGROUP_SKB, name="cgbpf_probe",
                      expected_attach_type=AttachType.CGROUP_INET_EGRESS, kernel=k) as p:
        return _ebadf(k, Cmd.LINK_CREATE, uapi.LinkCreateAttr(
            prog_fd=p.fd, target_fd=_BAD_FD, attach_type=AttachType.CGROUP_INET_EGRESS,
            flags=uapi.F_PREORDER))


FEATURES: dict[str, Feature] = {f.key: f for f in [
    Feature(LINKS, "cgroup bpf_link (BPF_LINK_CREATE)", "5.7", "LINK_CREATE with a bad prog fd",
            lambda k: _ebadf(k, Cmd.LINK_CREATE, uapi.LinkCreateAttr(
                prog_fd=_BAD_FD, target_fd=_BAD_FD,
                attach_type=AttachType.CGROUP_INET_EGRESS))),
    Feature(LINK_INFO, "link ids and link info", "5.8", "LINK_GET_NEXT_ID",
            _command_exists(Cmd.LINK_GET_NEXT_ID, uapi.GetIdAttr())),
    Feature(LINK_DETACH, "BPF_LINK_DETACH", "5.9", "LINK_DETACH of a bad fd",
            lambda k: _ebadf(k, Cmd.LINK_DETACH, uapi.LinkDetachAttr(link_fd=_BAD_FD))),
    Feature(PREORDER_ATTACH, "BPF_F_PREORDER for PROG_ATTACH", "6.15",
            "PROG_ATTACH flags MULTI|PREORDER", _attach_flags(uapi.F_PREORDER)),
    Feature(PREORDER_LINK, "BPF_F_PREORDER for links", "6.17", "LINK_CREATE flags PREORDER",
            _link_preorder),
    Feature(ORDERING, "ordering (BPF_F_BEFORE/AFTER) for cgroups", "6.17",
            "PROG_ATTACH flags MULTI|BEFORE", _attach_flags(uapi.F_BEFORE)),
    Feature(REVISION, "hook revisions (expected_revision)", "6.17",
            "PROG_ATTACH with expected_revision 1", _attach_flags(0, expected_revision=1)),
]}

_cache: weakref.WeakKeyDictionary[Kernel, dict[str, bool]] = weakref.WeakKeyDictionary()


def supported(k: Kernel, feature: str) -> bool:
    """Whether ``k`` has ``feature`` (a key of :data:`FEATURES`); probed once per kernel."""
    known = _cache.setdefault(k, {})
    if feature not in known:
        known[feature] = FEATURES[feature].probe(k)
    return known[feature]


def require(k: Kernel, feature: str) -> None:
    """Raise :class:`NotSupported` naming the feature and its first kernel if ``k`` lacks it."""
    if not supported(k, feature):
        f = FEATURES[feature]
        raise NotSupported(f.name, f.since, how=f"probe: {f.how} was refused with EINVAL")
