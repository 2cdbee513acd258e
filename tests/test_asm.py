"""Tests for the eBPF encoder: known encodings, kernel-header opcodes, round trips, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cgbpf import asm
from cgbpf.asm import FP, R0, R1, R2, R3, Insn, Label, Reg

BINARY_ALU = [op for op in asm.AluOp if op not in (asm.AluOp.NEG, asm.AluOp.END)]
COND_JMP = [op for op in asm.JmpOp if op not in (asm.JmpOp.JA, asm.JmpOp.CALL, asm.JmpOp.EXIT)]


def one(x: Insn | asm.JumpRef) -> Insn:
    """Narrow a jump builder result built with an int target."""
    assert isinstance(x, Insn)
    return x


def hexcode(items: list[asm.Item]) -> str:
    return asm.assemble(items).hex()


# --- known encodings ---------------------------------------------------------------------


def test_return_program() -> None:
    expected = bytes.fromhex("b700000001000000" "9500000000000000")
    assert asm.assemble(asm.return_program(1)) == expected


def test_ld_imm64() -> None:
    pair = asm.ld_imm64(R1, 0x1122334455667788)
    assert asm.assemble([pair]).hex() == "1801000088776655" "0000000044332211"
    assert hexcode([asm.ld_imm64(R0, -1)]) == "18000000ffffffff" "00000000ffffffff"


def test_labels_forward_and_backward() -> None:
    prog: list[asm.Item] = [
        Label("top"),
        asm.mov64(R0, 0),  # slot 0
        asm.jeq(R1, 5, "end"),  # slot 1 -> 4: off +2
        asm.add64(R0, 1),  # slot 2
        asm.ja("top"),  # slot 3 -> 0: off -4
        Label("end"),
        asm.exit_(),  # slot 4
    ]
    insns = asm.disassemble(asm.assemble(prog))
    assert insns[1] == Insn(0x15, 1, 0, 2, 5)
    assert insns[1].encode().hex() == "1501020005000000"
    assert insns[3].encode().hex() == "0500fcff00000000"


def test_ld_imm64_counts_two_slots() -> None:
    prog: list[asm.Item] = [asm.ja("x"), asm.ld_imm64(R1, 1), Label("x"), asm.exit_()]
    assert asm.disassemble(asm.assemble(prog))[0].off == 2


def test_atomics() -> None:
    assert asm.atomic_add("dw", R0, 0, R1).encode().hex() == "db10000000000000"
    assert asm.atomic_add("w", R1, 8, R2, fetch=True).encode().hex() == "c321080001000000"
    assert asm.atomic_or(8, R1, 0, R2).imm == 0x40
    assert asm.atomic_xchg("dw", R1, 0, R2).imm == 0xE1
    assert asm.atomic_cmpxchg("w", R1, 0, R2).imm == 0xF1


def test_operand_convention() -> None:
    assert asm.mov64(R0, 1) == Insn(0xB7, 0, 0, 0, 1)
    assert asm.mov64(R0, R1) == Insn(0xBF, 0, 1)
    assert asm.mov32(R0, 0xFFFFFFFF).imm == -1
    assert asm.be16(R3) == Insn(0xDC, 3, imm=16)
    assert asm.le64(R3) == Insn(0xD4, 3, imm=64)
    assert asm.neg64(R2) == Insn(0x87, 2)


def test_generated_builders_match_tables() -> None:
    for op in BINARY_ALU:
        for suffix, cls in (("64", asm.Class.ALU64), ("32", asm.Class.ALU)):
            fn = getattr(asm, op.name.lower() + suffix)
            assert fn.__name__ == op.name.lower() + suffix
            assert fn(R1, R2).code == cls | op | asm.Src.X
        assert asm.alu32(op.name.lower(), R1, 3) == Insn(asm.Class.ALU | op, 1, imm=3)
    for jop in COND_JMP:
        name = jop.name.lower()
        for suffix, cls in (("", asm.Class.JMP), ("32", asm.Class.JMP32)):
            fn = getattr(asm, name + suffix)
            assert fn.__name__ == name + suffix
            assert one(fn(R1, 7, 0)).code == cls | jop
        assert one(asm.jmp32(name, R1, R2, 0)).code == asm.Class.JMP32 | jop | asm.Src.X


def test_counter_program_and_format() -> None:
    class FakeMap:
        def fileno(self) -> int:
            return 9

    insns = asm.disassemble(asm.assemble(asm.counter_program(FakeMap(), ret=0, key=3)))
    listing = asm.format_program(insns).splitlines()
    assert [line.split(": ", 1)[1] for line in listing] == [
        "*(u32 *)(r10 - 4) = 3", "r2 = r10", "r2 += -4", "r1 = map_fd 9 ll", "call 1",
        "if r0 == 0x0 goto +2", "r1 = 1", "lock *(u64 *)(r0 + 0) += r1", "r0 = 0", "exit",
    ]
    assert str(one(asm.jeq(R1, 5, 2))) == "if r1 == 0x5 goto +2"
    assert str(asm.ldx("w", R0, FP, -8)) == "r0 = *(u32 *)(r10 - 8)"
    assert str(Insn(0xFF)).startswith("<raw")


# --- cross-check against <linux/bpf.h> ---------------------------------------------------


def expected_header_values() -> dict[str, int]:
    values = {
        "BPF_ALU64|BPF_MOV|BPF_K": asm.mov64(R0, 1).code,
        "BPF_JMP32|BPF_JLT|BPF_X": one(asm.jlt32(R0, R1, 0)).code,
        "BPF_STX|BPF_ATOMIC|BPF_DW": asm.atomic_add("dw", R0, 0, R1).code,
        "BPF_FETCH": asm.FETCH,
        "BPF_XCHG": asm.atomic_xchg("dw", R0, 0, R1).imm,
        "BPF_CMPXCHG": asm.atomic_cmpxchg("dw", R0, 0, R1).imm,
        "BPF_LD|BPF_IMM|BPF_DW": asm.ld_imm64(R0, 0)[0].code,
        "BPF_PSEUDO_MAP_FD": asm.ld_map_fd(R0, 3)[0].src,
        "BPF_PSEUDO_MAP_VALUE": asm.ld_map_value(R0, 3, 0)[0].src,
        "BPF_ALU|BPF_END|BPF_TO_BE": asm.be32(R0).code,
        "BPF_ALU|BPF_END|BPF_TO_LE": asm.le32(R0).code,
        "BPF_JMP|BPF_CALL": asm.call(1).code,
        "BPF_JMP|BPF_EXIT": asm.exit_().code,
    }
    for table in (asm.Class, asm.Size, asm.Mode, asm.Src, asm.AluOp, asm.JmpOp):
        values.update({f"BPF_{m.name}": m.value for m in table})
    return values


def test_opcodes_match_kernel_header(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is required in CI to check opcodes against <linux/bpf.h>")
        pytest.skip("gcc not found: cannot compile the <linux/bpf.h> opcode check")
    expected = expected_header_values()
    lines = "".join(f'    printf("%s=%d\\n", "{e}", (int)({e}));\n' for e in expected)
    src = tmp_path / "ops.c"
    src.write_text(f"#include <stdio.h>\n#include <linux/bpf.h>\nint main(void) {{\n{lines}"
                   "    return 0;\n}\n")
    exe = tmp_path / "ops"
    subprocess.run([gcc, "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    actual = {k: int(v) for k, v in (line.split("=") for line in out.splitlines())}
    assert actual == expected


# --- round trips ---------------------------------------------------------------------------

regs = st.sampled_from(list(Reg))
imm32 = st.integers(-(2**31), 2**32 - 1)
off16 = st.integers(-(2**15), 2**15 - 1)
operand = st.one_of(regs, imm32)
sizes = st.sampled_from(["b", "h", "w", "dw", 1, 2, 4, 8])
atomic_sizes = st.sampled_from(["w", "dw", 4, 8])
alu_names = st.sampled_from([op.name.lower() for op in BINARY_ALU] + ["neg"])
jmp_names = st.sampled_from([op.name.lower() for op in COND_JMP])
items = st.one_of(
    st.builds(asm.alu64, alu_names, regs, operand),
    st.builds(asm.alu32, alu_names, regs, operand),
    st.builds(asm.jmp, jmp_names, regs, operand, off16),
    st.builds(asm.jmp32, jmp_names, regs, operand, off16),
    st.builds(asm.ja, off16),
    st.builds(asm.ldx, sizes, regs, regs, off16),
    st.builds(asm.stx, sizes, regs, off16, regs),
    st.builds(asm.st, sizes, regs, off16, imm32),
    st.builds(asm.atomic_add, atomic_sizes, regs, off16, regs, st.booleans()),
    st.builds(asm.atomic_xor, atomic_sizes, regs, off16, regs, st.booleans()),
    st.builds(asm.atomic_xchg, atomic_sizes, regs, off16, regs),
    st.builds(asm.atomic_cmpxchg, atomic_sizes, regs, off16, regs),
    st.builds(asm.ld_imm64, regs, st.integers(-(2**63), 2**64 - 1)),
    st.builds(asm.ld_map_value, regs, st.integers(0, 2**31 - 1), imm32),
    st.builds(asm.call, imm32),
    st.sampled_from([asm.exit_(), asm.be16(R1), asm.le64(R2), asm.neg32(R0)]),
)


@given(st.binary(max_size=64).map(lambda b: b[: len(b) // 8 * 8]))
def test_bytes_round_trip(code: bytes) -> None:
    assert asm.assemble(asm.disassemble(code)) == code


@given(st.lists(items, max_size=20))
def test_builders_round_trip(prog: list[Insn | tuple[Insn, ...]]) -> None:
    flat = [i for item in prog for i in (item if isinstance(item, tuple) else (item,))]
    assert asm.disassemble(asm.assemble(prog)) == flat


def test_any_bytes_format() -> None:
    for code in range(256):
        str(Insn.decode(bytes([code, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])))


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: asm.assemble([asm.ja("nowhere")]), "unknown label 'nowhere'"),
        (lambda: asm.assemble([Label("a"), Label("a")]), "duplicate label 'a'"),
        (lambda: asm.assemble([asm.ja("far"), *[asm.exit_()] * 40000, Label("far")]),
         "jump to label 'far': offset 40000"),
        (lambda: asm.ja(40000), "jump offset 40000"),
        (lambda: asm.mov64(11, 1), "bad register 11"),
        (lambda: asm.ldx("q", R0, R1, 0), "bad size 'q'"),
        (lambda: asm.stx(3, R0, 0, R1), "bad size 3"),
        (lambda: asm.atomic_add("h", R0, 0, R1), "bad size 'h' for an atomic op"),
        (lambda: asm.mov64(R0, 2**32), "imm 4294967296 fits neither"),
        (lambda: asm.ldx("w", R0, R1, 2**15), "off 32768 out of range"),
        (lambda: asm.alu64("bogus", R0, 1), "bad ALU op 'bogus'"),
        (lambda: asm.jmp("ja", R0, 1, 0), "bad jump op 'ja'"),
        (lambda: asm.ld_imm64(R0, 2**64), "64-bit imm"),
        (lambda: Insn(0x07, dst=16).encode(), "dst register 16"),
        (lambda: Insn(0x100).encode(), "opcode 256"),
        (lambda: Insn.decode(b"\0" * 7), "8 bytes, got 7"),
        (lambda: asm.disassemble(b"\0" * 12), "not a multiple of 8"),
    ],
)
def test_errors(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- map placeholders ----------------------------------------------------------------------


def test_map_placeholder_resolved_at_assemble_time() -> None:
    class FakeMap:
        fd = -1

        def fileno(self) -> int:
            return self.fd

    m = FakeMap()
    prog: list[asm.Item] = [asm.ld_map_fd(R1, m), asm.ld_map_value(R2, m, 16), asm.exit_()]
    m.fd = 7  # fd only known after the program was built
    insns = asm.disassemble(asm.assemble(prog))
    assert insns[0] == Insn(0x18, 1, 1, 0, 7)
    assert insns[1] == Insn(0)
    assert insns[2] == Insn(0x18, 2, 2, 0, 7)
    assert insns[3] == Insn(0, imm=16)
    assert asm.ld_map_fd(R1, 7) == (Insn(0x18, 1, 1, 0, 7), Insn(0))
