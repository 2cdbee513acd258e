"""The caller's memory, as the kernel reaches it: ``copy_from_user``/``copy_to_user``.

The model runs in the caller's process, so a user pointer is a real address.  Like the
kernel, it refuses addresses outside user space with ``EFAULT`` (below
``vm.mmap_min_addr``, 64 KiB, and above the x86_64 user limit), and in between it copies
with ``process_vm_readv``/``process_vm_writev`` on its own process, which answer EFAULT
for unmapped memory instead of crashing, exactly like the kernel's copies.  Where those
calls do not exist (not Linux) the model trusts any such pointer, as a process reading its
own memory does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from _thread import _local as thread_local
from typing import Any, TypeVar

from .. import uapi

USER_MIN = 0x10000  # vm.mmap_min_addr
USER_MAX = 0x7FFF_FFFF_F000  # TASK_SIZE_MAX on x86_64
PAGE = 4096
L = TypeVar("L", bound=uapi.Layout)


def fail(err: int) -> OSError:
    """The kernel's answer ``-err`` as the exception every model call raises."""
    return OSError(err, os.strerror(err))


def _check(ptr: int, n: int) -> None:
    if n and not USER_MIN <= ptr <= USER_MAX - n:
        raise fail(errno.EFAULT)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _BytesIovec(ctypes.Structure):
    """An iovec over a ``bytes`` object's own buffer (a ``c_char_p`` field points into
    it): what is written is not copied first."""

    _fields_ = [("base", ctypes.c_char_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_readv = getattr(_libc, "process_vm_readv", None)
_writev = getattr(_libc, "process_vm_writev", None)


class _Iovecs(thread_local):
    """This thread's iovecs, made once (a copy is a syscall; its arguments need not be
    made anew each time)."""

    def __init__(self) -> None:
        self.ours, self.theirs, self.data = _Iovec(), _Iovec(), _BytesIovec()
        self.refs = (ctypes.byref(self.ours), ctypes.byref(self.theirs),
                     ctypes.byref(self.data))


_iov = _Iovecs()


def _remote(ptr: int, n: int) -> Any:
    """This thread's iovec for user memory at ``ptr`` (EFAULT outside user space)."""
    if n and not USER_MIN <= ptr <= USER_MAX - n:
        raise fail(errno.EFAULT)
    io = _iov
    io.theirs.base, io.theirs.len = ptr, n
    return io


def read(ptr: int, n: int) -> bytes:
    """``copy_from_user(ptr, n)``: EFAULT for memory that is not mapped (or a plain copy
    where process_vm_readv is missing)."""
    io = _remote(ptr, n)
    buf = ctypes.create_string_buffer(n)
    if not n:
        return b""
    if _readv is None:
        ctypes.memmove(buf, ptr, n)
        return buf.raw
    io.ours.base, io.ours.len = ctypes.addressof(buf), n
    if _readv(os.getpid(), io.refs[0], 1, io.refs[1], 1, 0) != n:
        raise fail(errno.EFAULT)
    return buf.raw


def write(ptr: int, data: bytes) -> None:
    """``copy_to_user(ptr, data)``: EFAULT for memory that is not mapped."""
    n = len(data)
    io = _remote(ptr, n)
    if not n:
        return
    if _writev is None:
        ctypes.memmove(ptr, data, n)
        return
    io.data.base, io.data.len = data, n
    try:
        if _writev(os.getpid(), io.refs[2], 1, io.refs[1], 1, 0) != n:
            raise fail(errno.EFAULT)
    finally:
        io.data.base = None  # no reference to ``data`` left behind


def read_str(ptr: int, limit: int) -> bytes:
    """``strncpy_from_user``: the bytes before the NUL, at most ``limit`` of them.  Reads
    page by page so it never touches memory past the NUL."""
    out = b""
    while len(out) < limit:
        chunk = read(ptr + len(out), min(PAGE - (ptr + len(out)) % PAGE, limit - len(out)))
        nul = chunk.find(b"\0")
        if nul >= 0:
            return out + chunk[:nul]
        out += chunk
    return out


def is_zero(ptr: int, n: int) -> bool:
    """``check_zeroed_user``."""
    return not any(read(ptr, n))


class Attr:
    """A ``union bpf_attr`` as a command sees it (§1.4): the caller's first
    ``min(size, union)`` bytes, zero-extended to 168, and the caller's memory for
    outputs; ``union`` is the kernel's ``sizeof(union bpf_attr)`` (a non-zero byte past
    it: E2BIG)."""

    def __init__(self, attr: ctypes.Structure | ctypes.Array[Any], size: int | None,
                 union: int = uapi.ATTR_SIZE) -> None:
        self.addr = ctypes.addressof(attr)
        #: The bytes the attr object itself owns: always mapped, so they are read and
        #: written directly (0.5 and 0.1 us instead of 4 us for a ``process_vm_*``
        #: call); anything past them is the caller's memory, reached with
        #: :func:`read`/:func:`write`.
        self.obj, self.owned = attr, ctypes.sizeof(attr)
        n = self.owned if size is None else size % 2**32
        # The model writes outputs only into memory the caller handed over; the kernel
        # writes output fields whatever ``size`` was.
        self.writable = max(n, self.owned)
        if n > uapi.ATTR_MAX:
            raise fail(errno.E2BIG)
        if n > union and not is_zero(self.addr + union, n - union):
            raise fail(errno.E2BIG)
        n = min(n, union)
        head = ctypes.string_at(self.addr, n) if n <= self.owned else read(self.addr, n)
        self.raw = head + _ZEROS[n:]

    def check_tail(self, end: int) -> None:
        """CHECK_ATTR: every byte after the command's last field must be zero (EINVAL)."""
        if self.raw[end:] != _ZEROS[end:]:
            raise fail(errno.EINVAL)

    def view(self, layout: type[L]) -> L:
        """The attr decoded with one of the ``uapi`` layouts (a copy)."""
        return layout.from_buffer_copy(self.raw[: ctypes.sizeof(layout)])

    def put(self, layout: type[uapi.Layout], field: str, value: int) -> None:
        """Write one output field back into the caller's attr (``put_user``)."""
        offset, fmt = _field(layout, field)
        end = offset + fmt.size
        if end <= self.owned:
            fmt.pack_into(self.obj, offset, value)
        elif end <= self.writable:
            write(self.addr + offset, fmt.pack(value))


_ZEROS = bytes(uapi.ATTR_SIZE)
_FIELDS: dict[tuple[type[uapi.Layout], str], tuple[int, struct.Struct]] = {}


def _field(layout: type[uapi.Layout], field: str) -> tuple[int, struct.Struct]:
    """The offset and the (u32 or u64) packer of an output field, looked up once."""
    key = (layout, field)
    found = _FIELDS.get(key)
    if found is None:
        fmt = struct.Struct({4: "<I", 8: "<Q"}[uapi.size_of(layout, field)])
        found = _FIELDS[key] = uapi.offset_of(layout, field), fmt
    return found
