"""Probes agree with what the kernel really does: for every feature of the table, a use
that is not the probe's own request runs right after the probe, and must behave as the
feature's presence (or absence) says.  On the host, in the kernel matrix's guests
(tests/kernels) and on the model alike: a probe that says "present" where the behaviour
is missing fails here."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
from collections.abc import Callable
from contextlib import ExitStack

import pytest

from cgbpf import HEAD, AttachMode, AttachType, Cgroup, NotSupported, Program, ProgType, asm, uapi
from cgbpf._scratch import Scratch
from cgbpf.btf.handle import Handle
from cgbpf.kernel import Kernel, probe
from cgbpf.program import LoadOptions
from cgbpf.uapi import Cmd
from cgtest import EGRESS, load

AT = AttachType


class Use:
    """One test's world: a cgroup, programs by (type, expected attach type), cleanup."""

    def __init__(self, kernel: Kernel, scratch: Scratch, stack: ExitStack) -> None:
        self.k, self.scratch, self.stack = kernel, scratch, stack
        self.cg = scratch.cgroup("a")

    def prog(self, ptype: ProgType = ProgType.CGROUP_SKB, eat: AT | None = EGRESS,
             ret: int = 1) -> Program:
        return self.stack.enter_context(Program.load(
            asm.return_program(ret), ptype, expected_attach_type=eat, name="use", kernel=self.k))

    def link(self, prog: Program | None = None, at: AT | None = None, **kw: object) -> str:
        self.stack.enter_context(self.cg.link(prog or self.prog(), at, **kw))  # type: ignore[arg-type]
        return "ok"

    def raw(self, cmd: Cmd, attr: ctypes.Structure) -> int:
        return self.k.bpf(cmd, attr)

    def query(self, **fields: int) -> str:
        """PROG_QUERY of this cgroup (EGRESS) with extra attr ``fields``."""
        self.raw(Cmd.PROG_QUERY, uapi.QueryAttr(target_fd=self.cg.fd, attach_type=EGRESS,
                                                **fields))
        return "ok"


def outcome(fn: Callable[[], object]) -> str:
    """"ok", the value ``fn`` returns, "NotSupported", or the errno name."""
    try:
        value = fn()
    except NotSupported:
        return "NotSupported"
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))
    return value if isinstance(value, str) else "ok"


def _defunct_update(u: Use) -> str:
    prog = u.prog()
    link = u.stack.enter_context(u.cg.link(prog))
    link.detach()
    return outcome(lambda: link.update(prog))


def _replace_self(u: Use) -> str:
    prog = u.prog()
    u.cg.attach(prog)
    u.stack.callback(u.cg.detach, prog, EGRESS)
    return outcome(lambda: u.cg.attach(prog, replace=prog))


def _restricted(caps: set[str], fn: Callable[[Use, Kernel], object]) -> Callable[[Use], str]:
    """``fn(use, child)`` in a child process with only ``caps``."""
    return lambda u: outcome(lambda: u.k.run_restricted(caps, lambda k: fn(u, k)))


def _link_info_len(u: Use) -> str:
    buf = ctypes.create_string_buffer(128)
    fd = u.stack.enter_context(u.cg.link(u.prog())).fileno()
    attr = uapi.InfoAttr(bpf_fd=fd, info_len=128, info=ctypes.addressof(buf))
    u.raw(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return f"info_len={attr.info_len}"


def _pin_with_path_fd(u: Use) -> str:
    mount = u.scratch.bpffs()
    dirfd = u.k.open_dir(mount)
    u.stack.callback(u.k.close, dirfd)
    name = ctypes.create_string_buffer(b"p")
    u.raw(Cmd.OBJ_PIN, uapi.ObjAttr(pathname=ctypes.addressof(name), bpf_fd=u.prog().fd,
                                    file_flags=uapi.F_PATH_FD, path_fd=dirfd))
    u.k.unlink(os.path.join(mount, "p"))
    return "ok"


def _tag(u: Use) -> str:
    code = asm.assemble(asm.return_program(0))
    tag = bytes.fromhex(u.prog(ret=0).info().tag)
    return {hashlib.sha256(code).digest()[:8]: "sha256",
            hashlib.sha1(code).digest()[:8]: "sha1"}.get(tag, tag.hex())


def _update_to_other_eat(u: Use) -> str:
    create = u.prog(ProgType.CGROUP_SOCK, AT.CGROUP_INET_SOCK_CREATE)
    link = u.stack.enter_context(u.cg.link(create))
    return outcome(lambda: link.update(u.prog(ProgType.CGROUP_SOCK, AT.CGROUP_INET4_POST_BIND)))


def _detach_others(u: Use) -> str:
    """An exclusive program detached, without a prog fd, by a child with no capabilities
    (detached again as root if it was refused)."""
    dev = u.prog(ProgType.CGROUP_DEVICE, AT.CGROUP_DEVICE)
    u.cg.attach(dev, mode=AttachMode.EXCLUSIVE)
    u.stack.callback(lambda: u.cg.query(AT.CGROUP_DEVICE).ids and u.cg.detach(dev))
    fd = u.cg.fileno()
    return outcome(lambda: u.k.run_restricted((), lambda k: k.bpf(
        Cmd.PROG_DETACH, uapi.ProgAttachAttr(target_fd=fd, attach_type=AT.CGROUP_DEVICE))))


def _skb(*insns: asm.Item) -> Callable[[Use], str]:
    """A CGROUP_SKB program for EGRESS of ``insns`` then ``r0 = 1; exit`` (closed again)."""
    return lambda u: outcome(lambda: Program.load(
        [*insns, asm.mov64(asm.R0, 1), asm.exit_()], ProgType.CGROUP_SKB,
        expected_attach_type=EGRESS, kernel=u.k).close())


def _data_end(u: Use) -> str:
    """A test run of ``return data_end - data == 20`` on a 20-byte IP packet."""
    reader = Program.load([asm.ldx("w", asm.R2, asm.R1, 76), asm.ldx("w", asm.R3, asm.R1, 80),
                           asm.sub64(asm.R3, asm.R2), asm.mov64(asm.R0, 0),
                           asm.jne(asm.R3, 20, 1), asm.mov64(asm.R0, 1), asm.exit_()],
                          ProgType.CGROUP_SKB, expected_attach_type=EGRESS, kernel=u.k)
    with reader:
        ip = bytes(12) + b"\x08\x00\x45" + bytes(19)
        return "set" if reader.test_run(ip).retval else "not set"


def _hook(at: AT) -> Callable[[Use], str]:
    return lambda u: outcome(lambda: u.cg.query(at))


def _flag(flag: int, ptype: ProgType = ProgType.SOCKET_FILTER) -> Callable[[Use], str]:
    """A program loaded with ``flag`` (closed again)."""
    return lambda u: outcome(lambda: Program.load(
        asm.return_program(1), ptype, kernel=u.k,
        options=LoadOptions(prog_flags=flag)).close())


def _btf_kind(key: str) -> Callable[[Use], str]:
    """Handle.load of the probe's BTF with the new kind (closed again)."""
    return lambda u: outcome(lambda: Handle.load(
        uapi.raw_btf(*probe.BTF_KIND_PROBES[key]), kernel=u.k).close())


_QUERY = {"target_fd": 0, "attach_type": EGRESS}

#: feature -> (the use, its outcome with the feature, its outcome without)
USES: dict[str, tuple[Callable[[Use], str], str, str]] = {
    probe.LINKS: (lambda u: outcome(u.link), "ok", "NotSupported"),
    "cap_bpf": (_restricted({"CAP_BPF", "CAP_NET_ADMIN"}, lambda u, k: load(k).close()),
                "ok", "EPERM"),
    probe.LINK_INFO: (lambda u: outcome(
        lambda: u.stack.enter_context(u.cg.link(u.prog())).info()), "ok", "NotSupported"),
    "enolink_on_update": (_defunct_update, "ENOLINK", "EINVAL"),
    "replace_self": (_replace_self, "ok", "EINVAL"),
    "getpeername_hooks": (_hook(AT.CGROUP_INET4_GETPEERNAME), "ok", "EINVAL"),
    probe.LINK_DETACH: (lambda u: outcome(
        lambda: u.stack.enter_context(u.cg.link(u.prog())).detach()), "ok", "NotSupported"),
    "sock_release_hook": (_hook(AT.CGROUP_INET_SOCK_RELEASE), "ok", "EINVAL"),
    "link_create_ext_attr": (lambda u: outcome(lambda: u.stack.callback(u.k.close, u.raw(
        Cmd.LINK_CREATE, uapi.LinkCreateAttr(
            prog_fd=u.prog().fd, target_fd=u.cg.fd, attach_type=EGRESS,
            expected_revision=u.cg.query(EGRESS).revision or 1)))), "ok", "EINVAL"),
    "prog_attach_flags_query": (lambda u: outcome(lambda: u.query(
        prog_cnt=1, prog_ids=ctypes.addressof(_IDS), prog_attach_flags=ctypes.addressof(_IDS))),
        "ok", "EINVAL"),
    "lsm_cgroup": (_hook(AT.LSM_CGROUP), "ok", "EINVAL"),
    "mprog_uapi": (lambda u: outcome(lambda: u.query(
        prog_cnt=1, prog_ids=ctypes.addressof(_IDS), link_ids=ctypes.addressof(_IDS))),
        "ok", "EINVAL"),
    "link_info_64": (lambda u: outcome(lambda: _link_info_len(u)), "info_len=64",
                     "info_len=48"),
    "obj_path_fd": (lambda u: outcome(lambda: _pin_with_path_fd(u)), "ok", "EINVAL"),
    "unix_hooks": (_hook(AT.CGROUP_UNIX_CONNECT), "ok", "EINVAL"),
    "bpf_net_capable": (_restricted({"CAP_SYS_ADMIN", "CAP_BPF"}, lambda u, k: Cgroup.open(
        u.cg.path, kernel=k).query(EGRESS)), "ok", "EPERM"),
    "skb_link_type_check": (lambda u: outcome(
        lambda: u.link(u.prog(), AT.CGROUP_INET_SOCK_CREATE)), "EINVAL", "ok"),
    probe.PREORDER_ATTACH: (lambda u: outcome(lambda: (
        u.cg.attach(p := u.prog(), preorder=True), u.cg.detach(p))), "ok", "NotSupported"),
    probe.PREORDER_LINK: (lambda u: outcome(lambda: u.link(preorder=True)), "ok",
                          "NotSupported"),
    probe.MPROG: (lambda u: outcome(lambda: (
        u.link(before=HEAD), u.link(expected_revision=u.cg.query(EGRESS).revision))),
        "ok", "NotSupported"),
    "prog_flag_sleepable": (_flag(uapi.F_SLEEPABLE, ProgType.KPROBE), "ok", "EINVAL"),
    "prog_flag_xdp_frags": (_flag(uapi.F_XDP_HAS_FRAGS), "ok", "EINVAL"),
    "prog_flag_xdp_dev_bound": (_flag(uapi.F_XDP_DEV_BOUND_ONLY), "ok", "EINVAL"),
    "prog_flag_reg_invariants": (_flag(uapi.F_TEST_REG_INVARIANTS), "ok", "EINVAL"),
    **{key: (_btf_kind(key), "ok", "EINVAL") for key in probe.BTF_KIND_PROBES},
    probe.TAG_SHA256: (_tag, "sha256", "sha1"),
    probe.UPDATE_EAT_CHECK: (_update_to_other_eat, "EINVAL", "ok"),
    probe.DETACH_OTHER_NET_ADMIN: (_detach_others, "EPERM", "ok"),
    "st_ctx": (_skb(asm.st("w", asm.R1, 8, 1)), "ok", "EACCES"),  # skb->mark = 1
    "cpu_v4": (_skb(asm.mov64(asm.R2, 1), asm.Insn(0xBF, 2, 2, 8, 0)),  # r2 = (s8) r2
               "ok", "EINVAL"),
    "test_run_data_end": (_data_end, "set", "not set"),
}
_IDS = (ctypes.c_uint32 * 4)()


def test_every_feature_has_a_use() -> None:
    assert set(USES) == set(probe.FEATURES)


@pytest.mark.parametrize("feature", list(probe.FEATURES))
def test_probe_matches_real_use(kernel: Kernel, scratch: Scratch, feature: str) -> None:
    found = probe.check(kernel, feature)
    assert found is not None, probe.why(kernel, feature)
    use, present, absent = USES[feature]
    with ExitStack() as stack:
        u = Use(kernel, scratch, stack)
        got = use(u)
    assert got == (present if found else absent), f"probe says {found}"
    assert Cgroup.open(u.cg.path, kernel=kernel).query(EGRESS).ids == []


def test_not_supported_names_the_first_kernel(kernel: Kernel, scratch: Scratch) -> None:
    """Where a library feature is absent, NotSupported names it and its release."""
    for key in (probe.LINKS, probe.LINK_INFO, probe.LINK_DETACH, probe.PREORDER_LINK,
                probe.MPROG):
        if not probe.supported(kernel, key):
            with pytest.raises(NotSupported) as e:
                probe.require(kernel, key)
            assert probe.FEATURES[key].since in str(e.value)
        else:
            probe.require(kernel, key)
