"""Random loop-free BPF programs for the ISA differential (VM-SPEC §8 layer 1).

A program reads its ten input registers from a one-entry ARRAY map (``LD_IMM64`` map
value), initialises eight stack slots from them, runs a random body (ALU, ALU32, byte
swaps, sign extensions, forward JMP/JMP32 branches, stack loads, sign-extending loads,
stores and atomics), and writes R0-R9 and the eight slots back into the same map value.
The inputs are data, not constants, so one program is run on many inputs and the
verifier cannot fold anything away; every register is a scalar, every memory access a
constant, aligned offset from R10, so the kernel loads every generated program.
"""

from __future__ import annotations

import random
import struct

from cgbpf import asm
from cgbpf.asm import FP, R0, R1, R2, R9, Insn, SupportsFileno

M64 = (1 << 64) - 1
NREGS, NSLOTS = 10, 8
#: the map value: inputs R0-R9, then outputs R0-R9 and the stack slots fp-8 .. fp-64
IN_OFF, OUT_OFF = 0, 8 * NREGS
VALUE_SIZE = 8 * (2 * NREGS + NSLOTS)
SCRATCH = -8 * NSLOTS - 8  # where the epilogue parks R0-R9 (fp-72 .. fp-144)

ALU_OPS = [asm.AluOp.ADD, asm.AluOp.SUB, asm.AluOp.MUL, asm.AluOp.DIV, asm.AluOp.OR,
           asm.AluOp.AND, asm.AluOp.LSH, asm.AluOp.RSH, asm.AluOp.MOD, asm.AluOp.XOR,
           asm.AluOp.MOV, asm.AluOp.ARSH]
JMP_OPS = [op for op in asm.JmpOp if op not in (asm.JmpOp.JA, asm.JmpOp.CALL, asm.JmpOp.EXIT)]
ATOMIC_OPS = [0x00, 0x40, 0x50, 0xA0, 0x01, 0x41, 0x51, 0xA1, asm.XCHG, asm.CMPXCHG]
SIZES = {1: asm.Size.B, 2: asm.Size.H, 4: asm.Size.W, 8: asm.Size.DW}
MEMSX = 0x80
SHIFTS = (asm.AluOp.LSH, asm.AluOp.RSH, asm.AluOp.ARSH)


def interesting(rng: random.Random) -> int:
    """An operand value: edges of 8/16/32/64-bit ranges, small numbers, or random."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([0, 1, 2, M64, M64 - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF,
                           0x80000000, 0x7FFFFFFF, 0xFFFFFFFF80000000, 0x1_0000_0000,
                           0x80, 0xFF, 0x8000, 0xFFFF, 63, 64, 31, 32])
    if kind == 1:
        return rng.randrange(-64, 64) & M64
    if kind == 2:
        return rng.getrandbits(32)
    if kind == 3:
        return (rng.getrandbits(32) | 0xFFFFFFFF00000000) if rng.random() < 0.5 else \
            rng.getrandbits(16)
    return rng.getrandbits(64)


def _imm(rng: random.Random) -> int:
    """An s32 immediate."""
    v = interesting(rng) & 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _reg(rng: random.Random) -> int:
    return rng.randrange(NREGS)


def _alu(rng: random.Random) -> Insn:
    cls = rng.choice([asm.Class.ALU64, asm.Class.ALU])
    is64 = cls == asm.Class.ALU64
    d, r = _reg(rng), rng.random()
    if r < 0.05:
        return Insn(cls | asm.AluOp.NEG, d)
    if r < 0.12:  # le/be (ALU) or bswap (ALU64)
        src = 0 if is64 else rng.choice([asm.TO_LE, asm.TO_BE])
        return Insn(cls | asm.AluOp.END | src, d, imm=rng.choice([16, 32, 64]))
    op = rng.choice(ALU_OPS)
    if rng.random() < 0.5:  # X
        off = 0
        if op in (asm.AluOp.DIV, asm.AluOp.MOD):
            off = rng.choice([0, 1])
        elif op == asm.AluOp.MOV and rng.random() < 0.5:
            off = rng.choice([8, 16, 32] if is64 else [8, 16])
        return Insn(cls | op | asm.Src.X, d, _reg(rng), off)
    off = rng.choice([0, 1]) if op in (asm.AluOp.DIV, asm.AluOp.MOD) else 0
    if op in SHIFTS:
        imm = rng.randrange(64 if is64 else 32)
    else:
        imm = _imm(rng)
        if op in (asm.AluOp.DIV, asm.AluOp.MOD) and imm == 0:
            imm = rng.choice([1, -1, 3])
    return Insn(cls | op, d, 0, off, imm)


def _slot(rng: random.Random, n: int) -> int:
    """A naturally aligned offset from R10 inside the initialised slots."""
    return -8 * rng.randrange(1, NSLOTS + 1) + n * rng.randrange(8 // n)


def _mem(rng: random.Random) -> Insn:
    n = rng.choice([1, 2, 4, 8])
    size, r = SIZES[n], rng.random()
    if r < 0.35:
        mode = MEMSX if n < 8 and rng.random() < 0.4 else asm.Mode.MEM
        return Insn(asm.Class.LDX | mode | size, _reg(rng), FP, _slot(rng, n))
    if r < 0.6:
        return Insn(asm.Class.STX | asm.Mode.MEM | size, FP, _reg(rng), _slot(rng, n))
    if r < 0.75:
        return Insn(asm.Class.ST | asm.Mode.MEM | size, FP, 0, _slot(rng, n), _imm(rng))
    n = rng.choice([4, 8])
    return Insn(asm.Class.STX | asm.Mode.ATOMIC | SIZES[n], FP, _reg(rng), _slot(rng, n),
                rng.choice(ATOMIC_OPS))


def body(rng: random.Random, length: int, branches: int) -> list[Insn]:
    """``length`` random instructions, ``branches`` of them forward conditional jumps
    (their targets at most the end of the body)."""
    at = set(rng.sample(range(length), min(branches, length)))
    out: list[Insn] = []
    for i in range(length):
        if i in at:
            cls = rng.choice([asm.Class.JMP, asm.Class.JMP32])
            op, off = rng.choice(JMP_OPS), rng.randrange(0, length - i)
            if rng.random() < 0.5:
                out.append(Insn(cls | op | asm.Src.X, _reg(rng), _reg(rng), off))
            else:
                out.append(Insn(cls | op, _reg(rng), 0, off, _imm(rng)))
        else:
            out.append(_alu(rng) if rng.random() < 0.65 else _mem(rng))
    return out


def program(io: SupportsFileno, insns: list[Insn]) -> list[asm.Item]:
    """``insns`` between the prologue (inputs into R0-R9 and the stack slots) and the
    epilogue (R0-R9 and the slots into the outputs; return 1)."""
    pro: list[asm.Item] = [asm.ld_map_value(R9, io, IN_OFF)]
    pro += [asm.ldx("dw", r, R9, 8 * r) for r in range(NREGS - 1)]
    pro += [asm.ldx("dw", R9, R9, 8 * (NREGS - 1))]
    pro += [asm.stx("dw", FP, -8 * (j + 1), j) for j in range(NSLOTS)]
    epi: list[asm.Item] = [asm.stx("dw", FP, SCRATCH - 8 * r, r) for r in range(NREGS)]
    epi.append(asm.ld_map_value(R1, io, OUT_OFF))
    for r in range(NREGS):
        epi += [asm.ldx("dw", R2, FP, SCRATCH - 8 * r), asm.stx("dw", R1, 8 * r, R2)]
    for j in range(NSLOTS):
        epi += [asm.ldx("dw", R2, FP, -8 * (j + 1)), asm.stx("dw", R1, 8 * (NREGS + j), R2)]
    return [*pro, *insns, *epi, asm.mov64(R0, 1), asm.exit_()]


def inputs(rng: random.Random) -> bytes:
    """A map value holding random inputs and zeroed outputs."""
    return struct.pack(f"<{NREGS}Q", *(interesting(rng) for _ in range(NREGS))).ljust(
        VALUE_SIZE, b"\0")


def outputs(value: bytes) -> tuple[int, ...]:
    """R0-R9 and the slots fp-8 .. fp-64 as the program left them."""
    return struct.unpack_from(f"<{NREGS + NSLOTS}Q", value, OUT_OFF)


def input_regs(value: bytes) -> tuple[int, ...]:
    """The inputs R0-R9 of a map value."""
    return struct.unpack_from(f"<{NREGS}Q", value, IN_OFF)
