"""BTF_LOAD in the model: ``btf_parse`` as a structural check of raw BTF (kernel/bpf/btf.c).

What it checks, in the kernel's order and with its errnos and log messages: the header
(``hdr_len``, zero unknown header bytes: E2BIG, magic, version and flags: ENOTSUPP), the
sections (offsets, gaps, overlaps, the string section last), the string table, then
each type's meta data (kind known to the profile, ``info`` bits, name offset, the
kind's own data: sizes, vlen, names) and last the references: type ids in range, a FUNC
of a FUNC_PROTO, chains of modifiers without loops (EEXIST), struct members within
the struct.  The log has the kernel's header lines and a line per type like the
kernel's (exact for INT, the modifiers, FUNC, VAR, DATASEC, ENUM, STRUCT members,
FLOAT; other kinds print their kind and name).  What it does not check: the special
fields of map values (spin locks, kptrs...), FUNC_PROTO argument rules, identifier
rules beyond "a C identifier", and split (module) BTF.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from .. import uapi
from .profiles import Profile

MAGIC, HDR_SIZE = uapi.BTF_MAGIC, uapi.BTF_HEADER_SIZE
MAX_SIZE = 16 << 20  # BTF_MAX_SIZE
MAX_NAME_OFFSET = 0xFFFF  # BTF_MAX_NAME_OFFSET
INFO_MASK = 0x9F00FFFF  # kind_flag, kind, vlen
MAX_TYPE_ID = 0x7FFFFFFF

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
KIND_NAMES = ("UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF",
              "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC",
              "FLOAT", "DECL_TAG", "TYPE_TAG", "ENUM64")
#: Kinds newer than 5.6, by the probe feature that brings them.
KIND_FEATURE = {FLOAT: "btf_float", DECL_TAG: "btf_decl_tag", TYPE_TAG: "btf_type_tag",
                ENUM64: "btf_enum64"}
#: Kinds that refer to one type through ``type`` and have no data of their own.
REF_KINDS = {PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
#: Bytes of data after ``struct btf_type``: fixed, and per vlen entry.
FIXED_DATA = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
VLEN_DATA = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4


class Refused(Exception):
    """BTF_LOAD refused: the errno, and the log so far."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


@dataclass
class Type:
    """One ``struct btf_type`` and its data (as u32 words)."""

    id: int
    name_off: int
    info: int
    size_type: int  # size, or the referred type id
    data: tuple[int, ...] = ()

    @property
    def kind(self) -> int:
        return (self.info >> 24) & 0x1F

    @property
    def vlen(self) -> int:
        return self.info & 0xFFFF

    @property
    def kflag(self) -> bool:
        return bool(self.info >> 31)


@dataclass
class Btf:
    """Parsed BTF: the raw bytes, the types (``types[0]`` is void: None) and strings."""

    raw: bytes
    strings: bytes
    types: list[Type | None] = field(default_factory=lambda: [None])

    def name(self, off: int) -> str:
        return self.strings[off:].split(b"\0", 1)[0].decode(errors="replace")

    def type(self, type_id: int) -> Type | None:
        return self.types[type_id] if 0 < type_id < len(self.types) else None

    def resolve(self, type_id: int) -> Type | None:
        """Through typedefs and modifiers (not pointers) to the type with a size."""
        t = self.type(type_id)
        for _ in range(len(self.types)):
            if t is None or t.kind not in REF_KINDS - {PTR}:
                return t
            t = self.type(t.size_type)
        return None

    def size(self, type_id: int) -> int | None:
        """``btf_type_id_size``: the size of a type (None: it has none, e.g. a FUNC)."""
        t = self.resolve(type_id)
        if t is None:
            return None
        if t.kind == PTR:
            return 8
        if t.kind == VAR:
            return self.size(t.size_type)
        if t.kind == ARRAY:
            elem = self.size(t.data[0])
            return None if elem is None else elem * t.data[2]
        if t.kind in (INT, STRUCT, UNION, ENUM, DATASEC, FLOAT, ENUM64):
            return t.size_type
        return None

    def is_func(self, type_id: int) -> bool:
        t = self.type(type_id)
        return t is not None and t.kind == FUNC


class _Parser:
    def __init__(self, data: bytes, profile: Profile) -> None:
        self.data, self.profile = data, profile
        self.log: list[str] = []

    def fail(self, err: int, msg: str) -> Refused:
        self.log.append(msg)
        return Refused(err)

    def parse(self) -> Btf:
        """``btf_parse``: header, sections, strings, types."""
        data = self.data
        if len(data) < 8:
            raise self.fail(errno.EINVAL, "hdr_len not found")
        (hdr_len,) = struct.unpack_from("<I", data, 4)
        if len(data) < hdr_len:
            raise self.fail(errno.EINVAL, "btf_header not found")
        if hdr_len > HDR_SIZE and any(data[HDR_SIZE:hdr_len]):
            raise self.fail(errno.E2BIG, "Unsupported btf_header")
        hdr = data[: min(hdr_len, HDR_SIZE)].ljust(HDR_SIZE, b"\0")
        magic, version, flags, _, type_off, type_len, str_off, str_len = struct.unpack(
            "<HBBIIIII", hdr)
        self.log += [f"magic: {magic:#x}", f"version: {version}", f"flags: {flags:#x}",
                     f"hdr_len: {hdr_len}", f"type_off: {type_off}", f"type_len: {type_len}",
                     f"str_off: {str_off}", f"str_len: {str_len}",
                     f"btf_total_size: {len(data)}"]
        if magic != MAGIC:
            raise self.fail(errno.EINVAL, "Invalid magic")
        if version != 1:
            raise self.fail(uapi.ENOTSUPP, "Unsupported version")
        if flags:
            raise self.fail(uapi.ENOTSUPP, "Unsupported flags")
        if len(data) == hdr_len:
            raise self.fail(errno.EINVAL, "No data")
        self.sections(len(data) - hdr_len, [(type_off, type_len), (str_off, str_len)])
        body = data[hdr_len:]
        if str_off + str_len != len(body):
            raise self.fail(errno.EINVAL, "String section is not at the end")
        strings = body[str_off:]
        if not str_len or str_len - 1 > MAX_NAME_OFFSET or strings[-1] or strings[0]:
            raise self.fail(errno.EINVAL, "Invalid string section")
        if type_off & 3:
            raise self.fail(errno.EINVAL, "Unaligned type_off")
        if not type_len:
            raise self.fail(errno.EINVAL, "No type found")
        btf = Btf(bytes(data), strings)
        self.metas(btf, body[type_off : type_off + type_len])
        self.references(btf)
        return btf

    def sections(self, expected: int, secs: list[tuple[int, int]]) -> None:
        """``btf_check_sec_info``: the sections in offset order, without gaps or overlap,
        filling the data after the header exactly."""
        total = 0
        for off, length in sorted(secs):
            if expected < off:
                raise self.fail(errno.EINVAL, "Invalid section offset")
            if total < off:
                raise self.fail(errno.EINVAL, "Unsupported section found")
            if total > off:
                raise self.fail(errno.EINVAL, "Section overlap found")
            if expected - total < length:
                raise self.fail(errno.EINVAL, "Total section length too long")
            total += length
        if expected != total:
            raise self.fail(errno.EINVAL, "Unsupported section found")

    def kind_known(self, kind: int) -> bool:
        feature = KIND_FEATURE.get(kind)
        return 0 < kind <= ENUM64 and (feature is None or self.profile.has(feature))

    def metas(self, btf: Btf, sec: bytes) -> None:
        """``btf_check_all_metas``: each type's header and data."""
        pos = 0
        while pos < len(sec):
            tid = len(btf.types)
            left = len(sec) - pos
            if left < 12:
                raise self.fail(errno.EINVAL, f"[{tid}] meta_left:{left} meta_needed:12")
            name_off, info, size_type = struct.unpack_from("<III", sec, pos)
            t = Type(tid, name_off, info, size_type)
            if info & ~INFO_MASK:
                raise self.fail(errno.EINVAL, f"[{tid}] Invalid btf_info:{info:x}")
            if not self.kind_known(t.kind):
                raise self.fail(errno.EINVAL, f"[{tid}] Invalid kind:{t.kind}")
            if name_off >= len(btf.strings):
                raise self.fail(errno.EINVAL, f"[{tid}] Invalid name_offset:{name_off}")
            need = FIXED_DATA.get(t.kind, 0) + VLEN_DATA.get(t.kind, 0) * t.vlen
            if left - 12 < need:
                raise self.fail(errno.EINVAL, f"{self.head(btf, t)} meta_left:{left - 12} "
                                              f"meta_needed:{need}")
            t.data = struct.unpack_from(f"<{need // 4}I", sec, pos + 12)
            self.check_meta(btf, t)
            btf.types.append(t)
            pos += 12 + need

    def head(self, btf: Btf, t: Type) -> str:
        """``btf_verifier_log_type``'s start: ``[id] KIND name``."""
        return f"[{t.id}] {KIND_NAMES[t.kind]} {btf.name(t.name_off) or '(anon)'}"

    def line(self, btf: Btf, t: Type) -> tuple[str, list[str]]:
        """The type's log line and its member lines, as the kernel prints them."""
        head, k, d = self.head(btf, t), t.kind, t.data
        if k == INT:
            enc = {INT_SIGNED: "SIGNED", INT_CHAR: "CHAR", INT_BOOL: "BOOL"}.get(
                d[0] >> 24 & 0xF, "(none)")
            return (f"{head} size={t.size_type} bits_offset={d[0] >> 16 & 0xFF} "
                    f"nr_bits={d[0] & 0xFF} encoding={enc}"), []
        if k in REF_KINDS or k == FUNC:
            return f"{head} type_id={t.size_type}", []
        if k == DECL_TAG:
            return f"{head} type={t.size_type} component_idx={_s32(d[0])}", []
        if k == ARRAY:
            return f"{head} type_id={d[0]} index_type_id={d[1]} nr_elems={d[2]}", []
        if k == FUNC_PROTO:
            args = [f"{d[i + 1]} {btf.name(d[i])}" if d[i + 1] else "vararg"
                    for i in range(0, len(d), 2)]
            return f"{head} return={t.size_type} args=({', '.join(args) or 'void'})", []
        if k == VAR:
            return f"{head} type_id={t.size_type} linkage={d[0]}", []
        if k == FLOAT:
            return f"{head} size={t.size_type}", []
        if k in (STRUCT, UNION):
            return f"{head} size={t.size_type} vlen={t.vlen}", [
                f"\t{btf.name(d[i]) or '(anon)'} type_id={d[i + 1]} bits_offset={d[i + 2]}"
                for i in range(0, len(d), 3)]
        if k == ENUM:
            return f"{head} size={t.size_type} vlen={t.vlen}", [
                f"\t{btf.name(d[i])} val={_s32(d[i + 1]) if t.kflag else d[i + 1]}"
                for i in range(0, len(d), 2)]
        if k == ENUM64:
            return f"{head} size={t.size_type} vlen={t.vlen}", [
                f"\t{btf.name(d[i])} val={d[i + 2] << 32 | d[i + 1]}"
                for i in range(0, len(d), 3)]
        if k == DATASEC:
            return f"{head} size={t.size_type} vlen={t.vlen}", [
                f"\t type_id={d[i]} offset={d[i + 1]} size={d[i + 2]}"
                for i in range(0, len(d), 3)]
        return head, []

    def refuse(self, btf: Btf, t: Type, msg: str, err: int = errno.EINVAL) -> Refused:
        return self.fail(err, f"{self.line(btf, t)[0]} {msg}")

    def check_meta(self, btf: Btf, t: Type) -> None:
        """The kind's ``check_meta``: its size, vlen, kind_flag and name rules."""
        k, name = t.kind, btf.name(t.name_off)
        line, members = self.line(btf, t)
        if k not in VLEN_DATA and k != FUNC and t.vlen:
            raise self.refuse(btf, t, "vlen != 0")
        signed_enum = k == ENUM and self.profile.has("btf_enum64")  # kind_flag: signed (6.0)
        if t.kflag and k not in (STRUCT, UNION, FWD, ENUM64) and not signed_enum:
            raise self.refuse(btf, t, "Invalid btf_info kind_flag")
        if k == INT:
            bits, offset, enc = t.data[0] & 0xFF, t.data[0] >> 16 & 0xFF, t.data[0] >> 24 & 0xF
            if bits > 128 or bits + offset > t.size_type * 8:
                raise self.refuse(btf, t, "nr_bits exceeds type_size")
            if enc & (enc - 1) or t.data[0] & 0xF0000000 or t.data[0] & 0xFF00:
                raise self.refuse(btf, t, "Unsupported encoding")
        elif k in (FLOAT,) and t.size_type not in (2, 4, 8, 12, 16):
            raise self.refuse(btf, t, "Invalid type_size")
        elif k in (ENUM, ENUM64) and t.size_type not in (1, 2, 4, 8):
            raise self.refuse(btf, t, "Unexpected size")
        elif k == DATASEC and not t.size_type:
            raise self.refuse(btf, t, "size == 0")
        elif k == ARRAY and t.size_type:
            raise self.refuse(btf, t, "size != 0")
        elif k == FUNC and t.vlen > 2:
            raise self.refuse(btf, t, "Invalid func linkage")
        elif k == VAR and t.data[0] > 2:
            raise self.refuse(btf, t, "Linkage not supported")
        anonymous = k in (PTR, ARRAY, FUNC_PROTO, VOLATILE, CONST, RESTRICT)
        named = k in (TYPEDEF, FWD, FUNC, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG)
        if (anonymous and name) or (named and not name) or (
                name and k != DATASEC and k != INT and not _identifier(name)):
            raise self.refuse(btf, t, "Invalid name")
        self.log.append(line)
        if k in (STRUCT, UNION, ENUM, ENUM64):  # the type's line first, then each member
            step = VLEN_DATA[k] // 4
            for i, text in zip(range(0, len(t.data), step), members, strict=True):
                member = btf.name(t.data[i])
                if t.data[i] >= len(btf.strings) or (member and not _identifier(member)) or (
                        k in (ENUM, ENUM64) and not member):
                    raise self.refuse(btf, t, "Invalid name")
                self.log.append(text)
        elif k == DATASEC:
            self.log += members

    def references(self, btf: Btf) -> None:
        """``btf_check_all_types``: every type id in range and of the right kind."""
        n = len(btf.types)
        for t in btf.types[1:]:
            assert t is not None
            k, refs = t.kind, []
            if k in REF_KINDS or k in (FUNC, VAR, DECL_TAG):
                refs = [t.size_type]
            elif k == ARRAY:
                refs = [t.data[0], t.data[1]]
            elif k in (STRUCT, UNION, DATASEC):
                refs = list(t.data[1 if k != DATASEC else 0 :: 3])
            elif k == FUNC_PROTO:
                refs = [t.size_type, *t.data[1::2]]
            index = btf.resolve(t.data[1]) if k == ARRAY and t.data[1] < n else None
            if k == ARRAY and (index is None or index.kind not in (INT, ENUM, ENUM64)):
                raise self.refuse(btf, t, "Invalid index")
            if any(r >= n for r in refs) or (k in (FUNC, VAR, DECL_TAG, ARRAY) and not refs[0]):
                raise self.refuse(btf, t, "Invalid type_id")
            target = btf.type(t.size_type)
            if k == FUNC and (target is None or target.kind != FUNC_PROTO):
                raise self.refuse(btf, t, "Invalid type_id")
            if k == DECL_TAG and (target is None or target.kind not in (
                    STRUCT, UNION, VAR, FUNC, TYPEDEF)):
                raise self.refuse(btf, t, "Invalid type_id")
            if k in REF_KINDS:
                seen, cur = {t.id}, target
                while cur is not None and cur.kind in REF_KINDS:
                    if cur.size_type in seen:
                        raise self.refuse(btf, t, "Loop detected", errno.EEXIST)
                    seen.add(cur.size_type)
                    cur = btf.type(cur.size_type)
            if k in (STRUCT, UNION):
                for i in range(0, len(t.data), 3):
                    size = btf.size(t.data[i + 1]) or 0
                    bits = t.data[i + 2] & 0xFFFFFF if t.kflag else t.data[i + 2]
                    if (bits + 7) // 8 + size > t.size_type:
                        self.log.append(self.line(btf, t)[0])
                        raise self.fail(errno.EINVAL, f"\t{btf.name(t.data[i]) or '(anon)'} "
                                        f"type_id={t.data[i + 1]} bits_offset={t.data[i + 2]} "
                                        "Member exceeds struct_size")


def _s32(word: int) -> int:
    return word - (1 << 32) if word & 0x80000000 else word


def _identifier(name: str) -> bool:
    """``btf_name_valid_identifier``: a letter or ``_``, then letters, digits, ``_`` and
    ``.`` (measured on 6.1, 6.12 and 6.18: clang names a function's static variables
    ``func.name``, e.g. bpf_printk's ``prog.____fmt``)."""
    return (name[0].isalpha() or name[0] == "_") and all(
        c.isalnum() or c in "_." for c in name) and name.isascii()


def parse(data: bytes, profile: Profile) -> tuple[Btf | None, Refused | None, str]:
    """Parse ``data``: (the BTF or None, the refusal or None, the log text)."""
    p = _Parser(data, profile)
    try:
        btf = p.parse()
    except Refused as e:
        return None, e, "\n".join(p.log) + "\n"
    return btf, None, "\n".join(p.log) + "\n"
