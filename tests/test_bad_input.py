"""Bad input gives a clear error: the right class, the kernel's errno for the same request,
and a message naming the problem (path, cgroup v1, command, capability, verifier reason)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cgbpf import (
    AttachType,
    BpfError,
    Cgroup,
    ClosedError,
    Link,
    Map,
    MapType,
    NotACgroup2,
    Program,
    ProgType,
    VerifierError,
    asm,
)
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel
from cgtest import EGRESS, INGRESS, OK, host_only, said

CI = os.environ.get("CI") == "true"
SRC = Path(__file__).resolve().parents[1] / "src"
CONNECT4 = AttachType.CGROUP_INET4_CONNECT


def load(kernel: Kernel, prog_type: ProgType = ProgType.CGROUP_SKB,
         eat: AttachType | None = EGRESS, insns: list[asm.Insn] = OK) -> Program:
    return Program.load(insns, prog_type, expected_attach_type=eat, name="bad_input",
                        kernel=kernel)


def unavailable(reason: str) -> None:
    """A host test that cannot run here: a failure under CI=true, else a skip."""
    if CI:
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def raises(exc: type[BpfError], fn: Callable[[], object], err: int) -> BpfError:
    """Run ``fn``, which must raise ``exc`` with errno ``err``; return the exception."""
    with pytest.raises(exc) as e:
        fn()
    assert e.value.errno == err, str(e.value)
    return e.value


def kernel_errno(kernel: Kernel, path: str, flags: int) -> int:
    """What the kernel itself answers to PROG_QUERY on an fd of ``path`` (bypassing the
    library's own checks in Cgroup.open)."""
    cg = Cgroup(kernel, os.open(path, flags | os.O_CLOEXEC), path)
    try:
        with pytest.raises(BpfError) as e:
            cg.query(EGRESS)
    finally:
        cg.close()
    return e.value.errno or 0


def v1_mounts() -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2] == "cgroup"]


# ------------------------------------------------------------------------------ targets


@host_only
def test_cgroup_v1_directory(kernel: Kernel) -> None:
    mounts = v1_mounts()
    if not mounts:
        unavailable("no cgroup v1 hierarchy is mounted (fstype cgroup in /proc/self/mounts)")
    for path in mounts:
        e = raises(NotACgroup2, lambda p=path: Cgroup.open(p, kernel=kernel), errno.EBADF)
        assert kernel_errno(kernel, path, os.O_RDONLY | os.O_DIRECTORY) == errno.EBADF
        msg = str(e)
        assert path in msg and "cgroup v1" in msg, msg
        assert f"cgroup2 is mounted at {kernel.cgroup_root}" in msg, msg


@host_only
def test_non_cgroup_directory(kernel: Kernel) -> None:
    e = raises(NotACgroup2, lambda: Cgroup.open("/tmp", kernel=kernel), errno.EBADF)
    assert kernel_errno(kernel, "/tmp", os.O_RDONLY | os.O_DIRECTORY) == errno.EBADF
    assert "/tmp" in str(e) and "not cgroup v2" in str(e)


def test_cgroup2_file_refused(kernel: Kernel, scratch: Scratch) -> None:
    path = scratch.path("cgroup.procs")
    with pytest.raises(BpfError) as e:
        Cgroup.open(path, kernel=kernel).close()
    assert path in str(e.value)


@host_only
def test_cgroup2_file_is_not_a_cgroup2_directory(kernel: Kernel, scratch: Scratch) -> None:
    path = scratch.path("cgroup.procs")
    assert kernel_errno(kernel, path, os.O_RDONLY) == errno.EBADF
    raises(NotACgroup2, lambda: Cgroup.open(path, kernel=kernel).close(), errno.EBADF)


@pytest.mark.parametrize("rel", [False, True], ids=["absolute", "relative"])
def test_missing_cgroup(kernel: Kernel, scratch: Scratch, rel: bool) -> None:
    path = scratch.path("does-not-exist")
    arg = os.path.relpath(path, kernel.cgroup_root) if rel else path
    e = raises(BpfError, lambda: Cgroup.open(arg, kernel=kernel), errno.ENOENT)
    assert path in str(e) and "ENOENT" in str(e)


# ------------------------------------------------------------------------- closed objects


def closed_program(kernel: Kernel, scratch: Scratch) -> tuple[Program, Callable[[], object]]:
    prog = load(kernel)
    cg = scratch.cgroup("a")
    return prog, lambda: cg.link(prog)


def closed_link(kernel: Kernel, scratch: Scratch) -> tuple[Link, Callable[[], object]]:
    with load(kernel) as prog:
        link = scratch.cgroup("a").link(prog)
    return link, link.detach


def closed_map(kernel: Kernel, scratch: Scratch) -> tuple[Map, Callable[[], object]]:
    m = Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, kernel=kernel)
    return m, lambda: m.lookup(bytes(4))


def closed_cgroup(kernel: Kernel, scratch: Scratch) -> tuple[Cgroup, Callable[[], object]]:
    cg = scratch.cgroup("a")
    return cg, lambda: cg.query(EGRESS)


CLOSED = [closed_program, closed_link, closed_map, closed_cgroup]


@pytest.mark.parametrize("make", CLOSED, ids=lambda f: f.__name__)
def test_closed_object(kernel: Kernel, scratch: Scratch, make: Callable[
        [Kernel, Scratch], tuple[Program | Link | Map | Cgroup, Callable[[], object]]]) -> None:
    obj, use = make(kernel, scratch)
    assert obj.fileno() >= 0 and not obj.closed
    obj.close()
    obj.close()  # twice is fine, like a socket
    assert obj.fileno() == -1 and obj.closed
    e = raises(ClosedError, use, errno.EBADF)
    assert "closed" in str(e) and repr(obj) in str(e)
    raises(ClosedError, lambda: obj.fd, errno.EBADF)


def test_closed_cgroup_hint(kernel: Kernel, scratch: Scratch) -> None:
    cg, use = closed_cgroup(kernel, scratch)
    cg.close()
    e = raises(ClosedError, use, errno.EBADF)
    assert "from_id" not in str(e) and "Cgroup.open" in str(e)


# ------------------------------------------------------------------ wrong type, verifier


def test_not_a_cgroup_program(kernel: Kernel, scratch: Scratch) -> None:
    """A program of no cgroup type is refused before any call, naming the types that
    are; a type with one hook (CGROUP_DEVICE) needs no attach type."""
    cg = scratch.cgroup("a")
    with load(kernel, ProgType.SOCKET_FILTER, None) as prog:
        e = raises(BpfError, lambda: cg.link(prog).close(), errno.EINVAL)
        assert "is not a cgroup program" in str(e) and "CGROUP_SKB" in e.hint, str(e)
        assert cg.query(AttachType.CGROUP_INET_EGRESS).ids == []
    with load(kernel, ProgType.CGROUP_DEVICE, None) as prog, cg.link(prog) as link:
        assert link.info().attach_type == AttachType.CGROUP_DEVICE
        assert cg.query(AttachType.CGROUP_DEVICE).ids == [prog.id]


@pytest.mark.parametrize("command", ["LINK_CREATE", "PROG_ATTACH"])
def test_wrong_program_type(kernel: Kernel, scratch: Scratch, command: str) -> None:
    cg = scratch.cgroup("a")
    at = AttachType.CGROUP_SYSCTL
    with load(kernel, ProgType.CGROUP_DEVICE, AttachType.CGROUP_DEVICE) as prog:
        e = raises(BpfError, lambda: cg.link(prog, at).close() if command == "LINK_CREATE"
                   else cg.attach(prog, at), errno.EINVAL)
    msg = str(e)
    assert e.command == command and msg.startswith(f"{command}: ")
    assert "CGROUP_SYSCTL" in msg and cg.path in msg and "wrong program type" in msg, msg


@pytest.mark.parametrize(("insns", "err", "reason"), [
    ([asm.exit_()], errno.EACCES, "R0 !read_ok"),
    ([asm.ldx("dw", asm.R0, asm.R1, 4096), asm.exit_()], errno.EACCES,
     "invalid bpf_context access off=4096 size=8"),
    (asm.return_program(7), errno.EINVAL,
     "At program exit the register R0 has smin=7 smax=7 should have been in [0, 3]"),
], ids=["r0-unset", "ctx-access", "return-value"])
@host_only
def test_verifier_rejects(kernel: Kernel, insns: list[asm.Insn], err: int, reason: str) -> None:
    e = raises(VerifierError, lambda: load(kernel, insns=insns).close(), err)
    line = said(kernel, reason, e.log.splitlines()) if isinstance(e, VerifierError) else ""
    assert line and e.command == "PROG_LOAD" and line in str(e), str(e)


def test_missing_expected_attach_type_named(kernel: Kernel) -> None:
    e = raises(BpfError, lambda: load(kernel, ProgType.CGROUP_SOCK_ADDR, None).close(),
               errno.EINVAL)
    assert "expected attach type" in str(e) or "expected_attach_type" in str(e), str(e)


def test_load_error_names_ingress(kernel: Kernel) -> None:
    e = raises(VerifierError, lambda: load(kernel, ProgType.CGROUP_SKB, INGRESS,
                                           insns=asm.return_program(3)).close(), errno.EINVAL)
    assert "CGROUP_INET_INGRESS" in str(e), str(e)


def test_lsm_load_refusal_explained(kernel: Kernel) -> None:
    """Where the BPF LSM is not active (not in lsm=: this host, the model) the kernel says
    EPERM, and the hint says why; where it is (Debian's kernels) the load reaches the
    verifier, which wants the LSM hook's BTF id, and the error carries its log."""
    with pytest.raises(BpfError) as info:
        load(kernel, ProgType.LSM, AttachType.LSM_CGROUP).close()
    e = info.value
    if e.errno == errno.EPERM:
        assert "lsm=" in e.hint, str(e)
    else:
        assert isinstance(e, VerifierError) and e.errno == errno.EINVAL, str(e)
        assert "btf_id" in e.log and kernel.name == "host", str(e)


# ------------------------------------------------------------------------ privileges

CHILD = r"""
import json, sys
import cgbpf
from cgbpf import AttachType, Cgroup, Program, ProgType, asm


def main(k, args):
    # Run args["steps"] on kernel k; each step's result or error, by name.
    inherited = {name: Program(k, args[name]) for name in ("skb", "addr") if name in args}
    cg = Cgroup(k, args["cg"], args["path"]) if "cg" in args else None

    def load(prog_type, at):
        with Program.load(asm.return_program(1), prog_type, expected_attach_type=at,
                          kernel=k) as p:
            return p.type.name

    def link(name, at):
        with cg.link(inherited[name], at) as ln:
            return ln.info().attach_type.name

    def query_path():
        with Cgroup.open(args["path"], kernel=k) as c:
            return c.query(AttachType.CGROUP_INET_EGRESS).ids

    steps = {
        "load_skb": lambda: load(ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS),
        "load_addr": lambda: load(ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT),
        "query_fd": lambda: cg.query(AttachType.CGROUP_INET_EGRESS).ids,
        "query_path": query_path,
        "link_skb": lambda: link("skb", AttachType.CGROUP_INET_EGRESS),
        "attach_skb": lambda: cg.attach(inherited["skb"], AttachType.CGROUP_INET_EGRESS),
        "link_addr": lambda: link("addr", AttachType.CGROUP_INET4_CONNECT),
    }
    out = {}
    for step in args["steps"]:
        try:
            out[step] = {"ok": steps[step]()}
        except cgbpf.BpfError as e:
            out[step] = {"cls": type(e).__name__, "errno": e.errno, "command": e.command,
                         "capability": getattr(e, "capability", None), "str": str(e)}
    for obj in [*inherited.values(), cg]:
        if obj is not None:
            obj.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(cgbpf.host(), json.loads(sys.argv[1]))))
"""


def run_child(kernel: Kernel, args: dict[str, object], fds: tuple[int, ...] = (),
              keep: str = "") -> dict[str, dict]:
    """Run CHILD's steps in a process with every capability dropped but ``keep`` (e.g.
    "bpf"), holding ``fds``; their results by step.  On the host: a real child process
    (setpriv) running as root; on the model: a forked model process with those
    capabilities, on the same machine."""
    if kernel.name == "model":
        assert isinstance(kernel, ModelKernel)
        caps = {f"CAP_{keep.upper()}"} if keep else set()
        child = kernel.process(caps=caps, fork=True)
        namespace: dict[str, object] = {}
        exec(CHILD, namespace)  # defines main() without running the host part
        try:
            result: dict[str, dict] = namespace["main"](child, args)  # type: ignore[operator]
        finally:
            child.exit()
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            unavailable("setpriv (util-linux) is not installed")
        caps_arg = "-all" + (f",+{keep}" if keep else "")
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        proc = subprocess.run(
            [setpriv, f"--bounding-set={caps_arg}", f"--inh-caps={caps_arg}",
             f"--ambient-caps={caps_arg}", sys.executable, "-c", CHILD, json.dumps(args)],
            pass_fds=fds, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
    assert list(result) == args["steps"]
    return result


def assert_missing(result: dict, err: int, capability: str, command: str) -> None:
    assert result["cls"] == "MissingPrivilege", result
    assert (result["errno"], result["capability"], result["command"]) == (
        err, capability, command), result
    assert result["str"].startswith(f"{command}: ") and f"needs {capability}" in result["str"]


PRIVILEGE_STEPS = ["load_skb", "load_addr", "query_fd", "query_path", "link_skb", "attach_skb",
                   "link_addr"]


def test_missing_privilege(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a")
    with load(kernel) as skb, load(kernel, ProgType.CGROUP_SOCK_ADDR, CONNECT4) as addr:
        fds = {"skb": skb.fileno(), "addr": addr.fileno(), "cg": cg.fileno()}
        out = run_child(kernel, {**fds, "path": cg.path, "steps": PRIVILEGE_STEPS},
                        tuple(fds.values()))
    assert_missing(out["load_skb"], errno.EPERM, "CAP_BPF", "PROG_LOAD")
    assert_missing(out["load_addr"], errno.EPERM, "CAP_BPF and CAP_NET_ADMIN", "PROG_LOAD")
    assert_missing(out["query_fd"], errno.EPERM, "CAP_NET_ADMIN", "PROG_QUERY")
    assert_missing(out["query_path"], errno.EPERM, "CAP_NET_ADMIN", "PROG_QUERY")
    assert_missing(out["link_skb"], errno.EPERM, "CAP_NET_ADMIN", "LINK_CREATE")
    assert_missing(out["attach_skb"], errno.EINVAL, "CAP_NET_ADMIN", "PROG_ATTACH")
    assert out["link_addr"] == {"ok": "CGROUP_INET4_CONNECT"}  # §15: no capability needed
    for at in (EGRESS, CONNECT4):
        assert cg.query(at).ids == []


def test_load_needs_net_admin_too(kernel: Kernel) -> None:
    """§15: CGROUP_SKB loads with CAP_BPF alone, other cgroup types need CAP_NET_ADMIN too;
    the error names only the capability that is missing."""
    out = run_child(kernel, {"steps": ["load_skb", "load_addr"]}, keep="bpf")
    assert out["load_skb"] == {"ok": "CGROUP_SKB"}
    assert_missing(out["load_addr"], errno.EPERM, "CAP_NET_ADMIN", "PROG_LOAD")


# ------------------------------------------------------------------------------ pins


@host_only
def test_pin_outside_bpffs(kernel: Kernel, scratch: Scratch, tmp_path: Path) -> None:
    with load(kernel) as prog, scratch.cgroup("a").link(prog) as link:
        for i, obj in enumerate((prog, link)):
            path = str(tmp_path / f"pin{i}")
            e = raises(BpfError, lambda o=obj, p=path: o.pin(p), errno.EPERM)
            assert e.command == "OBJ_PIN" and path in str(e) and "bpffs" in str(e), str(e)
            assert not os.path.exists(path)
        assert link.pins == []


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("cls", [Link, Map], ids=lambda c: c.__name__)
def test_from_pin_of_a_program(kernel: Kernel, scratch: Scratch, cls: type[Link | Map]) -> None:
    path = os.path.join(scratch.bpffs(), "prog")
    kind = cls.__name__.lower()
    with load(kernel) as prog:
        prog.pin(path)
        try:
            before = open_fds()
            e = raises(BpfError, lambda: cls.from_pin(path, kernel=kernel).close(),
                       errno.EINVAL)
            assert open_fds() == before  # the fd OBJ_GET returned was closed
            with Program.from_pin(path, kernel=kernel) as again:
                assert again.id == prog.id
        finally:
            kernel.unlink(path)
    assert e.command == "OBJ_GET" and f"{path} holds a prog, not a {kind}" in str(e), str(e)

