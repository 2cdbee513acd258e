"""The BPF ISA as the kernel runs it after verification (VM-SPEC §1-§2).

:func:`code` decodes a loaded program once into one pre-bound handler per instruction
slot (cached on the program); :func:`run` runs it: ``handler(regs, state) -> next pc``.
Registers hold scalars (``int`` in ``[0, 2**64)``), pointers (:class:`.regions.Ptr`) or
:data:`.regions.UNINIT`.  Every handler has a fast path for scalars and falls back to
the pointer rules of §1.2, which raise what the verifier would have said at load.

The structural checks of §2.1 that need the whole program (unreachable instructions, the
last instruction) are the model verifier's (:mod:`..verifier`); decoding here refuses
what one instruction shows (unknown opcodes, reserved fields, register numbers, shifts
and divisions by constants, jump targets), since a program reaching the VM may have been
loaded by a model that checks less.
"""

from __future__ import annotations

import errno
import operator
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ... import asm, uapi
from . import maps as vmaps
from .errors import NondeterministicValue, NotSupportedByVM, StepLimit, VerifierWouldReject
from .regions import M32, M64, STACK_SIZE, UNINIT, MapRegion, Ptr, Region, Stack

if TYPE_CHECKING:
    from ..objects import Map, Prog
    from .env import Env

Regs = list[Any]
Handler = Callable[[Regs, "_State"], int]

MAX_FRAMES = 8  # MAX_CALL_FRAMES
S64, S32 = 1 << 63, 1 << 31
# classes, sources, ALU and JMP ops, memory modes and sizes: asm's (the single source,
# checked against <linux/bpf.h>), as plain ints for the handlers
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = (int(c) for c in asm.Class)
X = int(asm.Src.X)
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    int(o) for o in asm.AluOp)
JA, CALL, EXIT = int(asm.JmpOp.JA), int(asm.JmpOp.CALL), int(asm.JmpOp.EXIT)
JCOND = 0xE0  # may_goto (6.9), which asm does not emit
MEM, MEMSX, ATOMIC = int(asm.Mode.MEM), asm.MEMSX, int(asm.Mode.ATOMIC)
SIZES = {int(asm.Size.W): 4, int(asm.Size.H): 2, int(asm.Size.B): 1, int(asm.Size.DW): 8}
FETCH, XCHG, CMPXCHG = asm.FETCH, asm.XCHG, asm.CMPXCHG
LOAD_ACQ, STORE_REL = 0x100, 0x110  # BPF_LOAD_ACQ, BPF_STORE_REL (6.15)
PSEUDO_CALL, PSEUDO_KFUNC_CALL = uapi.PSEUDO_CALL, 2
MAP_FD, MAP_VALUE, FUNC = asm.PSEUDO_MAP_FD, asm.PSEUDO_MAP_VALUE, uapi.PSEUDO_FUNC
BTF_ID, MAP_IDX, MAP_IDX_VALUE = 3, 5, 6  # BPF_PSEUDO_BTF_ID, _MAP_IDX, _MAP_IDX_VALUE
TAIL_CALL = 12
OP_SYM = {ADD: "+=", SUB: "-=", MUL: "*=", DIV: "/=", OR: "|=", AND: "&=", LSH: "<<=",
          RSH: ">>=", NEG: "neg", MOD: "%=", XOR: "^=", MOV: "=", ARSH: "s>>=", END: "endian"}


class _Exit(Exception):
    """The main program's EXIT (the run loop's only normal way out)."""


class _Frame:
    """A caller's state kept across a bpf-to-bpf call: where to return, R6-R9, its
    stack."""

    __slots__ = ("callee_saved", "ret", "stack")

    def __init__(self, ret: int, callee_saved: list[Any], stack: Stack) -> None:
        self.ret, self.callee_saved, self.stack = ret, callee_saved, stack


class _State:
    """One run: the environment, the current frame's stack and the callers' frames."""

    __slots__ = ("env", "frames", "stack")

    def __init__(self, env: Env) -> None:
        self.env = env
        self.stack = Stack(0, uninit=env.uninit_stack)
        self.frames: list[_Frame] = []


class Code:
    """A decoded program: ``ops[pc]`` is the handler of slot ``pc`` (one past the end:
    a handler saying the program fell off its end)."""

    __slots__ = ("insns", "ops")

    def __init__(self, ops: list[Handler], insns: int) -> None:
        self.ops, self.insns = ops, insns


def code(prog: Prog) -> Code:
    """The decoded form of ``prog``, made on first use and kept on it."""
    c = prog.vm_code
    if c is None:
        c = prog.vm_code = decode(prog.insns, prog.maps)
    assert isinstance(c, Code)
    return c


def run(prog: Prog, ctx: Region, env: Env) -> int:
    """Run ``prog`` on ``ctx``: R1 = the context, R10 = the frame pointer, the other
    registers unreadable; returns R0 as ``bpf_prog_run`` does (u32).  Raises
    :class:`.errors.VmError` (a check the kernel makes at load, a feature the VM lacks, a
    nondeterministic value) and :class:`.errors.StepLimit` past ``env.step_limit``."""
    ops = code(prog).ops
    st = _State(env)
    regs: Regs = [UNINIT] * 11
    regs[1], regs[10] = Ptr(ctx, 0), Ptr(st.stack, STACK_SIZE)
    env.ctx = ctx
    limit, pc, i = env.step_limit, 0, -1
    try:
        for i in range(limit):  # noqa: B007 (i counts the steps, read in finally)
            pc = ops[pc](regs, st)
        raise StepLimit(errno.E2BIG, f"program may not terminate: more than {limit} "
                        "instructions executed")
    except _Exit:
        pass
    finally:
        env.steps += i + 1
    r0: int = regs[0]
    return r0 & M32


# --- errors ------------------------------------------------------------------------------


def _reject(err: int, msg: str) -> VerifierWouldReject:
    return VerifierWouldReject(err, msg)


def _unreadable(reg: int) -> VerifierWouldReject:
    return _reject(errno.EACCES, f"R{reg} !read_ok")


def _not_scalar(reg: int, v: object) -> NoReturn:
    """A register that should have held a scalar: unreadable, or a pointer where the
    kernel would use its (unknowable) address."""
    if v is UNINIT:
        raise _unreadable(reg)
    raise NondeterministicValue(f"R{reg} = {v!r} used as a number (the kernel uses its "
                                "real address)")


def _bad_base(reg: int, v: object) -> NoReturn:
    if v is UNINIT:
        raise _unreadable(reg)
    raise _reject(errno.EACCES, f"R{reg} invalid mem access 'scalar'")


def _invalid_at(msg: str) -> Callable[[], Exception]:
    """A maker of the EINVAL refusal ``msg`` (for :func:`_raiser`)."""
    return lambda: _invalid(msg)


def _raiser(make: Callable[[], Exception]) -> Handler:
    """A handler raising a new ``make()`` when it runs (a feature met only if executed;
    a new one each time: one exception raised again would collect every run's
    traceback, and keep their frames alive with the cached program)."""
    def h(regs: Regs, st: _State) -> int:
        raise make()
    return h


# --- arithmetic --------------------------------------------------------------------------


def _s64(x: int) -> int:
    return x - (1 << 64) if x & S64 else x


def _s32(x: int) -> int:
    return x - (1 << 32) if x & S32 else x


def _sx(x: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of ``x`` (as a Python int)."""
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


def _tdiv(a: int, b: int) -> int:
    """C's truncating division (Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _div(a: int, b: int) -> int:
    return a // b if b else 0


def _mod(a: int, b: int) -> int:
    return a % b if b else a


def _width_ops(signed: Callable[[int], int], mask: int) -> tuple[BinOp, ...]:
    """sdiv, smod, lsh, rsh, arsh of one width (64 or 32) on unsigned operands: signed
    division truncates toward zero, the remainder has the dividend's sign (C), by zero
    ``x / 0 = 0`` and ``x % 0 = x``; register shift amounts are masked (VM-SPEC §2.2)."""
    def sdiv(a: int, b: int) -> int:
        return _tdiv(signed(a), signed(b)) if b else 0

    def smod(a: int, b: int) -> int:
        if not b:
            return a
        sa, sb = signed(a), signed(b)
        return sa - sb * _tdiv(sa, sb)

    def lsh(a: int, b: int) -> int:
        return a << (b & mask)

    def rsh(a: int, b: int) -> int:
        return a >> (b & mask)

    def arsh(a: int, b: int) -> int:
        return signed(a) >> (b & mask)

    return sdiv, smod, lsh, rsh, arsh


BinOp = Callable[[int, int], int]
_sdiv64, _smod64, _lsh64, _rsh64, _arsh64 = _width_ops(_s64, 63)
_sdiv32, _smod32, _lsh32, _rsh32, _arsh32 = _width_ops(_s32, 31)
#: (op, off) -> f(a, b) on unsigned operands of the width; the handler masks the result
_OPS: dict[tuple[int, int], tuple[BinOp, BinOp]] = {
    (ADD, 0): (operator.add, operator.add), (SUB, 0): (operator.sub, operator.sub),
    (MUL, 0): (operator.mul, operator.mul), (OR, 0): (operator.or_, operator.or_),
    (AND, 0): (operator.and_, operator.and_), (XOR, 0): (operator.xor, operator.xor),
    (DIV, 0): (_div, _div), (MOD, 0): (_mod, _mod), (DIV, 1): (_sdiv64, _sdiv32),
    (MOD, 1): (_smod64, _smod32), (LSH, 0): (_lsh64, _lsh32), (RSH, 0): (_rsh64, _rsh32),
    (ARSH, 0): (_arsh64, _arsh32),
}


def _bswap(x: int, n: int) -> int:
    """Reverse the low ``n`` bytes of ``x``."""
    return int.from_bytes((x & ((1 << (8 * n)) - 1)).to_bytes(n, "little"), "big")


def _ptr_alu(op: int, d: int, dv: Any, sv: Any) -> Any:
    """ALU64 ADD/SUB (and the refusals) when an operand is a pointer (§1.2)."""
    if dv is UNINIT:
        raise _unreadable(d)
    sym = OP_SYM[op]
    if isinstance(dv, Ptr) and isinstance(sv, Ptr):
        if op != SUB:
            raise _reject(errno.EACCES, f"R{d} pointer {sym} pointer prohibited")
        if dv.region is not sv.region:
            raise NondeterministicValue(f"R{d}: difference of pointers into different "
                                        "regions")
        return (dv.off - sv.off) & M64
    ptr, scalar = (dv, sv) if isinstance(dv, Ptr) else (sv, dv)
    if ptr.region.kind == "map":
        raise _reject(errno.EACCES, f"R{d} pointer arithmetic on map_ptr prohibited")
    if op == ADD:
        return Ptr(ptr.region, ptr.off + _s64(scalar))
    if op == SUB:
        if ptr is sv:
            raise _reject(errno.EACCES, f"R{d} tried to subtract pointer from scalar")
        return Ptr(ptr.region, ptr.off - _s64(scalar))
    if op in (AND, OR, XOR):
        raise _reject(errno.EACCES, f"R{d} bitwise operator {sym} on pointer prohibited")
    raise _reject(errno.EACCES, f"R{d} pointer arithmetic with {sym} operator prohibited")


def _alu_slow(is64: bool, op: int, d: int, s: int | None, dv: Any, sv: Any) -> Any:
    """The non-scalar cases of a binary ALU op (``s`` None: an immediate)."""
    if s is not None and sv is UNINIT:
        raise _unreadable(s)
    if dv is UNINIT:
        raise _unreadable(d)
    if not is64:
        raise _reject(errno.EACCES, f"R{d} 32-bit pointer arithmetic prohibited")
    return _ptr_alu(op, d, dv, sv)


# Four handler makers of one shape on purpose: each instruction's closure has only its
# own case to test (one merged maker measured 16-30% slower on an ALU loop).


def _alu64_k(f: BinOp, op: int, d: int, imm: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        v = regs[d]
        if v.__class__ is int:
            regs[d] = f(v, imm) & M64
        else:
            regs[d] = _alu_slow(True, op, d, None, v, imm)
        return nxt
    return h


def _alu64_x(f: BinOp, op: int, d: int, s: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        v, w = regs[d], regs[s]
        if v.__class__ is int and w.__class__ is int:
            regs[d] = f(v, w) & M64
        else:
            regs[d] = _alu_slow(True, op, d, s, v, w)
        return nxt
    return h


def _alu32_k(f: BinOp, op: int, d: int, imm: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        v = regs[d]
        if v.__class__ is int:
            regs[d] = f(v & M32, imm) & M32
        else:
            _alu_slow(False, op, d, None, v, imm)
        return nxt
    return h


def _alu32_x(f: BinOp, op: int, d: int, s: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        v, w = regs[d], regs[s]
        if v.__class__ is int and w.__class__ is int:
            regs[d] = f(v & M32, w & M32) & M32
        else:
            _alu_slow(False, op, d, s, v, w)
        return nxt
    return h


def _unary(d: int, f: Callable[[int], int], nxt: int) -> Handler:
    """NEG and byte swaps: the register must hold a scalar."""
    def h(regs: Regs, st: _State) -> int:
        v = regs[d]
        if v.__class__ is not int:
            _not_scalar(d, v)
        regs[d] = f(v)
        return nxt
    return h


def _mov_k(d: int, value: int | Ptr, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        regs[d] = value
        return nxt
    return h


def _mov64_x(d: int, s: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        v = regs[s]
        if v is UNINIT:
            raise _unreadable(s)
        regs[d] = v
        return nxt
    return h


def _mov_x(d: int, s: int, f: Callable[[int], int], nxt: int) -> Handler:
    """MOV32 and MOVSX: the low bits of a pointer are its real address's."""
    def h(regs: Regs, st: _State) -> int:
        v = regs[s]
        if v.__class__ is not int:
            _not_scalar(s, v)
        regs[d] = f(v)
        return nxt
    return h


def _alu(cls: int, op: int, source: int, d: int, s: int, off: int, imm: int,
         pc: int) -> Handler:
    """The handler of one ALU or ALU64 instruction (fields already checked)."""
    is64, nxt = cls == ALU64, pc + 1
    mask = M64 if is64 else M32
    k = (imm & M64) if is64 else (imm & M32)  # ALU64: the imm sign-extended
    if op == MOV:
        if not source:
            return _mov_k(d, k, nxt)
        if off == 1:  # BPF_ADDR_SPACE_CAST
            return _raiser(lambda: NotSupportedByVM("arena address space cast (mov, off=1)"))
        if is64 and not off:
            return _mov64_x(d, s, nxt)
        bits = off or 32
        return _mov_x(d, s, lambda v: _sx(v, bits) & mask, nxt)
    if op == NEG:
        return _unary(d, lambda v: -v & mask, nxt)
    if op == END:
        n = imm // 8
        if is64 or source:  # BSWAP, TO_BE: swap and truncate
            return _unary(d, lambda v: _bswap(v, n), nxt)
        return _unary(d, lambda v: v & ((1 << imm) - 1), nxt)  # TO_LE: truncate
    f = _OPS[op, off][0 if is64 else 1]
    if is64:
        return _alu64_x(f, op, d, s, nxt) if source else _alu64_k(f, op, d, k, nxt)
    return _alu32_x(f, op, d, s, nxt) if source else _alu32_k(f, op, d, k, nxt)


# --- jumps -------------------------------------------------------------------------------

Cmp = Callable[[int, int], Any]
#: op -> (compare, signed)
_CMPS: dict[int, tuple[Cmp, bool]] = {
    0x10: (operator.eq, False), 0x20: (operator.gt, False), 0x30: (operator.ge, False),
    0x40: (operator.and_, False), 0x50: (operator.ne, False), 0x60: (operator.gt, True),
    0x70: (operator.ge, True), 0xA0: (operator.lt, False), 0xB0: (operator.le, False),
    0xC0: (operator.lt, True), 0xD0: (operator.le, True),
}


def _cmp_slow(is64: bool, d: int, s: int | None, x: Any, y: Any) -> tuple[int, int]:
    """Comparison operands when one is a pointer (§1.2): a pointer against NULL or
    against a pointer into the same region is decided (by the fake addresses); anything
    else depends on a real address."""
    if s is not None and y is UNINIT:
        raise _unreadable(s)
    if x is UNINIT:
        raise _unreadable(d)
    xp, yp = isinstance(x, Ptr), isinstance(y, Ptr)
    if is64 and ((xp and yp and x.region is y.region) or (xp and y == 0 and not yp)
                 or (yp and x == 0 and not xp)):
        return (x.address if xp else x), (y.address if yp else y)
    raise NondeterministicValue(f"comparison of R{d} = {x!r} with {y!r} depends on a "
                                "real address")


def _jmp(cls: int, op: int, source: int, d: int, s: int, imm: int, tgt: int,
         nxt: int) -> Handler:
    """A conditional jump; signed compares flip the sign bit and compare unsigned."""
    cmp, signed = _CMPS[op]
    is64 = cls == JMP
    flip = (S64 if is64 else S32) if signed else 0
    if not source:
        y = ((imm & M64) if is64 else (imm & M32)) ^ flip

        if is64:
            def h(regs: Regs, st: _State) -> int:
                x = regs[d]
                if x.__class__ is not int:
                    xa, ya = _cmp_slow(True, d, None, x, imm & M64)
                    return tgt if cmp(xa ^ flip, ya ^ flip) else nxt
                return tgt if cmp(x ^ flip, y) else nxt
        else:
            def h(regs: Regs, st: _State) -> int:
                x = regs[d]
                if x.__class__ is not int:
                    _cmp_slow(False, d, None, x, imm & M32)
                return tgt if cmp((x & M32) ^ flip, y) else nxt
        return h
    if is64:
        def hx(regs: Regs, st: _State) -> int:
            x, y = regs[d], regs[s]
            if x.__class__ is not int or y.__class__ is not int:
                x, y = _cmp_slow(True, d, s, x, y)
            return tgt if cmp(x ^ flip, y ^ flip) else nxt
    else:
        def hx(regs: Regs, st: _State) -> int:
            x, y = regs[d], regs[s]
            if x.__class__ is not int or y.__class__ is not int:
                _cmp_slow(False, d, s, x, y)
            return tgt if cmp((x & M32) ^ flip, (y & M32) ^ flip) else nxt
    return hx


def _goto(tgt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        return tgt
    return h


# --- calls and exit ----------------------------------------------------------------------


def _round16(n: int) -> int:
    return (n + 15) & ~15


def _check_stack_depth(st: _State) -> None:
    """The verifier's limit on the combined stack of a call chain (each frame rounded
    up to 16 bytes, as with the JIT): checked on the path that runs."""
    stacks = [f.stack for f in st.frames] + [st.stack]
    total = sum(_round16(STACK_SIZE - s.lowest) for s in stacks)
    if total > STACK_SIZE:
        raise _reject(errno.EACCES, f"combined stack size of {len(stacks)} calls is "
                      f"{total}. Too large")


_UNINIT4, _UNINIT5 = [UNINIT] * 4, [UNINIT] * 5


def _helper(helper_id: int, nxt: int) -> Handler:
    """A helper call: R0 = the result, R1-R5 unreadable afterwards."""
    def h(regs: Regs, st: _State) -> int:
        r0 = st.env.helper(helper_id, (regs[1], regs[2], regs[3], regs[4], regs[5]))
        regs[0] = r0 & M64 if r0.__class__ is int else r0
        regs[1:6] = _UNINIT5
        return nxt
    return h


def _subprog_call(tgt: int, nxt: int) -> Handler:
    """A bpf-to-bpf call: a fresh stack and R10, R6-R9 saved (unreadable in the callee),
    R1-R5 passed on."""
    def h(regs: Regs, st: _State) -> int:
        frames = st.frames
        if len(frames) + 1 >= MAX_FRAMES:
            raise _reject(errno.E2BIG, f"the call stack of {len(frames) + 2} frames is too "
                          "deep")
        _check_stack_depth(st)
        frames.append(_Frame(nxt, regs[6:10], st.stack))
        st.stack = Stack(len(frames), uninit=st.env.uninit_stack)
        regs[6:10] = _UNINIT4
        regs[10] = Ptr(st.stack, STACK_SIZE)
        return tgt
    return h


def _exit(regs: Regs, st: _State) -> int:
    """EXIT: back to the caller (R1-R5 unreadable, R6-R10 restored), or the end of the
    run with a scalar R0."""
    r0 = regs[0]
    if r0.__class__ is not int:
        if r0 is UNINIT:
            raise _unreadable(0)
        if not st.frames:
            raise _reject(errno.EINVAL, f"At program exit the register R0 is not a known "
                          f"value ({r0.region.kind})")
        if r0.region is st.stack:
            raise _reject(errno.EINVAL, "cannot return stack pointer to the caller")
    if not st.frames:
        raise _Exit
    _check_stack_depth(st)
    frame = st.frames.pop()
    regs[1:6] = _UNINIT5
    regs[6:10] = frame.callee_saved
    st.stack = frame.stack
    regs[10] = Ptr(frame.stack, STACK_SIZE)
    return frame.ret


# --- memory ------------------------------------------------------------------------------


def _modified_ctx(reg: int, off: int) -> VerifierWouldReject:
    return _reject(errno.EACCES, f"dereference of modified ctx ptr R{reg} off={off} "
                   "disallowed")


def _ldx(d: int, s: int, off: int, n: int, signed: bool, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        p = regs[s]
        if p.__class__ is not Ptr:
            _bad_base(s, p)
        o, r = p.off, p.region
        if o and r.kind == "ctx":
            raise _modified_ctx(s, o)
        regs[d] = r.load(o + off, n, signed)
        return nxt
    return h


def _stx(d: int, s: int, off: int, n: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        v, p = regs[s], regs[d]
        if v is UNINIT:
            raise _unreadable(s)
        if p.__class__ is not Ptr:
            _bad_base(d, p)
        o, r = p.off, p.region
        if o and r.kind == "ctx":
            raise _modified_ctx(d, o)
        r.store(o + off, n, v)
        return nxt
    return h


def _st(d: int, off: int, n: int, value: int, nxt: int) -> Handler:
    def h(regs: Regs, st: _State) -> int:
        p = regs[d]
        if p.__class__ is not Ptr:
            _bad_base(d, p)
        o, r = p.off, p.region
        if o and r.kind == "ctx":
            raise _modified_ctx(d, o)
        r.store(o + off, n, value)
        return nxt
    return h


_ATOMIC_OPS: dict[int, BinOp] = {ADD: operator.add, OR: operator.or_, AND: operator.and_,
                                 XOR: operator.xor}
_ATOMIC_REGIONS = ("stack", "map_value", "mem")


def _atomic(d: int, s: int, off: int, n: int, imm: int, nxt: int) -> Handler:
    """An atomic read-modify-write on the stack or a map value (§2.3); load-acquire
    and store-release are a plain load (into ``dst``) and store."""
    mask = (1 << 8 * n) - 1
    if imm == LOAD_ACQ:
        return _ldx(d, s, off, n, False, nxt)
    if imm == STORE_REL:
        return _stx(d, s, off, n, nxt)
    op = _ATOMIC_OPS.get(imm & ~FETCH)

    def h(regs: Regs, st: _State) -> int:
        v, p = regs[s], regs[d]
        if v.__class__ is not int:
            _not_scalar(s, v)
        if p.__class__ is not Ptr:
            _bad_base(d, p)
        r, e = p.region, p.off + off
        if r.kind not in _ATOMIC_REGIONS:
            raise _reject(errno.EACCES, f"BPF_ATOMIC stores into R{d} {r.kind} is not "
                          "allowed")
        if e % n:
            raise _reject(errno.EACCES, f"misaligned access off {e} size {n}")
        old = r.load(e, n)
        if old.__class__ is not int:
            raise _reject(errno.EACCES, f"R{d} atomic on a spilled pointer")
        if op is not None:
            r.store(e, n, op(old, v) & mask)
            if imm & FETCH:
                regs[s] = old
        elif imm == XCHG:
            r.store(e, n, v & mask)
            regs[s] = old
        else:  # CMPXCHG
            r0 = regs[0]
            if r0.__class__ is not int:
                _not_scalar(0, r0)
            if old == r0 & mask:
                r.store(e, n, v & mask)
            regs[0] = old
        return nxt
    return h


# --- decoding ----------------------------------------------------------------------------


def _invalid(msg: str, err: int = errno.EINVAL) -> VerifierWouldReject:
    return _reject(err, msg)


def _check_alu(i: int, cls: int, op: int, source: int, d: int, s: int, off: int,
               imm: int) -> None:
    """The reserved-field and constant-operand checks of one ALU/ALU64 instruction."""
    is64 = cls == ALU64
    if op == END:
        if (is64 and source) or s or off or imm not in (16, 32, 64):
            raise _invalid("BPF_END uses reserved fields")
        return
    if op == NEG:
        if source or s or off or imm:
            raise _invalid(f"unknown opcode {(cls | op | source):02x}" if source
                           else "BPF_NEG uses reserved fields")
        return
    if op == MOV:
        offs = (0, 1, 8, 16, 32) if is64 else (0, 1, 8, 16)
        if (source and (imm or off not in offs)) or (not source and (s or off)):
            raise _invalid("BPF_MOV uses reserved fields")
        return
    if (source and imm) or (not source and s) or off not in ((0, 1) if op in (DIV, MOD)
                                                             else (0,)):
        raise _invalid("BPF_ALU uses reserved fields")
    if not source and op in (DIV, MOD) and imm == 0:
        raise _invalid("div by zero")
    if not source and op in (LSH, RSH, ARSH) and not 0 <= imm < (64 if is64 else 32):
        raise _invalid(f"invalid shift {imm}")


def decode(raw: bytes, used_maps: list[Map]) -> Code:
    """Decode ``raw`` into handlers.  ``used_maps`` holds one map per map-referencing
    ld_imm64, in program order (what the loader resolved).  Raises
    :class:`VerifierWouldReject` for what one instruction shows the kernel refuses at
    load (division by a zero constant, shift counts, reserved fields): PROG_LOAD decodes
    with it; a feature the VM lacks only raises when it runs."""
    insns = list(struct.iter_unpack("<BBhi", raw))
    n, ops = len(insns), []
    maps = iter(used_maps)
    map_regions: dict[int, MapRegion] = {}
    pc = 0
    while pc < n:
        c, regs, off, imm = insns[pc]
        d, s = regs & 0xF, regs >> 4
        cls, op, source = c & 0x07, c & 0xF0, c & X
        nxt = pc + 1
        if d > 10 or (s > 10 and c not in (0x18, JMP | CALL)):
            raise _invalid(f"R{max(d, s)} is invalid")
        writes_dst = cls in (ALU, ALU64, LDX, LD) or (
            cls == STX and c & 0xE0 == ATOMIC and imm == LOAD_ACQ)
        if d == 10 and writes_dst:
            raise _invalid("frame pointer is read only", errno.EACCES)
        h: Handler
        if cls in (ALU, ALU64):
            if op > END or (op == END and cls == ALU64 and source):
                raise _invalid(f"unknown opcode {c:02x}")
            _check_alu(pc, cls, op, source, d, s, off, imm)
            h = _alu(cls, op, source, d, s, off, imm, pc)
        elif cls in (JMP, JMP32):
            h = _decode_jmp(pc, n, cls, op, source, d, s, off, imm)
        elif cls == LD:
            if c != 0x18:
                raise _invalid("BPF_LD_[ABS|IND] instructions not allowed for this program "
                               "type" if c & 0xE0 in (0x20, 0x40) else f"unknown opcode {c:02x}")
            if pc + 1 >= n or insns[pc + 1][:3] != (0, 0, 0):
                raise _invalid("invalid bpf_ld_imm64 insn")
            h = _ld_imm64(d, s, imm, insns[pc + 1][3], maps, map_regions, pc + 2)
            ops.append(h)
            h = _raiser(_invalid_at(f"jump into the middle of ldimm64 insn {pc}"))
            pc += 1
        else:
            h = _decode_mem(c, cls, d, s, off, imm, nxt)
        ops.append(h)
        pc += 1
    ops.append(_raiser(lambda: _invalid("last insn is not an exit or jmp")))
    return Code(ops, n)


def _decode_jmp(pc: int, n: int, cls: int, op: int, source: int, d: int, s: int,
                off: int, imm: int) -> Handler:
    c, nxt = cls | op | source, pc + 1
    if op == CALL and cls == JMP:
        if source or d or off:
            raise _invalid("BPF_CALL uses reserved fields")
        if s == PSEUDO_CALL:
            return _subprog_call(_target(pc, n, pc + 1 + imm), nxt)
        if s == PSEUDO_KFUNC_CALL:
            return _raiser(lambda: NotSupportedByVM(f"kfunc call (btf id {imm})"))
        if s:
            raise _invalid("BPF_CALL uses reserved fields")
        if imm == TAIL_CALL:
            return _raiser(lambda: NotSupportedByVM("bpf_tail_call"))
        return _helper(imm, nxt)
    if op == EXIT and cls == JMP:
        if source or d or s or off or imm:
            raise _invalid("BPF_EXIT uses reserved fields")
        return _exit
    if op == JCOND and cls == JMP and not source:
        return _raiser(lambda: NotSupportedByVM("may_goto"))
    if op == JA:
        if source or d or s or (imm if cls == JMP else off):
            raise _invalid("BPF_JA uses reserved fields")
        return _goto(_target(pc, n, pc + 1 + (off if cls == JMP else imm)))
    if op not in _CMPS:
        raise _invalid(f"unknown opcode {c:02x}")
    if (source and imm) or (not source and s):
        raise _invalid("BPF_JMP/JMP32 uses reserved fields")
    return _jmp(cls, op, source, d, s, imm, _target(pc, n, pc + 1 + off), nxt)


def _target(pc: int, n: int, tgt: int) -> int:
    if not 0 <= tgt < n:
        raise _invalid(f"jump out of range from insn {pc} to {tgt}")
    return tgt


def _ld_imm64(d: int, s: int, lo: int, hi: int, maps: Any,
              map_regions: dict[int, MapRegion], nxt: int) -> Handler:
    """LD_IMM64 (§2.4): a constant, a map (src 1/5), a map value pointer (src 2/6)."""
    if s == 0:
        return _mov_k(d, (lo & M32) | (hi & M32) << 32, nxt)
    if s in (BTF_ID, FUNC):
        what = "ksym (BTF id)" if s == BTF_ID else "callback function pointer"
        return _raiser(lambda: NotSupportedByVM(f"ld_imm64 of a {what}"))
    if s not in (MAP_FD, MAP_VALUE, MAP_IDX, MAP_IDX_VALUE):
        raise _invalid(f"unrecognized bpf_ld_imm64 insn src {s}")
    m = next(maps, None)
    if m is None:
        raise _invalid("ld_imm64 refers to a map the loader did not resolve")
    if s in (MAP_FD, MAP_IDX):
        if hi:
            raise _invalid("invalid bpf_ld_imm64 insn")
        region = map_regions.get(id(m))
        if region is None:
            region = map_regions[id(m)] = MapRegion(m)
        return _mov_k(d, Ptr(region, 0), nxt)
    elem = m.element(bytes(m.key_size))
    if (m.type != uapi.MapType.ARRAY or m.max_entries != 1 or elem is None
            or not 0 <= hi < m.value_size):
        raise _invalid(f"invalid access to map value pointer, value_size={m.value_size} "
                       f"off={hi}")
    return _mov_k(d, Ptr(vmaps.value_region(m, elem), hi), nxt)


def _decode_mem(c: int, cls: int, d: int, s: int, off: int, imm: int, nxt: int) -> Handler:
    mode, n = c & 0xE0, SIZES[c & 0x18]
    if cls == LDX and mode in (MEM, MEMSX) and not (mode == MEMSX and n == 8):
        if imm:
            raise _invalid("BPF_LDX uses reserved fields")
        return _ldx(d, s, off, n, mode == MEMSX, nxt)
    if cls == ST and mode == MEM:
        if s:
            raise _invalid("BPF_ST uses reserved fields")
        return _st(d, off, n, imm & (M64 if n == 8 else (1 << 8 * n) - 1), nxt)
    if cls == STX and mode == MEM:
        if imm:
            raise _invalid("BPF_STX uses reserved fields")
        return _stx(d, s, off, n, nxt)
    if cls == STX and mode == ATOMIC:
        if imm not in (LOAD_ACQ, STORE_REL) and n < 4:
            raise _invalid("invalid atomic operand size")
        if imm not in (LOAD_ACQ, STORE_REL, XCHG, CMPXCHG) and imm & ~FETCH not in _ATOMIC_OPS:
            raise _invalid(f"BPF_ATOMIC uses invalid atomic opcode {imm:02x}")
        return _atomic(d, s, off, n, imm, nxt)
    raise _invalid(f"unknown opcode {c:02x}")
