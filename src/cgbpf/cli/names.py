"""Names on the command line: attach types (libbpf's names and bpftool's short words),
references to programs and links as bpftool takes them (``id N``, ``pinned PATH``,
``name NAME``), and the bpftool-style word grammar of the commands."""

from __future__ import annotations

import errno
from collections.abc import Iterable

from ..errors import BpfError
from ..kernel import Kernel, probe
from ..link import Link
from ..program import Program, programs
from ..uapi import CGROUP_PROG_TYPE, AttachType


class UsageError(Exception):
    """A command line the command cannot take: exit status 2."""


#: bpftool's short words (``bpftool cgroup help``) -> the attach type.
SHORT: dict[str, AttachType] = {
    "ingress": AttachType.CGROUP_INET_INGRESS,
    "egress": AttachType.CGROUP_INET_EGRESS,
    "sock_create": AttachType.CGROUP_INET_SOCK_CREATE,
    "sock_ops": AttachType.CGROUP_SOCK_OPS,
    "device": AttachType.CGROUP_DEVICE,
    "bind4": AttachType.CGROUP_INET4_BIND,
    "bind6": AttachType.CGROUP_INET6_BIND,
    "post_bind4": AttachType.CGROUP_INET4_POST_BIND,
    "post_bind6": AttachType.CGROUP_INET6_POST_BIND,
    "connect4": AttachType.CGROUP_INET4_CONNECT,
    "connect6": AttachType.CGROUP_INET6_CONNECT,
    "connect_unix": AttachType.CGROUP_UNIX_CONNECT,
    "getpeername4": AttachType.CGROUP_INET4_GETPEERNAME,
    "getpeername6": AttachType.CGROUP_INET6_GETPEERNAME,
    "getpeername_unix": AttachType.CGROUP_UNIX_GETPEERNAME,
    "getsockname4": AttachType.CGROUP_INET4_GETSOCKNAME,
    "getsockname6": AttachType.CGROUP_INET6_GETSOCKNAME,
    "getsockname_unix": AttachType.CGROUP_UNIX_GETSOCKNAME,
    "sendmsg4": AttachType.CGROUP_UDP4_SENDMSG,
    "sendmsg6": AttachType.CGROUP_UDP6_SENDMSG,
    "sendmsg_unix": AttachType.CGROUP_UNIX_SENDMSG,
    "recvmsg4": AttachType.CGROUP_UDP4_RECVMSG,
    "recvmsg6": AttachType.CGROUP_UDP6_RECVMSG,
    "recvmsg_unix": AttachType.CGROUP_UNIX_RECVMSG,
    "sysctl": AttachType.CGROUP_SYSCTL,
    "getsockopt": AttachType.CGROUP_GETSOCKOPT,
    "setsockopt": AttachType.CGROUP_SETSOCKOPT,
    "sock_release": AttachType.CGROUP_INET_SOCK_RELEASE,
    "lsm_cgroup": AttachType.LSM_CGROUP,
}

#: The cgroup attach types, in the kernel's order (what bpftool lists them in).
CGROUP_TYPES: tuple[AttachType, ...] = tuple(sorted(CGROUP_PROG_TYPE))
#: libbpf's names: the uapi name in lower case (``BPF_CGROUP_INET_EGRESS`` ->
#: ``cgroup_inet_egress``).
LIBBPF: dict[AttachType, str] = {t: t.name.lower() for t in CGROUP_TYPES}
_BY_NAME: dict[str, AttachType] = {**{v: t for t, v in LIBBPF.items()}, **SHORT}

#: Attach types that not every kernel cgbpf runs on has: the probe that says.
_HOOK_FEATURE: dict[AttachType, str] = {
    AttachType.CGROUP_INET_SOCK_RELEASE: "sock_release_hook",
    AttachType.LSM_CGROUP: "lsm_cgroup",
    **{t: "getpeername_hooks" for t in CGROUP_TYPES
       if t.name.startswith(("CGROUP_INET4_GET", "CGROUP_INET6_GET"))},
    **{t: "unix_hooks" for t in CGROUP_TYPES if t.name.startswith("CGROUP_UNIX_")},
}


def attach_type(word: str) -> AttachType:
    """``cgroup_inet_egress``, ``egress``, ``CGROUP_INET_EGRESS``, ``BPF_CGROUP_...``."""
    w = word.lower().removeprefix("bpf_")
    if w in _BY_NAME:
        return _BY_NAME[w]
    raise UsageError(f"unknown attach type {word!r}: use libbpf's names (cgroup_inet_egress, "
                     "cgroup_inet4_connect, ...) or bpftool's words ("
                     + ", ".join(SHORT) + ")")


def type_name(at: int | None) -> str:
    """libbpf's name of an attach type (a number for one cgbpf does not know)."""
    if at is None:
        return ""
    try:
        return LIBBPF.get(AttachType(at)) or AttachType(at).name.lower()
    except ValueError:
        return str(at)


def supported_types(k: Kernel) -> list[AttachType]:
    """The cgroup attach types ``k`` has, in the kernel's order: each probe runs once (a
    PROG_ATTACH with bad fds), so a walk queries no hook the kernel would refuse."""
    known: dict[str, bool] = {}
    out = []
    for t in CGROUP_TYPES:
        key = _HOOK_FEATURE.get(t)
        if key is not None and key not in known:
            known[key] = probe.supported(k, key)
        if key is None or known[key]:
            out.append(t)
    return out


class Words:
    """bpftool's grammar: positional words, keywords with their values."""

    def __init__(self, words: Iterable[str], usage: str) -> None:
        self.words, self.usage = list(words), usage

    def __bool__(self) -> bool:
        return bool(self.words)

    def peek(self) -> str | None:
        return self.words[0] if self.words else None

    def take(self, what: str) -> str:
        if not self.words:
            raise UsageError(f"missing {what}; usage: {self.usage}")
        return self.words.pop(0)

    def keyword(self, *names: str) -> str | None:
        """The next word if it is one of ``names`` (taken), else None."""
        if self.words and self.words[0] in names:
            return self.words.pop(0)
        return None

    def ref(self, what: str, kinds: tuple[str, ...]) -> tuple[str, str]:
        """A reference: (kind, value), kind one of ``kinds`` (id, pinned, name)."""
        kind = self.take(f"{what} ({' | '.join(k + ' ...' for k in kinds)})")
        if kind not in kinds:
            raise UsageError(f"{what}: expected {' | '.join(kinds)}, got {kind!r}; usage: "
                             f"{self.usage}")
        value = self.take(f"the {kind} of {what}")
        if kind == "id" and not value.isdigit():
            raise UsageError(f"{what}: id {value!r} is not a number")
        return kind, value

    def done(self) -> None:
        if self.words:
            raise UsageError(f"unexpected {' '.join(self.words)!r}; usage: {self.usage}")


def open_prog(k: Kernel, ref: tuple[str, str]) -> Program:
    """The one program ``ref`` names (a new owner: close it)."""
    kind, value = ref
    if kind == "id":
        return Program.from_id(int(value), kernel=k)
    if kind == "pinned":
        return Program.from_pin(value, kernel=k)
    found = [p.id for p in programs(kernel=k) if p.name == value]
    if len(found) != 1:
        raise BpfError(errno.ENOENT if not found else errno.EINVAL, f"program name {value}",
                       hint="no program has that name" if not found else
                       f"{len(found)} programs have that name (ids "
                       + ", ".join(map(str, found)) + "): name one by id")
    return Program.from_id(found[0], kernel=k)


def open_link(k: Kernel, ref: tuple[str, str]) -> Link:
    """The link ``ref`` names (a new owner: close it)."""
    kind, value = ref
    if kind == "id":
        return Link.from_id(int(value), kernel=k)
    return Link.from_pin(value, kernel=k)
