"""Kernel profiles: a kernel as a set of named features (docs/kernel.md §16, §19).

The features are those of :data:`cgbpf.kernel.probe.FEATURES`, one table with the probe
of each, so a profile can also be measured: :meth:`Profile.probe` runs every probe on a
live kernel (``cgbpf.model("host")`` is a model of the running kernel).  Every
version-dependent branch of the model asks ``profile.has(key)``, never compares version
strings::

    Profile.of("6.12.100")                       # Debian's 6.12.100, as measured (§19)
    Profile.of("6.18").without("mprog_cgroup")   # compose your own
    Profile.diff(Profile.probe(cgbpf.host()), Profile.of("6.18"))
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import uapi
from ..kernel.probe import FEATURES as _FEATURES
from ..kernel.probe import why
from ..uapi import Cmd

if TYPE_CHECKING:
    from ..kernel.protocol import Kernel

#: Feature key -> (first mainline version, what it switches on), from the probe table.
FEATURES: dict[str, tuple[str, str]] = {k: (f.since, f.what) for k, f in _FEATURES.items()}

#: Mainline releases with a profile, oldest first: each is the release as it came out.
MAINLINE = ("5.6", "5.7", "5.8", "5.9", "5.10", "5.15", "6.0", "6.1", "6.6", "6.12", "6.15",
            "6.17", "6.18")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _mainline(version: str) -> frozenset[str]:
    return frozenset(k for k, f in _FEATURES.items()
                     if f.mainline and _key(f.since) <= _key(version))


#: Distribution kernels as measured (§19 and the kernel matrix, tests/kernels/): name ->
#: (the mainline release they build on, what their stable backports add, what it is).
DISTRIBUTION: dict[str, tuple[str, frozenset[str], str]] = {
    "6.1.192": ("6.1", frozenset({"skb_link_type_check"}),
                "Debian 6.1.192: 6.1.0-56 (6.1.192-2) and 6.1.0-57 (6.1.192-3), the same"),
    "6.12.100": ("6.12", frozenset({"preorder_attach"}),
                 "Debian 6.12.100+deb12 (6.12.100-1~deb12u1)"),
    "6.12.117": ("6.12", frozenset({"preorder_attach", "preorder_link", "mprog_cgroup"}),
                 "Debian 6.12.117+deb12 (6.12.117-1~deb12u1): the 6.18 features but SHA-256 tags"),
}

#: Every named profile: the mainline releases and the measured distribution kernels.
NAMES = (*MAINLINE, *DISTRIBUTION)


#: Attach types that appeared after 5.6, by the feature that brings them (§2.1).
ATTACH_TYPE_FEATURE: dict[uapi.AttachType, str] = {
    **{t: "getpeername_hooks" for t in uapi.AttachType if t.name.endswith("NAME")
       and not t.name.startswith("CGROUP_UNIX")},
    uapi.AttachType.CGROUP_INET_SOCK_RELEASE: "sock_release_hook",
    uapi.AttachType.LSM_CGROUP: "lsm_cgroup",
    **{t: "unix_hooks" for t in uapi.AttachType if t.name.startswith("CGROUP_UNIX")},
}

_host: Profile | None = None


@dataclass(frozen=True)
class Profile:
    """A kernel as a feature set (see :data:`FEATURES`)."""

    name: str
    features: frozenset[str]
    #: the cgroup attach types this kernel knows, by number (asked on every command)
    _attach_types: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.features) - FEATURES.keys()
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {sorted(FEATURES)}")
        known = {int(t) for t in uapi.CGROUP_PROG_TYPE
                 if ATTACH_TYPE_FEATURE.get(uapi.AttachType(t)) in (None, *self.features)}
        object.__setattr__(self, "_attach_types", frozenset(known))

    @classmethod
    def of(cls, version: str) -> Profile:
        """A named profile (:data:`NAMES`): a mainline release as released, or a
        distribution kernel as measured; ``"host"``: the running kernel, probed."""
        if version == "host":
            return cls.host()
        if version in MAINLINE:
            return cls(version, _mainline(version))
        if version in DISTRIBUTION:
            base, extra, _ = DISTRIBUTION[version]
            return cls(version, _mainline(base) | extra)
        raise ValueError(
            f"no profile {version!r}: known are {', '.join(NAMES)} and 'host'. A stable"
            " version string does not say which backports a build has: model('host')"
            " probes this machine's kernel, and Profile.of(NAME).with_(...) composes one")

    @classmethod
    def probe(cls, kernel: Kernel, name: str | None = None) -> Profile:
        """The profile of a live kernel: every probe of the feature table, run on it
        (one scratch cgroup, removed after).  Raises ``PermissionError`` (probing needs
        root) or ``RuntimeError`` naming the features it could not tell, and why."""
        from ..kernel.probe import probe_all

        found = probe_all(kernel)
        unknown = {k: why(kernel, k) for k, v in found.items() if v is None}
        if unknown:
            text = "could not probe " + "; ".join(f"{k}: {w}" for k, w in unknown.items())
            if any("EPERM" in w or "EACCES" in w or "lacks" in w for w in unknown.values()):
                raise PermissionError(text + " (probing a kernel needs root)")
            raise RuntimeError(text)
        return cls(name or f"probed {kernel!r}", frozenset(k for k, v in found.items() if v))

    @classmethod
    def host(cls) -> Profile:
        """The running kernel's profile, probed once per process."""
        global _host
        if _host is None:
            from ..kernel import host

            _host = cls.probe(host(), name=f"host {os.uname().release}")
        return _host

    @staticmethod
    def diff(a: Profile, b: Profile) -> dict[str, tuple[bool, bool]]:
        """The features ``a`` and ``b`` differ in: key -> (in a, in b), table order."""
        return {k: (k in a.features, k in b.features) for k in FEATURES
                if (k in a.features) != (k in b.features)}

    def nearest(self) -> Profile:
        """The named profile with the fewest differences (the newest on a tie)."""
        named = [Profile.of(n) for n in NAMES]
        return min(reversed(named), key=lambda p: len(Profile.diff(self, p)))

    def has(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}")
        return feature in self.features

    def with_(self, *features: str, name: str | None = None) -> Profile:
        """This profile plus ``features``."""
        return Profile(name or f"{self.name}+{'+'.join(features)}", self.features | set(features))

    def without(self, *features: str, name: str | None = None) -> Profile:
        """This profile minus ``features``."""
        return Profile(name or f"{self.name}-{'-'.join(features)}",
                       self.features - set(features))

    def knows_attach_type(self, value: int) -> bool:
        """Whether ``value`` is a cgroup attach type on this kernel (§2.1)."""
        return value in self._attach_types

    def last_field(self, cmd: int) -> tuple[type[uapi.Layout], str] | None:
        """The last attr field of ``cmd`` on this kernel, as (layout, field); None for
        LINK_CREATE from 5.9 on, whose attr ends at ``uapi.LINK_CREATE_SIZE``."""
        if cmd in (Cmd.PROG_ATTACH, Cmd.PROG_DETACH):
            if self.has("mprog_uapi"):
                return uapi.ProgAttachAttr, "expected_revision"
            # Before 6.6 PROG_DETACH's last field is attach_type (measured on Debian 6.1).
            return uapi.ProgAttachAttr, ("replace_bpf_fd" if cmd == Cmd.PROG_ATTACH
                                         else "attach_type")
        if cmd == Cmd.PROG_QUERY:
            return uapi.QueryAttr, ("revision" if self.has("mprog_uapi") else
                                    "prog_attach_flags" if self.has("prog_attach_flags_query")
                                    else "prog_cnt")
        if cmd == Cmd.LINK_CREATE:
            return None if self.has("link_create_ext_attr") else (uapi.LinkCreateAttr, "flags")
        if cmd in (Cmd.OBJ_PIN, Cmd.OBJ_GET):
            return uapi.ObjAttr, "path_fd" if self.has("obj_path_fd") else "file_flags"
        return COMMON_LAST_FIELD[cmd]

    def attr_end(self, cmd: int) -> int:
        """End of ``cmd``'s last attr field: later bytes must be zero (§1.4 CHECK_ATTR)."""
        last = self.last_field(cmd)
        return uapi.LINK_CREATE_SIZE if last is None else uapi.end_of(*last)

    @property
    def attr_size(self) -> int:
        """``sizeof(union bpf_attr)`` (§1.4), as measured: 168 on 6.18 (PROG_LOAD's
        signature fields came with SHA-256 tags), 152 on 6.12 (``prog_token_fd``, which
        came with the token work that made CAP_SYS_ADMIN count as CAP_NET_ADMIN), 144 on
        6.1.  Kernels before 5.17 have a smaller union still (not measured: 144 here)."""
        return 168 if self.has("tag_sha256") else 152 if self.has("bpf_net_capable") else 144

    @property
    def link_info_size(self) -> int:
        """``sizeof(struct bpf_link_info)`` (§13, §19)."""
        return (ctypes.sizeof(uapi.LinkInfo) if self.has("link_info_64")
                else uapi.LINK_INFO_SIZE_BEFORE_6_6)


#: The last attr field of the commands whose attr does not vary across the profiles.
#: For MAP_CREATE and PROG_LOAD it is the last field the model implements: any later field
#: (BTF, offload, tokens, ...) must be zero in the model.
COMMON_LAST_FIELD: dict[int, tuple[type[uapi.Layout], str]] = {
    Cmd.MAP_CREATE: (uapi.MapCreateAttr, "map_extra"),
    Cmd.MAP_LOOKUP_ELEM: (uapi.MapElemAttr, "flags"),
    Cmd.MAP_UPDATE_ELEM: (uapi.MapElemAttr, "flags"),
    Cmd.MAP_DELETE_ELEM: (uapi.MapElemAttr, "key"),
    Cmd.MAP_GET_NEXT_KEY: (uapi.MapElemAttr, "value"),  # next_key, in value's place
    Cmd.PROG_LOAD: (uapi.ProgLoadAttr, "attach_prog_fd"),
    Cmd.PROG_GET_NEXT_ID: (uapi.GetIdAttr, "next_id"),
    Cmd.MAP_GET_NEXT_ID: (uapi.GetIdAttr, "next_id"),
    Cmd.LINK_GET_NEXT_ID: (uapi.GetIdAttr, "next_id"),
    Cmd.PROG_GET_FD_BY_ID: (uapi.GetIdAttr, "start_id"),  # prog_id
    Cmd.MAP_GET_FD_BY_ID: (uapi.GetIdAttr, "open_flags"),
    Cmd.LINK_GET_FD_BY_ID: (uapi.GetIdAttr, "start_id"),  # link_id
    Cmd.OBJ_GET_INFO_BY_FD: (uapi.InfoAttr, "info"),
    Cmd.LINK_UPDATE: (uapi.LinkUpdateAttr, "old_prog_fd"),
    Cmd.LINK_DETACH: (uapi.LinkDetachAttr, "link_fd"),
    # BTF_LOAD: btf_log_true_size 6.4, btf_flags and btf_token_fd 6.9 (the model has no
    # tokens: btf_flags must be 0, as a kernel without a token fd wants).
    Cmd.BTF_LOAD: (uapi.BtfLoadAttr, "btf_token_fd"),
    Cmd.BTF_GET_FD_BY_ID: (uapi.GetIdAttr, "open_flags"),  # 6.18 accepts a token fd past it
    Cmd.BTF_GET_NEXT_ID: (uapi.GetIdAttr, "next_id"),
    Cmd.MAP_FREEZE: (uapi.MapFreezeAttr, "map_fd"),
    # 6.18's on every profile (5.6 ends at ctx_out; flags and cpu are 5.10, batch_size 5.18)
    Cmd.PROG_TEST_RUN: (uapi.TestRunAttr, "batch_size"),
}
#: Their ends (where the zero tail starts).
COMMON_ATTR_END: dict[int, int] = {
    cmd: uapi.end_of(*last) for cmd, last in COMMON_LAST_FIELD.items()}
