"""Tagged values (VM-SPEC §1.2-§1.4): a register holds a scalar (an ``int`` in
``[0, 2**64)``), a :class:`Ptr` into a :class:`Region`, or :data:`UNINIT`.  Memory is
reached only through a region, which checks bounds and says what the kernel would have
said at load for an access it cannot prove."""

from __future__ import annotations

import errno
import struct
from itertools import count
from typing import TYPE_CHECKING, Final

from .errors import NondeterministicValue, VerifierWouldReject

if TYPE_CHECKING:
    from ..objects import Map


class _Uninit:
    """A register the program has not written (the verifier's ``!read_ok``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNINIT"


UNINIT: Final = _Uninit()
M64, M32 = (1 << 64) - 1, (1 << 32) - 1
_bases = count()


class Region:
    """Memory a pointer may point into.  ``kind`` is one of ``stack``, ``ctx``,
    ``packet``, ``map_value``, ``mem`` (helper memory) or ``map`` (a map itself, only a
    helper argument); ``fake_base`` is the stable, kernel-looking address the region
    pretends to have when a pointer is used as a number."""

    kind = "mem"
    writable = True

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.fake_base = 0xFFFF888000000000 + next(_bases) * 0x10000

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"

    def reject(self, off: int, n: int, what: str = "access") -> VerifierWouldReject:
        return VerifierWouldReject(errno.EACCES, f"invalid {what} to {self.kind} {self.name} "
                                   f"off={off} size={n}")

    def load(self, off: int, n: int, signed: bool = False) -> int | Ptr:
        """The ``n``-byte little-endian value at ``off``, zero- or sign-extended."""
        raise self.reject(off, n, "read")

    def store(self, off: int, n: int, value: int | Ptr) -> None:
        """Store the low ``n`` bytes of ``value`` at ``off``."""
        raise self.reject(off, n, "write")

    def read_bytes(self, off: int, n: int) -> bytes:
        """``n`` initialised bytes at ``off`` (a helper reading its argument)."""
        raise self.reject(off, n, "read")

    def write_bytes(self, off: int, data: bytes) -> None:
        """Write ``data`` at ``off`` (a helper filling its argument); the bytes become
        initialised."""
        raise self.reject(off, len(data), "write")


class Ptr:
    """A pointer: a region and an offset into it (which may be out of bounds until it is
    dereferenced, as in the kernel)."""

    __slots__ = ("off", "region")

    def __init__(self, region: Region, off: int) -> None:
        self.region, self.off = region, off

    def __repr__(self) -> str:
        return f"Ptr({self.region!r}, {self.off})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ptr) and other.region is self.region and other.off == self.off

    def __hash__(self) -> int:
        return hash((id(self.region), self.off))

    @property
    def address(self) -> int:
        """The fake address (the kernel's result would be a real one)."""
        return (self.region.fake_base + self.off) & M64


def _value_bytes(value: int | Ptr, n: int, strict: bool) -> bytes:
    if isinstance(value, Ptr):  # a real kernel address lands in memory (VM-SPEC §1.2)
        if strict:
            raise NondeterministicValue(f"pointer {value!r} stored as a number")
        value = value.address
    return (value & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


def _from_bytes(data: bytes | bytearray, signed: bool) -> int:
    v = int.from_bytes(data, "little", signed=signed)
    return v & M64


#: little-endian (un)packers by (size, signed) and size: the stack's hot path
_UNPACK = {(n, sg): struct.Struct("<" + (c.lower() if sg else c)).unpack_from
           for n, c in ((1, "B"), (2, "H"), (4, "I"), (8, "Q")) for sg in (False, True)}
_PACK = {n: struct.Struct("<" + c).pack_into for n, c in ((1, "B"), (2, "H"), (4, "I"),
                                                          (8, "Q"))}
_MASK = {n: (1 << 8 * n) - 1 for n in (1, 2, 4, 8)}
_ONES = {n: b"\x01" * n for n in (1, 2, 4, 8)}


class Mem(Region):
    """Plain bytes: a map value, packet data, helper memory.  Unaligned access is allowed
    (x86); out of bounds is what the verifier would have refused."""

    def __init__(self, name: str, buf: bytearray, *, kind: str = "mem",
                 writable: bool = True, strict: bool = True) -> None:
        super().__init__(name, len(buf))
        self.buf, self.kind, self.writable, self.strict = buf, kind, writable, strict

    def _check(self, off: int, n: int, what: str) -> None:
        if off < 0 or off + n > len(self.buf):
            raise self.reject(off, n, what)

    def load(self, off: int, n: int, signed: bool = False) -> int:
        self._check(off, n, "read")
        return _from_bytes(self.buf[off:off + n], signed)

    def store(self, off: int, n: int, value: int | Ptr) -> None:
        if not self.writable:
            raise self.reject(off, n, "write")
        self._check(off, n, "write")
        self.buf[off:off + n] = _value_bytes(value, n, self.strict)

    def read_bytes(self, off: int, n: int) -> bytes:
        self._check(off, n, "read")
        return bytes(self.buf[off:off + n])

    def write_bytes(self, off: int, data: bytes) -> None:
        if not self.writable:
            raise self.reject(off, len(data), "write")
        self._check(off, len(data), "write")
        self.buf[off:off + len(data)] = data


class MapRegion(Region):
    """A map itself (``ld_imm64`` with a map fd): only a helper argument."""

    kind = "map"
    writable = False

    def __init__(self, m: Map) -> None:
        super().__init__(m.name.decode(errors="replace") or f"map{m.id}", 0)
        self.map = m


STACK_SIZE = 512


class Stack(Region):
    """One frame's 512 bytes (VM-SPEC §1.4): R10 points at its end; accesses must be
    naturally aligned and inside; bytes not yet written are uninitialised (reading them
    is nondeterministic in the kernel: an error here unless ``uninit="zero"``); a pointer
    stored as a whole aligned double word is spilled and comes back as a pointer."""

    kind = "stack"

    def __init__(self, frame: int, *, uninit: str = "error") -> None:
        super().__init__(f"fp{frame}", STACK_SIZE)
        self.buf = bytearray(STACK_SIZE)
        self.init = bytearray(STACK_SIZE)  # 1 where written
        self.spills: dict[int, Ptr] = {}
        self.lowest = STACK_SIZE  # the lowest offset touched: the frame's depth
        self.uninit = uninit

    def _check(self, off: int, n: int, what: str) -> None:
        if off < 0 or off + n > STACK_SIZE:
            raise VerifierWouldReject(errno.EACCES, f"invalid {what} to stack R10 "
                                      f"off={off - STACK_SIZE} size={n}")
        if off % n:
            raise VerifierWouldReject(errno.EACCES, f"misaligned stack access off "
                                      f"{off - STACK_SIZE} size {n}")
        if off < self.lowest:
            self.lowest = off

    def _initialised(self, off: int, n: int) -> None:
        if self.uninit == "error" and self.init.find(0, off, off + n) >= 0:
            raise NondeterministicValue(f"read of uninitialised stack fp{off - STACK_SIZE}")

    def load(self, off: int, n: int, signed: bool = False) -> int | Ptr:
        self._check(off, n, "read")
        if self.spills:
            slot = off & ~7
            if slot in self.spills:
                if n != 8 or off != slot:
                    raise VerifierWouldReject(errno.EACCES, "invalid size of register fill")
                return self.spills[slot]
        self._initialised(off, n)
        v: int = _UNPACK[n, signed](self.buf, off)[0]
        return v & M64

    def store(self, off: int, n: int, value: int | Ptr) -> None:
        self._check(off, n, "write")
        if value.__class__ is int:
            if self.spills:
                self.spills.pop(off & ~7, None)
            _PACK[n](self.buf, off, value & _MASK[n])
        elif isinstance(value, Ptr) and n == 8:
            self.spills[off] = value
            self.buf[off:off + 8] = _value_bytes(value, 8, False)
        else:
            raise NondeterministicValue(f"part of pointer {value!r} stored as a number")
        self.init[off:off + n] = _ONES[n]

    def read_bytes(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > STACK_SIZE:
            raise VerifierWouldReject(errno.EACCES, f"invalid indirect read from stack "
                                      f"R10 off {off - STACK_SIZE}+0 size {n}")
        self._initialised(off, n)
        if self.spills and any(slot + 8 > off and slot < off + n for slot in self.spills):
            raise NondeterministicValue(f"a spilled pointer read as bytes at fp{off - STACK_SIZE}"
                                        " (the kernel's would be a real address)")
        return bytes(self.buf[off:off + n])

    def write_bytes(self, off: int, data: bytes) -> None:
        n = len(data)
        if off < 0 or off + n > STACK_SIZE:
            raise VerifierWouldReject(errno.EACCES, f"invalid indirect write to stack "
                                      f"R10 off {off - STACK_SIZE}+0 size {n}")
        for slot in range(off & ~7, off + n, 8):
            self.spills.pop(slot, None)
        self.buf[off:off + n] = data
        self.init[off:off + n] = b"\x01" * n
        self.lowest = min(self.lowest, off)
