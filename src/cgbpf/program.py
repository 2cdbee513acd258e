"""BPF programs: load (from bytes or :mod:`cgbpf.asm` lists), find by id or pin, inspect,
list."""

from __future__ import annotations

import ctypes
import errno
import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _bpf, _check, _sys, uapi
from ._object import BpfObject, as_enum
from .errors import BpfError
from .kernel import Kernel, default_kernel
from .uapi import AttachType, Cmd, ProgType

if TYPE_CHECKING:
    from . import asm
    from ._load_options import LoadOptions

    Instructions = bytes | Iterable[asm.Item]
def _assemble(items: list[asm.Item]) -> bytes:
    """:func:`cgbpf.asm.assemble`, imported on first use (a command that loads no
    assembled program does not pay for the assembler)."""
    from .asm import assemble

    return assemble(items)



def __getattr__(name: str) -> Any:
    """:class:`LoadOptions` and the record sizes, from :mod:`cgbpf._load_options` when
    first asked for here."""
    if name in ("LoadOptions", "FUNC_INFO_REC_SIZE", "LINE_INFO_REC_SIZE"):
        from . import _load_options

        return getattr(_load_options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

class ProgramInfo(NamedTuple):
    """OBJ_GET_INFO_BY_FD of a program.  ``load_time`` is in ns since boot; ``insns`` the
    number of instructions as translated (the kernel rewrites some, e.g. inlined map
    lookups; the model reports those loaded); ``jited`` whether it runs as machine code; the
    run statistics count only while ``kernel.bpf_stats_enabled`` is on (5.1);
    ``verified_insns`` needs Linux 5.16 (0 before)."""

    id: int
    type: ProgType | int
    tag: str
    name: str
    load_time: int = 0
    created_by_uid: int = 0
    map_ids: tuple[int, ...] = ()
    insns: int = 0
    jited: bool = False
    run_time_ns: int = 0
    run_cnt: int = 0
    verified_insns: int = 0


class TestRun(NamedTuple):
    """What :meth:`Program.test_run` gives back: the program's return value (the last
    run's ``r0``, as a u32), the mean time of one run in ns (the kernel's clock, JIT
    code on the host; the VM's on the model) and the packet as the kernel returns it."""

    retval: int
    duration_ns: int
    data_out: bytes


class Program(BpfObject):
    """A loaded BPF program.  Closing it drops this fd's reference; the program lives on
    while attached or pinned.  Requires Linux 4.13+ (program ids)."""

    kind, by_id = "prog", Cmd.PROG_GET_FD_BY_ID
    #: What the program was loaded for; None when unknown (found by id or pin: the kernel
    #: does not report it).
    expected_attach_type: AttachType | int | None = None

    def _describe(self, info: ProgramInfo) -> None:
        self.id, self.type, self.name = info.id, info.type, info.name

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"id={self.id}"
        return f"<Program {self.name or '?'} {uapi.name_of(self.type)} {state}>"

    @classmethod
    def load(cls, insns: Instructions, prog_type: ProgType, *,
             expected_attach_type: AttachType | int | None = None, name: str = "",
             license: str = "GPL", options: LoadOptions | None = None,
             kernel: Kernel | None = None) -> Program:
        """PROG_LOAD.  ``insns`` is raw bytecode or a list for :func:`cgbpf.asm.assemble`;
        ``options`` the rarer attributes (BTF, func_info/line_info, flags: see
        :class:`LoadOptions`).

        On rejection raises :class:`VerifierError` carrying the verifier's log (the load
        is retried with a log buffer only after a failure, as libbpf does; with line_info
        the log shows the C source lines).  Needs CAP_BPF (CGROUP_SKB) or
        CAP_BPF+CAP_NET_ADMIN (other cgroup types), or CAP_SYS_ADMIN.
        """
        from ._load_options import LoadOptions

        _check.arg("Program.load", "insns", insns, (bytes, bytearray, memoryview, list, tuple),
                   "bytes of eBPF instructions or a list of cgbpf.asm instructions")
        _check.arg("Program.load", "prog_type", prog_type, int, "a cgbpf.ProgType")
        _check.arg("Program.load", "expected_attach_type", expected_attach_type, int,
                   "a cgbpf.AttachType", none=True)
        _check.arg("Program.load", "name", name, str, "a str")
        _check.arg("Program.load", "license", license, str, "a str")
        _check.arg("Program.load", "options", options, LoadOptions, "a cgbpf.LoadOptions",
                   none=True)
        opts = options or LoadOptions()
        k = kernel or default_kernel()
        code = bytes(insns) if isinstance(insns, (bytes, bytearray, memoryview)) else \
            _assemble(list(insns))
        if not code or len(code) % 8:
            raise BpfError(errno.EINVAL, f"program {name!r}: {len(code)} bytes of code",
                           command="PROG_LOAD", hint="code is a non-empty multiple of 8 bytes")
        load = functools.partial(
            _sys.prog_load, k, prog_type=prog_type, insns=ctypes.create_string_buffer(
                code, len(code)), insn_cnt=len(code) // 8, license=_sys.c_str(license),
            name=name.encode(), expected_attach_type=expected_attach_type or 0,
            **opts.fields())
        what = f"program {name!r} ({uapi.name_of(prog_type)}" + (
            f", for {uapi.name_of(expected_attach_type)})" if expected_attach_type is not None
            else ")")
        try:
            fd = load()
        except OSError as e:
            fd = _bpf.load_with_log(
                k, Cmd.PROG_LOAD, load, e.errno or errno.EIO, what,
                needs=_load_needs(prog_type), log_level=opts.log_level,
                errors=_LSM_INACTIVE if prog_type == ProgType.LSM else None,
                no_log_hint=_attr_hint(prog_type))
        prog = cls(k, fd)
        if expected_attach_type is not None:
            prog.expected_attach_type = as_enum(AttachType, expected_attach_type)
        return prog

    def info(self) -> ProgramInfo:
        """OBJ_GET_INFO_BY_FD: id, type, tag and name as the kernel reports them."""
        return _info(self.kernel, self.fd)

    def test_run(self, data: bytes, *, repeat: int = 1) -> TestRun:
        """BPF_PROG_TEST_RUN: run this program ``repeat`` times on one packet, outside
        any cgroup, to see what it returns (and what it does to its maps) without traffic.

        Of the cgroup program types only CGROUP_SKB has a test run; the others fail with
        ENOTSUPP (errno 524).  ``data`` is an Ethernet frame of 14 to 3712 bytes; with an
        IPv4 or IPv6 ethertype it must hold the whole IP header (20 or 40 bytes), else
        EINVAL.  The kernel takes the protocol from the ethertype, then strips the
        Ethernet header: the program sees the bytes after it (``skb->len`` is
        ``len(data) - 14``) and a socket whose addresses are the IP header's (source
        local, destination remote).  The runs share one packet and a cgroup storage
        zeroed for this call; ``data_out`` is the packet with the Ethernet header zeroed.
        CGROUP_SKB test runs predate Linux 5.6, the oldest kernel cgbpf models; where the
        probe ``test_run_data_end`` finds it absent (Debian 6.1 and 6.12), the run does not
        set ``skb->data_end``, and reading the packet is not possible."""
        _check.arg("Program.test_run", "data", data, (bytes, bytearray, memoryview), "bytes")
        _check.arg("Program.test_run", "repeat", repeat, int, "an int")
        if not 0 <= repeat <= 0xFFFFFFFF:
            raise ValueError(f"Program.test_run(): repeat must be a u32, not {repeat}")
        k = self.kernel
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        out = ctypes.create_string_buffer(len(data))
        attr = _bpf.call(k, Cmd.PROG_TEST_RUN, lambda: _sys.prog_test_run(
            k, self.fd, buf, out, repeat=repeat),
            lambda: f"{self!r} on {len(data)} bytes x {repeat}")
        return TestRun(int(attr.retval), int(attr.duration), out.raw[:attr.data_size_out])


def _info(k: Kernel, fd: int) -> ProgramInfo:
    """One GET_INFO_BY_FD, and a second for the map ids if the program uses maps."""
    raw = uapi.ProgInfo()
    _bpf.get_info(k, fd, raw, f"program fd {fd}")
    map_ids: tuple[int, ...] = ()
    if raw.nr_map_ids:
        ids = (ctypes.c_uint32 * raw.nr_map_ids)()
        again = uapi.ProgInfo(nr_map_ids=raw.nr_map_ids, map_ids=ctypes.addressof(ids))
        _bpf.get_info(k, fd, again, f"program fd {fd} map ids")
        map_ids = tuple(ids[: min(again.nr_map_ids, raw.nr_map_ids)])
    return ProgramInfo(int(raw.id), as_enum(ProgType, raw.type), bytes(raw.tag).hex(),
                       raw.name.decode(errors="replace"), int(raw.load_time),
                       int(raw.created_by_uid), map_ids, int(raw.xlated_prog_len) // 8,
                       raw.jited_prog_len > 0, int(raw.run_time_ns), int(raw.run_cnt),
                       int(raw.verified_insns))


def programs(*, kernel: Kernel | None = None) -> Iterator[ProgramInfo]:
    """Every program loaded on the system (all types), via PROG_GET_NEXT_ID, in id order.
    Programs that vanish during the walk are skipped.  Needs CAP_SYS_ADMIN; Linux 4.13."""
    k = kernel or default_kernel()
    return _bpf.infos(k, Cmd.PROG_GET_NEXT_ID, Program.by_id, "program", _info)


def _load_needs(prog_type: int) -> tuple[str, ...]:
    """CGROUP_SKB loads with CAP_BPF; other cgroup types also need CAP_NET_ADMIN (§15)."""
    return ("CAP_BPF",) if prog_type == ProgType.CGROUP_SKB else ("CAP_BPF", "CAP_NET_ADMIN")


_LSM_INACTIVE: _bpf.ErrorMap = {errno.EPERM: (BpfError, (
    "the BPF LSM is not active: it must be in the lsm= boot parameter (see "
    "/sys/kernel/security/lsm with securityfs mounted)"))}


def _attr_hint(prog_type: int) -> str:
    """Why a load fails before the verifier runs (no log): usually the attach type."""
    hooks = [t.name for t, p in uapi.CGROUP_PROG_TYPE.items() if p == prog_type]
    if prog_type in uapi.EAT_ENFORCED or prog_type == ProgType.CGROUP_SKB:
        return f"{uapi.name_of(prog_type)} programs need expected_attach_type, one of " \
               f"{', '.join(hooks)}, that this kernel supports"
    return "the kernel refused the load attributes before verifying the code"
