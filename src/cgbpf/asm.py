"""eBPF instruction encoder, decoder and tiny assembler.

Builds the small programs that tests and feature probes attach to cgroup hooks without
needing clang. Operand convention: register operands are `Reg` members and a plain `int`
is always an immediate, so `mov64(R0, 1)` is MOV K while `mov64(R0, R1)` is MOV X.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Protocol, TypeAlias, TypeVar, overload

Reg = IntEnum("Reg", "R0 R1 R2 R3 R4 R5 R6 R7 R8 R9 R10", start=0)  # R10: frame pointer
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg
FP = R10

# --- opcode tables: the single source of opcode values (checked against <linux/bpf.h>) -----
Class = IntEnum("Class", {"LD": 0x00, "LDX": 0x01, "ST": 0x02, "STX": 0x03, "ALU": 0x04,
                          "JMP": 0x05, "JMP32": 0x06, "ALU64": 0x07})  # low 3 opcode bits
Size = IntEnum("Size", {"W": 0x00, "H": 0x08, "B": 0x10, "DW": 0x18})
Mode = IntEnum("Mode", {"IMM": 0x00, "ABS": 0x20, "IND": 0x40, "MEM": 0x60, "ATOMIC": 0xC0})
#: BPF_MEMSX, the sign-extending load mode (cpu v4, Linux 6.6; not in 6.1's <linux/bpf.h>,
#: which Debian 12 ships and the header test compiles against)
MEMSX = 0x80
Src = IntEnum("Src", {"K": 0x00, "X": 0x08})  # immediate or register operand
AluOp = IntEnum("AluOp", {  # also the atomic op (in imm) of BPF_STX|BPF_ATOMIC
    "ADD": 0x00, "SUB": 0x10, "MUL": 0x20, "DIV": 0x30, "OR": 0x40, "AND": 0x50, "LSH": 0x60,
    "RSH": 0x70, "NEG": 0x80, "MOD": 0x90, "XOR": 0xA0, "MOV": 0xB0, "ARSH": 0xC0, "END": 0xD0})
JmpOp = IntEnum("JmpOp", {
    "JA": 0x00, "JEQ": 0x10, "JGT": 0x20, "JGE": 0x30, "JSET": 0x40, "JNE": 0x50, "JSGT": 0x60,
    "JSGE": 0x70, "CALL": 0x80, "EXIT": 0x90, "JLT": 0xA0, "JLE": 0xB0, "JSLT": 0xC0,
    "JSLE": 0xD0})
TO_LE = 0x00  # BPF_END direction, stored in the Src bit
TO_BE = 0x08
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
LD_IMM64 = Class.LD | Mode.IMM | Size.DW

FN_map_lookup_elem = 1
FN_map_update_elem = 2
FN_map_delete_elem = 3
FN_get_current_pid_tgid = 14
FN_get_socket_cookie = 46
FN_get_current_cgroup_id = 80

_SIZES: dict[str | int, Size] = {"b": Size.B, "h": Size.H, "w": Size.W, "dw": Size.DW,
                                 1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}
_ALU_NAMES = {op.name.lower(): op for op in AluOp if op is not AluOp.END}
_BINARY_ALU = [op for op in AluOp if op not in (AluOp.NEG, AluOp.END)]
_COND_JMP = [op for op in JmpOp if op not in (JmpOp.JA, JmpOp.CALL, JmpOp.EXIT)]
_JMP_NAMES = {op.name.lower(): op for op in _COND_JMP}
_SUFFIX = {Class.ALU64: "64", Class.ALU: "32", Class.JMP: "", Class.JMP32: "32"}

_K = TypeVar("_K")
_V = TypeVar("_V")
_F = TypeVar("_F", bound=Callable[..., object])
Operand: TypeAlias = Reg | int
Target: TypeAlias = int | str
SizeArg: TypeAlias = str | int

# --- instructions and placeholders ---------------------------------------------------------


def _fit(value: int, lo: int, hi: int, what: str) -> int:
    """Return `value` if lo <= value <= hi, else raise ValueError naming the field."""
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value} out of range {lo}..{hi}")
    return value


def _s32(value: int, what: str = "imm") -> int:
    """Accept an s32 or u32 value and return it as s32 (the canonical stored form)."""
    if not -(2**31) <= value < 2**32:
        raise ValueError(f"{what} {value} fits neither s32 nor u32")
    return value - 2**32 if value >= 2**31 else value


def _s16(value: int, what: str = "off") -> int:
    return _fit(value, -(2**15), 2**15 - 1, what)


def _reg(r: int) -> int:
    """Validate a register number used by a builder (R0..R10)."""
    if not 0 <= r <= 10:
        raise ValueError(f"bad register {r}: expected 0..10 (R0..R10)")
    return int(r)


def _lookup(table: Mapping[_K, _V], kind: str, key: _K) -> _V:
    """Map a user-facing name to its table value, raising ValueError for unknown names."""
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"bad {kind} {key!r}: expected one of {list(table)}") from None


@dataclass(frozen=True)
class Insn:
    """One 8-byte `struct bpf_insn`."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        """Pack little-endian, checking each field fits its encoding.

        Registers are checked as 4-bit fields (not 0..10) so that any decoded bytes,
        including pseudo src values, re-encode; builders check R0..R10 themselves.
        """
        _fit(self.code, 0, 0xFF, "opcode")
        _fit(self.dst, 0, 15, "dst register")
        _fit(self.src, 0, 15, "src register")
        return struct.pack("<BBhi", self.code, self.src << 4 | self.dst, _s16(self.off),
                           _s32(self.imm))

    @classmethod
    def decode(cls, b: bytes) -> Insn:
        """Unpack one 8-byte instruction."""
        if len(b) != 8:
            raise ValueError(f"an instruction is 8 bytes, got {len(b)}")
        code, regs, off, imm = struct.unpack("<BBhi", b)
        return cls(code, regs & 0xF, regs >> 4, off, imm)

    def __str__(self) -> str:
        return format_insn(self)


@dataclass(frozen=True)
class Label:
    """Marks a position in an instruction list; jumps may target it by name."""

    name: str


@dataclass(frozen=True)
class JumpRef:
    """A jump whose offset `assemble` fills in from the position of `label`."""

    insn: Insn
    label: str

    def resolve(self, labels: Mapping[str, int], pos: int) -> Insn:
        """Return the jump with off = target slot - (pos + 1)."""
        if self.label not in labels:
            raise ValueError(f"unknown label {self.label!r}")
        off = labels[self.label] - (pos + 1)
        return replace(self.insn, off=_s16(off, f"jump to label {self.label!r}: offset"))


class SupportsFileno(Protocol):
    """Anything owning a file descriptor, e.g. a map object."""

    def fileno(self) -> int: ...


@dataclass(frozen=True)
class MapRef:
    """A pseudo map load whose fd is read via `map.fileno()` only when assembled."""

    dst: int
    map: int | SupportsFileno
    pseudo: int = PSEUDO_MAP_FD
    value_off: int = 0

    def resolve(self) -> tuple[Insn, Insn]:
        """Return the ld_imm64 pair with the map's current fd."""
        fd = self.map if isinstance(self.map, int) else self.map.fileno()
        return _ld_pair(self.dst, self.pseudo, fd, self.value_off)


Item: TypeAlias = Insn | tuple[Insn, ...] | Label | JumpRef | MapRef

# --- builders ------------------------------------------------------------------------------


def _named(fn: _F, name: str, doc: str) -> _F:
    """Give a generated builder its public name and docstring."""
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _op_insn(code: int, dst: int, src: Operand, off: int = 0) -> Insn:
    """Encode `src` as a register operand (X) if it is a Reg, else as an immediate (K)."""
    if isinstance(src, Reg):
        return Insn(code | Src.X, _reg(dst), src, off)
    return Insn(code | Src.K, _reg(dst), 0, off, _s32(src))


def alu64(op: str, dst: int, src_or_imm: Operand) -> Insn:
    """64-bit ALU op by name ("add", "sub", ..., "arsh"); dst = dst <op> src_or_imm."""
    return _op_insn(Class.ALU64 | _lookup(_ALU_NAMES, "ALU op", op), dst, src_or_imm)


def alu32(op: str, dst: int, src_or_imm: Operand) -> Insn:
    """32-bit ALU op by name; the result is zero-extended into the 64-bit register."""
    return _op_insn(Class.ALU | _lookup(_ALU_NAMES, "ALU op", op), dst, src_or_imm)


def _alu_builder(cls: Class, op: AluOp) -> Callable[[int, Operand], Insn]:
    def build(dst: int, src_or_imm: Operand) -> Insn:
        return _op_insn(cls | op, dst, src_or_imm)

    return _named(build, f"{op.name.lower()}{_SUFFIX[cls]}",
                  f"{cls.name} {op.name}: dst op= src_or_imm (Reg operand or int immediate).")


def _unary(name: str, code: int, imm: int, doc: str) -> Callable[[int], Insn]:
    def build(dst: int) -> Insn:
        return Insn(code, _reg(dst), imm=imm)

    return _named(build, name, doc)


(add64, sub64, mul64, div64, or64, and64, lsh64, rsh64, mod64, xor64, mov64, arsh64) = (
    _alu_builder(Class.ALU64, op) for op in _BINARY_ALU
)
(add32, sub32, mul32, div32, or32, and32, lsh32, rsh32, mod32, xor32, mov32, arsh32) = (
    _alu_builder(Class.ALU, op) for op in _BINARY_ALU
)
neg64, neg32 = (_unary(f"neg{_SUFFIX[cls]}", cls | AluOp.NEG, 0, f"{cls.name} NEG: dst = -dst.")
                for cls in (Class.ALU64, Class.ALU))
be16, be32, be64, le16, le32, le64 = (
    _unary(f"{name}{width}", Class.ALU | AluOp.END | order, width,
           f"dst = {name}{width}(dst): convert between host and that byte order.")
    for name, order in (("be", TO_BE), ("le", TO_LE)) for width in (16, 32, 64)
)


def _jump(code: int, dst: int, src: Operand, target: Target) -> Insn | JumpRef:
    """Build a jump to a relative slot offset (int) or to a label name (str)."""
    if isinstance(target, str):
        return JumpRef(_op_insn(code, dst, src), target)
    return _op_insn(code, dst, src, _s16(target, "jump offset"))


def ja(target: Target) -> Insn | JumpRef:
    """Unconditional jump."""
    return _jump(Class.JMP | JmpOp.JA, 0, 0, target)


def jmp(op: str, dst: int, src_or_imm: Operand, target: Target) -> Insn | JumpRef:
    """64-bit conditional jump by name ("jeq", "jgt", ..., "jsle")."""
    return _jump(Class.JMP | _lookup(_JMP_NAMES, "jump op", op), dst, src_or_imm, target)


def jmp32(op: str, dst: int, src_or_imm: Operand, target: Target) -> Insn | JumpRef:
    """Conditional jump comparing the low 32 bits, by name."""
    return _jump(Class.JMP32 | _lookup(_JMP_NAMES, "jump op", op), dst, src_or_imm, target)


def _jmp_builder(cls: Class, op: JmpOp) -> Callable[[int, Operand, Target], Insn | JumpRef]:
    def build(dst: int, src_or_imm: Operand, target: Target) -> Insn | JumpRef:
        return _jump(cls | op, dst, src_or_imm, target)

    return _named(build, f"{op.name.lower()}{_SUFFIX[cls]}",
                  f"{cls.name} {op.name}: if dst <cond> src_or_imm goto target (offset or label).")


(jeq, jgt, jge, jset, jne, jsgt, jsge, jlt, jle, jslt, jsle) = (
    _jmp_builder(Class.JMP, op) for op in _COND_JMP
)
(jeq32, jgt32, jge32, jset32, jne32, jsgt32, jsge32, jlt32, jle32, jslt32, jsle32) = (
    _jmp_builder(Class.JMP32, op) for op in _COND_JMP
)


def call(helper_id: int) -> Insn:
    """Call BPF helper `helper_id` (args in R1..R5, result in R0)."""
    return Insn(Class.JMP | JmpOp.CALL, imm=_s32(helper_id, "helper id"))


def exit_() -> Insn:
    """Return R0 to the caller."""
    return Insn(Class.JMP | JmpOp.EXIT)


def _mem(cls: Class, mode: Mode, size: SizeArg, dst: int, src: int, off: int, imm: int = 0) -> Insn:
    return Insn(cls | mode | _lookup(_SIZES, "size", size), _reg(dst), _reg(src), _s16(off),
                _s32(imm))


def ldx(size: SizeArg, dst: int, src: int, off: int) -> Insn:
    """dst = *(size *)(src + off)."""
    return _mem(Class.LDX, Mode.MEM, size, dst, src, off)


def stx(size: SizeArg, dst: int, off: int, src: int) -> Insn:
    """*(size *)(dst + off) = src."""
    return _mem(Class.STX, Mode.MEM, size, dst, src, off)


def st(size: SizeArg, dst: int, off: int, imm: int) -> Insn:
    """*(size *)(dst + off) = imm."""
    return _mem(Class.ST, Mode.MEM, size, dst, 0, off, imm)


def _atomic(size: SizeArg, dst: int, off: int, src: int, imm: int) -> Insn:
    if _lookup(_SIZES, "size", size) not in (Size.W, Size.DW):
        raise ValueError(f"bad size {size!r} for an atomic op: expected w/dw (4/8)")
    return _mem(Class.STX, Mode.ATOMIC, size, dst, src, off, imm)


class _AtomicBuilder(Protocol):
    """Signature of the generated atomic builders (Callable cannot express the default)."""

    def __call__(
        self, size: SizeArg, dst: int, off: int, src: int, fetch: bool = False
    ) -> Insn: ...


def _atomic_builder(op: AluOp) -> _AtomicBuilder:
    def build(size: SizeArg, dst: int, off: int, src: int, fetch: bool = False) -> Insn:
        return _atomic(size, dst, off, src, op | (FETCH if fetch else 0))

    return _named(build, f"atomic_{op.name.lower()}",
                  f"lock *(size *)(dst + off) {op.name}= src; with fetch, src gets the old value.")


atomic_add, atomic_and, atomic_or, atomic_xor = (
    _atomic_builder(op) for op in (AluOp.ADD, AluOp.AND, AluOp.OR, AluOp.XOR)
)


def atomic_xchg(size: SizeArg, dst: int, off: int, src: int) -> Insn:
    """Atomically swap src with *(size *)(dst + off)."""
    return _atomic(size, dst, off, src, XCHG)


def atomic_cmpxchg(size: SizeArg, dst: int, off: int, src: int) -> Insn:
    """If *(dst + off) == R0 store src; R0 always gets the old value."""
    return _atomic(size, dst, off, src, CMPXCHG)


def _ld_pair(dst: int, pseudo: int, lo: int, hi: int) -> tuple[Insn, Insn]:
    """The two-slot BPF_LD|BPF_IMM|BPF_DW form: imm of slot 1, then imm of slot 2."""
    return Insn(LD_IMM64, _reg(dst), pseudo, imm=_s32(lo)), Insn(0, imm=_s32(hi))


def ld_imm64(dst: int, imm: int) -> tuple[Insn, Insn]:
    """dst = 64-bit immediate (two slots)."""
    _fit(imm, -(2**63), 2**64 - 1, "64-bit imm")
    return _ld_pair(dst, 0, imm & 0xFFFFFFFF, (imm >> 32) & 0xFFFFFFFF)


@overload
def ld_map_fd(dst: int, fd: int) -> tuple[Insn, Insn]: ...
@overload
def ld_map_fd(dst: int, fd: SupportsFileno) -> MapRef: ...
def ld_map_fd(dst: int, fd: int | SupportsFileno) -> tuple[Insn, Insn] | MapRef:
    """dst = map pointer; an object's fileno() is read at assemble time."""
    ref = MapRef(_reg(dst), fd)
    return ref.resolve() if isinstance(fd, int) else ref


@overload
def ld_map_value(dst: int, fd: int, off: int) -> tuple[Insn, Insn]: ...
@overload
def ld_map_value(dst: int, fd: SupportsFileno, off: int) -> MapRef: ...
def ld_map_value(dst: int, fd: int | SupportsFileno, off: int) -> tuple[Insn, Insn] | MapRef:
    """dst = address of byte `off` in the value of a single-element ARRAY map."""
    ref = MapRef(_reg(dst), fd, PSEUDO_MAP_VALUE, _s32(off, "map value off"))
    return ref.resolve() if isinstance(fd, int) else ref


# --- assembler -----------------------------------------------------------------------------


def _slots(item: Item) -> int:
    """Number of 8-byte slots an item occupies in the output."""
    if isinstance(item, tuple):
        return len(item)
    if isinstance(item, Label):
        return 0
    return 2 if isinstance(item, MapRef) else 1


def assemble(items: Iterable[Item]) -> bytes:
    """Flatten `items`, resolve labels and map fds, and return the program bytes."""
    seq = list(items)
    labels: dict[str, int] = {}
    pos = 0
    for item in seq:
        if isinstance(item, Label):
            if item.name in labels:
                raise ValueError(f"duplicate label {item.name!r}")
            labels[item.name] = pos
        pos += _slots(item)
    out = bytearray()
    pos = 0
    for item in seq:
        if isinstance(item, JumpRef):
            out += item.resolve(labels, pos).encode()
        elif isinstance(item, Insn):
            out += item.encode()
        elif not isinstance(item, Label):
            out += b"".join(insn.encode() for insn in
                            (item.resolve() if isinstance(item, MapRef) else item))
        pos += _slots(item)
    return bytes(out)


def disassemble(code: bytes) -> list[Insn]:
    """Split program bytes into instructions (a ld_imm64 yields two)."""
    if len(code) % 8:
        raise ValueError(f"program length {len(code)} is not a multiple of 8")
    return [Insn.decode(code[i : i + 8]) for i in range(0, len(code), 8)]


# --- debug formatting ----------------------------------------------------------------------

_ALU_SYM: dict[int, str] = dict(zip(_BINARY_ALU, (
    "+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "%=", "^=", "=", "s>>="), strict=True))
_JMP_SYM: dict[int, str] = dict(zip(_COND_JMP, (
    "==", ">", ">=", "&", "!=", "s>", "s>=", "<", "<=", "s<", "s<="), strict=True))
_CTYPE = {Size.B: "u8", Size.H: "u16", Size.W: "u32", Size.DW: "u64"}


def format_insn(insn: Insn, next_insn: Insn | None = None) -> str:
    """Render llvm-objdump-like text for debugging; pass the next slot for ld_imm64."""
    code, d, s, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    cls, op, size, mode = code & 0x07, code & 0xF0, Size(code & 0x18), code & 0xE0
    wide = cls in (Class.ALU64, Class.JMP) or size == Size.DW
    r = "r" if wide else "w"
    rhs = f"{r}{s}" if code & Src.X else (hex(imm) if cls in (Class.JMP, Class.JMP32) else str(imm))
    addr = f"r{s if cls == Class.LDX else d} {'-' if off < 0 else '+'} {abs(off)}"
    mem = f"*({_CTYPE[size]} *)({addr})"
    if cls in (Class.ALU, Class.ALU64) and op == AluOp.NEG:
        return f"{r}{d} = -{r}{d}"
    if cls == Class.ALU and op == AluOp.END:
        return f"r{d} = {'be' if code & TO_BE else 'le'}{imm} r{d}"
    if cls in (Class.ALU, Class.ALU64) and op in _ALU_SYM:
        return f"{r}{d} {_ALU_SYM[op]} {rhs}"
    if code == Class.JMP | JmpOp.JA:
        return f"goto {off:+d}"
    if code == Class.JMP | JmpOp.CALL:
        return f"call {imm}"
    if code == Class.JMP | JmpOp.EXIT:
        return "exit"
    if cls in (Class.JMP, Class.JMP32) and op in _JMP_SYM:
        return f"if {r}{d} {_JMP_SYM[op]} {rhs} goto {off:+d}"
    if code == LD_IMM64:
        hi = next_insn.imm if next_insn else 0
        pseudo = {PSEUDO_MAP_FD: f"map_fd {imm}", PSEUDO_MAP_VALUE: f"map_value {imm} + {hi}"}
        return f"r{d} = {pseudo.get(s, hex((imm & 0xFFFFFFFF) | (hi & 0xFFFFFFFF) << 32))} ll"
    if mode == Mode.MEM and cls == Class.LDX:
        return f"r{d} = {mem}"
    if mode == Mode.MEM and cls in (Class.STX, Class.ST):
        return f"{mem} = {f'r{s}' if cls == Class.STX else imm}"
    if mode == Mode.ATOMIC and cls == Class.STX and size in (Size.W, Size.DW):
        bits = 64 if wide else 32
        if imm in (AluOp.ADD, AluOp.AND, AluOp.OR, AluOp.XOR):
            return f"lock {mem} {_ALU_SYM[imm]} {r}{s}"
        if imm & ~FETCH in (AluOp.ADD, AluOp.AND, AluOp.OR, AluOp.XOR):
            return f"{r}{s} = atomic_fetch_{AluOp(imm & ~FETCH).name.lower()}({mem[1:]}, {r}{s})"
        if imm == XCHG:
            return f"{r}{s} = xchg_{bits}({addr}, {r}{s})"
        if imm == CMPXCHG:
            return f"{r}0 = cmpxchg_{bits}({addr}, {r}0, {r}{s})"
    return f"<raw code={code:#04x} dst={d} src={s} off={off} imm={imm}>"


def format_program(insns: Sequence[Insn]) -> str:
    """Numbered listing of a decoded program, joining ld_imm64 pairs."""
    lines, i = [], 0
    while i < len(insns):
        pair = insns[i].code == LD_IMM64 and i + 1 < len(insns)
        lines.append(f"{i:4}: {format_insn(insns[i], insns[i + 1] if pair else None)}")
        i += 2 if pair else 1
    return "\n".join(lines)


# --- canned programs -----------------------------------------------------------------------


def return_program(ret: int = 1) -> list[Insn]:
    """r0 = ret; exit — the smallest valid program."""
    return [mov64(R0, ret), exit_()]


def counter_program(map_fd_or_map: int | SupportsFileno, *, ret: int = 1, key: int = 0,
                    add: int = 1) -> list[Item]:
    """Count runs into ARRAY map slot `key` (u32 key, u64 value), then return `ret`.

    Uses a numeric jump offset rather than a label so several copies can be concatenated.
    """
    return [
        st("w", FP, -4, key),
        mov64(R2, FP),
        add64(R2, -4),
        ld_map_fd(R1, map_fd_or_map),
        call(FN_map_lookup_elem),
        jeq(R0, 0, 2),  # NULL: skip to "r0 = ret"
        mov64(R1, add),
        atomic_add("dw", R0, 0, R1),
        mov64(R0, ret),
        exit_(),
    ]
