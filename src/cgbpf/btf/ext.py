"""The ``.BTF.ext`` section: per ELF section, the function, line and CO-RE relocation
records clang emits for the programs in it (``tools/lib/bpf/libbpf_internal.h``), and the
``func_info``/``line_info`` arrays PROG_LOAD takes (Linux 5.0)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from ..errors import MalformedObject
from .spec import MAGIC, Spec
from .types import Func, Type

FUNC_INFO_REC_SIZE = 8
LINE_INFO_REC_SIZE = 16
CORE_RELO_REC_SIZE = 16
HEADER = struct.Struct("<HBBIIIII")  # magic version flags hdr_len func_off/len line_off/len
CORE_HEADER = struct.Struct("<II")  # core_relo_off core_relo_len, if hdr_len covers them
INSN_SIZE = 8

R = TypeVar("R")


@dataclass(frozen=True)
class FuncInfo:
    """A function starting at byte ``insn_off`` of its section, of type ``type_id``."""

    insn_off: int
    type_id: int


@dataclass(frozen=True)
class LineInfo:
    """Source position of the instruction at byte ``insn_off``: ``line`` is the text of
    line ``line_num``; ``*_off`` are the offsets of the strings in ``.BTF``."""

    insn_off: int
    file_name: str
    line: str
    line_num: int
    col: int
    file_name_off: int
    line_off: int


@dataclass(frozen=True)
class CoreRelo:
    """A CO-RE relocation (``bpf_core_relo``) at byte ``insn_off``: ``access`` is the
    accessor string (``"0:1:2"``), ``kind`` a ``BPF_CORE_*`` number."""

    KINDS: ClassVar[tuple[str, ...]] = (
        "FIELD_BYTE_OFFSET", "FIELD_BYTE_SIZE", "FIELD_EXISTS", "FIELD_SIGNED",
        "FIELD_LSHIFT_U64", "FIELD_RSHIFT_U64", "TYPE_ID_LOCAL", "TYPE_ID_TARGET",
        "TYPE_EXISTS", "TYPE_SIZE", "ENUMVAL_EXISTS", "ENUMVAL_VALUE", "TYPE_MATCHES")

    insn_off: int
    type_id: int
    access: str
    kind: int

    @property
    def kind_name(self) -> str:
        """The ``BPF_CORE_*`` name of ``kind`` (``"UNKNOWN(n)"`` for a newer one)."""
        return self.KINDS[self.kind] if self.kind < len(self.KINDS) else f"UNKNOWN({self.kind})"


@dataclass(frozen=True)
class Ext:
    """Parsed ``.BTF.ext``: each record list by the ELF section of its programs."""

    func_info: dict[str, list[FuncInfo]]
    line_info: dict[str, list[LineInfo]]
    core_relos: dict[str, list[CoreRelo]]

    @classmethod
    def from_bytes(cls, data: bytes, spec: Spec, *, path: str = "") -> Ext:
        """Parse ``data`` against ``spec`` (its names are in ``.BTF``'s strings)."""
        return _ExtParser(bytes(data), spec, path).parse()


def func_info_bytes(records: Sequence[FuncInfo], *, insn_base: int = 0) -> bytes:
    """PROG_LOAD's ``func_info``: ``bpf_func_info`` records, ``insn_off`` in instructions
    from ``insn_base`` (where the section's code starts in the loaded program)."""
    return b"".join(struct.pack("<II", r.insn_off // INSN_SIZE + insn_base, r.type_id)
                    for r in records)


def line_info_bytes(records: Sequence[LineInfo], *, insn_base: int = 0) -> bytes:
    """PROG_LOAD's ``line_info``: ``bpf_line_info`` records, as :func:`func_info_bytes`."""
    return b"".join(struct.pack("<IIII", r.insn_off // INSN_SIZE + insn_base,
                                r.file_name_off, r.line_off, r.line_num << 10 | r.col)
                    for r in records)


class _ExtParser:
    def __init__(self, data: bytes, spec: Spec, path: str) -> None:
        self.data, self.spec, self.path = data, spec, path
        self.strings = spec.strings

    def fail(self, detail: str) -> MalformedObject:
        return MalformedObject(detail, path=self.path, section=".BTF.ext")

    def string(self, off: int, what: str) -> str:
        if off >= len(self.strings):
            raise self.fail(f"{what}: string offset {off} past .BTF's string section "
                            f"({len(self.strings)} bytes)")
        end = self.strings.index(b"\0", off)
        return self.strings[off:end].decode("utf-8", "replace")

    def type(self, type_id: int, what: str) -> Type:
        if type_id >= len(self.spec.types):
            raise self.fail(f"{what}: type id {type_id} past .BTF's last "
                            f"({len(self.spec.types) - 1})")
        return self.spec.types[type_id]

    def parse(self) -> Ext:
        data = self.data
        if len(data) < HEADER.size:
            raise self.fail(f"{len(data)} bytes: shorter than the {HEADER.size}-byte header")
        magic, version, flags, hdr_len, *infos = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise self.fail("big-endian BTF is not supported" if magic == 0x9FEB
                            else f"bad magic {magic:#06x} (not {MAGIC:#06x})")
        if version != 1 or flags:
            raise self.fail(f"unsupported version {version} or flags {flags:#x}")
        if not HEADER.size <= hdr_len <= len(data):
            raise self.fail(f"header length {hdr_len} ({len(data)} bytes)")
        if hdr_len >= HEADER.size + CORE_HEADER.size:
            infos += CORE_HEADER.unpack_from(data, HEADER.size)
        else:
            infos += [0, 0]
        body = data[hdr_len:]
        funcs = self.blocks(body, infos[0], infos[1], FUNC_INFO_REC_SIZE, "func_info",
                            self.func_info)
        lines = self.blocks(body, infos[2], infos[3], LINE_INFO_REC_SIZE, "line_info",
                            self.line_info)
        relos = self.blocks(body, infos[4], infos[5], CORE_RELO_REC_SIZE, "core_relo",
                            self.core_relo)
        return Ext(funcs, lines, relos)

    def blocks(self, body: bytes, off: int, length: int, min_size: int, what: str,
               record: Callable[[tuple[int, ...], str], R]) -> dict[str, list[R]]:
        """One info section: a record size, then per ELF section its name offset, its
        record count and the records (libbpf's ``btf_ext_setup_info``)."""
        if not length:
            return {}
        if off % 4 or off + length > len(body):
            raise self.fail(f"{what} at {off}+{length}: unaligned or past the "
                            f"{len(body)} bytes")
        sec = body[off:off + length]
        if len(sec) < 4:
            raise self.fail(f"{what}: no record size")
        (rec_size,) = struct.unpack_from("<I", sec)
        if rec_size < min_size or rec_size % 4:
            raise self.fail(f"{what}: record size {rec_size} (at least {min_size}, "
                            "a multiple of 4)")
        out: dict[str, list[R]] = {}
        pos = 4
        while pos < len(sec):
            if pos + 8 > len(sec):
                raise self.fail(f"{what}: truncated section header at {pos}")
            name_off, n = struct.unpack_from("<II", sec, pos)
            name = self.string(name_off, what)
            pos += 8
            if not n or pos + n * rec_size > len(sec):
                raise self.fail(f"{what} of {name!r}: {n} records of {rec_size} bytes "
                                f"at {pos} (of {len(sec)})")
            out.setdefault(name, []).extend(
                record(struct.unpack_from(f"<{min_size // 4}I", sec, pos + i * rec_size),
                       f"{what} of {name!r}")
                for i in range(n))
            pos += n * rec_size
        return out

    def func_info(self, words: tuple[int, ...], what: str) -> FuncInfo:
        insn_off, type_id = words
        if not isinstance(self.type(type_id, what), Func):
            raise self.fail(f"{what}: type {type_id} is not a FUNC")
        return FuncInfo(insn_off, type_id)

    def line_info(self, words: tuple[int, ...], what: str) -> LineInfo:
        insn_off, file_off, line_off, line_col = words
        return LineInfo(insn_off, self.string(file_off, what), self.string(line_off, what),
                        line_col >> 10, line_col & 0x3FF, file_off, line_off)

    def core_relo(self, words: tuple[int, ...], what: str) -> CoreRelo:
        insn_off, type_id, access_off, kind = words
        self.type(type_id, what)
        return CoreRelo(insn_off, type_id, self.string(access_off, what), kind)
