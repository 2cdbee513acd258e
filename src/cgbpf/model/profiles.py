"""Kernel-version profiles (KERNEL-SEMANTICS.md §16, §19).

A :class:`Profile` is a name plus a set of named features.  Every version-dependent branch
of the model asks ``profile.has("feature")``, never compares version strings, so a custom
kernel (a distribution backport, §19) is just another feature set::

    Profile.of("6.12.100")                       # as measured in §19
    Profile.of("6.18").without("mprog_cgroup")   # compose your own
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import uapi

#: Feature name -> (first mainline version, what it switches on).
FEATURES: dict[str, tuple[str, str]] = {
    "links": ("5.7", "LINK_CREATE/LINK_UPDATE for cgroups, link pinning"),
    "cap_bpf": ("5.8", "CAP_BPF exists; attach/detach/query no longer need CAP_NET_ADMIN"),
    "link_ids": ("5.8", "link IDs, LINK_GET_FD_BY_ID/NEXT_ID, link info and fdinfo"),
    "enolink_on_update": ("5.8", "LINK_UPDATE of a defunct link gives ENOLINK (was EINVAL)"),
    "replace_self": ("5.8", "MULTI|REPLACE may replace a program with itself"),
    "getpeername_hooks": ("5.8", "attach types INET4/6_GETPEERNAME/GETSOCKNAME"),
    "link_detach": ("5.9", "BPF_LINK_DETACH"),
    "sock_release_hook": ("5.9", "attach type INET_SOCK_RELEASE"),
    "link_create_ext_attr": ("5.9", "LINK_CREATE's attr grows past `flags` (64 bytes)"),
    "prog_attach_flags_query": ("6.0", "query.prog_attach_flags; effective attach_flags 0"),
    "lsm_cgroup": ("6.0", "attach type LSM_CGROUP"),
    "mprog_uapi": ("6.6", "attr fields relative_fd/expected_revision, query link_ids/revision;"
                          " PROG_DETACH rejects attach_flags/relative_fd"),
    "link_info_64": ("6.6", "struct bpf_link_info is 64 bytes (48 before)"),
    "obj_path_fd": ("6.6", "BPF_F_PATH_FD and path_fd for OBJ_PIN/OBJ_GET (6.5)"),
    "unix_hooks": ("6.7", "attach types UNIX_CONNECT..UNIX_GETSOCKNAME (49-53)"),
    "bpf_net_capable": ("6.7", "CAP_SYS_ADMIN counts as CAP_NET_ADMIN for attach/query"),
    "skb_link_type_check": ("6.9", "LINK_CREATE checks a CGROUP_SKB prog's attach type"),
    "preorder_attach": ("6.15", "BPF_F_PREORDER for PROG_ATTACH"),
    "preorder_link": ("6.17", "BPF_F_PREORDER for LINK_CREATE"),
    "mprog_cgroup": ("6.17", "BEFORE/AFTER/ID/LINK anchors, revisions, expected_revision"),
}

#: Mainline versions with a profile, oldest first.
MAINLINE = ("5.6", "5.7", "5.8", "5.9", "6.0", "6.1", "6.6", "6.15", "6.17", "6.18")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _mainline(version: str) -> frozenset[str]:
    return frozenset(f for f, (since, _) in FEATURES.items() if _key(since) <= _key(version))


#: Attach types that appeared after 5.6, by the feature that brings them (§2.1).
ATTACH_TYPE_FEATURE: dict[uapi.AttachType, str] = {
    **{t: "getpeername_hooks" for t in uapi.AttachType if t.name.endswith("NAME")
       and not t.name.startswith("CGROUP_UNIX")},
    uapi.AttachType.CGROUP_INET_SOCK_RELEASE: "sock_release_hook",
    uapi.AttachType.LSM_CGROUP: "lsm_cgroup",
    **{t: "unix_hooks" for t in uapi.AttachType if t.name.startswith("CGROUP_UNIX")},
}


@dataclass(frozen=True)
class Profile:
    """A kernel as a feature set (see :data:`FEATURES`)."""

    name: str
    features: frozenset[str]

    def __post_init__(self) -> None:
        unknown = set(self.features) - FEATURES.keys()
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {sorted(FEATURES)}")

    @classmethod
    def of(cls, version: str) -> Profile:
        """The profile of a mainline version in :data:`MAINLINE`, or "6.12.100" (§19)."""
        if version == "6.1":  # as measured on Debian 6.1.192: the 6.9 skb check backported
            return cls(version, _mainline(version) | {"skb_link_type_check"})
        if version in MAINLINE:
            return cls(version, _mainline(version))
        if version == "6.12.100":  # §19: Debian 6.12.100 = 6.9 features + PREORDER attach
            return cls(version, _mainline("6.9") | {"preorder_attach"})
        raise ValueError(f"no profile for {version!r}; known: {[*MAINLINE, '6.12.100']}")

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
        if value not in uapi.CGROUP_PROG_TYPE:
            return False
        feature = ATTACH_TYPE_FEATURE.get(uapi.AttachType(value))
        return feature is None or self.has(feature)

    def attr_end(self, cmd: int) -> int:
        """End of ``cmd``'s last attr field: later bytes must be zero (§1.4 CHECK_ATTR)."""
        if cmd in (uapi.Cmd.PROG_ATTACH, uapi.Cmd.PROG_DETACH):
            if self.has("mprog_uapi"):
                return 32
            # Before 6.6 PROG_DETACH's last field is attach_type (measured on Debian 6.1).
            return 20 if cmd == uapi.Cmd.PROG_ATTACH else 12
        if cmd == uapi.Cmd.PROG_QUERY:
            if self.has("mprog_uapi"):
                return 64
            return 40 if self.has("prog_attach_flags_query") else 28
        if cmd == uapi.Cmd.LINK_CREATE:
            return 64 if self.has("link_create_ext_attr") else 16
        if cmd in (uapi.Cmd.OBJ_PIN, uapi.Cmd.OBJ_GET):
            return 20 if self.has("obj_path_fd") else 16
        return COMMON_ATTR_END[cmd]

    @property
    def link_info_size(self) -> int:
        """``sizeof(struct bpf_link_info)`` (§13, §19)."""
        return 64 if self.has("link_info_64") else 48


#: Last-field ends of the commands whose attr does not vary across the profiles.  For
#: MAP_CREATE and PROG_LOAD this is the end of the fields the model implements: any later
#: field (BTF, offload, tokens, ...) must be zero in the model.
COMMON_ATTR_END: dict[int, int] = {
    uapi.Cmd.MAP_CREATE: 44,
    uapi.Cmd.MAP_LOOKUP_ELEM: 32,
    uapi.Cmd.MAP_UPDATE_ELEM: 32,
    uapi.Cmd.MAP_DELETE_ELEM: 16,
    uapi.Cmd.MAP_GET_NEXT_KEY: 24,
    uapi.Cmd.PROG_LOAD: 116,
    uapi.Cmd.PROG_GET_NEXT_ID: 8,
    uapi.Cmd.MAP_GET_NEXT_ID: 8,
    uapi.Cmd.LINK_GET_NEXT_ID: 8,
    uapi.Cmd.PROG_GET_FD_BY_ID: 4,
    uapi.Cmd.MAP_GET_FD_BY_ID: 12,
    uapi.Cmd.LINK_GET_FD_BY_ID: 4,
    uapi.Cmd.OBJ_GET_INFO_BY_FD: 16,
    uapi.Cmd.LINK_UPDATE: 16,
    uapi.Cmd.LINK_DETACH: 4,
}
