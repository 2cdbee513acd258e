"""The path walk of the model's PROG_LOAD check (``do_check``, in part).

Every path of the program is followed from instruction 0 (fall-through first, as the
kernel does), a state per (pc, registers, stack, call frames).  A register is UNINIT, a
scalar (a wrapped interval of 64-bit values: constants, sized loads, bounds refined by
jumps against constants, copies linked so that a bound on one bounds all), a pointer
(ctx, stack of a frame at a known offset, map, map value, map value or NULL), or TOP:
a value whose kind or range the walk does not follow as precisely as the kernel does.
Stack slots remember 8-byte spills.

The walk must never refuse a program the kernel loads, so a value is exact or TOP, and a
path that branches on TOP (or on anything the kernel may decide where the walk cannot)
is *unsure*: a fault found on it is dropped, not reported.  Programs with BTF func_info
(global functions, verified by the kernel one at a time) are unsure inside a call.
Too many states: the walk gives up and the program is accepted.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import NamedTuple

from .. import asm, uapi
from ..asm import AluOp as Op
from ..asm import Class as C
from ..asm import Insn
from ..asm import JmpOp as J
from ..uapi import ProgType as P
from .objects import Map
from .vm.helpers import HELPERS

#: The helpers whose arguments (by their kinds in :data:`HELPERS`) and R0 the walk
#: follows: map lookup/update/delete, ktime, prandom, get_local_storage.
FOLLOWED = frozenset({1, 2, 3, 5, 7, 81})

U64, S64_MIN, S64_MAX = 1 << 64, -(1 << 63), (1 << 63) - 1
STACK_SIZE, MAX_FRAMES, MAX_STATES = 512, 8, 20_000
_SIZE = {asm.Size.B: 1, asm.Size.H: 2, asm.Size.W: 4, asm.Size.DW: 8}
_OPNAME = {Op.ADD: "+=", Op.SUB: "-=", Op.MUL: "*=", Op.DIV: "/=", Op.OR: "|=", Op.AND: "&=",
           Op.LSH: "<<=", Op.RSH: ">>=", Op.MOD: "%=", Op.XOR: "^=", Op.ARSH: "s>>="}
ARRAYS = (2, 6)  # BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY
_MEM_TYPES = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"

#: Where each program type's context holds pointers (byte ranges); a load there is TOP.
#: A type not listed: every context load is TOP.
CTX_POINTERS: dict[int, tuple[tuple[int, int], ...]] = {
    P.CGROUP_SKB: ((76, 84), (140, 152), (168, 176)),  # data, data_end, data_meta, flow_keys, sk
    P.CGROUP_SOCK: (), P.CGROUP_DEVICE: (), P.CGROUP_SYSCTL: (),
    P.CGROUP_SOCK_ADDR: ((64, 72),),  # sk
    P.CGROUP_SOCKOPT: ((0, 24),),  # sk, optval, optval_end
    P.SOCK_OPS: ((184, 208),),  # sk, skb_data, skb_data_end
}


class K(IntEnum):
    """A register's kind (the kernel's name for each pointer kind: :data:`TYPE_NAME`)."""

    UNINIT, TOP, SCALAR, CTX, STACK, MAP, VALUE, VALUE_OR_NULL = range(8)


TYPE_NAME = {K.SCALAR: "scalar", K.CTX: "ctx", K.STACK: "fp", K.MAP: "map_ptr",
             K.VALUE: "map_value", K.VALUE_OR_NULL: "map_value_or_null"}
POINTERS = (K.CTX, K.STACK, K.MAP, K.VALUE, K.VALUE_OR_NULL)


class V(NamedTuple):
    """A value: SCALAR ``lo..hi`` (mod 2**64, ``-2**63 <= lo <= hi < 2**64``); a pointer's
    offset ``lo`` (CTX, STACK), frame ``ref`` (STACK) or map fd ``ref``; ``link``: the id
    shared by copies of a scalar, or of a map value that may be NULL."""

    kind: K
    lo: int = 0
    hi: int = 0
    ref: int = 0
    link: int = 0


UNINIT, TOP = V(K.UNINIT), V(K.TOP)
Stack = tuple[tuple[int, V], ...]  # (slot, spilled value), slot = offset // 8 (negative)


class State(NamedTuple):
    """One path's state at ``pc``: the frames' registers and stacks (innermost last),
    the return pcs, and whether every branch so far was one the kernel also takes."""

    pc: int
    regs: tuple[tuple[V, ...], ...]
    stacks: tuple[Stack, ...]
    returns: tuple[int, ...]
    sure: bool


class Fault(Exception):
    """A check failed on the path being walked."""

    def __init__(self, err: int, log: str) -> None:
        super().__init__(log)
        self.errno, self.log = err, log


def scalar(lo: int, hi: int | None = None, link: int = 0) -> V:
    """The scalar ``lo..hi`` (mod 2**64; one value if ``hi`` is None), normalised; TOP
    if that set is not one wrapped interval the kernel's ranges can hold."""
    hi = lo if hi is None else hi
    if hi - lo >= U64:
        return TOP
    shift = lo % U64 - lo
    lo, hi = lo + shift, hi + shift
    if lo > S64_MAX:
        lo, hi = lo - U64, hi - U64
    return V(K.SCALAR, lo, hi, link=link) if hi < U64 else TOP


FULL = scalar(0, U64 - 1)


def urange(v: V) -> tuple[int, int]:
    """The kernel's ``umin, umax`` of a scalar."""
    if v.lo >= 0:
        return v.lo, v.hi
    return (v.lo + U64, v.hi + U64) if v.hi < 0 else (0, U64 - 1)


def srange(v: V) -> tuple[int, int]:
    """The kernel's ``smin, smax`` of a scalar."""
    return (v.lo, v.hi) if v.hi <= S64_MAX else (S64_MIN, S64_MAX)


def const(v: V) -> int | None:
    """The value (as u64) of a constant scalar."""
    return v.lo % U64 if v.kind == K.SCALAR and v.lo == v.hi else None


def restrict(v: V, lo: int, hi: int, signed: bool) -> V | None:
    """``v`` within ``lo..hi`` (signed or unsigned); None if empty."""
    pieces = ([(v.lo, v.hi)] if v.hi <= S64_MAX else [(v.lo, S64_MAX), (S64_MIN, v.hi - U64)]) \
        if signed else ([urange(v)] if v.lo >= 0 or v.hi < 0 else [(v.lo + U64, U64 - 1),
                                                                   (0, v.hi)])
    cut = [(max(a, lo), min(b, hi)) for a, b in pieces if max(a, lo) <= min(b, hi)]
    if not cut:
        return None
    if len(cut) == 1:
        return scalar(*cut[0], link=v.link)
    (a, _), (_, b) = cut  # both pieces: still one interval, across 2**63 or 0
    return scalar(a, b + U64, v.link) if signed else scalar(a - U64, b, v.link)


def without(v: V, k: int) -> V:
    """``v`` but the value ``k`` (u64), as precisely as the kernel's JNE: an end of the
    interval goes; another of the kernel's ends (of its u64 or s64 range): TOP."""
    if v.lo % U64 == k:
        return scalar(v.lo + 1, v.hi, v.link)
    if v.hi % U64 == k:
        return scalar(v.lo, v.hi - 1, v.link)
    ends = {*urange(v), *(x % U64 for x in srange(v))}
    inside = restrict(v, k, k, False) is not None
    return TOP if inside and k in ends else v


def _s64(x: int) -> int:
    return x - U64 if x > S64_MAX else x


#: Conditional jumps as (signed, lo..hi of dst when taken, given src constant c).
_COND: dict[int, tuple[bool, Callable[[int], tuple[int, int]]]] = {
    J.JGT: (False, lambda c: (c + 1, U64 - 1)), J.JGE: (False, lambda c: (c, U64 - 1)),
    J.JLT: (False, lambda c: (0, c - 1)), J.JLE: (False, lambda c: (0, c)),
    J.JSGT: (True, lambda c: (_s64(c) + 1, S64_MAX)), J.JSGE: (True, lambda c: (_s64(c), S64_MAX)),
    J.JSLT: (True, lambda c: (S64_MIN, _s64(c) - 1)), J.JSLE: (True, lambda c: (S64_MIN, _s64(c))),
}
_NEGATE: dict[int, int] = {J.JGT: J.JLE, J.JGE: J.JLT, J.JLT: J.JGE, J.JLE: J.JGT,
           J.JSGT: J.JSLE, J.JSGE: J.JSLT, J.JSLT: J.JSGE, J.JSLE: J.JSGT}
_SWAP: dict[int, int] = {J.JGT: J.JLT, J.JGE: J.JLE, J.JLT: J.JGT, J.JLE: J.JGE,
         J.JSGT: J.JSLT, J.JSGE: J.JSLE, J.JSLT: J.JSGT, J.JSLE: J.JSGE, J.JEQ: J.JEQ,
         J.JNE: J.JNE}


def refine(v: V, op: int, c: int) -> V | None:
    """Scalar ``v`` where ``v <op> c`` holds (c: u64); None if it never does."""
    if op == J.JEQ:
        return restrict(v, c, c, False)
    if op == J.JNE:
        return None if const(v) == c else without(v, c)
    signed, bounds = _COND[op]
    lo, hi = bounds(c)
    return restrict(v, lo, hi, signed) if lo <= hi else None


def _alu_const(op: int, a: int, b: int, bits: int) -> int | None:
    """``a <op> b`` on ``bits``-bit values (None: not computed)."""
    mask, sh = (1 << bits) - 1, b & (bits - 1)
    a, b = a & mask, b & mask
    signed_a = a - (1 << bits) if a >> (bits - 1) else a
    out = {Op.ADD: a + b, Op.SUB: a - b, Op.MUL: a * b, Op.OR: a | b, Op.AND: a & b,
           Op.XOR: a ^ b, Op.LSH: a << sh, Op.RSH: a >> sh, Op.ARSH: signed_a >> sh,
           Op.MOV: b}.get(Op(op))
    return None if out is None else out & mask


def _always(w: V) -> Callable[[V], V]:
    return lambda _: w


def _type(v: V) -> str:
    return TYPE_NAME[v.kind]


class Walk:
    """The walk of one program (:func:`check`)."""

    def __init__(self, insns: list[Insn], maps: dict[int, Map | None], prog_type: int,
                 ret_range: tuple[int, int] | None, global_funcs: bool, hook: int,
                 st_ctx: bool) -> None:
        self.insns, self.maps, self.ptype = insns, maps, prog_type
        self.ret_range, self.global_funcs = ret_range, global_funcs
        self.hook, self.st_ctx = hook, st_ctx
        self.ids = 0

    def fresh(self) -> int:
        self.ids += 1
        return self.ids

    def run(self) -> None:
        """Walk every path; raise :class:`Fault` for the first one that fails surely."""
        regs = (UNINIT, V(K.CTX)) + (UNINIT,) * 8 + (V(K.STACK),)
        todo = [State(0, (regs,), ((),), (), True)]
        seen: set[State] = set()
        while todo:
            s = todo.pop()
            known = len(seen)
            if known >= MAX_STATES:
                return
            seen.add(s)  # (hashed once: a state is a deep tuple)
            if len(seen) == known:
                continue
            try:
                nxt = self.step(s)
            except Fault:
                if s.sure:
                    raise
                continue
            todo.extend(reversed(nxt))

    # ------------------------------------------------------------------ helpers

    def read(self, regs: Sequence[V], r: int) -> V:
        """Register ``r`` as an operand (``check_reg_arg`` SRC_OP)."""
        if regs[r].kind == K.UNINIT:
            raise Fault(errno.EACCES, f"R{r} !read_ok")
        return regs[r]

    @staticmethod
    def put(s: State, regs: list[V], stack: Stack | None = None, *, pc: int | None = None,
            sure: bool | None = None) -> State:
        """``s`` with the innermost frame's registers (and stack) replaced."""
        stacks = s.stacks if stack is None else (*s.stacks[:-1], stack)
        return s._replace(pc=s.pc + 1 if pc is None else pc, regs=(*s.regs[:-1], tuple(regs)),
                          stacks=stacks, sure=s.sure if sure is None else sure)

    @staticmethod
    def relink(s: State, link: int, new: Callable[[V], V]) -> State:
        """Every copy of the value with ``link`` (registers and spills, all frames)
        replaced by ``new(copy)``."""
        def f(v: V) -> V:
            return new(v) if v.link == link and v.kind in (K.SCALAR, K.VALUE_OR_NULL) else v
        return s._replace(regs=tuple(tuple(f(v) for v in frame) for frame in s.regs),
                          stacks=tuple(tuple((k, f(v)) for k, v in st) for st in s.stacks))

    def step(self, s: State) -> list[State]:
        """The states after the instruction at ``s.pc``."""
        x = self.insns[s.pc]
        cls = x.code & 7
        if cls in (C.ALU, C.ALU64):
            return [self.alu(s, x)]
        if cls in (C.JMP, C.JMP32):
            return self.jump(s, x)
        if cls == C.LD:
            return [self.ld_imm64(s, x)]
        if cls == C.LDX:
            return [self.load(s, x)]
        return [self.store(s, x)]

    # ------------------------------------------------------------------ ALU

    def alu(self, s: State, x: Insn) -> State:
        regs, op, is64 = list(s.regs[-1]), x.code & 0xF0, x.code & 7 == C.ALU64
        src = self.read(regs, x.src) if x.code & 0x08 and op not in (Op.NEG, Op.END) else \
            scalar(x.imm if is64 else x.imm & 0xFFFFFFFF)
        if op == Op.MOV:
            regs[x.dst] = self.mov(src, is64, x.off)
            if x.code & 0x08 and regs[x.dst].kind == K.SCALAR and const(src) is None:
                # a copy: a bound found on one is a bound on the other
                link = src.link or self.fresh()
                regs[x.src] = regs[x.dst] = src._replace(link=link)
            return self.put(s, regs)
        dst = self.read(regs, x.dst)
        if dst.kind == K.SCALAR and dst.link and op in (Op.ADD, Op.SUB):
            # the kernel keeps the copies linked with a delta: bounds found on one
            # reach the others in ways not followed here
            s = self.relink(s, dst.link, lambda v: TOP)
            regs = list(s.regs[-1])
        regs[x.dst] = self.arith(x, op, is64, dst, src)
        return self.put(s, regs)

    @staticmethod
    def mov(src: V, is64: bool, sx: int) -> V:
        """The value a MOV (``sx``: MOVSX's width) writes."""
        c = const(src)
        if sx:
            if c is None:
                return TOP
            width = sx
            c &= (1 << width) - 1
            c = c - (1 << width) if c >> (width - 1) else c
            return scalar(c if is64 else c & 0xFFFFFFFF)
        if is64:
            return src
        return TOP if c is None else scalar(c & 0xFFFFFFFF)

    @staticmethod
    def arith(x: Insn, op: int, is64: bool, dst: V, src: V) -> V:
        """``dst <op> src`` (refusing what the kernel refuses on pointers)."""
        if dst.kind in POINTERS or src.kind in POINTERS:
            return Walk.pointer_arith(x, op, is64, dst, src)
        if dst.kind != K.SCALAR or src.kind != K.SCALAR:
            return TOP
        a, b = const(dst), const(src)
        if a is not None and b is not None and op not in (Op.DIV, Op.MOD, Op.END, Op.NEG):
            out = _alu_const(op, a, b, 64 if is64 else 32)
            return TOP if out is None else scalar(out)
        if not is64:
            return TOP
        if op == Op.NEG:
            return scalar(-dst.hi, -dst.lo)
        if op == Op.ADD:
            return scalar(dst.lo + src.lo, dst.hi + src.hi)
        if op == Op.SUB:
            return scalar(dst.lo - src.hi, dst.hi - src.lo)
        return TOP

    @staticmethod
    def pointer_arith(x: Insn, op: int, is64: bool, dst: V, src: V) -> V:
        """ALU on a pointer (``adjust_ptr_min_max_vals``): what root may do and the
        refusals; a result not followed is TOP."""
        r, name = x.dst, _OPNAME.get(Op(op), "")
        if dst.kind not in POINTERS or src.kind != K.SCALAR or op in (Op.NEG, Op.END):
            return TOP  # scalar += pointer, pointer - pointer, ...
        if not is64:
            if op == Op.SUB:
                return TOP
            raise Fault(errno.EACCES, f"R{r} 32-bit pointer arithmetic prohibited")
        c = const(src)
        if dst.kind == K.VALUE_OR_NULL:
            raise Fault(errno.EACCES, f"R{r} pointer arithmetic on map_value_or_null "
                                      "prohibited, null-check it first")
        if dst.kind == K.MAP and not (c == 0 and op == Op.ADD):
            raise Fault(errno.EACCES, f"R{r} pointer arithmetic on map_ptr prohibited")
        if op == Op.SUB and dst.kind == K.STACK:
            raise Fault(errno.EACCES, f"R{r} subtraction from stack pointer prohibited")
        if op in (Op.AND, Op.OR, Op.XOR):
            raise Fault(errno.EACCES, f"R{r} bitwise operator {name} on pointer prohibited")
        if op not in (Op.ADD, Op.SUB):
            raise Fault(errno.EACCES, f"R{r} pointer arithmetic with {name} operator "
                                      "prohibited")
        if dst.kind == K.VALUE:
            return dst
        if c is None or dst.kind == K.MAP:
            return TOP
        return dst._replace(lo=dst.lo + (_s64(c) if op == Op.ADD else -_s64(c)))

    # ------------------------------------------------------------------ jumps

    def jump(self, s: State, x: Insn) -> list[State]:
        op, regs = x.code & 0xF0, s.regs[-1]
        if op == J.EXIT:
            return self.exit(s)
        if op == J.CALL:
            return self.call(s, x)
        if op == J.JA:
            return [s._replace(pc=s.pc + 1 + (x.imm if x.code & 7 == C.JMP32 else x.off))]
        dst = self.read(regs, x.dst)
        src = self.read(regs, x.src) if x.code & 0x08 else \
            scalar(x.imm & 0xFFFFFFFF if x.code & 7 == C.JMP32 else x.imm)
        taken, fall = s.pc + 1 + x.off, s.pc + 1
        if x.code & 7 == C.JMP32:
            a, b = const(dst), const(src)
            if a is None or b is None:
                return self.unsure(s, fall, taken)
            go = self.decide(op, scalar(a & 0xFFFFFFFF), (b & 0xFFFFFFFF), 32)
            return [s._replace(pc=taken if go else fall)]
        if src.kind == K.SCALAR and const(src) is not None and dst.kind == K.SCALAR:
            return self.split(s, x.dst, op, const(src) or 0, fall, taken)
        if dst.kind == K.SCALAR and const(dst) is not None and src.kind == K.SCALAR \
                and op in _SWAP:
            return self.split(s, x.src, _SWAP[op], const(dst) or 0, fall, taken)
        if dst.kind in POINTERS and src.kind == K.SCALAR and const(src) == 0 and \
                op in (J.JEQ, J.JNE):
            return self.null_check(s, x.dst, op == J.JEQ, fall, taken)
        if (dst.kind in POINTERS and src.kind in (K.SCALAR, *POINTERS)) or (
                src.kind in POINTERS and dst.kind == K.SCALAR):
            return [s._replace(pc=fall), s._replace(pc=taken)]  # the kernel takes both
        return self.unsure(s, fall, taken)

    @staticmethod
    def unsure(s: State, *pcs: int) -> list[State]:
        return [s._replace(pc=pc, sure=False) for pc in pcs]

    @staticmethod
    def decide(op: int, v: V, c: int, bits: int) -> bool:
        """Whether constant ``v <op> c`` holds on ``bits``-bit values."""
        a = const(v) or 0
        if bits == 32:
            a, c = a & 0xFFFFFFFF, c & 0xFFFFFFFF
            sa, sc = (a - (1 << 32) if a >> 31 else a), (c - (1 << 32) if c >> 31 else c)
        else:
            sa, sc = _s64(a), _s64(c)
        return {J.JEQ: a == c, J.JNE: a != c, J.JGT: a > c, J.JGE: a >= c, J.JLT: a < c,
                J.JLE: a <= c, J.JSGT: sa > sc, J.JSGE: sa >= sc, J.JSLT: sa < sc,
                J.JSLE: sa <= sc, J.JSET: bool(a & c)}[J(op)]

    def split(self, s: State, r: int, op: int, c: int, fall: int, taken: int) -> list[State]:
        """Branch on scalar register ``r`` against constant ``c``: the sides it may take,
        each with ``r`` (and its copies) bounded."""
        v = s.regs[-1][r]
        if op == J.JSET:
            return self.jset(s, r, c, fall, taken)
        out = []
        for pc, cond in ((fall, _NEGATE.get(J(op), J.JNE if op == J.JEQ else J.JEQ)),
                         (taken, op)):
            w = refine(v, cond, c)
            if w is None:
                continue
            t = s._replace(pc=pc)
            if v.link:
                t = self.relink(t, v.link, _always(w))
            regs = list(t.regs[-1])
            regs[r] = w
            out.append(self.put(t, regs, pc=pc))
        return out

    def jset(self, s: State, r: int, c: int, fall: int, taken: int) -> list[State]:
        """``if r & c``: a side is sure where some value of ``r`` takes it; after it,
        ``r`` and its copies are TOP (the kernel learns bits, not bounds)."""
        v = s.regs[-1][r]
        if const(v) is not None:
            return [s._replace(pc=taken if self.decide(J.JSET, v, c, 64) else fall)]
        umin, umax = urange(v)
        witnesses = [x for x in (0, c & -c) if restrict(v, x, x, False) is not None]
        seen = {x & c != 0 for x in (umin, umax, *witnesses)}
        t = self.relink(s, v.link, lambda _: TOP) if v.link else s
        regs = list(t.regs[-1])
        regs[r] = TOP
        t = self.put(t, regs)
        return [t._replace(pc=pc, sure=s.sure and went in seen)
                for pc, went in ((fall, False), (taken, True))]

    def null_check(self, s: State, r: int, eq: bool, fall: int, taken: int) -> list[State]:
        """``if r ==/!= 0`` on a pointer: a map value that may be NULL becomes one or
        the scalar 0 (with its copies); another pointer is not NULL, but only a map
        value's test is decided by the kernel."""
        v = s.regs[-1][r]
        null_pc, value_pc = (taken, fall) if eq else (fall, taken)
        if v.kind == K.VALUE:
            return [s._replace(pc=value_pc)]
        if v.kind != K.VALUE_OR_NULL:
            return [s._replace(pc=fall), s._replace(pc=taken)]
        value = self.relink(s, v.link, lambda w: w._replace(kind=K.VALUE, link=0))
        null = self.relink(s, v.link, lambda w: scalar(0))
        both = [null._replace(pc=null_pc), value._replace(pc=value_pc)]
        return both[::-1] if eq else both  # fall-through first

    def exit(self, s: State) -> list[State]:
        """EXIT: back to the caller, or ``check_return_code``."""
        regs = s.regs[-1]
        r0 = regs[0]
        if s.returns:
            if r0.kind == K.STACK:
                raise Fault(errno.EINVAL, "cannot return stack pointer to the caller")
            caller = list(s.regs[-2])
            caller[0] = TOP if r0.kind == K.UNINIT else r0
            caller[1:6] = [UNINIT] * 5
            depth = len(s.regs) - 1
            caller = [TOP if v.kind == K.STACK and v.ref >= depth else v for v in caller]
            return [State(s.returns[-1], (*s.regs[:-2], tuple(caller)), s.stacks[:-1],
                          s.returns[:-1], s.sure)]
        r0 = self.read(regs, 0)
        if self.ret_range is None or r0.kind == K.TOP:
            return []
        if r0.kind != K.SCALAR:
            raise Fault(errno.EINVAL, "At program exit the register R0 is not a known value "
                                      f"({_type(r0)})")
        lo, hi = self.ret_range
        smin, smax = srange(r0)
        if not lo <= smin <= smax <= hi:
            has = (f" smin={smin}" if smin > S64_MIN else "") + (
                f" smax={smax}" if smax < S64_MAX else "")
            raise Fault(errno.EINVAL, f"At program exit the register R0 has"
                                      f"{has or ' unknown scalar value'} should have been in "
                                      f"[{lo}, {hi}]")
        return []

    # ------------------------------------------------------------------ calls

    def call(self, s: State, x: Insn) -> list[State]:
        """A bpf-to-bpf call (a new frame; too deep: not followed) or a helper."""
        regs = list(s.regs[-1])
        if x.src == uapi.PSEUDO_CALL:
            if len(s.regs) >= MAX_FRAMES:
                return []
            callee = [UNINIT, *regs[1:6], *[UNINIT] * 4, V(K.STACK, ref=len(s.regs))]
            return [State(s.pc + 1 + x.imm, (*s.regs, tuple(callee)), (*s.stacks, ()),
                          (*s.returns, s.pc + 1), s.sure and not self.global_funcs)]
        regs[0] = self.helper(regs, x.imm)
        regs[1:6] = [UNINIT] * 5
        return [self.put(s, regs)]

    def helper(self, regs: list[V], fn: int) -> V:
        """Check the helper is one this hook may call (``get_func_proto``, the measured
        table of :mod:`.vm.helpers`), the arguments of the helpers followed; R0 after."""
        h = HELPERS.get(fn)
        if h is not None and self.hook not in h.where:
            raise Fault(errno.EINVAL, f"program of this type cannot use helper {h.name}#{fn}")
        if h is None or fn not in FOLLOWED:
            return TOP
        for i, kind in enumerate(h.args, start=1):  # the helper's argument kinds
            v = self.read(regs, i)
            bad = (kind == "map" and v.kind not in (K.MAP, K.TOP)) or (
                kind in ("key", "value") and v.kind not in (K.STACK, K.VALUE, K.TOP))
            if bad:
                want = "map_ptr" if kind == "map" else _MEM_TYPES
                raise Fault(errno.EACCES, f"R{i} type={_type(v)} expected={want}")
        m = regs[1].ref if regs[1].kind == K.MAP else None
        if fn == 1 and m is not None:
            # an ARRAY lookup with a constant key in range is known not NULL (6.13)
            arr = (mp := self.maps.get(m)) is not None and mp.type in ARRAYS
            return V(K.VALUE, ref=m) if arr else V(K.VALUE_OR_NULL, ref=m, link=self.fresh())
        if fn in (1, 81):
            return TOP if m is None else V(K.VALUE, ref=m)
        return FULL

    # ------------------------------------------------------------------ memory

    def ld_imm64(self, s: State, x: Insn) -> State:
        regs = list(s.regs[-1])
        hi = self.insns[s.pc + 1].imm
        regs[x.dst] = {0: scalar((x.imm & 0xFFFFFFFF) | (hi & 0xFFFFFFFF) << 32),
                       asm.PSEUDO_MAP_FD: V(K.MAP, ref=x.imm),
                       asm.PSEUDO_MAP_VALUE: V(K.VALUE, ref=x.imm)}.get(x.src, TOP)
        return self.put(s, regs, pc=s.pc + 2)

    def access(self, s: State, base: int, off: int, size: int, write: bool) -> tuple[V, int]:
        """Check an access through register ``base`` at ``off``; the base and, for the
        stack, the frame it is in (-1: not a stack access followed)."""
        v = s.regs[-1][base]
        if v.kind == K.CTX and v.lo:
            raise Fault(errno.EACCES, f"dereference of modified ctx ptr R{base} off={v.lo} "
                                      "disallowed")
        if v.kind in (K.SCALAR, K.VALUE_OR_NULL):
            raise Fault(errno.EACCES, f"R{base} invalid mem access '{_type(v)}'")
        if v.kind != K.STACK or v.ref >= len(s.stacks):
            return v, -1
        at = v.lo + off
        if at % size:
            raise Fault(errno.EACCES, f"misaligned stack access off 0+{v.lo}+{off} size {size}")
        if at < -STACK_SIZE or at + size > 0:
            raise Fault(errno.EACCES, f"invalid {'write to' if write else 'read from'} stack "
                                      f"R{base} off={at} size={size}")
        return v, v.ref

    def load(self, s: State, x: Insn) -> State:
        regs = list(s.regs[-1])
        base, size = self.read(regs, x.src), _SIZE[asm.Size(x.code & 0x18)]
        v, frame = self.access(s, x.src, x.off, size, False)
        out = TOP
        if x.code & 0xE0 == asm.MEMSX:  # sign-extended: not followed
            pass
        elif frame >= 0:
            at = v.lo + x.off
            spill = dict(s.stacks[frame]).get(at // 8)
            if spill is not None and size == 8:
                out = spill
            elif spill is not None and spill.kind in POINTERS:
                raise Fault(errno.EACCES, "invalid size of register fill")
        elif base.kind == K.CTX and self.ptype in CTX_POINTERS and not any(
                a < x.off + size and x.off < b for a, b in CTX_POINTERS[self.ptype]):
            out = scalar(0, (1 << 8 * size) - 1)
        elif base.kind == K.VALUE:
            m = self.maps.get(base.ref)
            if m is not None and m.btf is None and not m.flags & uapi.F_RDONLY_PROG:
                out = scalar(0, (1 << 8 * size) - 1)
        regs[x.dst] = out
        return self.put(s, regs)

    def store(self, s: State, x: Insn) -> State:
        """ST, STX and atomics: a spill or a clobber of the slots written."""
        regs = list(s.regs[-1])
        atomic = x.code & 0xE0 == asm.Mode.ATOMIC
        val = self.read(regs, x.src) if x.code & 7 == C.STX else scalar(x.imm)
        if self.read(regs, x.dst).kind == K.CTX and x.code & 7 == C.ST and not self.st_ctx:
            raise Fault(errno.EACCES, f"BPF_ST stores into R{x.dst} ctx is not allowed")
        if atomic and x.imm == asm.CMPXCHG:
            self.read(regs, 0)
        size = _SIZE[asm.Size(x.code & 0x18)]
        v, frame = self.access(s, x.dst, x.off, size, True)
        if atomic and x.imm & asm.FETCH:
            regs[0 if x.imm == asm.CMPXCHG else x.src] = TOP
        if frame < 0:
            return self.put(s, regs)
        at = v.lo + x.off
        slots = dict(s.stacks[frame])
        slots.pop(at // 8, None)
        if size == 8 and not atomic:
            if val.kind == K.SCALAR and const(val) is None:  # linked, as by a MOV
                val = regs[x.src] = val._replace(link=val.link or self.fresh())
            slots[at // 8] = val
        stacks = list(s.stacks)
        stacks[frame] = tuple(sorted(slots.items()))
        return self.put(s._replace(stacks=tuple(stacks)), regs)


def check(insns: list[Insn], maps: dict[int, Map | None], prog_type: int,
          ret_range: tuple[int, int] | None, *, global_funcs: bool = False, eat: int = 0,
          st_ctx: bool = True) -> None:
    """Walk the program's paths; raise ``Fault`` (errno, log line) as the kernel would.
    ``eat``: the expected attach type (which helpers the program may call);
    ``st_ctx``: immediate stores into the context are allowed (6.3)."""
    Walk(insns, maps, prog_type, ret_range, global_funcs, _hook(prog_type, eat),
         st_ctx).run()


def _hook(prog_type: int, eat: int) -> int:
    """The attach type whose helpers a program may call: its expected attach type, or,
    where the type does not need one (device, sysctl, sock_ops; CGROUP_SOCK: socket
    creation), its first."""
    types = [int(t) for t, p in uapi.CGROUP_PROG_TYPE.items() if p == prog_type]
    return eat if eat in types else min(types, default=eat)
