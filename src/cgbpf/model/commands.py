"""bpf(2) in the model: the attr-size rules (§1.4), the command table, and the commands
that are not cgroup attachment (those are in :mod:`.attach`): maps (MAP_FREEZE too),
PROG_LOAD, BTF_LOAD (the parser is :mod:`.btf`), pinning, IDs and GET_INFO_BY_FD.

The outputs go back into the caller's memory exactly where the kernel writes them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

from .. import uapi
from ..uapi import Cmd
from . import attach, bpffs, btf, memory, verifier
from .memory import Attr, fail
from .objects import (
    ARRAY_TYPES,
    F_NO_PREALLOC,
    LRU_TYPES,
    PERCPU_TYPES,
    BtfObj,
    IdSpace,
    Link,
    Map,
    Obj,
    Prog,
)
from .process import POSSIBLE_CPUS, ObjFile, Process, open_flags, verified_insns
from .vfs import PATH_MAX, Dir, R, W
from .vm import interp, storage, testrun
from .vm.errors import VerifierWouldReject

Handler = Callable[[Process, Attr], int]

MAP_VALUE_MAX = 1 << 20  # the model's value-size limit (E2BIG); the kernel's is larger
MAP_BYTES_MAX = 1 << 32  # the model's limit on max_entries x element size (E2BIG)
HASH_KEY_MAX = 512  # MAX_BPF_STACK
INSNS_MAX = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS
LICENSE_MAX = 127
PROG_INFO_SIZE = uapi.MEASURED_SIZES["struct bpf_prog_info"]  # §1.4
MAP_INFO_SIZE = 88  # [S] struct bpf_map_info up to map_extra (the model's choice)
NET_ADMIN_TYPES = {uapi.ProgType.SCHED_CLS, uapi.ProgType.XDP, uapi.ProgType.SOCK_OPS,
                   uapi.ProgType.CGROUP_DEVICE, uapi.ProgType.CGROUP_SOCK,
                   uapi.ProgType.CGROUP_SOCK_ADDR, uapi.ProgType.CGROUP_SOCKOPT,
                   uapi.ProgType.CGROUP_SYSCTL}
#: PROG_LOAD ``prog_flags`` every profile knows (5.6); every other bit is EINVAL unless
#: the profile has its feature (:data:`PROG_FLAG_FEATURES`).  TOKEN_FD (6.9) is known to
#: every profile: without a token it fails with EINVAL (fd 0) either way, and the model
#: has no BPF tokens.
PROG_FLAGS = (uapi.F_STRICT_ALIGNMENT | uapi.F_ANY_ALIGNMENT | uapi.F_TEST_RND_HI32
              | uapi.F_TEST_STATE_FREQ | uapi.F_TOKEN_FD)
PROG_FLAG_FEATURES = {
    uapi.F_SLEEPABLE: "prog_flag_sleepable", uapi.F_XDP_HAS_FRAGS: "prog_flag_xdp_frags",
    uapi.F_XDP_DEV_BOUND_ONLY: "prog_flag_xdp_dev_bound",
    uapi.F_TEST_REG_INVARIANTS: "prog_flag_reg_invariants"}
#: Of the model's program types, those the verifier lets be sleepable (measured: KPROBE,
#: for uprobes; LSM is refused earlier on the reference machine).
SLEEPABLE_TYPES = {uapi.ProgType.KPROBE, uapi.ProgType.LSM}
SLEEPABLE_LOG = ("Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can "
                 "be sleepable")
BTF_INFO_SIZE = ctypes.sizeof(uapi.BtfInfo)
#: PROG_LOAD fields the model does not implement: they must be zero (EINVAL).
UNSUPPORTED_LOAD_FIELDS = ("prog_ifindex", "attach_btf_id", "attach_prog_fd")
#: MAP_CREATE fields the model does not implement: they must be zero (EINVAL; the
#: kernel's errno differs: EOPNOTSUPP for a device without map offload).
UNSUPPORTED_MAP_FIELDS = ("map_ifindex",)
F_NO_COMMON_LRU, F_NUMA_NODE, F_ZERO_SEED, F_INNER_MAP = 1 << 1, 1 << 2, 1 << 6, 1 << 12
_ACCESS = uapi.F_RDONLY | uapi.F_WRONLY | uapi.F_RDONLY_PROG | uapi.F_WRONLY_PROG
_HTAB = F_NO_PREALLOC | F_NUMA_NODE | _ACCESS | F_ZERO_SEED
_T = uapi.MapType
#: ``ARRAY_CREATE_FLAG_MASK`` and ``HTAB_CREATE_FLAG_MASK`` (6.18), of the flags these
#: map types take (PRESERVE_ELEMS is for another array type; a PERCPU_ARRAY refuses
#: NUMA_NODE, MMAPABLE and INNER_MAP, only an LRU hash takes NO_COMMON_LRU; EINVAL all,
#: measured on 6.18.44).
MAP_FLAGS = {_T.ARRAY: F_NUMA_NODE | uapi.F_MMAPABLE | _ACCESS | F_INNER_MAP,
             _T.PERCPU_ARRAY: _ACCESS, _T.HASH: _HTAB, _T.PERCPU_HASH: _HTAB,
             _T.LRU_HASH: _HTAB | F_NO_COMMON_LRU, _T.LRU_PERCPU_HASH: _HTAB | F_NO_COMMON_LRU,
             # LOCAL_STORAGE_CREATE_FLAG_MASK
             **dict.fromkeys(storage.TYPES, F_NUMA_NODE | _ACCESS)}
PCPU_MIN_UNIT_SIZE = 32 << 10  # a per-CPU value's limit, rounded up to 8 bytes (E2BIG)


def bpf(proc: Process, cmd: int, attr_obj: Any, size: int | None) -> int:
    """The syscall: size rules first (E2BIG), then the command (unknown: EINVAL)."""
    attr = Attr(attr_obj, size, proc.machine.profile.attr_size)
    feature, handler = COMMANDS.get(cmd, (None, None))
    if handler is None or (feature and not proc.machine.profile.has(feature)):
        raise fail(errno.EINVAL)
    return handler(proc, attr)


def _name(attr: Attr, layout: type[uapi.Layout], field: str) -> bytes:
    """``bpf_obj_name_cpy``: alphanumerics, '_' and '.', NUL-terminated in 16 bytes."""
    off = uapi.offset_of(layout, field)
    raw = attr.raw[off : off + uapi.BPF_OBJ_NAME_LEN]
    name = raw.split(b"\0", 1)[0]
    if len(name) == len(raw) or not all(chr(c).isalnum() or c in b"_." for c in name):
        raise fail(errno.EINVAL)
    return name


def _path(ptr: int) -> str:
    """``getname``: EFAULT, ENOENT (empty), ENAMETOOLONG."""
    raw = memory.read_str(ptr, PATH_MAX)
    if not raw:
        raise fail(errno.ENOENT)
    if len(raw) >= PATH_MAX:
        raise fail(errno.ENAMETOOLONG)
    return os.fsdecode(raw)


# --- maps ------------------------------------------------------------------------------


def map_create(proc: Process, attr: Attr) -> int:
    """MAP_CREATE in ``map_create``'s order: the BTF id combination, ``map_extra``, the
    access flags, the map type's own checks, privilege, sizes, name, then the BTF types.
    BPF_F_RDONLY/WRONLY make the new fd read- or write-only (they are not kept in the
    map's flags); the program-side flags are kept and checked at PROG_LOAD."""
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.MAP_CREATE))
    a = attr.view(uapi.MapCreateAttr)
    if a.btf_vmlinux_value_type_id or (a.btf_key_type_id and not a.btf_value_type_id):
        raise fail(errno.EINVAL)  # vmlinux value types are for STRUCT_OPS maps only
    if a.map_extra:
        raise fail(errno.EINVAL)
    access = open_flags(a.map_flags)
    if a.map_flags & F_NUMA_NODE and a.numa_node != 0:  # one NUMA node
        raise fail(errno.EINVAL)
    if a.map_type not in MAP_FLAGS or any(getattr(a, f) for f in UNSUPPORTED_MAP_FIELDS):
        raise fail(errno.EINVAL)
    is_array = a.map_type in ARRAY_TYPES
    prog_side = uapi.F_RDONLY_PROG | uapi.F_WRONLY_PROG
    if (a.map_flags & ~MAP_FLAGS[uapi.MapType(a.map_type)]
            or a.map_flags & prog_side == prog_side):
        raise fail(errno.EINVAL)
    if a.map_type in LRU_TYPES and a.map_flags & F_NO_PREALLOC:
        raise fail(uapi.ENOTSUPP)  # htab_map_alloc_check: an LRU map is preallocated
    if a.map_flags & F_NUMA_NODE and (a.map_type in PERCPU_TYPES - storage.TYPES
                                      or a.map_flags & F_NO_COMMON_LRU):
        raise fail(errno.EINVAL)
    if a.map_type in storage.TYPES:
        storage.check_create(a)
    elif 0 in (a.max_entries, a.key_size, a.value_size) or (is_array and a.key_size != 4):
        raise fail(errno.EINVAL)
    elem = (a.value_size + 7) // 8 * 8 + (0 if is_array else a.key_size)
    if (a.key_size > HASH_KEY_MAX or a.value_size > MAP_VALUE_MAX
            or a.max_entries * elem > MAP_BYTES_MAX
            or (a.map_type in PERCPU_TYPES and -(-a.value_size // 8) * 8 > PCPU_MIN_UNIT_SIZE)):
        raise fail(errno.E2BIG)
    if not proc.bpf_capable():  # unprivileged_bpf_disabled (§15)
        raise fail(errno.EPERM)
    name = _name(attr, uapi.MapCreateAttr, "map_name")
    m = proc.machine
    types = proc.obj(a.btf_fd, BtfObj) if a.btf_key_type_id or a.btf_value_type_id else None
    if types is not None:
        _map_check_btf(types.btf, a)
    cls = storage.StorageMap if a.map_type in storage.TYPES else Map
    max_entries = a.max_entries
    if a.map_flags & F_NO_COMMON_LRU:  # an LRU list per CPU, each as long
        max_entries = -(-max_entries // POSSIBLE_CPUS) * POSSIBLE_CPUS
        if max_entries > 0xFFFFFFFF:
            max_entries -= POSSIBLE_CPUS
    new = cls(m.maps, m.defer, map_type=a.map_type, key_size=a.key_size,
              value_size=a.value_size, max_entries=max_entries,
              ncopies=POSSIBLE_CPUS if a.map_type in PERCPU_TYPES else 1,
              flags=a.map_flags & ~(uapi.F_RDONLY | uapi.F_WRONLY), name=name, btf=types,
              btf_key_type_id=a.btf_key_type_id if types else 0,
              btf_value_type_id=a.btf_value_type_id if types else 0)
    return proc.install(ObjFile(new.publish(), access))


def _map_check_btf(types: btf.Btf, a: Any) -> None:
    """``map_check_btf``: key and value types of the map's sizes (EINVAL); an ARRAY's key
    a 32-bit INT, or none for a one-entry ARRAY of a DATASEC (global data)."""
    if a.btf_key_type_id:
        if types.size(a.btf_key_type_id) != a.key_size:
            raise fail(errno.EINVAL)
    elif a.map_type != uapi.MapType.ARRAY:  # only arrays have map_check_btf
        raise fail(errno.EINVAL)
    if types.size(a.btf_value_type_id) != a.value_size:
        raise fail(errno.EINVAL)
    value = types.resolve(a.btf_value_type_id)
    if a.map_type == uapi.MapType.ARRAY:
        key = types.resolve(a.btf_key_type_id)
        if key is None:
            if a.max_entries != 1 or value is None or value.kind != btf.DATASEC:
                raise fail(errno.EINVAL)
        elif key.kind != btf.INT or key.data[0] & 0xFF != 32 or key.data[0] >> 16 & 0xFF:
            raise fail(errno.EINVAL)


def map_freeze(proc: Process, attr: Attr) -> int:
    """MAP_FREEZE (5.2): the fd must be able to write (a frozen map's fds cannot: a
    second freeze is EPERM, as measured); from then on the syscall side cannot write.
    (The kernel's EBUSY, for a map mmap()ed writable, cannot happen: no mmap here.)"""
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.MAP_FREEZE))
    m = _map(proc, attr.view(uapi.MapFreezeAttr).map_fd, W)
    m.frozen = True
    return 0


def _map(proc: Process, fd: int, access: int) -> Map:
    """The map behind ``fd``, which must allow ``access`` (R and/or W): else EPERM
    (``map_get_sys_perms``: a frozen map's fds cannot write)."""
    m = proc.obj(fd, Map)
    mode = proc.access(fd)
    if (access & R and mode == os.O_WRONLY) or (access & W and (
            mode == os.O_RDONLY or m.frozen)):
        raise fail(errno.EPERM)
    return m


def map_lookup(proc: Process, attr: Attr) -> int:
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.MAP_LOOKUP_ELEM))
    a = attr.view(uapi.MapElemAttr)
    if a.flags:  # only BPF_F_LOCK exists, and no model map has a spin lock
        raise fail(errno.EINVAL)
    m = _map(proc, a.map_fd, R)
    value = m.lookup(memory.read(a.key, m.key_size))
    memory.write(a.value, value)
    return 0


def map_update(proc: Process, attr: Attr) -> int:
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.MAP_UPDATE_ELEM))
    a = attr.view(uapi.MapElemAttr)
    m = _map(proc, a.map_fd, W)
    if a.flags & uapi.F_LOCK:  # without a spin lock
        raise fail(errno.EINVAL)
    key = memory.read(a.key, m.key_size)
    m.update(key, memory.read(a.value, m.value_len), a.flags)
    return 0


def map_delete(proc: Process, attr: Attr) -> int:
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.MAP_DELETE_ELEM))
    a = attr.view(uapi.MapElemAttr)
    m = _map(proc, a.map_fd, W)
    m.delete(memory.read(a.key, m.key_size))
    return 0


def map_next_key(proc: Process, attr: Attr) -> int:
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.MAP_GET_NEXT_KEY))
    a = attr.view(uapi.MapElemAttr)  # next_key is the `value` slot
    m = _map(proc, a.map_fd, R)
    key = memory.read(a.key, m.key_size) if a.key else None
    memory.write(a.value, m.next_key(key))
    return 0


# --- PROG_LOAD (§2) --------------------------------------------------------------------


def load_eat(proc: Process, prog_type: int, eat: int) -> int:
    """§2.1: fix up and check ``expected_attach_type`` (CGROUP_SOCK: 0 means
    SOCK_CREATE; SKB, SOCK, SOCK_ADDR and SOCKOPT need one of their own attach types)."""
    if prog_type == uapi.ProgType.CGROUP_SOCK and eat == 0:
        eat = uapi.AttachType.CGROUP_INET_SOCK_CREATE
    checked = uapi.EAT_ENFORCED | {uapi.ProgType.CGROUP_SKB}
    if prog_type in checked and not (proc.machine.profile.knows_attach_type(eat)
                                     and uapi.CGROUP_PROG_TYPE[uapi.AttachType(eat)]
                                     == prog_type):
        raise fail(errno.EINVAL)
    return eat


def load_flags(proc: Process, attr: Attr, flags: int) -> None:
    """``prog_flags``: bits the profile does not know EINVAL; a BPF token fd (the model
    has no tokens: a bad fd EBADF, any other EINVAL).  The alignment, test and XDP flags
    change nothing the model does; SLEEPABLE is refused by the verifier (:func:`prog_load`).
    """
    profile = proc.machine.profile
    known = PROG_FLAGS | sum(f for f, key in PROG_FLAG_FEATURES.items() if profile.has(key))
    if flags & ~known:
        raise fail(errno.EINVAL)
    (token_fd,) = struct.unpack_from("<i", attr.raw, uapi.PROG_TOKEN_FD_OFFSET)
    load_flags_token(proc, flags & uapi.F_TOKEN_FD, token_fd)


def load_flags_token(proc: Process, flags: int, token_fd: int) -> None:
    """The BPF token of ``*_flags`` (6.9): other bits EINVAL; the model has no tokens,
    so a token fd is EBADF if bad, else EINVAL."""
    if flags & ~uapi.F_TOKEN_FD:
        raise fail(errno.EINVAL)
    if flags:
        proc.file(token_fd)
        raise fail(errno.EINVAL)


def prog_load(proc: Process, attr: Attr) -> int:
    """PROG_LOAD in ``bpf_prog_load``'s order; the checks of :mod:`.verifier` last."""
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.PROG_LOAD))
    a = attr.view(uapi.ProgLoadAttr)
    load_flags(proc, attr, a.prog_flags)
    if any(getattr(a, f) for f in UNSUPPORTED_LOAD_FIELDS):
        raise fail(errno.EINVAL)
    if not proc.bpf_capable():  # unprivileged_bpf_disabled
        raise fail(errno.EPERM)
    if a.insn_cnt == 0 or a.insn_cnt > INSNS_MAX:
        raise fail(errno.E2BIG)
    ptype = a.prog_type
    net_admin = proc.capable("CAP_NET_ADMIN") or proc.capable("CAP_SYS_ADMIN")
    if (ptype in NET_ADMIN_TYPES and not net_admin) or ptype == uapi.ProgType.LSM:
        # LSM: the BPF LSM is not active on the reference machine (§2.1)
        raise fail(errno.EPERM)
    if ptype == uapi.ProgType.KPROBE and not proc.capable("CAP_SYS_ADMIN"):  # perfmon
        raise fail(errno.EPERM)
    eat = load_eat(proc, ptype, a.expected_attach_type)
    code = memory.read(a.insns, a.insn_cnt * 8)
    memory.read_str(a.license, LICENSE_MAX)
    if ptype not in set(uapi.ProgType):
        raise fail(errno.EINVAL)
    name = _name(attr, uapi.ProgLoadAttr, "prog_name")
    _log_attr(a.log_level, a.log_buf, a.log_size)
    insns = verifier.decode(code)
    maps: dict[int, Map | None] = {
        fd: f.obj if isinstance(f, ObjFile) and isinstance(f.obj, Map) else None
        for fd, f in proc.fds.items()}
    try:
        types, func_info, line_info = _btf_info(proc, attr, a, insns)
        profile = proc.machine.profile
        used = verifier.check(insns, maps, v4=profile.has("cpu_v4"))
        # check_attach_btf_id: after the structural checks, before the walk (measured)
        if a.prog_flags & uapi.F_SLEEPABLE and ptype not in SLEEPABLE_TYPES:
            raise verifier.Rejected(errno.EINVAL, SLEEPABLE_LOG)
        try:  # the VM's decoding: what one instruction shows the kernel refuses
            vm_code = interp.decode(code, used)
        except VerifierWouldReject as e:
            raise verifier.Rejected(e.errno, e.log) from None
        enforce = verifier.check_return(ptype, eat, insns, maps, global_funcs=bool(func_info),
                                        st_ctx=profile.has("st_ctx"))
    except verifier.Rejected as e:
        _log(a.log_level, a.log_buf, a.log_size, e.log + "\n")
        raise fail(e.errno) from None
    _log(a.log_level, a.log_buf, a.log_size,
         f"processed {len(insns)} insns (limit {INSNS_MAX}) max_states_per_insn 0 "
         f"total_states 0 peak_states 0 mark_read 0\n")
    m = proc.machine
    prog = Prog(m.progs, m.defer, prog_type=ptype, expected_attach_type=eat, insns=code,
                tag=verifier.tag(insns, sha256=m.profile.has("tag_sha256")), name=name,
                maps=used, enforce_eat=enforce, uid=proc.cred.uid, btf=types,
                func_info=func_info, line_info=line_info)
    prog.vm_code = vm_code
    return proc.install(ObjFile(prog.publish()))


def _log_attr(level: int, buf: int, size: int) -> None:
    """``bpf_verifier_log_attr_valid`` (PROG_LOAD and BTF_LOAD): a buffer and its size
    together, a level with a buffer, known level bits, a size below 2^30 (else EINVAL)."""
    if (bool(buf) != bool(size) or (buf and not level) or level & ~uapi.LOG_MASK
            or size > 0xFFFFFFFF >> 2):
        raise fail(errno.EINVAL)


def _user_records(ptr: int, count: int, rec_size: int) -> Iterator[bytes]:
    """The caller's records, read one at a time as the kernel copies them (EFAULT)."""
    for i in range(count):
        yield memory.read(ptr + i * rec_size, rec_size)


def _btf_info(proc: Process, attr: Attr, a: Any,
              insns: list[Any]) -> tuple[BtfObj | None, bytes, bytes]:
    """``check_btf_info_early`` and ``check_btf_info`` (5.0): with func_info or
    line_info, ``prog_btf_fd`` must be a BTF (EBADF, EINVAL) and the records fit it
    (:mod:`.verifier`); a record with a non-zero tail is E2BIG, and the kernel writes
    the record size it knows back into the attr.  Returns the BTF and the records, at
    the kernel's record sizes."""
    if not a.func_info_cnt and not a.line_info_cnt:
        return None, b"", b""
    types = proc.obj(a.prog_btf_fd, BtfObj)
    kinds = (("func_info", verifier.FUNC_INFO_SIZE), ("line_info", verifier.LINE_INFO_SIZE))
    for kind, size in kinds:
        rec = getattr(a, f"{kind}_rec_size")
        if getattr(a, f"{kind}_cnt") and (not size <= rec <= verifier.REC_SIZE_MAX or rec % 4):
            # (the kernel logs a bad line_info record size with no message)
            raise verifier.Rejected(errno.EINVAL, f"invalid func info rec size {rec}"
                                    if kind == "func_info" else "")

    def records(kind: str) -> Iterator[bytes]:
        return _user_records(getattr(a, kind), getattr(a, f"{kind}_cnt"),
                             getattr(a, f"{kind}_rec_size"))

    kind, size = kinds[0]
    try:
        if a.func_info_cnt:
            offs = verifier.check_func_info_early(types.btf, records("func_info"))
            verifier.check_func_info(insns, offs)
        kind, size = kinds[1]
        if a.line_info_cnt:
            verifier.check_line_info(insns, types.btf, records("line_info"))
    except verifier.Rejected as e:
        if e.errno == errno.E2BIG:  # bpf_check_uarg_tail_zero: the size it knows
            attr.put(uapi.ProgLoadAttr, f"{kind}_rec_size", size)
        raise
    func_info, line_info = (b"".join(r[:size] for r in records(kind)) for kind, size in kinds)
    return types, func_info, line_info


def _log(level: int, buf: int, size: int, text: str) -> None:
    """Write the verifier or BTF log (a rotating log keeps the tail; ENOSPC if it did
    not fit)."""
    if not level or not buf:
        return
    data = text.encode()
    fits = len(data) < size
    if not fits:
        fixed = level & uapi.LOG_FIXED  # keeps the head
        data = data[: size - 1] if fixed else data[len(data) - size + 1 :]
    memory.write(buf, data + b"\0")
    if not fits:
        raise fail(errno.ENOSPC)


# --- BTF_LOAD (4.18) -------------------------------------------------------------------


def btf_load(proc: Process, attr: Attr) -> int:
    """BTF_LOAD as ``bpf_btf_load`` and ``btf_parse``: flags (no tokens in the model),
    CAP_BPF, the size (E2BIG), the log attributes, the copy (EFAULT), then
    :func:`.btf.parse`.  The log's true size goes back into ``btf_log_true_size``
    (6.4), and a log that did not fit is ENOSPC, whether or not the BTF was good."""
    attr.check_tail(attach.attr_end(proc.machine.profile, Cmd.BTF_LOAD))
    a = attr.view(uapi.BtfLoadAttr)
    load_flags_token(proc, a.btf_flags, a.btf_token_fd)
    if not proc.bpf_capable():
        raise fail(errno.EPERM)
    if a.btf_size > btf.MAX_SIZE:
        raise fail(errno.E2BIG)
    _log_attr(a.btf_log_level, a.btf_log_buf, a.btf_log_size)
    data = memory.read(a.btf, a.btf_size)
    parsed, refused, text = btf.parse(data, proc.machine.profile)
    logging = bool(a.btf_log_level and a.btf_log_buf)
    attr.put(uapi.BtfLoadAttr, "btf_log_true_size", len(text.encode()) + 1 if logging else 0)
    _log(a.btf_log_level, a.btf_log_buf, a.btf_log_size, text)
    if refused is not None:
        raise fail(refused.errno)
    assert parsed is not None
    m = proc.machine
    return proc.install(ObjFile(BtfObj(m.btfs, m.defer, parsed).publish()))


# --- pinning (§11) ---------------------------------------------------------------------


def _obj_args(proc: Process, attr: Attr, cmd: Cmd, allowed: int) -> tuple[Any, bool]:
    """OBJ_PIN/OBJ_GET common checks; returns the attr and the ``path_fd`` base."""
    profile = proc.machine.profile
    attr.check_tail(attach.attr_end(profile, cmd))
    a = attr.view(uapi.ObjAttr)
    path_fd = uapi.F_PATH_FD if profile.has("obj_path_fd") else 0
    if a.file_flags & ~(allowed | path_fd) or (cmd == Cmd.OBJ_GET and a.bpf_fd):
        raise fail(errno.EINVAL)
    if not a.file_flags & uapi.F_PATH_FD and a.path_fd:
        raise fail(errno.EINVAL)
    return a, bool(a.file_flags & uapi.F_PATH_FD)


def _base(proc: Process, path: str, use_path_fd: bool, path_fd: int) -> Dir | None:
    """The directory a relative path starts from (``AT_FDCWD``: the model's cwd is /)."""
    if not use_path_fd or path.startswith("/") or path_fd == uapi.AT_FDCWD:
        return None
    return proc.dir(path_fd)


def obj_pin(proc: Process, attr: Attr) -> int:
    a, use_path_fd = _obj_args(proc, attr, Cmd.OBJ_PIN, 0)
    file = proc.fds.get(a.bpf_fd)
    if not isinstance(file, ObjFile):  # bpf_fd_probe_obj: EINVAL, even for a bad fd
        raise fail(errno.EINVAL)
    path = _path(a.pathname)
    bpffs.pin(proc.machine.vfs, file.obj, path, _base(proc, path, use_path_fd, a.path_fd),
              proc.cred)
    return 0


def obj_get(proc: Process, attr: Attr) -> int:
    a, use_path_fd = _obj_args(proc, attr, Cmd.OBJ_GET, uapi.F_RDONLY | uapi.F_WRONLY)
    access = open_flags(a.file_flags)
    path = _path(a.pathname)
    want = {os.O_RDONLY: R, os.O_WRONLY: W, os.O_RDWR: R | W}[access]
    obj = bpffs.get(proc.machine.vfs, path, _base(proc, path, use_path_fd, a.path_fd),
                    proc.cred, want)
    if isinstance(obj, Link) and access != os.O_RDWR:
        raise fail(errno.EINVAL)
    return proc.install(ObjFile(obj, access if isinstance(obj, Map) else os.O_RDWR))


# --- IDs (§13) -------------------------------------------------------------------------


def _ids(proc: Process, cmd: int) -> IdSpace[Any]:
    m = proc.machine
    spaces: dict[int, IdSpace[Any]] = {Cmd.PROG_GET_NEXT_ID: m.progs, Cmd.MAP_GET_NEXT_ID: m.maps,
            Cmd.LINK_GET_NEXT_ID: m.links, Cmd.PROG_GET_FD_BY_ID: m.progs,
              Cmd.MAP_GET_FD_BY_ID: m.maps, Cmd.LINK_GET_FD_BY_ID: m.links,
              Cmd.BTF_GET_NEXT_ID: m.btfs, Cmd.BTF_GET_FD_BY_ID: m.btfs}
    return spaces[cmd]


def get_next_id(cmd: Cmd) -> Handler:
    def handler(proc: Process, attr: Attr) -> int:
        attr.check_tail(attach.attr_end(proc.machine.profile, cmd))
        a = attr.view(uapi.GetIdAttr)
        if a.start_id >= 2**31 - 1:
            raise fail(errno.EINVAL)
        if not proc.capable("CAP_SYS_ADMIN"):
            raise fail(errno.EPERM)
        nxt = _ids(proc, cmd).next_after(a.start_id)
        if nxt is None:
            raise fail(errno.ENOENT)
        attr.put(uapi.GetIdAttr, "next_id", nxt)
        return 0
    return handler


def get_fd_by_id(cmd: Cmd) -> Handler:
    def handler(proc: Process, attr: Attr) -> int:
        attr.check_tail(attach.attr_end(proc.machine.profile, cmd))
        a = attr.view(uapi.GetIdAttr)
        # BTF fds have no access mode: BTF_GET_FD_BY_ID takes no open_flags (measured)
        allowed = 0 if cmd == Cmd.BTF_GET_FD_BY_ID else uapi.F_RDONLY | uapi.F_WRONLY
        if a.open_flags & ~allowed:
            raise fail(errno.EINVAL)
        if not proc.capable("CAP_SYS_ADMIN"):
            raise fail(errno.EPERM)
        access = open_flags(a.open_flags)
        obj: Obj | None = _ids(proc, cmd).get(a.start_id)
        if obj is None or obj.refs == 0:
            raise fail(errno.ENOENT)
        return proc.install(ObjFile(obj, access))
    return handler


# --- OBJ_GET_INFO_BY_FD (§13) ----------------------------------------------------------


def get_info(proc: Process, attr: Attr) -> int:
    profile = proc.machine.profile
    attr.check_tail(attach.attr_end(profile, Cmd.OBJ_GET_INFO_BY_FD))
    a = attr.view(uapi.InfoAttr)
    file = proc.fds.get(a.bpf_fd)
    if file is None:
        raise fail(errno.EBADFD)
    obj = file.obj if isinstance(file, ObjFile) else None
    layout: type[uapi.Layout]
    kind: int | None
    if isinstance(obj, Link) and profile.has("link_ids"):
        layout, size, kind = uapi.LinkInfo, profile.link_info_size, uapi.LinkType.CGROUP
    elif isinstance(obj, Prog):
        layout, size, kind = uapi.ProgInfo, PROG_INFO_SIZE, obj.type
    elif isinstance(obj, Map):
        layout, size, kind = uapi.MapInfo, MAP_INFO_SIZE, obj.type
    elif isinstance(obj, BtfObj):
        layout, size, kind = uapi.BtfInfo, BTF_INFO_SIZE, None  # no type field
    else:
        raise fail(errno.EINVAL)
    # bpf_check_uarg_tail_zero: a longer user struct must be zero past ours
    if a.info_len > memory.PAGE or (a.info_len > size and not memory.is_zero(
            a.info + size, a.info_len - size)):
        raise fail(errno.E2BIG)
    # The caller's struct is read in, the model's fields written over it, and sent back:
    # bytes the model does not fill keep the caller's values, as in the kernel.
    n = min(a.info_len, size)
    user = memory.read(a.info, n)
    buf = bytearray(user) + bytes(max(size, ctypes.sizeof(layout)) - n)
    info: Any = layout.from_buffer(buf)
    info.id = obj.id
    if kind is not None:  # BtfInfo has no type
        info.type = kind
    FILL[layout](info, obj, layout.from_buffer_copy(bytes(buf)))
    memory.write(a.info, bytes(buf[:n]))
    attr.put(uapi.InfoAttr, "info_len", n)
    return 0


def _fill_link(info: Any, link: Any, _user: Any) -> None:
    """§13: prog_id, cgroup_id (0 when defunct), attach_type; nothing else is written."""
    info.prog_id = link.prog.id
    info.cgroup_id = link.cgroup.ino if link.cgroup is not None else 0
    info.attach_type = link.attach_type


def _fill_prog(info: Any, prog: Any, user: Any) -> None:
    """Tag, name, uid, lengths; the instructions and map IDs go into the caller's arrays
    when it passed them (``xlated_prog_insns``/``map_ids`` with a non-zero length)."""
    info.tag[:] = list(prog.tag)
    info.name = prog.name
    info.created_by_uid, info.load_time = prog.uid, prog.load_time
    # JITed, as fdinfo's prog_jited 1 says (JIT always on, as measured): the model has no
    # machine code, so its length stands in and jited_prog_insns is never written
    info.jited_prog_len, info.xlated_prog_len = len(prog.insns), len(prog.insns)
    info.verified_insns = verified_insns(prog)  # the run statistics stay 0: nothing runs
    # BTF (5.0): the record sizes are the kernel's whether or not there are records;
    # each subprogram is a JITed function (with a ksym), each line_info a JITed line
    info.func_info_rec_size = verifier.FUNC_INFO_SIZE
    info.line_info_rec_size = verifier.LINE_INFO_SIZE
    info.jited_line_info_rec_size = 8
    info.nr_jited_ksyms = info.nr_jited_func_lens = len(
        verifier.subprogs(verifier.decode(prog.insns)))
    if prog.btf is not None:
        info.btf_id = prog.btf.id
        info.nr_func_info = len(prog.func_info) // verifier.FUNC_INFO_SIZE
        info.nr_line_info = info.nr_jited_line_info = len(
            prog.line_info) // verifier.LINE_INFO_SIZE
    if user.xlated_prog_len and user.xlated_prog_insns:
        memory.write(user.xlated_prog_insns, prog.insns[: user.xlated_prog_len])
    ids = [m.id for m in prog.maps]
    info.nr_map_ids = len(ids)
    if user.nr_map_ids and user.map_ids:
        k = min(user.nr_map_ids, len(ids))
        memory.write(user.map_ids, struct.pack(f"<{k}I", *ids[:k]))


def _fill_map(info: Any, m: Any, _user: Any) -> None:
    info.key_size, info.value_size = m.key_size, m.value_size
    info.max_entries, info.map_flags, info.name = m.max_entries, m.flags, m.name
    if m.btf is not None:
        info.btf_id = m.btf.id
        info.btf_key_type_id, info.btf_value_type_id = m.btf_key_type_id, m.btf_value_type_id


def _fill_btf(info: Any, obj: Any, user: Any) -> None:
    """``btf_get_info_by_fd``: as much of the raw BTF as ``btf_size`` asks for, its
    size; the name (a user BTF has none: an empty string where a buffer is given)."""
    raw = obj.btf.raw
    if user.btf:
        memory.write(user.btf, raw[: user.btf_size])
    info.btf_size, info.name_len, info.kernel_btf = len(raw), 0, 0
    if user.name and user.name_len:
        memory.write(user.name, b"\0")


FILL: dict[type[uapi.Layout], Callable[[Any, Any, Any], None]] = {
    uapi.LinkInfo: _fill_link, uapi.ProgInfo: _fill_prog, uapi.MapInfo: _fill_map,
    uapi.BtfInfo: _fill_btf}


#: cmd -> (the profile feature it needs, or None; the handler)
COMMANDS: dict[int, tuple[str | None, Handler]] = {
    Cmd.MAP_CREATE: (None, map_create),
    Cmd.MAP_LOOKUP_ELEM: (None, map_lookup),
    Cmd.MAP_UPDATE_ELEM: (None, map_update),
    Cmd.MAP_DELETE_ELEM: (None, map_delete),
    Cmd.MAP_GET_NEXT_KEY: (None, map_next_key),
    Cmd.PROG_LOAD: (None, prog_load),
    Cmd.OBJ_PIN: (None, obj_pin),
    Cmd.OBJ_GET: (None, obj_get),
    Cmd.PROG_ATTACH: (None, attach.prog_attach),
    Cmd.PROG_DETACH: (None, attach.prog_detach),
    Cmd.PROG_TEST_RUN: (None, testrun.prog_test_run),
    Cmd.PROG_QUERY: (None, attach.prog_query),
    Cmd.PROG_GET_NEXT_ID: (None, get_next_id(Cmd.PROG_GET_NEXT_ID)),
    Cmd.MAP_GET_NEXT_ID: (None, get_next_id(Cmd.MAP_GET_NEXT_ID)),
    Cmd.LINK_GET_NEXT_ID: ("link_ids", get_next_id(Cmd.LINK_GET_NEXT_ID)),
    Cmd.PROG_GET_FD_BY_ID: (None, get_fd_by_id(Cmd.PROG_GET_FD_BY_ID)),
    Cmd.MAP_GET_FD_BY_ID: (None, get_fd_by_id(Cmd.MAP_GET_FD_BY_ID)),
    Cmd.LINK_GET_FD_BY_ID: ("link_ids", get_fd_by_id(Cmd.LINK_GET_FD_BY_ID)),
    Cmd.OBJ_GET_INFO_BY_FD: (None, get_info),
    Cmd.BTF_LOAD: (None, btf_load),
    Cmd.BTF_GET_FD_BY_ID: (None, get_fd_by_id(Cmd.BTF_GET_FD_BY_ID)),
    Cmd.BTF_GET_NEXT_ID: (None, get_next_id(Cmd.BTF_GET_NEXT_ID)),
    Cmd.MAP_FREEZE: (None, map_freeze),
    Cmd.LINK_CREATE: ("links", attach.link_create),
    Cmd.LINK_UPDATE: ("links", attach.link_update),
    Cmd.LINK_DETACH: ("link_detach", attach.link_detach),
}
