"""What the model checks at PROG_LOAD (§2) and the program tag.

This is **not** the kernel's verifier.  First a structural pass (:func:`check`) rejects
what it can see, with EINVAL and a one-line log: unknown opcodes, registers above r10,
malformed ``ld_imm64`` pairs, jumps out of range or into the middle of an ``ld_imm64``,
unreachable instructions, a last instruction that is neither ``exit`` nor ``ja``, unknown
helper IDs, bpf-to-bpf calls out of range (and a write to r10: EACCES, "frame pointer is
read only"); ``ld_imm64`` map references must be map fds (bad fd: EBADF, not a map:
EINVAL), and a map value (``PSEUDO_MAP_VALUE``, global data) must be of a one-entry
ARRAY.  Accesses through a map value pointer are checked where they are plain to see: a
load or store through the register the ``ld_imm64`` set, before anything else writes
that register or the code branches (a store into a RDONLY_PROG map, a load from a
WRONLY_PROG one, out of the value: EACCES).

Then :func:`check_return` walks every path (:mod:`.verify_paths`) and refuses, as 6.18
does and in its words, what it can prove on a path the kernel also walks: a register
read before it is written (``R2 !read_ok``, also R1-R5 after a call and R6-R9 in a
callee; EACCES), a stack access below fp-512, at or above fp+0 or misaligned, a narrow
fill of a spilled pointer, a load through a scalar or an unchecked lookup result,
through a modified ctx pointer (EACCES), pointer arithmetic the kernel forbids (on map
pointers and maybe-NULL values, bitwise, 32-bit, subtraction from fp: EACCES), helper
arguments of the wrong kind for ``map_lookup_elem``/``update``/``delete`` and
``get_local_storage`` (EACCES), a subprogram returning a stack pointer, and at exit a
pointer or a return value outside the hook's range (``check_return_code``: EINVAL,
``At program exit the register R0 has smin=0 smax=4294967295 should have been in [0,
1]``).  Ranges come from constants, sized loads (ctx fields, map values), 64-bit
add/sub/neg and conditional jumps against constants, with copies (and spills) linked.

The gap: whatever the walk does not follow it accepts (see :mod:`.verify_paths`): other
helpers' arguments and results, context field access rules (§4), packet bounds, map
value bounds (but the plain-to-see ones above), variable stack offsets, bit operations,
32-bit jumps, comparisons of two unknown scalars, the combined stack depth and the call
depth limit, global functions' BTF arguments, the loops and paths past 20,000 states.

func_info and line_info (``commands._btf_info``, the kernel's check_btf_info) are
checked as check_btf_func and check_btf_line do: record sizes, offsets, type ids of
FUNCs, one func_info per
subprogram (bpf-to-bpf call targets and ``PSEUDO_FUNC`` addresses), and a line_info at
the start of each.

Whether the expected attach type is enforced (§2.1 note (a): a CGROUP_SKB program for
EGRESS that can return 2 or 3) is still approximated by the immediates of every
``mov r0, K``.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from collections.abc import Iterable, Iterator

from .. import asm, uapi
from ..asm import Insn
from ..uapi import AttachType as A
from ..uapi import ProgType as P
from . import verify_paths
from .btf import Btf
from .objects import Map

MAX_HELPER_ID = 211  # __BPF_FUNC_MAX_ID - 1 on 6.18
PSEUDO_CALL, PSEUDO_FUNC = uapi.PSEUDO_CALL, uapi.PSEUDO_FUNC
FUNC_INFO_SIZE, LINE_INFO_SIZE = 8, 16  # struct bpf_func_info, struct bpf_line_info
REC_SIZE_MAX = 252  # MAX_FUNCINFO_REC_SIZE, MAX_LINEINFO_REC_SIZE
_SIZE_BYTES = {asm.Size.B: 1, asm.Size.H: 2, asm.Size.W: 4, asm.Size.DW: 8}
JA, CALL, EXIT = asm.JmpOp.JA, asm.JmpOp.CALL, asm.JmpOp.EXIT

_ALU_OPS = {op.value for op in asm.AluOp}
_JMP_OPS = {op.value for op in asm.JmpOp}
_MEM_SIZES = {s.value for s in asm.Size}

#: check_return_code ranges by prog type; (type, attach type) overrides the type's range.
RETURN_RANGE: dict[int | tuple[int, int], tuple[int, int]] = {
    P.CGROUP_SKB: (0, 1), (P.CGROUP_SKB, A.CGROUP_INET_EGRESS): (0, 3),
    P.CGROUP_SOCK: (0, 1), P.SOCK_OPS: (0, 1), P.CGROUP_DEVICE: (0, 1),
    P.CGROUP_SYSCTL: (0, 1), P.CGROUP_SOCKOPT: (0, 1), P.CGROUP_SOCK_ADDR: (0, 1),
    **{(P.CGROUP_SOCK_ADDR, t): (1, 1) for t in A if t.name.endswith(("RECVMSG", "NAME"))},
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND): (0, 3),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND): (0, 3),
}


class Rejected(Exception):
    """The program is refused: ``errno`` and the verifier log line."""

    def __init__(self, err: int, log: str) -> None:
        super().__init__(log)
        self.errno, self.log = err, log


def decode(insns: bytes) -> list[Insn]:
    """The instructions (``asm.Insn``; a ld_imm64 is two)."""
    return [Insn(c, r & 0xF, r >> 4, o, i) for c, r, o, i in struct.iter_unpack("<BBhi", insns)]


def _cls(x: Insn) -> int:
    """The instruction class (low 3 opcode bits)."""
    return x.code & 0x07


def _known_opcode(x: Insn, v4: bool) -> bool:
    """Whether the kernel's instruction table has ``x.code``; ``v4``: with the cpu v4
    instructions (6.6: sign-extending loads, ALU64 bswap, JMP32 JA "gotol")."""
    cls, op, mode, size = _cls(x), x.code & 0xF0, x.code & 0xE0, x.code & 0x18
    if cls in (asm.Class.ALU, asm.Class.ALU64):
        return op in _ALU_OPS and (v4 or x.code != asm.Class.ALU64 | asm.AluOp.END)
    if cls in (asm.Class.JMP, asm.Class.JMP32):
        return op in _JMP_OPS and not (cls == asm.Class.JMP32 and op in (CALL, EXIT)) and (
            v4 or not (cls == asm.Class.JMP32 and op == JA))
    if cls == asm.Class.LD:
        return x.code == asm.LD_IMM64
    if cls == asm.Class.LDX and mode == asm.MEMSX:
        return v4 and size != asm.Size.DW
    if cls in (asm.Class.LDX, asm.Class.ST):
        return mode == asm.Mode.MEM and size in _MEM_SIZES
    return (mode == asm.Mode.MEM and size in _MEM_SIZES) or (
        mode == asm.Mode.ATOMIC and size in (asm.Size.W, asm.Size.DW))


def _jump_target(i: int, x: Insn) -> int | None:
    """Where a jump or pseudo call at ``i`` goes (None: not a jump)."""
    op = x.code & 0xF0
    if _cls(x) not in (asm.Class.JMP, asm.Class.JMP32) or op == EXIT:
        return None
    if op == CALL:
        return i + x.imm + 1 if x.src == PSEUDO_CALL else None
    if _cls(x) == asm.Class.JMP32 and op == JA:  # gotol
        return i + x.imm + 1
    return i + x.off + 1


def check(insns: list[Insn], maps: dict[int, Map | None], *, v4: bool = True) -> list[Map]:
    """The structural checks; returns the maps the program uses.  ``maps`` resolves an
    fd to a map (None: not a map; missing: bad fd); ``v4``: the kernel has the cpu v4
    instructions (without: their opcodes are unknown, their ``off`` fields reserved)."""
    n, used, second_half = len(insns), [], set()
    # resolve_pseudo_ldimm64
    for i, x in enumerate(insns):
        if x.code != asm.LD_IMM64 or i in second_half:
            continue
        nxt = insns[i + 1] if i + 1 < n else None
        if nxt is None or (nxt.code, nxt.dst, nxt.src, nxt.off) != (0, 0, 0, 0):
            raise Rejected(errno.EINVAL, "invalid bpf_ld_imm64 insn")
        second_half.add(i + 1)
        if x.src in (asm.PSEUDO_MAP_FD, asm.PSEUDO_MAP_VALUE):
            if x.imm not in maps:
                raise Rejected(errno.EBADF, f"fd {x.imm} is not pointing to valid bpf_map")
            m = maps[x.imm]
            if m is None:
                raise Rejected(errno.EINVAL, f"fd {x.imm} is not pointing to valid bpf_map")
            if x.src == asm.PSEUDO_MAP_VALUE:
                _direct_value(m, nxt.imm)
            used.append(m)
        elif x.src not in (0, PSEUDO_FUNC):
            raise Rejected(errno.EINVAL, f"unrecognized bpf_ld_imm64 insn src {x.src}")
    # check_subprogs / check_cfg
    succ: dict[int, list[int]] = {}
    for i, x in enumerate(insns):
        if i in second_half:
            continue
        target, op = _jump_target(i, x), x.code & 0xF0
        if target is not None and (not 0 <= target < n or target in second_half):
            raise Rejected(errno.EINVAL, f"jump out of range from insn {i} to {target}")
        is_jmp = _cls(x) in (asm.Class.JMP, asm.Class.JMP32)
        falls = not (is_jmp and (op == EXIT or (op == JA and _cls(x) == asm.Class.JMP)))
        step = 2 if i + 1 in second_half else 1
        succ[i] = ([i + step] if falls and i + step < n else []) + (
            [target] if target is not None else [])
    last = insns[-1]
    if last.code not in (asm.Class.JMP | EXIT, asm.Class.JMP | JA) or n - 1 in second_half:
        raise Rejected(errno.EINVAL, "last insn is not an exit or jmp")
    seen, todo = {0}, [0]
    while todo:
        for j in succ.get(todo.pop(), []):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    for i in range(n):
        if i not in seen and i not in second_half:
            raise Rejected(errno.EINVAL, f"unreachable insn {i}")
    # do_check, structurally
    for i, x in enumerate(insns):
        if i in second_half:
            continue
        if not _known_opcode(x, v4):
            raise Rejected(errno.EINVAL, f"unknown opcode {x.code:02x}")
        if not v4 and x.off and _cls(x) in (asm.Class.ALU, asm.Class.ALU64) and (
                x.code & 0xF0 in (asm.AluOp.MOV, asm.AluOp.DIV, asm.AluOp.MOD)):
            what = "MOV" if x.code & 0xF0 == asm.AluOp.MOV else "ALU"
            raise Rejected(errno.EINVAL, f"BPF_{what} uses reserved fields")
        pseudo_src = x.code in (asm.LD_IMM64, asm.Class.JMP | CALL)
        if x.dst > 10 or (x.src > 10 and not pseudo_src):
            raise Rejected(errno.EINVAL, f"R{max(x.dst, x.src)} is invalid")
        if x.dst == 10 and _cls(x) in (asm.Class.ALU, asm.Class.ALU64, asm.Class.LDX, asm.Class.LD):
            raise Rejected(errno.EACCES, "frame pointer is read only")
        if x.code == asm.Class.JMP | CALL and x.src == 0 and not 1 <= x.imm <= MAX_HELPER_ID:
            raise Rejected(errno.EINVAL, f"invalid func unknown#{x.imm}")
        if x.code == asm.Class.JMP | CALL and x.src not in (0, PSEUDO_CALL):
            raise Rejected(errno.EINVAL, "kernel function calls are not supported by the model")
    _value_accesses(insns, maps)
    return used


def _direct_value(m: Map, off: int) -> None:
    """``map_direct_value_addr``: ARRAY maps only (EINVAL), with one entry (ENOTSUPP),
    the offset inside the value (EINVAL)."""
    if m.type != uapi.MapType.ARRAY:
        raise Rejected(errno.EINVAL, "no direct value access support for this map type")
    where = f"invalid access to map value pointer, value_size={m.value_size} off={off}"
    if m.max_entries != 1:
        raise Rejected(uapi.ENOTSUPP, where)
    if not 0 <= off < m.value_size:
        raise Rejected(errno.EINVAL, where)


def _value_accesses(insns: list[Insn], maps: dict[int, Map | None]) -> None:
    """Loads and stores through the register a ``PSEUDO_MAP_VALUE`` ld_imm64 just set,
    up to the first branch or the first other write to that register: the program-side
    access flags and the value's bounds (EACCES)."""
    for i, x in enumerate(insns[:-1]):
        m = maps.get(x.imm) if x.code == asm.LD_IMM64 and x.src == asm.PSEUDO_MAP_VALUE \
            else None
        if m is None:
            continue
        reg, base = x.dst, insns[i + 1].imm
        for y in insns[i + 2 :]:
            cls, size = _cls(y), _SIZE_BYTES.get(asm.Size(y.code & 0x18), 0)
            store = cls in (asm.Class.ST, asm.Class.STX) and y.dst == reg
            load = cls == asm.Class.LDX and y.src == reg
            if store or load:
                off, flags = base + y.off, m.flags
                if (store and flags & uapi.F_RDONLY_PROG) or (load and flags & uapi.F_WRONLY_PROG):
                    raise Rejected(errno.EACCES, f"{'write into' if store else 'read from'} "
                                   f"map forbidden, value_size={m.value_size} off={off} "
                                   f"size={size}")
                if not 0 <= off <= m.value_size - size:
                    raise Rejected(errno.EACCES, f"invalid access to map value, value_size="
                                   f"{m.value_size} off={off} size={size}")
            if cls in (asm.Class.JMP, asm.Class.JMP32) or (
                    y.dst == reg and cls in (asm.Class.ALU, asm.Class.ALU64, asm.Class.LDX,
                                             asm.Class.LD)):
                break


def subprogs(insns: list[Insn]) -> list[int]:
    """``add_subprog_and_kfunc``: where each subprogram starts (0, every bpf-to-bpf call
    target, every ``PSEUDO_FUNC`` address); one out of range is EINVAL."""
    starts = {0}
    for i, x in enumerate(insns):
        if (x.code == asm.Class.JMP | CALL and x.src == PSEUDO_CALL) or (
                x.code == asm.LD_IMM64 and x.src == PSEUDO_FUNC):
            if not 0 <= i + x.imm + 1 < len(insns):
                raise Rejected(errno.EINVAL, "call to invalid destination")
            starts.add(i + x.imm + 1)
    return sorted(starts)


def _records(records: Iterable[bytes], size: int, what: str) -> Iterator[tuple[int, ...]]:
    """Each record's first ``size`` bytes as u32 words; a record with more bytes that are
    not zero is E2BIG (``bpf_check_uarg_tail_zero``)."""
    for rec in records:
        if any(rec[size:]):
            raise Rejected(errno.E2BIG, f"nonzero tailing record in {what}")
        yield struct.unpack(f"<{size // 4}I", rec[:size])


def check_func_info_early(btf: Btf, records: Iterable[bytes]) -> list[int]:
    """``check_btf_func_early``: the func_info records (E2BIG: a non-zero tail; EINVAL:
    a first insn_off not 0, offsets not increasing, a type that is not a FUNC).  Returns
    the insn offsets."""
    offs: list[int] = []
    for insn_off, type_id in _records(records, FUNC_INFO_SIZE, "func info"):
        if not offs and insn_off:
            raise Rejected(errno.EINVAL, f"nonzero insn_off {insn_off} for the first func "
                                         "info record")
        if offs and insn_off <= offs[-1]:
            raise Rejected(errno.EINVAL, f"same or smaller insn offset ({insn_off}) than "
                                         f"previous func info record ({offs[-1]})")
        if not btf.is_func(type_id):
            raise Rejected(errno.EINVAL, f"invalid type id {type_id} in func info")
        offs.append(insn_off)
    return offs


def check_func_info(insns: list[Insn], offs: list[int]) -> None:
    """``check_btf_func``: one record per subprogram, at its first instruction."""
    starts = subprogs(insns)
    if len(offs) != len(starts):
        raise Rejected(errno.EINVAL, "number of funcs in func_info doesn't match number of "
                                     "subprogs")
    if offs != starts:
        raise Rejected(errno.EINVAL, "func_info BTF section doesn't match subprog layout in "
                                     "BPF program")


def check_line_info(insns: list[Insn], btf: Btf, records: Iterable[bytes]) -> None:
    """``check_btf_line``: offsets increasing, in range, not in the middle of an
    ld_imm64, string offsets in the BTF, and a record at the start of each subprogram."""
    starts, s, prev = subprogs(insns), 0, 0
    for i, (insn_off, file_off, line_off, _) in enumerate(
            _records(records, LINE_INFO_SIZE, "line_info")):
        if (i and insn_off <= prev) or insn_off >= len(insns):
            raise Rejected(errno.EINVAL, f"Invalid line_info[{i}].insn_off:{insn_off} "
                                         f"(prev_offset:{prev} prog->len:{len(insns)})")
        if not insns[insn_off].code:
            raise Rejected(errno.EINVAL, f"Invalid insn code at line_info[{i}].insn_off")
        if max(file_off, line_off) >= len(btf.strings):
            raise Rejected(errno.EINVAL, f"Invalid line_info[{i}].line_off or .file_name_off")
        if s < len(starts) and insn_off == starts[s]:
            s += 1
        elif s < len(starts) and starts[s] < insn_off:
            raise Rejected(errno.EINVAL, f"missing bpf_line_info for func#{s}")
        prev = insn_off
    if s != len(starts):
        raise Rejected(errno.EINVAL, f"missing bpf_line_info for {len(starts) - s} funcs "
                                     f"starting from func#{s}")


def return_values(insns: list[Insn]) -> set[int]:
    """The immediates of every ``mov r0, K`` (what decides the expected attach type's
    enforcement, :func:`check_return`)."""
    out = set()
    for x in insns:
        if x.dst == 0 and x.code == asm.Class.ALU64 | asm.AluOp.MOV:
            out.add(x.imm)
        elif x.dst == 0 and x.code == asm.Class.ALU | asm.AluOp.MOV:
            out.add(x.imm & 0xFFFFFFFF)
    return out


def check_return(prog_type: int, eat: int, insns: list[Insn],
                 maps: dict[int, Map | None] | None = None, *,
                 global_funcs: bool = False, st_ctx: bool = True) -> bool:
    """The walk of every path (:mod:`.verify_paths`: ``do_check`` in part, with
    ``check_return_code``); returns whether to enforce the expected attach type.
    ``maps`` resolves the program's map fds (as for :func:`check`); ``global_funcs``:
    the program has BTF func_info (its subprograms may be global); ``st_ctx``: the
    kernel takes immediate stores (BPF_ST) into the context (6.3)."""
    rng = RETURN_RANGE.get((prog_type, eat), RETURN_RANGE.get(prog_type))
    try:
        verify_paths.check(insns, maps or {}, prog_type, rng, global_funcs=global_funcs,
                           eat=eat, st_ctx=st_ctx)
    except verify_paths.Fault as e:
        raise Rejected(e.errno, e.log) from None
    # §2.1 note (a): an EGRESS skb program that can return 2 or 3 (congestion notification)
    return prog_type == P.CGROUP_SKB and any(v > 1 for v in return_values(insns))


def tag(insns: list[Insn], *, sha256: bool) -> bytes:
    """``bpf_prog_calc_tag``: the first 8 bytes of SHA-256 (feature ``tag_sha256``) or
    SHA-1 of the instructions with the map fds of ``ld_imm64`` (both halves' imm) zeroed."""
    out, was_ld_map = [], False
    for x in insns:
        imm = x.imm
        if not was_ld_map and x.code == asm.LD_IMM64 and x.src in (asm.PSEUDO_MAP_FD,
                                                                     asm.PSEUDO_MAP_VALUE):
            was_ld_map, imm = True, 0
        elif was_ld_map and (x.code, x.dst, x.src, x.off) == (0, 0, 0, 0):
            was_ld_map, imm = False, 0
        else:
            was_ld_map = False
        out.append(struct.pack("<BBhi", x.code, x.src << 4 | x.dst, x.off, imm))
    digest = hashlib.sha256 if sha256 else hashlib.sha1
    return digest(b"".join(out)).digest()[:8]
