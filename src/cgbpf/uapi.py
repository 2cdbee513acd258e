"""The bpf(2) ABI, defined once: commands, types, flags, the ctypes layouts of the
``union bpf_attr`` variants and info structs that cgbpf uses, and the few other Linux
facts around them (file system magics, capability numbers).

Each layout is a class declared field by field (see :class:`Layout`) that also names each
field's C member, so a test can compare offsets and sizes with the system's
``<linux/bpf.h>``, and mypy and the constructor reject a misspelt field.  Offsets of fields
newer than that header are those measured on 6.18 (docs/kernel.md §1.4).
"""

from __future__ import annotations

import ctypes
import enum
import os
import struct
import sys
from _thread import _local as thread_local  # threading.local, without threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar, cast

from ._doc import DocEnumType

if TYPE_CHECKING:
    from _ctypes import _PyCStructType as _StructType

    from typing_extensions import dataclass_transform  # mypy has it, whatever is installed
else:
    _StructType = type(ctypes.Structure)
    if sys.version_info >= (3, 11):
        from typing import dataclass_transform
    else:  # 3.10: the decorator only informs type checkers, which read the branch above

        def dataclass_transform(**_: Any) -> Any:
            return lambda cls: cls

#: bpf(2) syscall number per machine (``uname -m``).
SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
BPF_SYSCALL = SYSCALL_NR.get(os.uname().machine, 321)

#: ``sizeof(union bpf_attr)`` on 6.18; bigger attrs must be zero past this (§1.4).
ATTR_SIZE = 168
#: Largest attr the syscall accepts at all (``PAGE_SIZE``), else E2BIG.
ATTR_MAX = 4096
#: ``BPF_CGROUP_MAX_PROGS``: entries per (cgroup, attach type) list.
MAX_PROGS = 64
BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8


class Cmd(enum.IntEnum, metaclass=DocEnumType):
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
    PROG_TEST_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    BTF_LOAD = 18  # 4.18
    BTF_GET_FD_BY_ID = 19  # 4.18
    MAP_FREEZE = 22  # 5.2
    BTF_GET_NEXT_ID = 23  # 5.4
    LINK_CREATE = 28
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    LINK_DETACH = 34


class ProgType(enum.IntEnum, metaclass=DocEnumType):
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


class MapType(enum.IntEnum, metaclass=DocEnumType):
    """Map types cgbpf creates."""

    HASH = 1
    ARRAY = 2
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    CGROUP_STORAGE = 19
    PERCPU_CGROUP_STORAGE = 21


class AttachType(enum.IntEnum, metaclass=DocEnumType):
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


class LinkType(enum.IntEnum, metaclass=DocEnumType):
    """``bpf_link_type`` values cgbpf names (others are reported as plain ints)."""

    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6


class AttachMode(enum.IntEnum, metaclass=DocEnumType):
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
# OBJ_GET ``file_flags``, *_GET_FD_BY_ID ``open_flags`` and MAP_CREATE ``map_flags``.
F_RDONLY = 1 << 3  # map_flags: syscall side read-only (4.15)
F_WRONLY = 1 << 4  # map_flags: syscall side write-only (4.15)
# MAP_CREATE ``map_flags`` (the program side; what libbpf sets for global data).
F_RDONLY_PROG = 1 << 7  # programs may only read the map (5.2: .rodata)
F_WRONLY_PROG = 1 << 8  # programs may only write it (5.2)
F_MMAPABLE = 1 << 10  # an ARRAY whose values can be mmap()ed (5.5)
F_PATH_FD = 1 << 14
# PROG_LOAD ``prog_flags`` (6.18; every other bit is EINVAL).
F_STRICT_ALIGNMENT = 1 << 0
F_ANY_ALIGNMENT = 1 << 1
F_TEST_RND_HI32 = 1 << 2
F_TEST_STATE_FREQ = 1 << 3
F_SLEEPABLE = 1 << 4
F_XDP_HAS_FRAGS = 1 << 5
F_XDP_DEV_BOUND_ONLY = 1 << 6
F_TEST_REG_INVARIANTS = 1 << 7
F_TOKEN_FD = 1 << 16
# MAP_UPDATE_ELEM / MAP_LOOKUP_ELEM ``flags``.
ANY, NOEXIST, EXIST = 0, 1, 2
F_LOCK = 1 << 2

# ``ld_imm64`` / call ``src_reg`` (asm has the map ones: PSEUDO_MAP_FD 1, PSEUDO_MAP_VALUE 2).
PSEUDO_CALL = 1  # call: a bpf-to-bpf call, imm = offset of the callee (4.16)
PSEUDO_FUNC = 4  # ld_imm64: the address of a subprogram, imm = its offset (5.13)

# PROG_LOAD log levels (include/linux/bpf_verifier.h: not in the uapi header).
LOG_LEVEL_1 = 1
LOG_LEVEL_2 = 2
LOG_STATS = 4
LOG_FIXED = 8  # a log too small keeps its head, not its tail
LOG_MASK = LOG_LEVEL_1 | LOG_LEVEL_2 | LOG_STATS | LOG_FIXED

#: ``ENOTSUPP`` (524, kernel-internal, no name in errno): BTF_LOAD of an unknown BTF
#: version or header flags; PROG_TEST_RUN of a program type without a test run.
ENOTSUPP = 524
#: PROG_TEST_RUN ``flags`` of an skb test run: ``BPF_F_TEST_SKB_CHECKSUM_COMPLETE`` (5.17).
F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2

#: ``BTF_MAGIC`` and ``sizeof(struct btf_header)`` (<linux/btf.h>).
BTF_MAGIC = 0xEB9F
BTF_HEADER_SIZE = 24


def raw_btf(types: bytes, strings: bytes) -> bytes:
    """Raw BTF as BTF_LOAD takes it: a version 1 ``btf_header``, then the type section
    (``struct btf_type`` records and their data), then the string section (which starts
    with the empty string)."""
    header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, BTF_HEADER_SIZE, 0, len(types),
                         len(types), len(strings))
    return header + types + strings


def btf_type(name_off: int, kind: int, vlen: int, size_or_type: int, *data: int,
             kflag: bool = False) -> bytes:
    """One ``struct btf_type`` of ``kind`` (``BTF_KIND_*``), followed by its data as u32
    words (signed values are taken modulo 2**32)."""
    info = kflag << 31 | kind << 24 | vlen
    return struct.pack(f"<III{len(data)}I", name_off, info, size_or_type,
                       *(d & 0xFFFFFFFF for d in data))


# Around bpf(2).
#: ``statfs`` magic numbers (<linux/magic.h>): what a path or an fd is on.
CGROUP2_MAGIC = 0x63677270  # CGROUP2_SUPER_MAGIC
CGROUP1_MAGIC = 0x27E0EB  # CGROUP_SUPER_MAGIC
BPF_FS_MAGIC = 0xCAFE4A11
TMPFS_MAGIC = 0x01021994
ANON_INODE_FS_MAGIC = 0x09041934  # the fd of a program, map or link
#: Linux capability numbers cgbpf reports on (<linux/capability.h>).
CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_BPF": 39}
#: capset(2)/capget(2) header version 3 (``_LINUX_CAPABILITY_VERSION_3``: 64-bit sets).
CAPABILITY_VERSION_3 = 0x20080522
#: ``AT_FDCWD``: the ``path_fd`` that means "relative to the current directory".
AT_FDCWD = -100

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
# Layouts.  Each one is a class, declared once: its fields in order, each with the Python
# type a reader and a type checker see, and (the value) its C type and the C member it
# mirrors -- the field's own name unless given; ``pad`` has no member.  From that the
# class builds its ctypes ``_fields_``, and tests/test_uapi.py compares every offset and
# size with <linux/bpf.h>.  Field names are checked where they are written: mypy knows
# each layout's fields (``dataclass_transform``: a misspelt keyword or attribute is an
# error), and at run time an unknown keyword is a ``TypeError`` naming the layout, the
# field and the valid fields, an unknown attribute an ``AttributeError`` (no ``__dict__``).

U8, U32, U64, S32 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32
_OWN = ""  # the C member has the field's own name


class Field(NamedTuple):
    """One field of a layout: its name, its ctypes type, its C member (None: padding)."""

    name: str
    ctype: Any
    c_member: str | None


class _Decl:
    """A field declaration (what :func:`u32` and the others return), until the class
    that holds it is built."""

    __slots__ = ("c_member", "ctype")

    def __init__(self, ctype: Any, c_member: str | None) -> None:
        self.ctype, self.c_member = ctype, c_member


def u32(c_member: str = _OWN) -> int:
    """A ``__u32`` field; ``c_member`` if its C name differs (``"query.target_fd"``)."""
    return cast(int, _Decl(U32, c_member))


def u64(c_member: str = _OWN) -> int:
    """A ``__u64`` field (also the ``__aligned_u64`` user pointers)."""
    return cast(int, _Decl(U64, c_member))


def s32(c_member: str = _OWN) -> int:
    """A ``__s32`` field."""
    return cast(int, _Decl(S32, c_member))


def chars(n: int, c_member: str = _OWN) -> bytes:
    """A ``char[n]`` field: it reads as the bytes before the first NUL."""
    return cast(bytes, _Decl(ctypes.c_char * n, c_member))


def u8s(n: int, c_member: str = _OWN) -> ctypes.Array[ctypes.c_uint8]:
    """A ``__u8[n]`` field: it reads as a ctypes array (``bytes(info.tag)``)."""
    return cast("ctypes.Array[ctypes.c_uint8]", _Decl(U8 * n, c_member))


def pad(n: int) -> ctypes.Array[ctypes.c_uint8]:
    """``n`` bytes with no C member to compare with (padding, room the kernel fills)."""
    return cast("ctypes.Array[ctypes.c_uint8]", _Decl(U8 * n, None))


#: Every layout by class name, in declaration order.
LAYOUTS: dict[str, type[Layout]] = {}


class _LayoutType(_StructType):
    """The layouts' metaclass: gives every layout empty ``__slots__`` (no instance
    ``__dict__``, so a misspelt attribute cannot be set), and builds ``_fields_`` from a new
    layout's declarations.  That has to be done after the class exists: ctypes takes
    ``_fields_`` only then (in ``__init_subclass__`` it raises "ctypes state is not
    initialized")."""

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any],
                **kwargs: Any) -> _LayoutType:
        return super().__new__(mcs, name, bases, {"__slots__": (), **ns}, **kwargs)

    def __init__(cls, name: str, bases: tuple[type, ...], ns: dict[str, Any],
                 **kwargs: Any) -> None:
        super().__init__(name, bases, ns, **kwargs)
        decls = {k: v for k, v in ns.items() if isinstance(v, _Decl)}
        if not decls:  # Layout itself
            return
        annotated = set(ns.get("__annotations__", {}))
        if annotated != decls.keys():
            raise TypeError(f"layout {name}: every field needs both an annotation and a"
                            f" declaration; unpaired: {sorted(annotated ^ decls.keys())}")
        fields = tuple(Field(k, d.ctype, k if d.c_member == _OWN else d.c_member)
                       for k, d in decls.items())
        cls.fields = fields
        cls.c_members = {f.name: f.c_member for f in fields if f.c_member is not None}
        cls.field_names = frozenset(decls)
        cls._fields_ = [(f.name, f.ctype) for f in fields]
        LAYOUTS[name] = cast("type[Layout]", cls)


_struct_init = ctypes.Structure.__init__
L = TypeVar("L", bound="Layout")


class _Scratch(thread_local):
    """Per thread: layout -> (its reusable instance, the bytes under it, zeros)."""

    def __init__(self) -> None:
        self.attrs: dict[type, tuple[Any, bytearray, bytes]] = {}


_scratch = _Scratch()


def _unknown(layout: type[Layout], names: Iterable[str]) -> str:
    return (f"{layout.__name__} ({layout.c_type}) has no field"
            f" {', '.join(repr(n) for n in sorted(names))}; its fields are"
            f" {', '.join(f.name for f in layout.fields)}")


@dataclass_transform(kw_only_default=True)
class Layout(ctypes.Structure, metaclass=_LayoutType):
    """Base of every layout.  A layout is declared as
    ``class Name(Layout, c_type="union bpf_attr")`` (the C type it mirrors) with one
    annotated field per line, in the C order (``link_fd: int = u32("link_update.link_fd")``).
    It is built with keywords only; the fields it is not given are zero, as the kernel
    wants unused attr bytes."""

    c_type: ClassVar[str]
    c_members: ClassVar[dict[str, str]]
    fields: ClassVar[tuple[Field, ...]]
    field_names: ClassVar[frozenset[str]]

    if TYPE_CHECKING:
        # No fallback for other names: without these, ctypes' stubs would give any
        # attribute of a Structure the type Any, and a misspelt field would pass.  (At run
        # time the empty __slots__ refuse it.)
        __getattr__: ClassVar[None]  # type: ignore[assignment, misc]
        __setattr__: ClassVar[None]  # type: ignore[assignment, misc]

    def __init_subclass__(cls, *, c_type: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.c_type = c_type

    def __init__(self, **fields: Any) -> None:
        try:
            _struct_init(self, **fields)
        except AttributeError:  # a name without a field: the slots refuse it
            raise TypeError(_unknown(type(self), fields.keys() - self.field_names)) from None

    @classmethod
    def scratch(cls: type[L], **fields: Any) -> L:
        """This thread's own instance of the layout, zeroed, then given ``fields``: for an
        attr that lives for one bpf(2) call (the kernel copies it in), so that a call
        makes no ctypes object (0.6 us of a 1 us call).  The next ``scratch()`` of the
        same layout in this thread reuses it: read its outputs before that."""
        try:
            inst, buf, zeros = _scratch.attrs[cls]
        except KeyError:
            buf = bytearray(ctypes.sizeof(cls))
            inst, zeros = cls.from_buffer(buf), bytes(len(buf))
            _scratch.attrs[cls] = inst, buf, zeros
        buf[:] = zeros
        if fields:
            try:
                _struct_init(inst, **fields)
            except AttributeError:
                raise TypeError(_unknown(cls, fields.keys() - cls.field_names)) from None
        return cast("L", inst)


def _member(layout: type[Layout], field: str) -> Any:
    """The ctypes descriptor of ``layout.field`` (offset, size)."""
    if field not in layout.field_names:
        raise TypeError(_unknown(layout, [field]))
    return getattr(layout, field)


def offset_of(layout: type[Layout], field: str) -> int:
    """``offsetof``: where ``field`` of ``layout`` starts."""
    return int(_member(layout, field).offset)


def size_of(layout: type[Layout], field: str) -> int:
    """The size of ``field`` of ``layout``."""
    return int(_member(layout, field).size)


def end_of(layout: type[Layout], field: str) -> int:
    """``offsetofend``: where ``field`` of ``layout`` ends (its offset plus its size); the
    end of a command's last field is where its attr's zero tail starts (§1.4)."""
    return offset_of(layout, field) + size_of(layout, field)


_ATTR = "union bpf_attr"


class MapCreateAttr(Layout, c_type=_ATTR):
    map_type: int = u32()
    key_size: int = u32()
    value_size: int = u32()
    max_entries: int = u32()
    map_flags: int = u32()
    inner_map_fd: int = u32()
    numa_node: int = u32()
    map_name: bytes = chars(BPF_OBJ_NAME_LEN)
    map_ifindex: int = u32()
    btf_fd: int = u32()  # 4.18
    btf_key_type_id: int = u32()
    btf_value_type_id: int = u32()
    btf_vmlinux_value_type_id: int = u32()  # 5.6 (struct_ops)
    map_extra: int = u64()  # 5.16


class MapFreezeAttr(Layout, c_type=_ATTR):
    map_fd: int = u32()


class BtfLoadAttr(Layout, c_type=_ATTR):
    btf: int = u64()
    btf_log_buf: int = u64()
    btf_size: int = u32()
    btf_log_size: int = u32()
    btf_log_level: int = u32()
    btf_log_true_size: int = u32()  # 6.4
    btf_flags: int = u32()  # 6.9
    btf_token_fd: int = s32()  # 6.9


class MapElemAttr(Layout, c_type=_ATTR):
    map_fd: int = u32()
    key: int = u64()
    value: int = u64()  # also next_key (MAP_GET_NEXT_KEY)
    flags: int = u64()


class ProgLoadAttr(Layout, c_type=_ATTR):
    prog_type: int = u32()
    insn_cnt: int = u32()
    insns: int = u64()
    license: int = u64()
    log_level: int = u32()
    log_size: int = u32()
    log_buf: int = u64()
    kern_version: int = u32()
    prog_flags: int = u32()
    prog_name: bytes = chars(BPF_OBJ_NAME_LEN)
    prog_ifindex: int = u32()
    expected_attach_type: int = u32()
    prog_btf_fd: int = u32()
    func_info_rec_size: int = u32()
    func_info: int = u64()
    func_info_cnt: int = u32()
    line_info_rec_size: int = u32()
    line_info: int = u64()
    line_info_cnt: int = u32()
    attach_btf_id: int = u32()
    attach_prog_fd: int = u32()


class ObjAttr(Layout, c_type=_ATTR):
    pathname: int = u64()
    bpf_fd: int = u32()
    file_flags: int = u32()
    path_fd: int = s32()


class ProgAttachAttr(Layout, c_type=_ATTR):
    target_fd: int = u32()
    attach_bpf_fd: int = u32()
    attach_type: int = u32()
    attach_flags: int = u32()
    replace_bpf_fd: int = u32()
    relative_fd: int = u32()
    expected_revision: int = u64()


class QueryAttr(Layout, c_type=_ATTR):
    target_fd: int = u32("query.target_fd")
    attach_type: int = u32("query.attach_type")
    query_flags: int = u32("query.query_flags")
    attach_flags: int = u32("query.attach_flags")
    prog_ids: int = u64("query.prog_ids")
    prog_cnt: int = u32("query.prog_cnt")
    prog_attach_flags: int = u64("query.prog_attach_flags")
    link_ids: int = u64("query.link_ids")
    link_attach_flags: int = u64("query.link_attach_flags")
    revision: int = u64("query.revision")


class GetIdAttr(Layout, c_type=_ATTR):
    start_id: int = u32()
    next_id: int = u32()
    open_flags: int = u32()


class InfoAttr(Layout, c_type=_ATTR):
    bpf_fd: int = u32("info.bpf_fd")
    info_len: int = u32("info.info_len")
    info: int = u64("info.info")


class TestRunAttr(Layout, c_type=_ATTR):
    """``attr.test`` (PROG_TEST_RUN): in, the program, the packet and the optional
    context; out, ``retval``, ``duration`` (ns per run), ``data_size_out``, ``ctx_size_out``."""

    prog_fd: int = u32("test.prog_fd")
    retval: int = u32("test.retval")
    data_size_in: int = u32("test.data_size_in")
    data_size_out: int = u32("test.data_size_out")
    data_in: int = u64("test.data_in")
    data_out: int = u64("test.data_out")
    repeat: int = u32("test.repeat")
    duration: int = u32("test.duration")
    ctx_size_in: int = u32("test.ctx_size_in")  # 5.2
    ctx_size_out: int = u32("test.ctx_size_out")
    ctx_in: int = u64("test.ctx_in")
    ctx_out: int = u64("test.ctx_out")
    flags: int = u32("test.flags")  # 5.10
    cpu: int = u32("test.cpu")
    batch_size: int = u32("test.batch_size")  # 5.18


class LinkCreateAttr(Layout, c_type=_ATTR):
    prog_fd: int = u32("link_create.prog_fd")
    target_fd: int = u32("link_create.target_fd")
    attach_type: int = u32("link_create.attach_type")
    flags: int = u32("link_create.flags")
    relative_fd: int = u32("link_create.cgroup.relative_fd")
    expected_revision: int = u64("link_create.cgroup.expected_revision")


class LinkUpdateAttr(Layout, c_type=_ATTR):
    link_fd: int = u32("link_update.link_fd")
    new_prog_fd: int = u32("link_update.new_prog_fd")
    flags: int = u32("link_update.flags")
    old_prog_fd: int = u32("link_update.old_prog_fd")


class LinkDetachAttr(Layout, c_type=_ATTR):
    link_fd: int = u32("link_detach.link_fd")


class LinkInfo(Layout, c_type="struct bpf_link_info"):
    type: int = u32()
    id: int = u32()
    prog_id: int = u32()
    cgroup_id: int = u64("cgroup.cgroup_id")
    attach_type: int = u32("cgroup.attach_type")
    _reserved: ctypes.Array[ctypes.c_uint8] = pad(36)  # to the 64 bytes 6.18 writes


class ProgInfo(Layout, c_type="struct bpf_prog_info"):
    type: int = u32()
    id: int = u32()
    tag: ctypes.Array[ctypes.c_uint8] = u8s(BPF_TAG_SIZE)
    jited_prog_len: int = u32()
    xlated_prog_len: int = u32()
    jited_prog_insns: int = u64()
    xlated_prog_insns: int = u64()
    load_time: int = u64()
    created_by_uid: int = u32()
    nr_map_ids: int = u32()
    map_ids: int = u64()
    name: bytes = chars(BPF_OBJ_NAME_LEN)
    ifindex: int = u32()
    _reserved: ctypes.Array[ctypes.c_uint8] = pad(4)  # gpl_compatible:1, 31 pad bits
    netns_dev: int = u64()
    netns_ino: int = u64()
    nr_jited_ksyms: int = u32()
    nr_jited_func_lens: int = u32()
    jited_ksyms: int = u64()
    jited_func_lens: int = u64()
    btf_id: int = u32()
    func_info_rec_size: int = u32()
    func_info: int = u64()
    nr_func_info: int = u32()
    nr_line_info: int = u32()
    line_info: int = u64()
    jited_line_info: int = u64()
    nr_jited_line_info: int = u32()
    line_info_rec_size: int = u32()
    jited_line_info_rec_size: int = u32()
    nr_prog_tags: int = u32()
    prog_tags: int = u64()
    run_time_ns: int = u64()
    run_cnt: int = u64()
    recursion_misses: int = u64()
    verified_insns: int = u32()


class MapInfo(Layout, c_type="struct bpf_map_info"):
    type: int = u32()
    id: int = u32()
    key_size: int = u32()
    value_size: int = u32()
    max_entries: int = u32()
    map_flags: int = u32()
    name: bytes = chars(BPF_OBJ_NAME_LEN)
    ifindex: int = u32()
    btf_vmlinux_value_type_id: int = u32()
    netns_dev: int = u64()
    netns_ino: int = u64()
    btf_id: int = u32()
    btf_key_type_id: int = u32()
    btf_value_type_id: int = u32()
    _reserved: ctypes.Array[ctypes.c_uint8] = pad(4)  # alignment
    map_extra: int = u64()


class BtfInfo(Layout, c_type="struct bpf_btf_info"):
    btf: int = u64()
    btf_size: int = u32()
    id: int = u32()
    name: int = u64()  # 5.11
    name_len: int = u32()
    kernel_btf: int = u32()


#: Sizes measured on 6.18 for structs that outgrew the 6.1 headers (§1.4).
MEASURED_SIZES = {"struct bpf_link_info": 64, "struct bpf_prog_info": 232, "union bpf_attr": 168}
#: ``sizeof(struct bpf_link_info)`` before 6.6; since 6.6 it is ``sizeof(LinkInfo)``, 64.
LINK_INFO_SIZE_BEFORE_6_6 = 48
#: ``sizeof(attr.link_create)`` on 6.18 (§1.4): LINK_CREATE's zero tail starts there from
#: 5.9 on (before, after ``flags``).  :class:`LinkCreateAttr` declares its cgroup part only.
LINK_CREATE_SIZE = 64
#: ``offsetof(union bpf_attr, prog_token_fd)`` (6.9): past :class:`ProgLoadAttr`'s fields,
#: read only with ``F_TOKEN_FD``.
PROG_TOKEN_FD_OFFSET = 144
