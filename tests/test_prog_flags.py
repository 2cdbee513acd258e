"""PROG_LOAD ``prog_flags``, raw attrs on both kernels: which bits 6.18 accepts for each
program type, with which errno it refuses the others, and where that check stands
among the other load checks.

Measured on the 6.18 host: STRICT_ALIGNMENT (1), ANY_ALIGNMENT (2), TEST_RND_HI32 (4),
TEST_STATE_FREQ (8), XDP_HAS_FRAGS (32), XDP_DEV_BOUND_ONLY (64) and TEST_REG_INVARIANTS
(128) load, alone and together, for every program type here; SLEEPABLE (16) is refused
by the verifier (EINVAL, with a log) except for KPROBE; TOKEN_FD (1 << 16) wants a BPF
token in ``prog_token_fd`` (fd 0 here: EINVAL, EBADF if closed); every other bit is
EINVAL before anything else is looked at.  Older kernels know fewer bits (SLEEPABLE 5.10,
XDP_HAS_FRAGS 5.18, XDP_DEV_BOUND_ONLY 6.3, TEST_REG_INVARIANTS 6.8: features of
cgbpf.kernel.probe, and the model's profiles), and word some refusals otherwise.
"""

from __future__ import annotations

import ctypes
import errno

import pytest

from cgbpf import AttachType, Map, MapType, ProgType, asm, uapi
from cgbpf.kernel import Kernel, probe
from cgbpf.uapi import Cmd
from cgtest import OLDER_WORDING, said

STRICT_ALIGNMENT, ANY_ALIGNMENT, TEST_RND_HI32, TEST_STATE_FREQ = 1, 2, 4, 8
SLEEPABLE, XDP_HAS_FRAGS, XDP_DEV_BOUND_ONLY, TEST_REG_INVARIANTS = 16, 32, 64, 128
TOKEN_FD = 1 << 16
ACCEPTED = [STRICT_ALIGNMENT, ANY_ALIGNMENT, TEST_RND_HI32, TEST_STATE_FREQ, XDP_HAS_FRAGS,
            XDP_DEV_BOUND_ONLY, TEST_REG_INVARIANTS]
SLEEPABLE_LOG = ("Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can "
                 "be sleepable")

#: (program type, expected attach type) for every type the model loads (LSM cannot load).
TYPES = [
    (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS),
    (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS),
    (ProgType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE),
    (ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT),
    (ProgType.SOCK_OPS, 0),
    (ProgType.CGROUP_DEVICE, 0),
    (ProgType.CGROUP_SYSCTL, 0),
    (ProgType.CGROUP_SOCKOPT, AttachType.CGROUP_GETSOCKOPT),
    (ProgType.SOCKET_FILTER, 0),
    (ProgType.KPROBE, 0),
    (ProgType.SCHED_CLS, 0),
    (ProgType.XDP, 0),
]
SLEEPABLE_OK = {ProgType.KPROBE}
UNKNOWN = [1 << i for i in range(8, 32) if 1 << i != TOKEN_FD]

#: flags -> what the table expects: "ok", or "sleepable" (EINVAL unless SLEEPABLE_OK),
#: or an errno name.
TABLE: dict[int, str] = {
    0: "ok",
    **{f: "ok" for f in ACCEPTED},
    STRICT_ALIGNMENT | ANY_ALIGNMENT: "ok",
    STRICT_ALIGNMENT | ANY_ALIGNMENT | TEST_RND_HI32: "ok",
    TEST_RND_HI32 | TEST_STATE_FREQ | TEST_REG_INVARIANTS: "ok",
    sum(ACCEPTED): "ok",  # 0xef: every accepted bit at once
    SLEEPABLE: "sleepable",
    SLEEPABLE | STRICT_ALIGNMENT: "sleepable",
    sum(ACCEPTED) | SLEEPABLE: "sleepable",  # 0xff
    **{f: "EINVAL" for f in UNKNOWN},
    STRICT_ALIGNMENT | 1 << 8: "EINVAL",
    SLEEPABLE | 1 << 31: "EINVAL",  # the unknown bit wins: no verifier log
    0xFFFFFFFF: "EINVAL",
}


class Load:
    """A raw PROG_LOAD attr with its buffers (code, license, log)."""

    def __init__(self, insns: list[asm.Item], prog_type: int, eat: int, flags: int) -> None:
        code = asm.assemble(insns)
        self.code = ctypes.create_string_buffer(code, len(code))
        self.license = ctypes.create_string_buffer(b"GPL")
        self.log = ctypes.create_string_buffer(1 << 16)
        self.attr = uapi.ProgLoadAttr(
            prog_type=prog_type, insn_cnt=len(code) // 8, insns=ctypes.addressof(self.code),
            license=ctypes.addressof(self.license), expected_attach_type=eat,
            prog_flags=flags, log_level=1, log_size=len(self.log),
            log_buf=ctypes.addressof(self.log))

    def run(self, kernel: Kernel) -> str:
        """"ok" (the program is closed again) or the errno's name."""
        try:
            kernel.close(kernel.bpf(Cmd.PROG_LOAD, self.attr))
        except OSError as e:
            return errno.errorcode[e.errno or 0]
        return "ok"


#: Flag bits newer than 5.6, by the feature that has them (cgbpf.kernel.probe).
NEWER = {SLEEPABLE: "prog_flag_sleepable", XDP_HAS_FRAGS: "prog_flag_xdp_frags",
         XDP_DEV_BOUND_ONLY: "prog_flag_xdp_dev_bound",
         TEST_REG_INVARIANTS: "prog_flag_reg_invariants"}
def unknown_bits(kernel: Kernel) -> int:
    """The flag bits this kernel does not know, by its probes."""
    return sum(bit for bit, key in NEWER.items() if probe.check(kernel, key) is False)


def expected(want: str, prog_type: int, flags: int, unknown: int) -> str:
    if flags & unknown:
        return "EINVAL"
    if want == "sleepable":
        return "ok" if prog_type in SLEEPABLE_OK else "EINVAL"
    return want


@pytest.mark.parametrize("flags", TABLE, ids=lambda f: f"{f:#x}")
def test_prog_flags_table(kernel: Kernel, flags: int) -> None:
    got = {}
    for prog_type, eat in TYPES:
        load = Load(asm.return_program(1), prog_type, eat, flags)
        got[(prog_type.name, eat)] = (load.run(kernel), load.log.value.decode())
    unknown = unknown_bits(kernel)
    want = {(t.name, eat): expected(TABLE[flags], t, flags, unknown) for t, eat in TYPES}
    assert {key: r for key, (r, _) in got.items()} == want
    for (name, _), (result, log) in got.items():
        if flags & unknown or TABLE[flags] == "EINVAL":
            assert log == "", (name, log)  # refused before the verifier
        elif TABLE[flags] == "sleepable" and result == "EINVAL":
            assert said(kernel, SLEEPABLE_LOG, log.splitlines()), (name, log)


def test_token_fd(kernel: Kernel) -> None:
    """TOKEN_FD with ``prog_token_fd`` 0 (the attr layout cgbpf uses ends before it): fd 0
    is not a BPF token (EINVAL); were it closed, EBADF."""
    try:
        kernel.fd_kind(0)
        want = "EINVAL"
    except OSError:
        want = "EBADF"
    for prog_type, eat in TYPES:
        assert Load(asm.return_program(1), prog_type, eat, TOKEN_FD).run(kernel) == want
        assert Load(asm.return_program(1), prog_type, eat,
                    TOKEN_FD | SLEEPABLE).run(kernel) == want


SKB = (ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS)


@pytest.mark.parametrize(("insns", "flags", "want", "log"), [
    # the unknown-bit check comes first: before insn_cnt (E2BIG) and the verifier
    ([], 1 << 8, "EINVAL", ""),
    ([], SLEEPABLE, "E2BIG", ""),
    # the structural checks come before the sleepable refusal...
    ([asm.ld_map_fd(asm.R1, 999), asm.mov64(asm.R0, 1), asm.exit_()], SLEEPABLE, "EBADF",
     "fd 999 is not pointing to valid bpf_map"),
    ([asm.mov64(asm.R0, 1), asm.jeq(asm.R0, 0, 5), asm.exit_()], SLEEPABLE, "EINVAL",
     "jump out of range from insn 1 to 7"),
    ([asm.mov64(asm.R0, 1), asm.exit_(), asm.mov64(asm.R0, 1), asm.exit_()], SLEEPABLE,
     "EINVAL", "unreachable insn 2"),
    # ...and it before the return-value check
    (asm.return_program(7), SLEEPABLE, "EINVAL", SLEEPABLE_LOG),
    (asm.return_program(7), STRICT_ALIGNMENT, "EINVAL",
     "At program exit the register R0 has smin=7 smax=7 should have been in [0, 3]"),
], ids=["unknown-before-e2big", "e2big-before-sleepable", "bad-map-fd", "jump-out",
        "unreachable", "sleepable-before-return", "return-with-flag"])
def test_prog_flags_order(kernel: Kernel, insns: list[asm.Item], flags: int, want: str,
                          log: str) -> None:
    load = Load(insns or asm.return_program(1), *SKB, flags)
    if not insns:
        load.attr.insn_cnt = 0
    got, lines = load.run(kernel), load.log.value.decode().splitlines()
    if OLDER_WORDING[SLEEPABLE_LOG] in lines and flags & SLEEPABLE:
        # Debian 6.1: check_attach_btf_id, which refuses SLEEPABLE, runs before the
        # ld_imm64 and control-flow checks (6.12 and 6.18: after)
        assert got == "EINVAL" and kernel.name == "host", lines
        return
    assert got == want
    assert said(kernel, log, lines) if log else lines == [], lines


def test_prog_flags_with_a_map(kernel: Kernel) -> None:
    """Accepted flags on a program that uses a map (a ld_imm64 and a helper call)."""
    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1,
                    kernel=kernel) as m:
        for flags in (sum(ACCEPTED) & ~unknown_bits(kernel), STRICT_ALIGNMENT, TEST_RND_HI32):
            assert Load(asm.counter_program(m), *SKB, flags).run(kernel) == "ok"
        assert Load(asm.counter_program(m), *SKB, SLEEPABLE).run(kernel) == "EINVAL"
