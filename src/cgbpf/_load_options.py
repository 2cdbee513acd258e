"""PROG_LOAD's rarer attributes (:class:`LoadOptions`), apart from :mod:`cgbpf.program`
so that a command that loads nothing does not import :mod:`dataclasses` (a third of
``cgbpf cgroup tree``'s imports)."""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _check, uapi
from .errors import BpfError

if TYPE_CHECKING:
    from .btf.handle import Handle

#: ``sizeof(struct bpf_func_info)`` and ``sizeof(struct bpf_line_info)``: the record sizes
#: clang writes in .BTF.ext and the kernel takes (5.0).
FUNC_INFO_REC_SIZE = 8
LINE_INFO_REC_SIZE = 16


@dataclass(frozen=True)
class LoadOptions:
    """The less common PROG_LOAD attributes, for :meth:`Program.load`.

    ``btf`` is the program's BTF (a :class:`cgbpf.btf.handle.Handle`, Linux 4.18);
    ``func_info`` and ``line_info`` the ``bpf_func_info`` and ``bpf_line_info`` record
    arrays (as in .BTF.ext, instruction offsets in instructions, type ids and string
    offsets of ``btf``; records of ``func_info_rec_size`` and ``line_info_rec_size``
    bytes) that need ``btf`` and Linux 5.0: with them the verifier's log shows the C
    source lines, and a program with bpf-to-bpf calls needs one func_info per function.
    ``prog_flags`` are the ``BPF_F_*`` load flags (cgbpf.uapi: ``F_STRICT_ALIGNMENT``...),
    ``attach_btf_id`` the kernel BTF type to attach to (LSM, 5.7), ``log_level`` the
    verifier log level asked for when the load fails (1; 2 is verbose; the log is read
    only after a failure, in a buffer that grows up to 16 MiB)."""

    btf: Handle | None = None
    func_info: bytes = b""
    line_info: bytes = b""
    func_info_rec_size: int = FUNC_INFO_REC_SIZE
    line_info_rec_size: int = LINE_INFO_REC_SIZE
    prog_flags: int = 0
    attach_btf_id: int = 0
    log_level: int = uapi.LOG_LEVEL_1

    def __post_init__(self) -> None:
        for field in ("func_info", "line_info"):
            _check.arg("LoadOptions", field, getattr(self, field), (bytes, bytearray), "bytes")
        for field in ("func_info_rec_size", "line_info_rec_size", "prog_flags",
                      "attach_btf_id", "log_level"):
            _check.arg("LoadOptions", field, getattr(self, field), int, "an int")
        for kind, rec in (("func_info", self.func_info_rec_size),
                          ("line_info", self.line_info_rec_size)):
            if rec <= 0 or len(getattr(self, kind)) % rec:
                raise BpfError(errno.EINVAL, f"{kind} of {len(getattr(self, kind))} bytes in "
                               f"records of {rec}", command="PROG_LOAD",
                               hint=f"{kind} is an array of {kind}_rec_size-byte records")
        if (self.func_info or self.line_info) and self.btf is None:
            raise BpfError(errno.EINVAL, "func_info/line_info without BTF", command="PROG_LOAD",
                           hint="pass the program's BTF as LoadOptions(btf=Handle.load(...))")

    def fields(self) -> dict[str, Any]:
        """The PROG_LOAD keywords of :func:`cgbpf._sys.prog_load` these options set."""
        out: dict[str, Any] = {"prog_flags": self.prog_flags,
                               "attach_btf_id": self.attach_btf_id}
        if self.btf is not None:
            out["prog_btf_fd"] = self.btf.fd
        for kind, rec in (("func_info", self.func_info_rec_size),
                          ("line_info", self.line_info_rec_size)):
            data: bytes = getattr(self, kind)
            if data:
                out[kind] = ctypes.create_string_buffer(bytes(data), len(data))
                out[f"{kind}_cnt"] = len(data) // rec
                out[f"{kind}_rec_size"] = rec
        return out
