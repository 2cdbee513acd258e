"""A BTF object in the kernel: BTF_LOAD of raw BTF (a .BTF section, or what
:mod:`cgbpf.btf` writes), and its fd, which programs (``LoadOptions.btf``) and maps
(``MapOptions.btf``) refer to.  Linux 4.18 (ids and BTF_GET_NEXT_ID: 5.4)."""

from __future__ import annotations

import ctypes
import errno
import functools
from collections.abc import Iterator
from dataclasses import dataclass

from .. import _bpf, _check, _sys, uapi
from .._object import BpfObject
from ..errors import BpfError
from ..kernel import Kernel, default_kernel
from ..uapi import Cmd

#: ``BTF_MAX_SIZE``: the largest BTF blob BTF_LOAD takes (16 MiB; more is E2BIG).
MAX_SIZE = 16 << 20


@dataclass(frozen=True)
class HandleInfo:
    """OBJ_GET_INFO_BY_FD of a BTF object: its id, the size of its raw BTF, its name
    (kernel and module BTF only, 5.11) and whether it is the kernel's own (5.11)."""

    id: int
    size: int
    name: str = ""
    kernel_btf: bool = False


class Handle(BpfObject):
    """A loaded BTF object (BTF_LOAD; Linux 4.18).  Like a program or map, it lives while
    an fd, a program or a map holds it.  Needs CAP_BPF to load and CAP_SYS_ADMIN to open
    by id."""

    kind, by_id = "btf", Cmd.BTF_GET_FD_BY_ID

    def _describe(self, info: HandleInfo) -> None:
        self.id, self.size = info.id, info.size

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"id={self.id}"
        return f"<Handle BTF {state}>"

    @classmethod
    def load(cls, data: bytes, *, kernel: Kernel | None = None) -> Handle:
        """BTF_LOAD of raw BTF (header, types, strings).  A refusal raises
        :class:`~cgbpf.errors.VerifierError` (command BTF_LOAD) with the kernel's BTF
        log (loaded again with a log only after a failure), naming the bad type."""
        _check.arg("Handle.load", "data", data, (bytes, bytearray, memoryview), "bytes of BTF")
        k = kernel or default_kernel()
        raw = bytes(data)
        load = functools.partial(_sys.btf_load, k, ctypes.create_string_buffer(raw, len(raw)))
        what = f"BTF of {len(raw)} bytes"
        try:
            fd = load()
        except OSError as e:
            fd = _bpf.load_with_log(
                k, Cmd.BTF_LOAD, load, e.errno or errno.EIO, what,
                logged=(errno.EINVAL, errno.E2BIG, errno.EEXIST, uapi.ENOTSUPP),
                errors={errno.E2BIG: (BpfError, f"BTF is at most {MAX_SIZE} bytes")},
                no_log_hint="not BTF: it starts with the 24-byte btf_header (magic 0xeb9f)")
        return cls(k, fd)

    def info(self) -> HandleInfo:
        """OBJ_GET_INFO_BY_FD: id and size (and name, for kernel BTF)."""
        return _info(self.kernel, self.fd)

    def data(self) -> bytes:
        """The raw BTF the kernel holds (OBJ_GET_INFO_BY_FD with a buffer)."""
        size = self.info().size
        buf = ctypes.create_string_buffer(size)
        raw = uapi.BtfInfo(btf=ctypes.addressof(buf), btf_size=size)
        _bpf.get_info(self.kernel, self.fd, raw, repr(self))
        return buf.raw[: raw.btf_size]


def _info(k: Kernel, fd: int) -> HandleInfo:
    name = ctypes.create_string_buffer(64)
    raw = uapi.BtfInfo(name=ctypes.addressof(name), name_len=len(name))
    _bpf.get_info(k, fd, raw, f"BTF fd {fd}")
    return HandleInfo(int(raw.id), int(raw.btf_size), name.value.decode(errors="replace"),
                      bool(raw.kernel_btf))


def handles(*, kernel: Kernel | None = None) -> Iterator[HandleInfo]:
    """Every BTF object on the system (the kernel's and modules' included), via
    BTF_GET_NEXT_ID, in id order.  Needs CAP_SYS_ADMIN; Linux 5.4."""
    k = kernel or default_kernel()
    return _bpf.infos(k, Cmd.BTF_GET_NEXT_ID, Handle.by_id, "BTF", _info)
