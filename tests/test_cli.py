"""The ``cgbpf`` command on both kernels: on the model in-process (``main(argv,
kernel=k)``: a model's state lives in one process), on the host as a subprocess
(``python -m cgbpf``, real exit codes and output).  Everything happens in scratch cgroups
and scratch bpffs mounts."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

import cgbpf
from cgbpf import AttachType, Link, ProgType
from cgbpf.cli import main
from cgbpf.cli.names import UsageError, attach_type, supported_types, type_name
from cgbpf.kernel import Kernel, probe
from cgbpf.testing import Scratch
from cgtest import EGRESS, INGRESS, load

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
#: The command as a user runs it from a checkout (the path also keeps what this
#: interpreter was given, e.g. the kernel matrix's vendored pyelftools).
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, *filter(None, [
    os.environ.get("PYTHONPATH")])]), "PYTHONWARNINGS": "error::ResourceWarning"}


ACTS = {"attach", "detach", "link", "pin", "update", "load"}


class Cli:
    """Runs ``cgbpf ARGS`` on the test's kernel: (exit status, stdout, stderr).  On the
    host a command that acts runs as a process of its own (what it leaves must outlive
    it: pins, not fds), a query in this process (quicker)."""

    def __init__(self, kernel: Kernel, capsys: pytest.CaptureFixture[str]) -> None:
        self.kernel, self.capsys = kernel, capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        words = [a for a in args if not a.startswith("-")]
        if self.kernel.name == "host" and set(words[1:2]) & ACTS:
            r = subprocess.run([sys.executable, "-m", "cgbpf", *args], env=ENV,
                               capture_output=True, text=True, timeout=60)
            return r.returncode, r.stdout, r.stderr
        self.capsys.readouterr()
        rc = main(list(args), kernel=self.kernel)
        out, err = self.capsys.readouterr()
        return rc, out, err

    def __call__(self, *args: str) -> str:
        rc, out, err = self.run(*args)
        assert rc == 0, (args, out, err)
        return out

    def json(self, *args: str) -> object:
        return json.loads(self("-j", *args))

    def fails(self, status: int, *args: str) -> str:
        """The command fails with ``status``, nothing on stdout: its stderr."""
        rc, out, err = self.run(*args)
        assert (rc, out) == (status, ""), (args, rc, out, err)
        return err


@pytest.fixture
def cli(kernel: Kernel, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(kernel, capsys)


def unique(prefix: str) -> str:
    """A program name no other program on the host has (15 characters at most)."""
    return f"{prefix}_{secrets.token_hex(3)}"


def test_attach_type_names() -> None:
    assert attach_type("egress") is attach_type("cgroup_inet_egress") is EGRESS
    assert attach_type("BPF_CGROUP_INET4_CONNECT") is attach_type("connect4") \
        is AttachType.CGROUP_INET4_CONNECT
    assert attach_type("sock_create") is AttachType.CGROUP_INET_SOCK_CREATE
    assert attach_type("device") is AttachType.CGROUP_DEVICE
    assert attach_type("sysctl") is AttachType.CGROUP_SYSCTL
    assert attach_type("getsockopt") is AttachType.CGROUP_GETSOCKOPT
    assert attach_type("sendmsg_unix") is AttachType.CGROUP_UNIX_SENDMSG
    assert type_name(AttachType.CGROUP_SOCK_OPS) == "cgroup_sock_ops"
    assert type_name(999) == "999"
    with pytest.raises(UsageError, match="connect4"):
        attach_type("connect")


def test_supported_types_follow_the_probes() -> None:
    old = supported_types(cgbpf.model("5.7"))
    assert AttachType.CGROUP_INET_SOCK_RELEASE not in old
    assert AttachType.CGROUP_UNIX_CONNECT not in old and AttachType.LSM_CGROUP not in old
    new = supported_types(cgbpf.model("6.18"))
    assert set(old) < set(new) and AttachType.CGROUP_UNIX_GETSOCKNAME in new
    assert new == sorted(new)


def test_import_is_light() -> None:
    code = ("import sys, cgbpf.cli; bad = [m for m in sys.modules if m.startswith(("
            "'cgbpf.model', 'cgbpf.collection', 'cgbpf.elf', 'cgbpf.btf', 'elftools'))];"
            " assert not bad, bad; cgbpf.cli.parser()")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


def test_exit_statuses() -> None:
    """A process of its own: 0 for --help, 2 for usage, 1 for a failure."""
    for args, status, where in ((["--help"], 0, "stdout"), (["cgroup", "show"], 2, "stderr"),
                                (["--kernel", "model", "link", "show", "id", "7"], 1,
                                 "stderr")):
        r = subprocess.run([sys.executable, "-m", "cgbpf", *args], env=ENV,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == status, (args, r.stderr)
        assert (r.stdout if where == "stdout" else r.stderr) and \
            not (r.stderr if where == "stdout" else r.stdout)


def test_usage_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(cgbpf.model("6.18"), capsys)
    rc, out, _ = cli.run("--help")
    assert rc == 0 and "examples:" in out and "cgroup link PATH TYPE PROG pin PATH" in out
    rc, out, _ = cli.run("cgroup", "--help")
    assert rc == 0 and "bpftool's words" in out
    assert "usage" in cli.fails(2)
    assert "invalid choice" in cli.fails(2, "frobnicate")
    assert "missing PATH" in cli.fails(2, "cgroup", "show")
    assert "unknown attach type 'bogus'" in cli.fails(2, "cgroup", "attach", "x", "bogus",
                                                     "id", "1")
    assert "expected id | pinned" in cli.fails(2, "link", "show", "name", "x")
    assert "not a number" in cli.fails(2, "link", "show", "id", "x")
    assert "unexpected 'extra'" in cli.fails(2, "link", "show", "id", "1", "extra")
    err = cli.fails(1, "cgroup", "show", "cgbpf-no-such-cgroup")
    assert err.startswith("Error: open: cgroup ") and "ENOENT" in err
    err = cli.fails(1, "link", "show", "id", "4000000000")
    assert err.startswith("Error: ") and "ENOENT" in err


def test_link_commands(cli: Cli, kernel: Kernel, scratch: Scratch) -> None:
    """cgroup link (pinned), cgroup show with the link id, link show/pin/update/detach."""
    fs, name = scratch.bpffs(), unique("cli")
    cg = scratch.cgroup("svc")
    scratch.mkdir("svc/child")
    with load(kernel, name=name) as p1, load(kernel, name=unique("cli2")) as p2:
        p1.pin(f"{fs}/p1")
        err = cli.fails(2, "cgroup", "link", cg.path, "egress", "pinned", f"{fs}/p1")
        assert "needs 'pin PATH'" in err and "detach" in err
        assert cg.query(EGRESS).ids == []
        out = cli("cgroup", "link", cg.path, "egress", "pinned", f"{fs}/p1", "pin", f"{fs}/l")
        assert f"program {p1.id} on {cg.path} cgroup_inet_egress, pinned at {fs}/l" in out
        with Link.from_pin(f"{fs}/l", kernel=kernel) as link:
            lid = link.id
            assert cg.query(EGRESS).ids == [p1.id]
            shown = cli.json("cgroup", "show", cg.path)
            assert shown == [{"id": p1.id, "attach_type": "cgroup_inet_egress",
                              "attach_flags": "multi", "name": name, "link_id": lid}]
            text = cli("cgroup", "show", cg.path)
            assert text.split("\n")[0].split() == ["ID", "AttachType", "AttachFlags", "Name",
                                                   "Link"]
            assert text.split("\n")[1].split() == [str(p1.id), "cgroup_inet_egress", "multi",
                                                   name, "link", str(lid)]
            eff = cli.json("cgroup", "show", scratch.path("svc/child"), "effective")
            assert eff == [{"id": p1.id, "attach_type": "cgroup_inet_egress", "name": name}]

            info = cli.json("link", "show", "pinned", f"{fs}/l")
            assert info == {"id": lid, "type": "cgroup", "prog_id": p1.id,
                            "cgroup_id": cg.id, "attach_type": "cgroup_inet_egress",
                            "pinned": [f"{fs}/l"], "cgroup_path": cg.path, "defunct": False}
            listed = [d for d in cli.json("link", "show")  # type: ignore[union-attr]
                      if d["id"] == lid]
            assert listed and listed[0]["cgroup_path"] == cg.path
            assert listed[0]["pinned"] == [f"{fs}/l"]
            text = cli("link", "show", "id", str(lid))
            assert f"{lid}: cgroup  prog {p1.id}" in text and f"cgroup {cg.path}" in text

            assert cli("-j", "link", "pin", "id", str(lid), f"{fs}/l2") == "null\n"
            with Link.from_pin(f"{fs}/l2", kernel=kernel) as again:
                assert again.id == lid
            err = cli.fails(1, "link", "update", "pinned", f"{fs}/l", "id", str(p2.id),
                            "expect", "id", str(p2.id))
            assert "EPERM" in err
            assert link.info().prog_id == p1.id
            out = cli("link", "update", "pinned", f"{fs}/l2", "name", p2.info().name,
                      "expect", "pinned", f"{fs}/p1")
            assert out == f"link {lid} now runs program {p2.id}\n"
            assert cg.query(EGRESS).ids == [p2.id] and link.info().prog_id == p2.id

            assert cli("-p", "link", "detach", "id", str(lid)) == "null\n"
            assert link.defunct and cg.query(EGRESS).ids == []
            info = cli.json("link", "show", "pinned", f"{fs}/l")
            assert info["defunct"] is True and info["cgroup_id"] == 0  # type: ignore[index]
            assert info["cgroup_path"] is None  # type: ignore[index]
            assert "defunct" in cli("link", "show", "pinned", f"{fs}/l")
            assert "ENOLINK" in cli.fails(1, "link", "update", "id", str(lid),
                                          "id", str(p1.id))
        for pin in ("l", "l2", "p1"):
            kernel.unlink(f"{fs}/{pin}")


def test_link_ordering_and_preorder(cli: Cli, kernel: Kernel, scratch: Scratch) -> None:
    if not (probe.supported(kernel, probe.MPROG) and probe.supported(kernel,
                                                                      probe.PREORDER_LINK)):
        pytest.skip("before/after need Linux 6.17")
    fs = scratch.bpffs()
    cg = scratch.cgroup("o")
    with load(kernel, name=unique("o1")) as p1, load(kernel, name=unique("o2")) as p2:
        cli("cgroup", "link", cg.path, "egress", "id", str(p1.id), "pin", f"{fs}/a")
        cli("cgroup", "link", cg.path, "egress", "id", str(p2.id), "before", "pinned",
            f"{fs}/a", "pin", f"{fs}/b")
        assert cg.query(EGRESS).ids == [p2.id, p1.id]
        cli("cgroup", "link", cg.path, "ingress", "id", str(p1.id), "preorder", "pin",
            f"{fs}/pre")
        assert cg.query(INGRESS).ids == [p1.id]  # the query does not show PREORDER
        rows = [r for r in cli.json("cgroup", "show", cg.path)  # type: ignore[union-attr]
                if r["attach_type"] == "cgroup_inet_egress"]
        assert [r["id"] for r in rows] == [p2.id, p1.id]  # type: ignore[union-attr,index]
        assert all(r["link_id"] for r in rows)  # type: ignore[union-attr,index]
        err = cli.fails(1, "cgroup", "link", cg.path, "egress", "id", str(p1.id), "after",
                        "id", "4000000000", "pin", f"{fs}/c")
        assert "ENOENT" in err
        assert not os.path.exists(f"{fs}/c") or kernel.name != "host"
        for pin in ("a", "b", "pre"):
            kernel.unlink(f"{fs}/{pin}")


def test_attach_detach_and_tree(cli: Cli, kernel: Kernel, scratch: Scratch) -> None:
    """Legacy attach (multi, override, exclusive, replace), detach, cgroup tree."""
    name = unique("tr")
    a, d = scratch.cgroup("a"), scratch.cgroup("d")
    scratch.mkdir("a/b/c")
    scratch.mkdir("d/e")
    e = scratch.cgroup("d/e")
    with load(kernel, name=name) as p1, load(kernel, ProgType.CGROUP_SKB, INGRESS,
                                             name=unique("tr2")) as p2:
        assert cli("cgroup", "attach", a.path, "ingress", "id", str(p2.id), "multi") == \
            f"program {p2.id} attached to {a.path} cgroup_inet_ingress (multi)\n"
        assert cli("-j", "cgroup", "attach", a.path, "cgroup_inet_egress", "name", name,
                   "multi") == "null\n"
        cli("cgroup", "attach", d.path, "egress", "id", str(p1.id), "override")
        cli("cgroup", "attach", e.path, "egress", "id", str(p1.id))  # bpftool's: exclusive
        assert e.query(EGRESS).mode == cgbpf.AttachMode.EXCLUSIVE
        assert "EPERM" in cli.fails(1, "cgroup", "attach", scratch.path("d/e"), "egress",
                                    "id", str(p1.id), "multi")
        cli("cgroup", "attach", a.path, "ingress", "id", str(p1.id), "replace", "id",
            str(p2.id))
        assert a.query(INGRESS).ids == [p1.id]

        tree = cli.json("cgroup", "tree", scratch.path())
        entry = {"id": p1.id, "name": name, "link_id": None}
        assert tree == [
            {"cgroup": a.path, "programs": [
                {**entry, "attach_type": "cgroup_inet_ingress", "attach_flags": "multi"},
                {**entry, "attach_type": "cgroup_inet_egress", "attach_flags": "multi"}]},
            {"cgroup": d.path, "programs": [
                {**entry, "attach_type": "cgroup_inet_egress", "attach_flags": "override"}]},
            {"cgroup": e.path, "programs": [
                {**entry, "attach_type": "cgroup_inet_egress", "attach_flags": ""}]}]
        assert cli.json("cgroup", "tree", os.path.relpath(scratch.path("a"),
                                                          kernel.cgroup_root)) == tree[:1]
        eff = cli.json("cgroup", "tree", scratch.path("a"), "effective")
        assert [t["cgroup"] for t in eff] == [a.path, scratch.path("a/b"),  # type: ignore
                                              scratch.path("a/b/c")]
        assert all("attach_flags" not in p and "link_id" not in p
                   for t in eff for p in t["programs"])  # type: ignore

        text = cli("cgroup", "tree", scratch.path())
        lines = text.rstrip("\n").split("\n")
        assert lines[0].split() == ["ID", "AttachType", "AttachFlags", "Name", "Link"]
        assert lines[1] == scratch.path()
        assert lines[2] == "├── a" and lines[5] == "└── d" and lines[7] == "    └── e"
        assert lines[3].split() == ["│", str(p1.id), "cgroup_inet_ingress", "multi", name]
        assert lines[8].split() == [str(p1.id), "cgroup_inet_egress", name]
        empty = cli("cgroup", "tree", scratch.path("a/b"))
        assert "(no programs attached)" in empty

        assert cli("cgroup", "detach", e.path, "egress") == \
            f"the program detached from {e.path} cgroup_inet_egress\n"
        cli("cgroup", "detach", d.path, "egress", "id", str(p1.id))
        cli("cgroup", "detach", a.path, "ingress", "name", name)
        cli("-j", "cgroup", "detach", a.path, "egress", "id", str(p1.id))
        err = cli.fails(1, "cgroup", "detach", a.path, "egress", "id", str(p1.id))
        assert "ENOENT" in err and "link" in err  # the library's hint
        assert cli.json("cgroup", "tree", scratch.path()) == []


def test_prog_show_and_name_refs(cli: Cli, kernel: Kernel, scratch: Scratch) -> None:
    fs, name = scratch.bpffs(), unique("ps")
    with load(kernel, name=name) as p, load(kernel, name=name) as twin:
        p.pin(f"{fs}/p")
        one = cli.json("prog", "show", "pinned", f"{fs}/p")
        assert {k: one[k] for k in ("id", "type", "name", "tag")} == {  # type: ignore[index]
            "id": p.id, "type": "cgroup_skb", "name": name, "tag": p.info().tag}
        assert one["pinned"] == [f"{fs}/p"]  # type: ignore[index]
        listed = {d["id"] for d in cli.json("prog", "show")}  # type: ignore[union-attr,index]
        assert {p.id, twin.id} <= listed
        assert f"{p.id}: cgroup_skb  name {name}" in cli("prog", "show", "id", str(p.id))
        err = cli.fails(1, "prog", "show", "name", name)
        assert "2 programs have that name" in err and str(twin.id) in err
        assert "no program has that name" in cli.fails(1, "prog", "show", "name", "no_such_x")
        kernel.unlink(f"{fs}/p")


def test_prog_load(cli: Cli, kernel: Kernel, scratch: Scratch) -> None:
    import bpfc

    obj = str(bpfc.compile_c("smoke"))
    fs = scratch.bpffs()
    out = cli("prog", "load", obj, f"{fs}/smoke")
    assert out.startswith("program ") and out.endswith(f"(allow) pinned at {fs}/smoke/allow\n")
    cg = scratch.cgroup("loaded")
    cli("cgroup", "link", cg.path, "egress", "pinned", f"{fs}/smoke/allow", "pin",
        f"{fs}/smoke-link")
    assert [r["name"] for r in cli.json("cgroup", "show", cg.path)] == [  # type: ignore
        "allow"]
    assert "Error: " in cli.fails(1, "prog", "load", "/nonexistent.o", f"{fs}/x")
    kernel.unlink(f"{fs}/smoke-link")
    kernel.unlink(f"{fs}/smoke/allow")
    kernel.rmdir(f"{fs}/smoke")
    deadline = time.monotonic() + 5  # the link goes with its last pin, asynchronously
    while cg.query(EGRESS).ids and kernel.name == "host" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cg.query(EGRESS).ids == [] or kernel.name == "model"


def test_kernel_option_and_env() -> None:
    """``--kernel model``: a fresh model machine in the new process."""
    r = subprocess.run([sys.executable, "-m", "cgbpf", "--kernel", "model", "-j", "cgroup",
                        "tree"], env=ENV, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "[]\n", "")
    r = subprocess.run([sys.executable, "-m", "cgbpf", "link", "show", "-j"],
                       env={**ENV, "CGBPF_KERNEL": "model"}, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout) == (0, "[]\n")
    r = subprocess.run([sys.executable, "-m", "cgbpf", "link", "show"],
                       env={**ENV, "CGBPF_KERNEL": "bogus"}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "CGBPF_KERNEL" in r.stderr


def test_cgroup_path_is_a_file(cli: Cli, scratch: Scratch) -> None:
    err = cli.fails(1, "cgroup", "show", os.path.join(scratch.path(), "cgroup.procs"))
    assert "not a cgroup directory" in err and "EBADF" in err


def test_tree_passes_over_a_mount_inside_cgroup2(cli: Cli, kernel: Kernel,
                                                  scratch: Scratch) -> None:
    """A file system mounted on a cgroup directory (here a bpffs) is not walked into, and
    the tree of the rest is complete (bpftool aborts on odd hierarchies)."""
    cg, covered = scratch.cgroup("t/in"), scratch.mkdir("t/covered")
    with load(kernel, name=unique("mt")) as p, cg.link(p, EGRESS):
        kernel.mount_bpffs(covered)
        try:
            tree = cli.json("cgroup", "tree", scratch.path())
        finally:
            kernel.umount(covered)
    assert [t["cgroup"] for t in tree] == [cg.path]  # type: ignore[union-attr,index]


def test_tree_queries_the_hooks_in_use(cli: Cli, kernel: Kernel, scratch: Scratch) -> None:
    """The tree queries only hooks of loaded program types; programs of other types than
    CGROUP_SKB are found all the same."""
    cg = scratch.cgroup("t")
    with load(kernel, ProgType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT,
              name=unique("c4")) as c4, \
            load(kernel, ProgType.CGROUP_DEVICE, None, name=unique("dev")) as dev:
        cli("cgroup", "attach", cg.path, "connect4", "id", str(c4.id), "multi")
        cli("cgroup", "attach", cg.path, "device", "id", str(dev.id), "multi")
        tree = cli.json("cgroup", "tree", scratch.path())
        assert [(p["id"], p["attach_type"]) for t in tree  # type: ignore[union-attr]
                for p in t["programs"]] == [  # type: ignore[index]
            (dev.id, "cgroup_device"), (c4.id, "cgroup_inet4_connect")]
        cg.detach(c4, AttachType.CGROUP_INET4_CONNECT)
        cg.detach(dev, AttachType.CGROUP_DEVICE)


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from cgbpf.cli.output import Output

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert Output(Tty()).warn("defunct") == "\x1b[1;31mdefunct\x1b[0m"
    assert Output(io.StringIO()).warn("defunct") == "defunct"
    monkeypatch.setenv("NO_COLOR", "1")
    assert Output(Tty()).bold("id") == "id"


def test_broken_pipe_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cgbpf cgroup tree | head``: a reader gone is exit status 1, no traceback."""
    import io

    class Gone(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["cgroup", "tree"], kernel=cgbpf.model("6.18")) == 1
