"""Malformed objects: whatever the bytes, reading an object (and loading what could be
read, on a model machine) raises a :class:`cgbpf.BpfError` subclass (MalformedObject
for what is not a readable eBPF object), never another exception.  Truncated files,
corrupted ELF and section headers, bad relocation targets and offsets, bad BTF.

``CGBPF_FUZZ_EXAMPLES`` sets the number of examples per fuzz test (default 30; ``make
fuzz``: 10,000)."""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfc import compile_c
from cgbpf import BpfError
from cgbpf.collection import CollectionSpec
from cgbpf.errors import MalformedObject
from cgbpf.kernel import Kernel, model

EXAMPLES = int(os.environ.get("CGBPF_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
REL = struct.Struct("<QQ")  # Elf64_Rel

_objects: dict[str, bytes] = {}
_model: list[Kernel] = []


def obj(name: str = "globals") -> bytes:
    if name not in _objects:
        _objects[name] = Path(compile_c(name)).read_bytes()
    return _objects[name]


def machine() -> Kernel:
    if not _model:
        _model.append(model("6.18"))
    return _model[0]


def sections(data: bytes) -> list[tuple[int, str, tuple[int, ...]]]:
    """(header offset, name, fields) of each section header of a well-formed object."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    headers = [SHDR.unpack_from(data, shoff + i * SHDR.size) for i in range(shnum)]
    strtab = headers[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    return [(shoff + i * SHDR.size, names[h[0]:names.index(b"\0", h[0])].decode(), h)
            for i, h in enumerate(headers)]


def section(data: bytes, name: str) -> tuple[int, int]:
    """(file offset, size) of section ``name``."""
    h = next(h for _, n, h in sections(data) if n == name)
    return h[4], h[5]


def only_bpf_errors(data: bytes) -> None:
    """Read ``data``; if that works, load it on a model machine: only BpfErrors."""
    try:
        spec = CollectionSpec.from_bytes(data, name="fuzz")
    except BpfError:
        return
    with contextlib.suppress(BpfError):
        spec.load(machine()).close()


# --- fuzz ------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_fuzz_truncated(data: st.DataObject) -> None:
    good = obj()
    only_bpf_errors(good[:data.draw(st.integers(0, len(good) - 1))])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0x3F), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_elf_header(changes: list[tuple[int, int]]) -> None:
    data = bytearray(obj())
    for at, byte in changes:
        data[at] = byte
    only_bpf_errors(bytes(data))


@FUZZ
@given(st.data())
def test_fuzz_section_headers(data: st.DataObject) -> None:
    good = obj()
    heads = sections(good)
    out = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        at, _, fields = data.draw(st.sampled_from(heads))
        i = data.draw(st.integers(0, len(fields) - 1))
        width = 8 if SHDR.format[1 + i] == "Q" else 4
        value = data.draw(st.one_of(st.integers(0, 2**(8 * width) - 1),
                                    st.integers(0, 256), st.sampled_from([fields[i] + 1,
                                                                          fields[i] - 1])))
        new = list(fields)
        new[i] = value % 2**(8 * width)
        SHDR.pack_into(out, at, *new)
    only_bpf_errors(bytes(out))


@FUZZ
@given(st.data())
def test_fuzz_relocations(data: st.DataObject) -> None:
    good = obj()
    rels = [(off, size) for _, n, (_, t, _, _, off, size, *_) in sections(good)
            if t == 9 and n in (".rel.text", ".relcgroup_skb/egress", ".relcgroup_skb/ingress")]
    out = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        off, size = data.draw(st.sampled_from(rels))
        entry = off + REL.size * data.draw(st.integers(0, size // REL.size - 1))
        r_offset, r_info = REL.unpack_from(out, entry)
        what = data.draw(st.sampled_from(["offset", "symbol", "type"]))
        if what == "offset":
            r_offset = data.draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 512)))
        elif what == "symbol":
            r_info = data.draw(st.integers(0, 2**32 - 1)) << 32 | (r_info & 0xFFFFFFFF)
        else:
            r_info = (r_info & ~0xFFFFFFFF) | data.draw(st.integers(0, 12))
        REL.pack_into(out, entry, r_offset, r_info)
    only_bpf_errors(bytes(out))


@FUZZ
@given(st.data())
def test_fuzz_btf(data: st.DataObject) -> None:
    good = obj()
    name = data.draw(st.sampled_from([".BTF", ".BTF.ext"]))
    off, size = section(good, name)
    out = bytearray(good)
    for _ in range(data.draw(st.integers(1, 8))):
        out[off + data.draw(st.integers(0, size - 1))] = data.draw(st.integers(0, 255))
    only_bpf_errors(bytes(out))


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_garbage(garbage: bytes) -> None:
    only_bpf_errors(garbage)
    only_bpf_errors(obj()[:64] + garbage)


# --- particular cases, with their messages ------------------------------------------------

def test_not_an_elf_file() -> None:
    with pytest.raises(MalformedObject, match="not a readable ELF file") as e:
        CollectionSpec.from_bytes(b"\x7fELF junk", path="junk.o")
    assert e.value.path == "junk.o" and "junk.o" in str(e.value)


def test_not_bpf() -> None:
    data = bytearray(obj())
    data[0x12] = 62  # e_machine EM_X86_64
    with pytest.raises(MalformedObject, match="not a 64-bit little-endian eBPF object"):
        CollectionSpec.from_bytes(bytes(data))


def test_truncated_section() -> None:
    good = obj()
    off, size = section(good, "cgroup_skb/egress")
    with pytest.raises(MalformedObject, match=r"truncated|not a readable ELF"):
        CollectionSpec.from_bytes(good[:off + size // 2])


def _patch_rel(name: str, entry: int, *, r_offset: int | None = None,
               sym: int | None = None) -> bytes:
    good = obj()
    off, _ = section(good, name)
    out = bytearray(good)
    at = off + entry * REL.size
    old_offset, info = REL.unpack_from(out, at)
    REL.pack_into(out, at, old_offset if r_offset is None else r_offset,
                  info if sym is None else sym << 32 | (info & 0xFFFFFFFF))
    return bytes(out)


def test_relocation_symbol_out_of_range() -> None:
    with pytest.raises(MalformedObject, match="names symbol 100000, past the"):
        CollectionSpec.from_bytes(_patch_rel(".relcgroup_skb/egress", 0, sym=100000))


def test_relocation_not_at_an_instruction() -> None:
    with pytest.raises(MalformedObject, match="is not at an instruction"):
        CollectionSpec.from_bytes(_patch_rel(".relcgroup_skb/egress", 0, r_offset=3))


def test_relocation_of_a_plain_instruction() -> None:
    with pytest.raises(MalformedObject, match="neither a call nor an ld_imm64"):
        CollectionSpec.from_bytes(_patch_rel(".relcgroup_skb/egress", 0, r_offset=0))


def test_relocation_against_something_not_a_map() -> None:
    """The first egress relocation retargeted at the LICENSE symbol."""
    good = obj()
    from cgbpf import elf

    lic = next(s for s in elf.read(good).symbols if s.name == "LICENSE")
    with pytest.raises(MalformedObject, match="'LICENSE' in section 'license', neither a map"):
        CollectionSpec.from_bytes(_patch_rel(".relcgroup_skb/egress", 0, sym=lic.index))


def test_bad_btf() -> None:
    good = obj()
    off, _ = section(good, ".BTF")
    out = bytearray(good)
    out[off:off + 2] = b"\0\0"  # the magic
    with pytest.raises(MalformedObject) as e:
        CollectionSpec.from_bytes(bytes(out), path="bad.o")
    assert e.value.section == ".BTF"


def test_a_compressed_section_that_is_not() -> None:
    """SHF_COMPRESSED on a section of plain bytes: pyelftools' zlib error, wrapped."""
    good = obj()
    at, _, fields = next(s for s in sections(good) if s[1] == ".rodata")
    out = bytearray(good)
    SHDR.pack_into(out, at, *fields[:2], fields[2] | 0x800, *fields[3:])
    with pytest.raises(MalformedObject, match="not a readable ELF file"):
        CollectionSpec.from_bytes(bytes(out))
