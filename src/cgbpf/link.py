"""bpf_link: an fd-owned attachment of a program to a cgroup hook.

The kernel detaches a link when its last owner goes: the last fd closed (synchronous),
or the last bpffs pin unlinked with no fd open (asynchronous).  Every fd holder and pin is
an equal owner; only owners can update or detach it, legacy PROG_DETACH cannot.
Requires Linux 5.7 (LINK_CREATE/UPDATE), 5.8 (ids, info), 5.9 (LINK_DETACH).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import NamedTuple

from . import _bpf, _fastwalk, _sys, uapi
from ._object import BpfObject, as_enum
from .errors import BpfError, ExpectedProgramMismatch, LinkDefunct
from .kernel import Kernel, default_kernel, probe
from .program import Program
from .uapi import AttachType, Cmd, LinkType, ProgType


class LinkInfo(NamedTuple):
    """OBJ_GET_INFO_BY_FD of a link.  ``cgroup_id`` is 0 once the link is defunct;
    ``cgroup_id`` and ``attach_type`` are None for links of other types."""

    id: int
    type: LinkType | int
    prog_id: int
    cgroup_id: int | None
    attach_type: AttachType | int | None


def _info(k: Kernel, fd: int) -> LinkInfo:
    probe.require(k, probe.LINK_INFO)
    raw = uapi.LinkInfo.scratch()  # read before the next link's info
    _bpf.get_info(k, fd, raw, lambda: f"link fd {fd}")
    return _from_raw(raw)


def _from_raw(raw: uapi.LinkInfo) -> LinkInfo:
    cgroup = raw.type == LinkType.CGROUP
    return LinkInfo(raw.id, as_enum(LinkType, raw.type), raw.prog_id,
                    raw.cgroup_id if cgroup else None,
                    as_enum(AttachType, raw.attach_type) if cgroup else None)


_ATTACH_TYPES = frozenset(AttachType)
_DEFUNCT = {errno.ENOLINK: (LinkDefunct, "the link was detached or its cgroup was removed")}
#: LINK_UPDATE errors, by whether an expected program was given.
_UPDATE_ERRORS: dict[bool, _bpf.ErrorMap] = {
    False: _DEFUNCT,
    True: {**_DEFUNCT, errno.EPERM: (ExpectedProgramMismatch, "the link runs another program")},
}


def _update_hint(link_at: AttachType | int | None, new: Program) -> str:
    """Why LINK_UPDATE says EINVAL, from what differs between the link and ``new``: the
    program type (§10 step 8) or, for a program of the link's type, the expected attach
    type.  6.18 refuses a SOCK, SOCK_ADDR or SOCKOPT program loaded for another attach
    type than the link's, and an egress-enforced CGROUP_SKB program (one that may return
    2 or 3) on an INGRESS link; older kernels checked the program type only."""
    link_type = uapi.CGROUP_PROG_TYPE.get(AttachType(link_at)) \
        if link_at in _ATTACH_TYPES else None
    at = uapi.name_of(link_at) if link_at is not None else "unknown"
    if link_type is None:
        return (f"the new program's type {uapi.name_of(new.type)} or its expected attach "
                f"type does not fit the link (attach type {at})")
    if new.type != link_type:
        return (f"the new program's type {uapi.name_of(new.type)} differs from the link's "
                f"{link_type.name}")
    same, eat = f"the program types agree ({link_type.name})", new.expected_attach_type
    if eat is None:
        return (f"{same}; the new program's expected attach type, unknown to cgbpf (found by "
                "id or pin, or loaded without one, which for CGROUP_SOCK means "
                f"CGROUP_INET_SOCK_CREATE), must fit the link's attach type {at}")
    if new.type == ProgType.CGROUP_SKB and eat != link_at:
        return (f"{same} but the expected attach types differ: the new program was loaded "
                f"for {uapi.name_of(eat)} and, as it may return 2 or 3, can run only there; "
                f"the link's attach type is {at}")
    if eat != link_at:
        return (f"{same} but the expected attach types differ: the new program was loaded "
                f"for {uapi.name_of(eat)}, the link (and so its program) for {at}")
    return (f"{same} and so do the expected attach types ({at}): an invalid request "
            "(flags or old program)")


class LinkLeakWarning(RuntimeWarning):
    """An unpinned link was garbage-collected without close(): its program was detached.
    Shown by default (a ResourceWarning, which Python hides, goes with it)."""


class Link(BpfObject):
    """A bpf_link.  Closing the last fd of an unpinned link detaches its program."""

    kind, by_id = "link", Cmd.LINK_GET_FD_BY_ID
    #: A kernel bpf_link (a :class:`~cgbpf.fallback.LegacyLink` says "legacy").
    mode = "link"
    _id: int | None

    def __init__(self, kernel: Kernel, fd: int, info: LinkInfo | None = None, *,
                 lazy_id: bool = False) -> None:
        """Own ``fd``.  ``info``: what the link is, where the caller knows (a link it just
        made); ``lazy_id``: its id is read from the kernel when first asked for, so that
        making a link costs one syscall, not two."""
        super().__init__(kernel, fd, info)
        if lazy_id:
            self._id = None

    def _describe(self, info: LinkInfo) -> None:
        self._id = info.id
        self.attach_type = info.attach_type
        self._prog_id, self._cgroup_id = info.prog_id, info.cgroup_id

    @property
    def id(self) -> int:
        """The link id (0 on Linux 5.7, which has none)."""
        if self._id is None:
            self.info()
        assert self._id is not None
        return self._id

    def __repr__(self) -> str:
        at = uapi.name_of(self.attach_type) if self.attach_type is not None else "?"
        state = "closed" if self.closed else f"prog {self._prog_id} on cgroup {self._cgroup_id}"
        ident: int | str = "?" if self._id is None else self._id
        if self._id is None and not self.closed:
            with contextlib.suppress(BpfError):
                ident = self.id
        return f"<Link id={ident} {at} {state}>"

    def _leak_effect(self) -> type[Warning] | None:
        return None if self.pins else LinkLeakWarning

    def _leak_message(self) -> str:
        if self.pins:
            return f"unclosed {self!r}; it stays attached through its pin"
        return (f"unclosed {self!r}: collecting it closes its fd, which detaches program "
                f"{self._prog_id} from cgroup {self._cgroup_id} unless another fd or a pin "
                "holds the link; close() it explicitly, or pin() it to keep it attached")

    @classmethod
    def from_id(cls, obj_id: int, *, kernel: Kernel | None = None) -> Link:
        """LINK_GET_FD_BY_ID: a new owner.  Needs CAP_SYS_ADMIN; Linux 5.8."""
        probe.require(kernel or default_kernel(), probe.LINK_INFO)
        return super().from_id(obj_id, kernel=kernel)

    def info(self) -> LinkInfo:
        """Id, program, cgroup id (0 when defunct) and attach type.  Linux 5.8."""
        info = _info(self.kernel, self.fd)
        self._id, self._prog_id, self._cgroup_id = info.id, info.prog_id, info.cgroup_id
        return info

    @property
    def defunct(self) -> bool:
        """True once detached (LINK_DETACH) or auto-detached because its cgroup died."""
        return self.info().cgroup_id == 0

    def fdinfo(self) -> dict[str, str]:
        """``/proc/self/fdinfo`` of the link fd (link_id, prog_tag, prog_id, cgroup_id, …)."""
        return self.kernel.fdinfo(self.fd)

    def update(self, new: Program, *, expected: Program | None = None) -> None:
        """LINK_UPDATE: swap the program atomically, in place (same position).

        With ``expected``, only if the link still runs that program (BPF_F_REPLACE),
        else :class:`ExpectedProgramMismatch`.  A defunct link raises
        :class:`LinkDefunct`.  The new program must have the link's program type.
        """
        fds = self.fd, new.fd, expected.fd if expected is not None else 0  # ClosedError
        try:
            _sys.link_update(self.kernel, fds[0], fds[1],
                             flags=uapi.F_REPLACE if expected is not None else 0,
                             old_prog_fd=fds[2])
        except OSError as e:
            err = e.errno or errno.EIO
            errors = _UPDATE_ERRORS[expected is not None]
            if err == errno.EINVAL:
                errors = {**errors, err: (BpfError, _update_hint(self.attach_type, new))}
            raise _bpf.error(self.kernel, Cmd.LINK_UPDATE, err,
                             f"{self!r} to {new!r}"
                             + (f" if it runs {expected!r}" if expected else ""),
                             errors=errors) from e
        self._prog_id = new.id

    def detach(self) -> None:
        """LINK_DETACH: detach now; the link object stays valid and becomes defunct.
        Idempotent.  Linux 5.9."""
        probe.require(self.kernel, probe.LINK_DETACH)
        _bpf.call(self.kernel, Cmd.LINK_DETACH, lambda: _sys.link_detach(self.kernel, self.fd),
                  repr(self))
        self._cgroup_id = 0

    def pin(self, path: str) -> None:
        """OBJ_PIN on bpffs: the link then outlives every fd (it stays attached after
        this process exits), until :meth:`unpin`.  Linux 5.7."""
        super().pin(path)

    def unpin(self, path: str | None = None) -> None:
        """Remove a pin (default: the one this object made or opened last).  With no fd
        left, the kernel then detaches the link asynchronously."""
        super().unpin(path)


def links(*, kernel: Kernel | None = None) -> Iterator[LinkInfo]:
    """Every link on the system (all types), via LINK_GET_NEXT_ID.  Links that vanish
    during the walk are skipped.  Needs CAP_SYS_ADMIN; Linux 5.8."""
    k = kernel or default_kernel()
    probe.require(k, probe.LINK_INFO)
    return _bpf.infos(k, Cmd.LINK_GET_NEXT_ID, Link.by_id, "link", _info)


def all_links(*, kernel: Kernel | None = None) -> list[LinkInfo]:
    """Every link on the system now, as a list: what :func:`links` yields, but on the
    host in one call of the compiled walk where it is built (a thousand links: some
    4,000 syscalls without Python between them).  Needs CAP_SYS_ADMIN; Linux 5.8."""
    k = kernel or default_kernel()
    probe.require(k, probe.LINK_INFO)
    if k.name == "host":
        try:
            found = _fastwalk.links()
        except OSError as e:
            raise _bpf.error(k, Cmd.LINK_GET_NEXT_ID, e.errno or errno.EIO, "link walk") from e
        if found is not None:
            return [_from_raw(uapi.LinkInfo.from_buffer_copy(r)) for r in found]
    return list(links(kernel=k))
