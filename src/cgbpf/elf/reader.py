"""An ELF relocatable object as cgbpf needs it: sections, symbols and relocations, read
eagerly through pyelftools.  Anything pyelftools cannot read, or that an eBPF object may
not contain, is a :class:`~cgbpf.errors.MalformedObject` naming the file and section."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import Section as _Section
from elftools.elf.sections import Symbol as ElfSymbol
from elftools.elf.sections import SymbolTableSection

from ..errors import MalformedObject

#: ``EM_BPF``: the machine of an eBPF object.
EM_BPF = 247
#: Relocation types (<elf.h>, llvm's BPF backend).
R_BPF_64_64 = 1      # ld_imm64: a map or global data address
R_BPF_64_ABS64 = 2   # 8-byte data (DWARF, .BTF)
R_BPF_64_ABS32 = 3   # 4-byte data (DWARF, .BTF, .BTF.ext)
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10     # call imm: a bpf-to-bpf call
SHT_NOBITS = "SHT_NOBITS"
SHF_EXECINSTR = 0x4
#: Sections larger than this are refused: an eBPF object has no use for them, and a
#: corrupted NOBITS size must not become an allocation.
MAX_SECTION = 1 << 30

#: What pyelftools raises on bytes it cannot parse.
_PARSE_ERRORS = (ELFError, ConstructError, struct.error, ValueError, KeyError, IndexError,
                 TypeError, AttributeError, UnicodeDecodeError, OverflowError, RecursionError,
                 AssertionError, zlib.error)


@dataclass(frozen=True)
class Section:
    """A section header, and its contents (``b""`` for NOBITS: ``size`` zero bytes)."""

    index: int
    name: str
    type: str
    flags: int
    size: int
    data: bytes
    link: int
    info: int

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class Symbol:
    """A ``.symtab`` entry.  ``section`` is the index of the section it is defined in
    (0 for undefined and absolute symbols)."""

    index: int
    name: str
    type: str   # STT_FUNC, STT_OBJECT, STT_SECTION, STT_NOTYPE, ...
    bind: str   # STB_LOCAL, STB_GLOBAL, STB_WEAK
    section: int
    value: int
    size: int


@dataclass(frozen=True)
class Relocation:
    """A ``.rel`` entry: the byte ``offset`` in the section it applies to, the symbol it
    refers to and its ``type`` (``R_BPF_*``)."""

    offset: int
    symbol: Symbol
    type: int


@dataclass
class ObjectFile:
    """An eBPF ELF object: ``path`` names it in errors."""

    path: str
    sections: list[Section]
    symbols: list[Symbol]
    #: executable section index -> the relocations that apply to it
    relocations: dict[int, list[Relocation]] = field(default_factory=dict)

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def error(self, detail: str, section: str = "", hint: str = "") -> MalformedObject:
        return MalformedObject(detail, path=self.path, section=section, hint=hint)


def read(data: bytes, path: str = "<bytes>") -> ObjectFile:
    """Parse ``data``, an ELF64 little-endian eBPF relocatable object (clang -target bpf)."""
    try:
        return _read(data, path)
    except MalformedObject:
        raise
    except _PARSE_ERRORS as e:
        raise MalformedObject(f"not a readable ELF file ({type(e).__name__}: {e})",
                              path=path) from e


def _read(data: bytes, path: str) -> ObjectFile:
    elf = ELFFile(io.BytesIO(data))
    h = elf.header
    if elf.elfclass != 64 or not elf.little_endian or h["e_machine"] not in ("EM_BPF", EM_BPF):
        raise MalformedObject(
            f"not a 64-bit little-endian eBPF object (class {elf.elfclass}, machine "
            f"{h['e_machine']}, {'little' if elf.little_endian else 'big'} endian)",
            path=path, hint="compile with clang -target bpf (bpfel)")
    if h["e_type"] != "ET_REL":
        raise MalformedObject(f"ELF type {h['e_type']}, not a relocatable object",
                              path=path, hint="load the .o clang made, not a linked file")
    sections: list[Section] = []
    tables: list[SymbolTableSection] = []
    rels: list[RelocationSection] = []
    for index, sec in enumerate(elf.iter_sections()):
        sections.append(_section(index, sec, path))
        if isinstance(sec, SymbolTableSection):
            tables.append(sec)
        elif isinstance(sec, RelocationSection):
            rels.append(sec)
    if len(tables) != 1:
        raise MalformedObject(f"{len(tables)} symbol tables (an object has one)", path=path)
    symbols = [_symbol(i, s, len(sections)) for i, s in enumerate(tables[0].iter_symbols())]
    obj = ObjectFile(path, sections, symbols)
    for rel in rels:
        target = rel["sh_info"]
        if 0 < target < len(sections) and not sections[target].executable:
            continue  # DWARF, .BTF, .BTF.ext: nothing to apply
        if rel.is_RELA() or not 0 < target < len(sections):
            raise obj.error(f"a relocation section for section {target}"
                            + (" with addends (RELA)" if rel.is_RELA() else ""), rel.name)
        entries = []
        for r in rel.iter_relocations():
            sym = r["r_info_sym"]
            if not 0 <= sym < len(symbols):
                raise obj.error(f"relocation at {r['r_offset']:#x} names symbol {sym}, "
                                f"past the {len(symbols)} symbols", rel.name)
            entries.append(Relocation(r["r_offset"], symbols[sym], r["r_info_type"]))
        obj.relocations.setdefault(target, []).extend(entries)
    return obj


def _section(index: int, sec: _Section, path: str) -> Section:
    size = sec["sh_size"]
    if size > MAX_SECTION:
        raise MalformedObject(f"{size} bytes (more than {MAX_SECTION})", path=path,
                              section=sec.name)
    nobits = sec["sh_type"] == SHT_NOBITS
    data = b"" if nobits or sec["sh_type"] == "SHT_NULL" else sec.data()
    if not nobits and sec["sh_type"] != "SHT_NULL" and len(data) != size:
        raise MalformedObject(f"truncated: {len(data)} of {size} bytes in the file",
                              path=path, section=sec.name)
    return Section(index, sec.name, str(sec["sh_type"]), sec["sh_flags"], size, data,
                   sec["sh_link"], sec["sh_info"])


def _symbol(index: int, sym: ElfSymbol, nsections: int) -> Symbol:
    shndx = sym["st_shndx"]  # an index, or SHN_UNDEF/SHN_ABS/SHN_COMMON as a name
    section = shndx if isinstance(shndx, int) and 0 < shndx < nsections else 0
    info = sym["st_info"]
    return Symbol(index, sym.name, str(info["type"]), str(info["bind"]), section,
                  sym["st_value"], sym["st_size"])
