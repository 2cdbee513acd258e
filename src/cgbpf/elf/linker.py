"""Programs out of an object's executable sections, as libbpf builds them: a program is
one function symbol's instructions, the ``.text`` functions it calls (directly or through
other subprograms) appended after it with their call offsets fixed, and the ``ld_imm64``
instructions that name a map or global data recorded as :class:`Reference`\\ s to fill
in at load time (``BPF_PSEUDO_MAP_FD`` / ``BPF_PSEUDO_MAP_VALUE``)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from .. import uapi
from .reader import R_BPF_64_32, R_BPF_64_64, ObjectFile, Relocation, Section, Symbol

INSN = 8
LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
CALL = 0x85  # BPF_JMP | BPF_CALL
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE = 1, 2


@dataclass(frozen=True)
class Reference:
    """The ``ld_imm64`` at instruction ``insn`` loads map ``map`` (``offset`` None: its fd,
    ``BPF_PSEUDO_MAP_FD``) or the address ``offset`` bytes into its value
    (``BPF_PSEUDO_MAP_VALUE``: global data)."""

    insn: int
    map: str
    offset: int | None = None


@dataclass(frozen=True)
class Piece:
    """``count`` instructions of section ``section`` from instruction ``start`` placed at
    instruction ``at`` of the program (the program itself first, then subprograms)."""

    section: Section
    start: int
    count: int
    at: int


@dataclass
class Linked:
    """A program's instructions, with its references and where its pieces came from."""

    insns: bytearray
    references: list[Reference]
    pieces: list[Piece]


#: What a relocated ``ld_imm64`` names: (the map's key, None) for a map, (key, offset)
#: for global data; raises MalformedObject for anything else.
DataResolver = Callable[[Symbol, int, str], tuple[str, int | None]]


def link(obj: ObjectFile, sym: Symbol, resolve: DataResolver, what: str) -> Linked:
    """Program ``sym`` (a function in an executable section) with its subprograms from
    ``.text`` appended; ``what`` names it in errors ("program NAME")."""
    sec = obj.sections[sym.section]
    text = obj.section(".text")
    for code in (sec, text):
        if code is not None and len(code.data) != code.size:
            raise obj.error(f"{what}: an executable section of type {code.type}, without "
                            "instructions", code.name)
    if sym.value % INSN or sym.size % INSN or not sym.size \
            or sym.value + sym.size > sec.size:
        raise obj.error(f"{what}: function at {sym.value:#x}+{sym.size:#x} is not a whole "
                        f"run of instructions in the section", sec.name)
    main = Piece(sec, sym.value // INSN, sym.size // INSN, 0)
    out = Linked(bytearray(sec.data[sym.value:sym.value + sym.size]), [], [main])
    placed: dict[tuple[int, int], int] = {(sec.index, main.start): 0}
    funcs = sorted((s for s in obj.symbols if text is not None and s.section == text.index
                    and s.type == "STT_FUNC"), key=lambda s: s.value)

    def subprogram(target: int, at: int) -> int:
        """Where .text instruction ``target`` is in the program, appending its function."""
        f = next((f for f in funcs if f.value // INSN <= target < (f.value + f.size) // INSN),
                 None)
        if text is None or f is None or f.value % INSN or f.size % INSN \
                or f.value + f.size > text.size:
            raise obj.error(f"{what}: the call at instruction {at} goes to .text "
                            f"instruction {target}, in no function", sec.name)
        start = f.value // INSN
        if (text.index, start) not in placed:
            placed[text.index, start] = len(out.insns) // INSN
            out.pieces.append(Piece(text, start, f.size // INSN, len(out.insns) // INSN))
            out.insns += text.data[f.value:f.value + f.size]
        return placed[text.index, start] + target - start

    done = 0
    while done < len(out.pieces):  # pieces are appended while walking them
        piece = out.pieces[done]
        done += 1
        relocs = {r.offset: r for r in obj.relocations.get(piece.section.index, [])
                  if piece.start * INSN <= r.offset < (piece.start + piece.count) * INSN}
        for off in relocs:
            if off % INSN:
                raise obj.error(f"{what}: relocation at byte {off:#x} is not at an "
                                "instruction", piece.section.name)
        i = 0
        while i < piece.count:
            at = piece.at + i
            op, regs = out.insns[at * INSN], out.insns[at * INSN + 1]
            r = relocs.get((piece.start + i) * INSN)
            if op == LD_IMM64:
                if i + 1 >= piece.count:
                    raise obj.error(f"{what}: ld_imm64 at instruction {at} has no second "
                                    "half", piece.section.name)
                if r is not None:
                    _reference(obj, out, r, at, resolve, what, piece.section.name)
                i += 2
                continue
            if op == CALL and regs >> 4 == uapi.PSEUDO_CALL:
                imm = struct.unpack_from("<i", out.insns, at * INSN + 4)[0]
                if r is not None:
                    if r.type != R_BPF_64_32 or text is None or r.symbol.section != text.index:
                        raise obj.error(f"{what}: the call at instruction {at} is relocated "
                                        f"against {symbol_name(obj, r.symbol)}, not a .text "
                                        "function", piece.section.name)
                    target = r.symbol.value // INSN + imm + 1
                else:
                    target = piece.start + i + imm + 1
                    if piece.start <= target < piece.start + piece.count:
                        i += 1  # a call inside the same function: already right
                        continue
                    if piece.section is not text:
                        raise obj.error(f"{what}: the call at instruction {at} leaves its "
                                        "function without a relocation", piece.section.name)
                struct.pack_into("<i", out.insns, at * INSN + 4,
                                 subprogram(target, at) - at - 1)
            elif r is not None:
                raise obj.error(f"{what}: relocation at instruction {at} (opcode {op:#04x}) "
                                "is neither a call nor an ld_imm64", piece.section.name)
            i += 1
    return out


def _reference(obj: ObjectFile, out: Linked, r: Relocation, at: int,
               resolve: DataResolver, what: str, section: str) -> None:
    if r.type != R_BPF_64_64:
        raise obj.error(f"{what}: ld_imm64 at instruction {at} has relocation type "
                        f"{r.type}, not R_BPF_64_64", section)
    imm = struct.unpack_from("<i", out.insns, at * INSN + 4)[0]
    key, offset = resolve(r.symbol, imm, f"{what}: ld_imm64 at instruction {at}")
    struct.pack_into("<i", out.insns, at * INSN + 4, 0)
    out.references.append(Reference(at, key, offset))


def symbol_name(obj: ObjectFile, sym: Symbol) -> str:
    """How errors name a relocation's symbol."""
    if sym.name:
        return f"symbol {sym.name!r}"
    if sym.section:
        return f"section {obj.sections[sym.section].name!r}"
    return f"symbol {sym.index}"


def resolve_references(insns: bytes, references: list[Reference],
                       fds: Callable[[str], int]) -> bytes:
    """``insns`` with each reference's map fd (and value offset) written in."""
    code = bytearray(insns)
    for ref in references:
        lo = ref.insn * INSN
        src = PSEUDO_MAP_FD if ref.offset is None else PSEUDO_MAP_VALUE
        code[lo + 1] = (code[lo + 1] & 0x0F) | src << 4
        struct.pack_into("<i", code, lo + 4, fds(ref.map))
        struct.pack_into("<i", code, lo + INSN + 4, ref.offset or 0)
    return bytes(code)
