"""The bpf(2) ABI, defined once: commands, types, flags and the ctypes layouts of the
``union bpf_attr`` variants and info structs that cgbpf uses.

Every layout is built from one declarative table (``LAYOUTS``) that also names each
field's C member, so a test can compare offsets and sizes with the system's
``<linux/bpf.h>``.  Offsets of fields newer than that header are those measured on 6.18
(KERNEL-SEMANTICS.md §1.4).
"""

from __future__ import annotations

import ctypes
import enum
import platform
from typing import Any, ClassVar

#: bpf(2) syscall number per machine (``uname -m``).
SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
BPF_SYSCALL = SYSCALL_NR.get(platform.machine(), 321)

#: ``sizeof(union bpf_attr)`` on 6.18; bigger attrs must be zero past this (§1.4).
ATTR_SIZE = 168
#: Largest attr the syscall accepts at all (``PAGE_SIZE``), else E2BIG.
ATTR_MAX = 4096
#: ``BPF_CGROUP_MAX_PROGS``: entries per (cgroup, attach type) list.
MAX_PROGS = 64
BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8


class Cmd(enum.IntEnum):
    """bpf(2) commands (§1.1)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    LINK_DETACH = 34


class ProgType(enum.IntEnum):
    """Program types: the cgroup ones, plus a few used to test mismatches (§1.3)."""

    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    XDP = 6
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    SOCK_OPS = 13
    CGROUP_DEVICE = 15
    CGROUP_SOCK_ADDR = 18
    CGROUP_SYSCTL = 23
    CGROUP_SOCKOPT = 25
    LSM = 29


class MapType(enum.IntEnum):
    """Map types cgbpf creates."""

    HASH = 1
    ARRAY = 2


class AttachType(enum.IntEnum):
    """The cgroup attach types (§2.1), with the kernel's numbering."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    CGROUP_DEVICE = 6
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    CGROUP_INET_SOCK_RELEASE = 34
    LSM_CGROUP = 43
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53


class LinkType(enum.IntEnum):
    """``bpf_link_type`` values cgbpf names (others are reported as plain ints)."""

    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6


class AttachMode(enum.IntEnum):
    """A cgroup hook's mode: the cgroup-level flags word (§1.2)."""

    EXCLUSIVE = 0  # "NONE": one program, descendants may not attach
    OVERRIDE = 1  # BPF_F_ALLOW_OVERRIDE
    MULTI = 2  # BPF_F_ALLOW_MULTI


# Flags (§1.2).
F_ALLOW_OVERRIDE = 1 << 0
F_ALLOW_MULTI = 1 << 1
F_REPLACE = 1 << 2
F_BEFORE = 1 << 3
F_AFTER = 1 << 4
F_ID = 1 << 5
F_PREORDER = 1 << 6
F_LINK = 1 << 13
F_QUERY_EFFECTIVE = 1 << 0
F_RDONLY = 1 << 3
F_WRONLY = 1 << 4
F_PATH_FD = 1 << 14

# Prog load flags / log levels.
LOG_LEVEL_1 = 1

_SOCK_ADDR = ProgType.CGROUP_SOCK_ADDR
_SOCK = ProgType.CGROUP_SOCK
#: Attach type -> the program type it takes (§2.1).
CGROUP_PROG_TYPE: dict[AttachType, ProgType] = {
    AttachType.CGROUP_INET_INGRESS: ProgType.CGROUP_SKB,
    AttachType.CGROUP_INET_EGRESS: ProgType.CGROUP_SKB,
    AttachType.CGROUP_INET_SOCK_CREATE: _SOCK,
    AttachType.CGROUP_INET4_POST_BIND: _SOCK,
    AttachType.CGROUP_INET6_POST_BIND: _SOCK,
    AttachType.CGROUP_INET_SOCK_RELEASE: _SOCK,
    AttachType.CGROUP_SOCK_OPS: ProgType.SOCK_OPS,
    AttachType.CGROUP_DEVICE: ProgType.CGROUP_DEVICE,
    AttachType.CGROUP_SYSCTL: ProgType.CGROUP_SYSCTL,
    AttachType.CGROUP_GETSOCKOPT: ProgType.CGROUP_SOCKOPT,
    AttachType.CGROUP_SETSOCKOPT: ProgType.CGROUP_SOCKOPT,
    AttachType.LSM_CGROUP: ProgType.LSM,
    **{
        t: _SOCK_ADDR
        for t in AttachType
        if t.name.startswith(("CGROUP_INET4_", "CGROUP_INET6_", "CGROUP_UDP", "CGROUP_UNIX"))
        and "POST_BIND" not in t.name
    },
}

#: Program types whose attach type must equal the program's ``expected_attach_type``
#: (§2.1 column "attach requires eat == attach_type").
EAT_ENFORCED = frozenset({_SOCK, _SOCK_ADDR, ProgType.CGROUP_SOCKOPT, ProgType.LSM})


def name_of(value: int) -> str:
    """An enum member's name, or the plain number for values cgbpf has no name for."""
    return getattr(value, "name", str(value))


# ---------------------------------------------------------------------------------------
# Layouts.  Each entry: struct name -> (C type, [(field, ctype, C member or None)]).
# ``None`` marks padding or reserved bytes that have no C member to compare with.

U32, U64, S32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32
Field = tuple[str, Any, "str | None"]

LAYOUTS: dict[str, tuple[str, list[Field]]] = {
    "MapCreateAttr": ("union bpf_attr", [
        ("map_type", U32, "map_type"),
        ("key_size", U32, "key_size"),
        ("value_size", U32, "value_size"),
        ("max_entries", U32, "max_entries"),
        ("map_flags", U32, "map_flags"),
        ("inner_map_fd", U32, "inner_map_fd"),
        ("numa_node", U32, "numa_node"),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN, "map_name"),
    ]),
    "MapElemAttr": ("union bpf_attr", [
        ("map_fd", U32, "map_fd"),
        ("key", U64, "key"),
        ("value", U64, "value"),
        ("flags", U64, "flags"),
    ]),
    "ProgLoadAttr": ("union bpf_attr", [
        ("prog_type", U32, "prog_type"),
        ("insn_cnt", U32, "insn_cnt"),
        ("insns", U64, "insns"),
        ("license", U64, "license"),
        ("log_level", U32, "log_level"),
        ("log_size", U32, "log_size"),
        ("log_buf", U64, "log_buf"),
        ("kern_version", U32, "kern_version"),
        ("prog_flags", U32, "prog_flags"),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN, "prog_name"),
        ("prog_ifindex", U32, "prog_ifindex"),
        ("expected_attach_type", U32, "expected_attach_type"),
        ("prog_btf_fd", U32, "prog_btf_fd"),
        ("func_info_rec_size", U32, "func_info_rec_size"),
        ("func_info", U64, "func_info"),
        ("func_info_cnt", U32, "func_info_cnt"),
        ("line_info_rec_size", U32, "line_info_rec_size"),
        ("line_info", U64, "line_info"),
        ("line_info_cnt", U32, "line_info_cnt"),
        ("attach_btf_id", U32, "attach_btf_id"),
        ("attach_prog_fd", U32, "attach_prog_fd"),
    ]),
    "ObjAttr": ("union bpf_attr", [
        ("pathname", U64, "pathname"),
        ("bpf_fd", U32, "bpf_fd"),
        ("file_flags", U32, "file_flags"),
        ("path_fd", S32, "path_fd"),
    ]),
    "ProgAttachAttr": ("union bpf_attr", [
        ("target_fd", U32, "target_fd"),
        ("attach_bpf_fd", U32, "attach_bpf_fd"),
        ("attach_type", U32, "attach_type"),
        ("attach_flags", U32, "attach_flags"),
        ("replace_bpf_fd", U32, "replace_bpf_fd"),
        ("relative_fd", U32, "relative_fd"),
        ("expected_revision", U64, "expected_revision"),
    ]),
    "QueryAttr": ("union bpf_attr", [
        ("target_fd", U32, "query.target_fd"),
        ("attach_type", U32, "query.attach_type"),
        ("query_flags", U32, "query.query_flags"),
        ("attach_flags", U32, "query.attach_flags"),
        ("prog_ids", U64, "query.prog_ids"),
        ("prog_cnt", U32, "query.prog_cnt"),
        ("prog_attach_flags", U64, "query.prog_attach_flags"),
        ("link_ids", U64, "query.link_ids"),
        ("link_attach_flags", U64, "query.link_attach_flags"),
        ("revision", U64, "query.revision"),
    ]),
    "GetIdAttr": ("union bpf_attr", [
        ("start_id", U32, "start_id"),
        ("next_id", U32, "next_id"),
        ("open_flags", U32, "open_flags"),
    ]),
    "InfoAttr": ("union bpf_attr", [
        ("bpf_fd", U32, "info.bpf_fd"),
        ("info_len", U32, "info.info_len"),
        ("info", U64, "info.info"),
    ]),
    "LinkCreateAttr": ("union bpf_attr", [
        ("prog_fd", U32, "link_create.prog_fd"),
        ("target_fd", U32, "link_create.target_fd"),
        ("attach_type", U32, "link_create.attach_type"),
        ("flags", U32, "link_create.flags"),
        ("relative_fd", U32, "link_create.cgroup.relative_fd"),
        ("expected_revision", U64, "link_create.cgroup.expected_revision"),
    ]),
    "LinkUpdateAttr": ("union bpf_attr", [
        ("link_fd", U32, "link_update.link_fd"),
        ("new_prog_fd", U32, "link_update.new_prog_fd"),
        ("flags", U32, "link_update.flags"),
        ("old_prog_fd", U32, "link_update.old_prog_fd"),
    ]),
    "LinkDetachAttr": ("union bpf_attr", [
        ("link_fd", U32, "link_detach.link_fd"),
    ]),
    "LinkInfo": ("struct bpf_link_info", [
        ("type", U32, "type"),
        ("id", U32, "id"),
        ("prog_id", U32, "prog_id"),
        ("cgroup_id", U64, "cgroup.cgroup_id"),
        ("attach_type", U32, "cgroup.attach_type"),
        ("_reserved", ctypes.c_uint8 * 36, None),
    ]),
    "ProgInfo": ("struct bpf_prog_info", [
        ("type", U32, "type"),
        ("id", U32, "id"),
        ("tag", ctypes.c_uint8 * BPF_TAG_SIZE, "tag"),
        ("jited_prog_len", U32, "jited_prog_len"),
        ("xlated_prog_len", U32, "xlated_prog_len"),
        ("jited_prog_insns", U64, "jited_prog_insns"),
        ("xlated_prog_insns", U64, "xlated_prog_insns"),
        ("load_time", U64, "load_time"),
        ("created_by_uid", U32, "created_by_uid"),
        ("nr_map_ids", U32, "nr_map_ids"),
        ("map_ids", U64, "map_ids"),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN, "name"),
    ]),
    "MapInfo": ("struct bpf_map_info", [
        ("type", U32, "type"),
        ("id", U32, "id"),
        ("key_size", U32, "key_size"),
        ("value_size", U32, "value_size"),
        ("max_entries", U32, "max_entries"),
        ("map_flags", U32, "map_flags"),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN, "name"),
    ]),
}


class Layout(ctypes.Structure):
    """Base of every generated layout: knows its C type and C member names."""

    c_type: ClassVar[str]
    c_members: ClassVar[dict[str, str]]


def _make(name: str) -> type[Layout]:
    c_type, fields = LAYOUTS[name]
    return type(name, (Layout,), {
        "_fields_": [(f, t) for f, t, _ in fields],
        "c_type": c_type,
        "c_members": {f: m for f, _, m in fields if m is not None},
    })


# Named classes so that type checkers and readers can refer to them.
MapCreateAttr = _make("MapCreateAttr")
MapElemAttr = _make("MapElemAttr")
ProgLoadAttr = _make("ProgLoadAttr")
ObjAttr = _make("ObjAttr")
ProgAttachAttr = _make("ProgAttachAttr")
QueryAttr = _make("QueryAttr")
GetIdAttr = _make("GetIdAttr")
InfoAttr = _make("InfoAttr")
LinkCreateAttr = _make("LinkCreateAttr")
LinkUpdateAttr = _make("LinkUpdateAttr")
LinkDetachAttr = _make("LinkDetachAttr")
LinkInfo = _make("LinkInfo")
ProgInfo = _make("ProgInfo")
MapInfo = _make("MapInfo")

#: Sizes measured on 6.18 for structs that outgrew the 6.1 headers (§1.4).
MEASURED_SIZES = {"struct bpf_link_info": 64, "struct bpf_prog_info": 232, "union bpf_attr": 168}
