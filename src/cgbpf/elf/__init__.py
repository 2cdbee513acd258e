"""Reading clang-compiled eBPF objects (``clang -target bpf -g -O2 -c``): sections,
symbols and relocations through pyelftools (:mod:`.reader`), libbpf's section names
(:mod:`.sections`), and programs linked with their subprograms (:mod:`.linker`).  What
the objects mean to the kernel (maps, variables, loading) is :mod:`cgbpf.collection`."""

from .linker import Linked, Piece, Reference, link, resolve_references, symbol_name
from .reader import ObjectFile, Relocation, Section, Symbol, read
from .sections import SECTION_DEFS, SectionDef, section_def

__all__ = ["SECTION_DEFS", "Linked", "ObjectFile", "Piece", "Reference", "Relocation",
           "Section", "SectionDef", "Symbol", "link", "read", "resolve_references",
           "section_def", "symbol_name"]
