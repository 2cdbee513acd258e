"""The VM's instruction set (VM-SPEC §0-§2, §6.1-§6.2): each edge case the kernel was
measured on, through a program loaded into the model and run by
:func:`cgbpf.model.vm.interp.run`, against the measured value or the kernel's refusal."""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence

import pytest

from cgbpf import Map, MapType, Program, ProgType, asm, uapi
from cgbpf.asm import FP, R0, R1, R2, R3, R6, Insn
from cgbpf.model import ModelKernel
from cgbpf.model.objects import IdSpace, Prog
from cgbpf.model.objects import Map as ModelMap
from cgbpf.model.vm import interp
from cgbpf.model.vm import maps as vmaps
from cgbpf.model.vm.env import Env, Task
from cgbpf.model.vm.errors import (
    NondeterministicValue,
    NotSupportedByVM,
    StepLimit,
    VerifierWouldReject,
)
from cgbpf.model.vm.regions import UNINIT, Ptr, Region

M64, M32 = (1 << 64) - 1, (1 << 32) - 1
ALU64, ALU, JMP, JMP32, STX, LDX = (asm.Class.ALU64, asm.Class.ALU, asm.Class.JMP,
                                    asm.Class.JMP32, asm.Class.STX, asm.Class.LDX)
X, DIV, MOD, MOV, END = asm.Src.X, asm.AluOp.DIV, asm.AluOp.MOD, asm.AluOp.MOV, asm.AluOp.END
KEY = bytes(4)


class Helpers(Env):
    """An environment whose helpers record their arguments and return 7."""

    def __init__(self) -> None:
        super().__init__(Task(1, 0, 0, b"test", None), uapi.AttachType.CGROUP_INET_INGRESS)
        self.calls: list[tuple[int, tuple[object, ...]]] = []

    def helper(self, helper_id: int, args: tuple[int | Ptr | object, ...]) -> int | Ptr:
        self.calls.append((helper_id, args))
        return 7


class VM:
    """A model machine, an output map, and the programs loaded on it."""

    def __init__(self, k: ModelKernel) -> None:
        self.k = k
        self.out = Map.create(MapType.ARRAY, key_size=4, value_size=64, max_entries=1,
                              name="out", kernel=k)
        self.held: list[Program] = []

    def model_map(self, m: Map) -> ModelMap:
        mm = self.k._machine.maps.get(m.id)
        assert mm is not None
        return mm

    def load(self, items: Sequence[asm.Item]) -> Prog:
        p = Program.load(list(items), ProgType.CGROUP_SKB, kernel=self.k)
        self.held.append(p)
        prog = self.k._machine.progs.get(p.id)
        assert prog is not None
        return prog

    def run(self, items: Sequence[asm.Item], env: Env | None = None) -> int:
        return interp.run(self.load(items), Region("skb", 192), env or Helpers())

    def eval64(self, body: Sequence[asm.Item]) -> int:
        """R1 after ``body``, all 64 bits (stored into the output map)."""
        self.run([*body, asm.ld_map_value(R2, self.out, 0), asm.stx("dw", R2, 0, R1),
                  asm.mov64(R0, 0), asm.exit_()])
        out = self.out.lookup(KEY)
        assert out is not None
        return int(struct.unpack_from("<Q", out)[0])

    def raw(self, items: Sequence[asm.Item], maps: Sequence[Map] = (),
            env: Env | None = None) -> int:
        """Run a program without the model's loader: one it does not take yet (LDX
        MEMSX), or one whose refusal is the VM's own run-time check under test (the
        loader may refuse it first)."""
        prog = direct(asm.assemble(items), [self.model_map(m) for m in maps])
        return interp.run(prog, Region("skb", 192), env or Helpers())


def direct(code: bytes, maps: list[ModelMap]) -> Prog:
    """A program object made without the model's loader."""
    return Prog(IdSpace(), lambda f: None, prog_type=ProgType.CGROUP_SKB,
                expected_attach_type=0, insns=code, tag=b"", name=b"", maps=maps,
                enforce_eat=False, uid=0)


@pytest.fixture
def vm(k: ModelKernel) -> VM:
    return VM(k)


def ld(value: int) -> tuple[Insn, Insn]:
    return asm.ld_imm64(R1, value & M64)


def ld2(value: int) -> tuple[Insn, Insn]:
    return asm.ld_imm64(R2, value & M64)


def rejected(vm: VM, items: Sequence[asm.Item], err: int, text: str) -> None:
    with pytest.raises(VerifierWouldReject) as e:
        vm.raw(items)
    assert (e.value.errno, e.value.log) == (err, text)


# --- ALU ---------------------------------------------------------------------------------


def test_alu32_results_are_zero_extended(vm: VM) -> None:
    assert vm.eval64([ld(M64), asm.add32(R1, 1)]) == 0
    assert vm.eval64([ld(0x1_2345_6789), asm.mov32(R1, -1)]) == M32
    assert vm.eval64([ld(5), asm.neg32(R1)]) == 0xFFFFFFFB
    assert vm.eval64([ld(-8), asm.arsh32(R1, 1)]) == 0xFFFFFFFC
    assert vm.eval64([ld(0xFFFF_FFFF_0000_0003), ld2(0), asm.alu32("mod", R1, R2)]) == 3


def test_immediates_are_sign_extended_for_alu64_even_unsigned_div(vm: VM) -> None:
    assert vm.eval64([ld(M64), asm.div64(R1, -1)]) == 1  # / 0xFFFF_FFFF_FFFF_FFFF
    assert vm.eval64([ld(7), asm.div64(R1, -1)]) == 0
    assert vm.eval64([ld(0xFFFF_FFFF), asm.div32(R1, -1)]) == 1  # / 0xFFFF_FFFF
    assert vm.eval64([ld(0), asm.or64(R1, -2)]) == M64 - 1
    assert vm.eval64([ld(0), asm.or32(R1, -2)]) == 0xFFFFFFFE


def test_division_by_zero_register(vm: VM) -> None:
    big = 0x1234_5678_9ABC_DEF0
    assert vm.eval64([ld(big), ld2(0), asm.div64(R1, R2)]) == 0
    assert vm.eval64([ld(big), ld2(0), asm.mod64(R1, R2)]) == big
    assert vm.eval64([ld(big), ld2(0), asm.div32(R1, R2)]) == 0
    assert vm.eval64([ld(big), ld2(0), asm.mod32(R1, R2)]) == 0x9ABC_DEF0
    # a register with only high bits set is 0 for ALU32
    assert vm.eval64([ld(big), ld2(1 << 32), asm.mod32(R1, R2)]) == 0x9ABC_DEF0


def test_division_by_immediate_zero_is_refused() -> None:
    prog = direct(asm.assemble([Insn(ALU64 | DIV, 1, 0, 0, 0), asm.mov64(R0, 0),
                                asm.exit_()]), [])
    with pytest.raises(VerifierWouldReject) as e:
        interp.run(prog, Region("skb", 192), Helpers())
    assert (e.value.errno, e.value.log) == (errno.EINVAL, "div by zero")


def sdiv(cls: int, op: int, a: int, b: int, vm: VM) -> int:
    return vm.eval64([ld(a), ld2(b), Insn(cls | op | X, 1, 2, 1)])


@pytest.mark.parametrize(("cls", "op", "a", "b", "want"), [
    (ALU64, DIV, -7, 2, -3 & M64), (ALU64, MOD, -7, 2, -1 & M64), (ALU64, MOD, 7, -2, 1),
    (ALU64, DIV, 1 << 63, -1, 1 << 63), (ALU64, MOD, 1 << 63, -1, 0),
    (ALU64, DIV, 5, 0, 0), (ALU64, MOD, -5, 0, -5 & M64),
    (ALU, DIV, -7, 2, 0xFFFFFFFD), (ALU, MOD, -7, 2, 0xFFFFFFFF),
    (ALU, DIV, 0x8000_0000, -1, 0x8000_0000), (ALU, MOD, 0x8000_0000, -1, 0),
    (ALU, MOD, 0xFFFF_FFFF_8000_0005, 0, 0x8000_0005), (ALU, DIV, -6, 0, 0),
])
def test_signed_division_truncates_like_c(vm: VM, cls: int, op: int, a: int, b: int,
                                          want: int) -> None:
    assert sdiv(cls, op, a & M64, b & M64, vm) == want


def test_register_shift_amounts_are_masked(vm: VM) -> None:
    assert vm.eval64([ld(1), ld2(65), asm.lsh64(R1, R2)]) == 2
    assert vm.eval64([ld(1 << 63), ld2(127), asm.arsh64(R1, R2)]) == M64
    assert vm.eval64([ld(1), ld2(33), asm.lsh32(R1, R2)]) == 2
    assert vm.eval64([ld(0x8000_0000), ld2(63), asm.arsh32(R1, R2)]) == M32


def test_byte_swaps(vm: VM) -> None:
    v = 0x0102_0304_0506_0708
    assert vm.eval64([ld(v), asm.le16(R1)]) == 0x0708
    assert vm.eval64([ld(v), asm.le32(R1)]) == 0x0506_0708
    assert vm.eval64([ld(v), asm.le64(R1)]) == v
    assert vm.eval64([ld(v), asm.be16(R1)]) == 0x0807
    assert vm.eval64([ld(v), asm.be32(R1)]) == 0x0807_0605
    assert vm.eval64([ld(v), asm.be64(R1)]) == 0x0807_0605_0403_0201
    assert vm.eval64([ld(v), Insn(ALU64 | END, 1, imm=16)]) == 0x0807  # bswap16
    assert vm.eval64([ld(v), Insn(ALU64 | END, 1, imm=64)]) == 0x0807_0605_0403_0201


def test_movsx(vm: VM) -> None:
    assert vm.eval64([ld2(0x80), Insn(ALU64 | MOV | X, 1, 2, 8)]) == M64 - 0x7F
    assert vm.eval64([ld2(0x1_8000), Insn(ALU64 | MOV | X, 1, 2, 16)]) == M64 - 0x7FFF
    assert vm.eval64([ld2(0x8000_0000), Insn(ALU64 | MOV | X, 1, 2, 32)]) == \
        0xFFFF_FFFF_8000_0000
    assert vm.eval64([ld2(0xFF), Insn(ALU | MOV | X, 1, 2, 8)]) == M32
    assert vm.eval64([ld2(0x7F), Insn(ALU | MOV | X, 1, 2, 8)]) == 0x7F


# --- memory ------------------------------------------------------------------------------


def test_store_immediates_and_narrow_loads(vm: VM) -> None:
    assert vm.eval64([asm.st("dw", FP, -8, -5), asm.ldx("dw", R1, FP, -8)]) == M64 - 4
    assert vm.eval64([asm.st("w", FP, -8, -5), asm.st("w", FP, -4, 0),
                      asm.ldx("dw", R1, FP, -8)]) == 0xFFFF_FFFB
    assert vm.eval64([ld2(0x1122_3344_5566_7788), asm.stx("dw", FP, -8, R2),
                      asm.ldx("h", R1, FP, -6)]) == 0x5566


def test_sign_extending_loads(vm: VM) -> None:
    body: list[asm.Item] = [ld2(0x8081_8283_8485_8687), asm.stx("dw", FP, -8, R2)]
    end: list[asm.Item] = [asm.ld_map_value(R2, vm.out, 0), asm.stx("dw", R2, 0, R1),
                           asm.mov64(R0, 0), asm.exit_()]
    for size, off, want in ((0x10, -8, 0xFFFF_FFFF_FFFF_FF87), (0x08, -6, M64 - 0x7B7A),
                            (0x00, -4, 0xFFFF_FFFF_8081_8283)):
        vm.raw([*body, Insn(LDX | 0x80 | size, 1, 10, off), *end], [vm.out])
        assert struct.unpack_from("<Q", vm.out.lookup(KEY) or b"")[0] == want


@pytest.mark.parametrize(("imm", "size", "old", "v", "mem", "fetched"), [
    (0x00, "dw", 5, 3, 8, None), (0x01, "dw", 5, 3, 8, 5), (0x40, "dw", 5, 3, 7, None),
    (0x41, "w", 5, 3, 7, 5), (0x50, "dw", 5, 3, 1, None), (0x51, "w", 5, 3, 1, 5),
    (0xA0, "dw", 5, 3, 6, None), (0xA1, "dw", 5, 3, 6, 5), (0xE1, "dw", 5, 3, 3, 5),
    (0x01, "w", 0xFFFF_FFFF, 1, 0, 0xFFFF_FFFF), (0x01, "dw", M64, 1, 0, M64),
])
def test_atomics_on_the_stack(vm: VM, imm: int, size: str, old: int, v: int, mem: int,
                              fetched: int | None) -> None:
    n = 8 if size == "dw" else 4
    insn = Insn(STX | asm.Mode.ATOMIC | (asm.Size.DW if n == 8 else asm.Size.W), 10, 2, -8, imm)
    init: list[asm.Item] = [ld2(0xAAAA_AAAA_0000_0000 | old if n == 4 else old),
                            asm.stx("dw", FP, -8, R2)]
    got_mem = vm.eval64([*init, ld2(v), insn, asm.ldx(size, R1, FP, -8)])
    assert got_mem == mem
    got_src = vm.eval64([*init, ld2(v), insn, asm.mov64(R1, R2)])
    assert got_src == (v if fetched is None else fetched)
    if n == 4:  # the other half of the slot is untouched
        assert vm.eval64([*init, ld2(v), insn, asm.ldx("w", R1, FP, -4)]) == 0xAAAA_AAAA


@pytest.mark.parametrize(("r0", "stored"), [(5, 9), (6, 5)])
def test_cmpxchg(vm: VM, r0: int, stored: int) -> None:
    pre: list[asm.Item] = [asm.st("dw", FP, -8, 5), asm.ld_imm64(R0, r0), asm.mov64(R2, 9),
                           asm.atomic_cmpxchg("dw", FP, -8, R2)]
    assert vm.eval64([*pre, asm.ldx("dw", R1, FP, -8)]) == stored
    assert vm.eval64([*pre, asm.mov64(R1, R0)]) == 5  # R0 = the old value, hit or miss
    w: list[asm.Item] = [asm.st("w", FP, -8, -1), asm.ld_imm64(R0, M32), asm.mov64(R2, 9),
                         asm.atomic_cmpxchg("w", FP, -8, R2), asm.mov64(R1, R0)]
    assert vm.eval64(w) == M32  # zero-extended


def test_stack_access_rules(vm: VM) -> None:
    rejected(vm, [asm.st("dw", FP, -520, 0), asm.mov64(R0, 0), asm.exit_()], errno.EACCES,
             "invalid write to stack R10 off=-520 size=8")
    rejected(vm, [asm.st("dw", FP, -16, 0), asm.ldx("dw", R0, FP, -12), asm.exit_()],
             errno.EACCES, "misaligned stack access off -12 size 8")
    with pytest.raises(NondeterministicValue):
        vm.raw([asm.ldx("dw", R0, FP, -8), asm.exit_()])
    env = Helpers()
    env.uninit_stack = "zero"
    assert vm.raw([asm.ldx("w", R0, FP, -8), asm.exit_()], env=env) == 0


# --- registers and pointers --------------------------------------------------------------


def test_unreadable_registers(vm: VM) -> None:
    rejected(vm, [asm.mov64(R0, R2), asm.exit_()], errno.EACCES, "R2 !read_ok")
    rejected(vm, [asm.exit_()], errno.EACCES, "R0 !read_ok")
    rejected(vm, [asm.mov64(R0, FP), asm.exit_()], errno.EINVAL,
             "At program exit the register R0 is not a known value (stack)")


def test_pointer_arithmetic_rules(vm: VM) -> None:
    fp: list[asm.Item] = [asm.mov64(R2, FP)]
    end: list[asm.Item] = [asm.mov64(R0, 0), asm.exit_()]
    rejected(vm, [*fp, asm.and64(R2, 7), *end], errno.EACCES,
             "R2 bitwise operator &= on pointer prohibited")
    rejected(vm, [*fp, asm.mul64(R2, 2), *end], errno.EACCES,
             "R2 pointer arithmetic with *= operator prohibited")
    rejected(vm, [*fp, asm.add32(R2, 1), *end], errno.EACCES,
             "R2 32-bit pointer arithmetic prohibited")
    rejected(vm, [asm.mov64(R2, 1), asm.sub64(R2, FP), *end], errno.EACCES,
             "R2 tried to subtract pointer from scalar")
    # ptr - ptr in one region is a number; ptr + scalar moves the pointer
    assert vm.eval64([*fp, asm.add64(R2, -16), asm.mov64(R1, FP), asm.sub64(R1, R2)]) == 16
    assert vm.eval64([*fp, asm.mov64(R3, -8), asm.add64(R2, R3), asm.st("dw", R2, 0, 42),
                      asm.ldx("dw", R1, FP, -8)]) == 42


def test_spill_and_fill(vm: VM) -> None:
    spill = [asm.mov64(R2, FP), asm.add64(R2, -16), asm.stx("dw", FP, -8, R2)]
    assert vm.eval64([*spill, asm.ldx("dw", R3, FP, -8), asm.st("dw", R3, 0, 9),
                      asm.ldx("dw", R1, FP, -16)]) == 9
    rejected(vm, [*spill, asm.ldx("w", R3, FP, -8), asm.mov64(R0, 0), asm.exit_()],
             errno.EACCES, "invalid size of register fill")
    with pytest.raises((VerifierWouldReject, NondeterministicValue)) as e:
        vm.raw([*spill, asm.st("b", FP, -8, 0), asm.ldx("dw", R3, FP, -8),
                asm.st("dw", R3, 0, 9), asm.mov64(R0, 0), asm.exit_()])
    assert not isinstance(e.value, VerifierWouldReject) or \
        e.value.log == "R3 invalid mem access 'scalar'"


def test_pointer_compares(vm: VM) -> None:
    body = [asm.mov64(R2, FP), asm.add64(R2, -8), asm.mov64(R1, 1)]
    assert vm.eval64([*body, asm.jeq(R2, 0, 1), asm.mov64(R1, 2)]) == 2  # never NULL
    assert vm.eval64([*body, asm.mov64(R3, FP), asm.jgt(R3, R2, 1), asm.mov64(R1, 2)]) == 1
    with pytest.raises(NondeterministicValue):
        vm.raw([*body, asm.jeq(R2, 5, 0), asm.mov64(R0, 0), asm.exit_()])


# --- jumps -------------------------------------------------------------------------------


def test_jump_immediates(vm: VM) -> None:
    def taken(cond: asm.Item) -> int:
        return vm.eval64([ld(0xFFFF_FFFF), asm.mov64(R3, R1), asm.mov64(R1, 0), cond,
                          asm.ja(1), asm.mov64(R1, 1)])
    assert taken(asm.jeq(R3, -1, 1)) == 0     # JMP: imm sign-extended: 0xFFFF...FFFF
    assert taken(asm.jeq32(R3, -1, 1)) == 1   # JMP32: low 32 bits
    assert taken(asm.jsgt(R3, 0, 1)) == 1     # 0xFFFFFFFF > 0 signed 64-bit
    assert taken(asm.jsgt32(R3, 0, 1)) == 0   # -1 as s32
    assert taken(asm.jset(R3, 1 << 31, 1)) == 1


def test_gotol(vm: VM) -> None:
    assert vm.eval64([asm.mov64(R1, 5), Insn(JMP32 | asm.JmpOp.JA, imm=1),
                      asm.mov64(R1, 6)]) == 5


# --- calls -------------------------------------------------------------------------------


def call(target: int) -> Insn:
    return Insn(JMP | asm.JmpOp.CALL, 0, 1, 0, target)


def test_subprogram_frames(vm: VM) -> None:
    """R6 survives the call; the callee's fp-8 is its own (measured: 0x66, 0x2a)."""
    vm.run([asm.mov64(R6, 0x66), asm.st("dw", FP, -8, 0x2A), call(9),
            asm.mov64(R1, R6), asm.lsh64(R1, 8), asm.ldx("dw", R2, FP, -8), asm.or64(R1, R2),
            asm.ld_map_value(R2, vm.out, 0), asm.stx("dw", R2, 0, R1), asm.mov64(R0, 0),
            asm.exit_(),
            asm.mov64(R6, 1), asm.st("dw", FP, -8, 1), asm.mov64(R0, 0), asm.exit_()])
    assert vm.out.lookup(KEY) == struct.pack("<Q", 0x662A).ljust(64, b"\0")


def test_callee_and_caller_registers(vm: VM) -> None:
    rejected(vm, [call(2), asm.mov64(R0, 0), asm.exit_(), asm.mov64(R0, R6), asm.exit_()],
             errno.EACCES, "R6 !read_ok")
    rejected(vm, [call(2), asm.mov64(R0, R1), asm.exit_(), asm.mov64(R0, 0), asm.exit_()],
             errno.EACCES, "R1 !read_ok")


@pytest.mark.parametrize(("depth", "ok"), [(7, True), (8, False)])
def test_call_depth(vm: VM, depth: int, ok: bool) -> None:
    items: list[asm.Item] = [call(2), asm.mov64(R0, 0), asm.exit_()]
    for level in range(depth):
        last = level == depth - 1
        items += [asm.mov64(R0, 0), asm.exit_()] if last else \
            [call(2), asm.mov64(R0, 0), asm.exit_()]
    if ok:
        assert vm.run(items) == 0
    else:
        rejected(vm, items, errno.E2BIG, "the call stack of 9 frames is too deep")


@pytest.mark.parametrize(("main", "sub", "ok"), [(256, 256, True), (256, 264, False),
                                                 (512, 8, False)])
def test_combined_stack(vm: VM, main: int, sub: int, ok: bool) -> None:
    items = [asm.st("dw", FP, -main, 0), call(2), asm.mov64(R0, 0), asm.exit_(),
             asm.st("dw", FP, -sub, 0), asm.mov64(R0, 0), asm.exit_()]
    if ok:
        assert vm.run(items) == 0
    else:
        rejected(vm, items, errno.EACCES, f"combined stack size of 2 calls is "
                 f"{(main + 15) // 16 * 16 + (sub + 15) // 16 * 16}. Too large")


def test_helper_calls(vm: VM) -> None:
    env = Helpers()
    assert vm.raw([asm.mov64(R1, 3), asm.mov64(R2, FP), asm.call(7), asm.exit_()],
                  env=env) == 7
    (helper, args), = env.calls
    assert helper == 7 and args[0] == 3 and isinstance(args[1], Ptr)
    assert args[2:] == (UNINIT, UNINIT, UNINIT)
    rejected(vm, [asm.mov64(R1, 3), asm.call(7), asm.mov64(R0, R1), asm.exit_()],
             errno.EACCES, "R1 !read_ok")


def test_not_supported_and_step_limit(vm: VM) -> None:
    with pytest.raises(NotSupportedByVM):
        vm.raw([asm.call(12), asm.mov64(R0, 0), asm.exit_()])
    env = Helpers()
    env.step_limit = 1000
    with pytest.raises(StepLimit):
        vm.raw([asm.mov64(R0, 0), asm.ja(-1)], env=env)
    assert env.steps == 1000


# --- maps --------------------------------------------------------------------------------


def test_map_value_pointers_write_the_map(vm: VM) -> None:
    vm.run([asm.ld_map_value(R1, vm.out, 8), asm.st("w", R1, 0, 0x1234), asm.mov64(R0, 0),
            asm.exit_()])
    assert vm.out.lookup(KEY) == bytes(8) + struct.pack("<I", 0x1234) + bytes(52)


def test_read_only_map_values(vm: VM) -> None:
    ro = Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, name="ro",
                    flags=uapi.F_RDONLY_PROG, kernel=vm.k)
    prog: list[asm.Item] = [asm.ld_map_value(R1, ro, 0), asm.mov64(R2, R1), asm.st("w", R2, 0, 1),
            asm.mov64(R0, 0), asm.exit_()]
    with pytest.raises(VerifierWouldReject):
        vm.raw(prog, [ro])


def test_array_updates_in_place_and_errnos(vm: VM) -> None:
    m = vm.model_map(Map.create(MapType.ARRAY, key_size=4, value_size=4, max_entries=2,
                                kernel=vm.k))
    env = Helpers()
    p = vmaps.lookup(env, m, KEY)
    assert isinstance(p, Ptr)
    for v in (21, 99, 77):
        assert vmaps.update(env, m, KEY, struct.pack("<I", v), 0) == 0
        assert p.region.load(0, 4) == v
    assert vmaps.lookup(env, m, struct.pack("<I", 2)) == 0
    assert vmaps.update(env, m, struct.pack("<I", 2), bytes(4), 2) == -errno.E2BIG
    assert vmaps.update(env, m, KEY, bytes(4), 1) == -errno.EEXIST
    assert vmaps.update(env, m, KEY, bytes(4), 4) == -errno.EINVAL
    assert vmaps.update(env, m, KEY, bytes(4), 8) == -errno.EINVAL
    assert vmaps.delete(env, m, KEY) == -errno.EINVAL


def test_hash_update_replaces_the_element(vm: VM) -> None:
    h = Map.create(MapType.HASH, key_size=4, value_size=4, max_entries=1, kernel=vm.k)
    m = vm.model_map(h)
    env = Helpers()

    def upd(v: int, flags: int = 0) -> int:
        return vmaps.update(env, m, KEY, struct.pack("<I", v), flags)
    assert vmaps.lookup(env, m, KEY) == 0
    assert upd(21, 2) == -errno.ENOENT
    assert upd(21) == 0
    p = vmaps.lookup(env, m, KEY)
    assert isinstance(p, Ptr)
    assert upd(99) == 0 and p.region.load(0, 4) == 21  # the old element
    assert upd(77) == 0 and p.region.load(0, 4) == 77  # recycled as the spare
    assert h.lookup(KEY) == struct.pack("<I", 77)
    assert upd(1, 1) == -errno.EEXIST
    other = struct.pack("<I", 1)
    assert vmaps.update(env, m, other, bytes(4), 0) == -errno.E2BIG
    assert vmaps.delete(env, m, KEY) == 0 and p.region.load(0, 4) == 77
    assert vmaps.delete(env, m, KEY) == -errno.ENOENT
