"""§9 LINK_CREATE, §10 LINK_UPDATE, §11 lifetime/LINK_DETACH/pinning, §12 cgroup death,
§13 introspection, §14 target fds."""

from __future__ import annotations

import ctypes
import errno as E
import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from model_abi import (
    CONN4,
    CONN6,
    EG,
    ING,
    MULTI,
    OVR,
    RET1,
    ROOT,
    all_ids,
    attach,
    cgroup,
    detach,
    err,
    fd_by_id,
    ids,
    info,
    link_create,
    link_detach,
    link_id,
    link_update,
    next_id,
    obj_get,
    pin,
    prog_for,
    prog_id,
    prog_load,
    query,
    ret,
)
from test_model_attach import run_ladder

from cgbpf import uapi
from cgbpf.model import ModelKernel
from cgbpf.uapi import AttachType as AT
from cgbpf.uapi import Cmd
from cgbpf.uapi import ProgType as PT


def attached(k: ModelKernel, cg: int, prog: int, atype: int = EG) -> bool:
    """Whether ``prog`` is in the list (one query: the ID is read without a syscall)."""
    return k._proc.prog(prog).id in ids(k, cg, atype)


def wait_until(k: ModelKernel, cond: Callable[[], bool], seconds: float = 5.0) -> int:
    """Poll as a test must on the real kernel; returns how many polls it took."""
    deadline, polls = time.monotonic() + seconds, 0
    while not cond():
        polls += 1
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    return polls


# --- §9 --------------------------------------------------------------------------------


def test_link_create_ladder(k: ModelKernel) -> None:
    p, c = cgroup(k, "p"), cgroup(k, "p/c")
    good, p6 = prog_for(k, CONN4), prog_for(k, CONN6)
    attach(k, c, prog_for(k, CONN4), CONN4)  # c NONE: mode mismatch
    attach(k, p, prog_for(k, CONN4), CONN4)  # p NONE: hierarchy
    req: dict[str, Any] = dict(tail=1, prog=9999, flags=MULTI, target=9999, revision=5,
                               relative=9999)

    def call(k: ModelKernel, r: dict[str, Any]) -> int:
        a = uapi.LinkCreateAttr(prog_fd=r["prog"], target_fd=r["target"], attach_type=CONN4,
                                flags=r["flags"], relative_fd=r["relative"],
                                expected_revision=r["revision"])
        raw = ctypes.create_string_buffer(bytes(a).ljust(72, b"\0"), 72)
        raw[64] = r["tail"]
        return err(k.bpf, Cmd.LINK_CREATE, raw, 72)

    fill: list[int] = []

    def fill_64() -> None:
        detach(k, c, 0, CONN4)
        fill.extend(link_create(k, prog_for(k, CONN4), c, CONN4) for _ in range(64))

    steps: list[tuple[int, Callable[[], None]]] = [
        (E.EINVAL, lambda: req.update(tail=0)),  # 1
        (E.EBADF, lambda: req.update(prog=c)),  # 2
        (E.EINVAL, lambda: req.update(prog=p6)),  # 2: not a prog
        (E.EINVAL, lambda: req.update(prog=good)),  # 3
        (E.EINVAL, lambda: req.update(flags=uapi.F_BEFORE | uapi.F_LINK)),  # 5
        (E.EBADF, lambda: req.update(target=c)),  # 6
        (E.ESTALE, lambda: req.update(revision=0)),  # 8: §4 step 10
        (E.EPERM, lambda: detach(k, p, 0, CONN4)),  # 8: §4 step 11
        (E.EPERM, fill_64),  # 8: §4 step 12
        (E.E2BIG, lambda: k.close(fill.pop())),  # 8: §4 step 13
        (E.EBADF, lambda: req.update(relative=fill[0])),  # 8: §4 step 16
    ]
    run_ladder(k, req, steps, call)


@pytest.mark.parametrize("flags", [MULTI, OVR, uapi.F_REPLACE, 1 << 7])
def test_link_create_rejects_attach_flags(k: ModelKernel, flags: int) -> None:
    assert err(link_create, k, prog_for(k, EG), cgroup(k, "a"), EG, flags) == E.EINVAL


def test_failed_link_create_uses_up_an_id(k: ModelKernel) -> None:
    """§0 fact 18."""
    c = cgroup(k, "a")
    first = link_id(k, link_create(k, prog_for(k, EG), c))
    attach(k, cgroup(k, "b"), prog_for(k, EG), EG, OVR)
    assert err(link_create, k, prog_for(k, EG), cgroup(k, "b")) == E.EPERM
    assert link_id(k, link_create(k, prog_for(k, EG), c)) == first + 2
    assert all_ids(k) == [first, first + 2]


def test_below_link_only_parent_any_mode(k: ModelKernel) -> None:
    p = cgroup(k, "p")
    link_create(k, prog_for(k, EG), p)
    for i, mode in enumerate((0, OVR, MULTI)):
        assert attach(k, cgroup(k, f"p/c{i}"), prog_for(k, EG), EG, mode) == 0


# --- §10 -------------------------------------------------------------------------------


def test_link_update_ladder(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    p1, p2 = prog_for(k, EG), prog_for(k, EG)
    lk = link_create(k, p1, c)
    dead = link_create(k, prog_for(k, EG), c)
    link_detach(k, dead)
    req: dict[str, Any] = dict(tail=1, flags=uapi.F_REPLACE | 8, link=9999, new=9999,
                               old=9999)

    def call(k: ModelKernel, r: dict[str, Any]) -> int:
        a = uapi.LinkUpdateAttr(link_fd=r["link"], new_prog_fd=r["new"], flags=r["flags"],
                                old_prog_fd=r["old"])
        raw = ctypes.create_string_buffer(bytes(a).ljust(24, b"\0"), 24)
        raw[16] = r["tail"]
        return err(k.bpf, Cmd.LINK_UPDATE, raw, 24)

    steps: list[tuple[int, Callable[[], None]]] = [
        (E.EINVAL, lambda: req.update(tail=0)),  # 1
        (E.EINVAL, lambda: req.update(flags=uapi.F_REPLACE)),  # 2
        (E.EBADF, lambda: req.update(link=p1)),  # 3
        (E.EINVAL, lambda: req.update(link=dead)),  # 3: a prog fd
        (E.EBADF, lambda: req.update(new=c)),  # 4
        (E.EINVAL, lambda: req.update(new=prog_for(k, AT.CGROUP_DEVICE))),  # 4
        (E.EBADF, lambda: req.update(old=0)),  # 5
        (E.EINVAL, lambda: req.update(old=p2)),  # 5: fd 0
        (E.ENOLINK, lambda: req.update(link=lk)),  # 6: wins over the rest
        (E.EPERM, lambda: req.update(old=p1)),  # 7
        (E.EINVAL, lambda: req.update(new=p2)),  # 8: prog type differs
    ]
    run_ladder(k, req, steps, call)
    assert ids(k, c) == [prog_id(k, p2)]
    assert err(link_update, k, lk, p1, old=0, flags=0) == 0
    assert err(k.bpf, Cmd.LINK_UPDATE, uapi.LinkUpdateAttr(link_fd=lk, new_prog_fd=p1,
                                                           old_prog_fd=p2)) == E.EINVAL


def test_link_update_does_not_check_eat(k: ModelKernel) -> None:
    """§0 fact 13."""
    c = cgroup(k, "a")
    lk = link_create(k, prog_for(k, CONN4), c, CONN4)
    bind6 = prog_for(k, AT.CGROUP_INET6_BIND)
    assert link_update(k, lk, bind6) == 0
    assert info(k, lk)[0].attach_type == CONN4
    ing = link_create(k, prog_for(k, ING), c, ING)
    assert link_update(k, ing, prog_load(k, PT.CGROUP_SKB, EG, ret(2))) == 0
    dup = prog_for(k, EG)
    attach(k, c, dup, EG, MULTI)
    assert link_update(k, link_create(k, prog_for(k, EG), c), dup) == 0


# --- §11 -------------------------------------------------------------------------------


def test_close_detaches_synchronously(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    dup = k.dup(lk)
    k.close(lk)
    assert attached(k, c, prog)
    k.close(dup)
    assert not attached(k, c, prog)
    assert query(k, c).attach_flags == 0


def test_unlink_last_pin_detaches_eventually(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    pin(k, lk, "/sys/fs/bpf/l")
    k.close(lk)
    assert attached(k, c, prog)  # the pin owns it
    k.unlink("/sys/fs/bpf/l")
    assert attached(k, c, prog)  # still visible right after unlink
    assert wait_until(k, lambda: not attached(k, c, prog)) >= 0
    assert k.pending == 0


def test_unlink_with_fd_open_then_close(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    pin(k, lk, "/sys/fs/bpf/l")
    k.unlink("/sys/fs/bpf/l")
    k.settle()
    assert attached(k, c, prog)
    k.close(lk)
    assert not attached(k, c, prog)


def test_link_detach_and_defunct_link(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    assert err(link_detach, k, 9999) == E.EBADF
    assert err(link_detach, k, prog) == E.EINVAL
    assert err(k.bpf, Cmd.LINK_DETACH, ctypes.create_string_buffer(bytes([lk, 0, 0, 0, 1]), 8),
               8) == E.EINVAL
    assert link_detach(k, lk) == 0
    assert not attached(k, c, prog)
    li = info(k, lk)[0]
    assert (li.type, li.prog_id, li.cgroup_id, li.attach_type) == (3, prog_id(k, prog), 0, EG)
    assert k.fdinfo(lk)["cgroup_id"] == "0"
    assert err(link_update, k, lk, prog_for(k, EG), old=prog_for(k, EG)) == E.ENOLINK
    assert link_detach(k, lk) == 0
    pin(k, lk, "/sys/fs/bpf/dead")
    got = obj_get(k, "/sys/fs/bpf/dead")
    assert (link_id(k, got), info(k, got)[0].cgroup_id) == (link_id(k, lk), 0)
    by_id = fd_by_id(k, link_id(k, lk))
    ident = link_id(k, lk)
    for fd in (lk, got, by_id):
        k.close(fd)
    k.unlink("/sys/fs/bpf/dead")
    k.settle()
    assert ident not in all_ids(k)


def test_any_owner_may_update_or_detach(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    lk = link_create(k, prog_for(k, EG), c)
    new = prog_for(k, EG)
    child = k.process(caps=set(), uid=65534, fork=True)
    assert link_update(child, lk, new) == 0
    assert link_detach(child, lk) == 0
    assert query(k, c).prog_cnt == 0


def test_pinning_rules(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    lk, prog = link_create(k, prog_for(k, EG), c), prog_for(k, EG)
    assert pin(k, lk, "/sys/fs/bpf/l") == 0
    assert err(pin, k, lk, "/sys/fs/bpf/l") == E.EEXIST
    assert err(pin, k, lk, "/tmp/l") == E.EPERM
    assert err(pin, k, lk, "/sys/fs/bpf/missing/l") == E.ENOENT
    assert err(pin, k, c, "/sys/fs/bpf/x") == E.EINVAL  # not a bpf fd
    assert err(pin, k, 9999, "/sys/fs/bpf/x") == E.EINVAL
    k.mkdir("/sys/fs/bpf/dir")
    assert pin(k, prog, "/sys/fs/bpf/dir/p") == 0
    assert err(obj_get, k, "/sys/fs/bpf/l", uapi.F_RDONLY) == E.EINVAL
    assert err(obj_get, k, "/sys/fs/bpf/l", uapi.F_WRONLY) == E.EINVAL
    assert err(obj_get, k, "/sys/fs/bpf/l", 1 << 5) == E.EINVAL
    assert err(obj_get, k, "/sys/fs/bpf/nope") == E.ENOENT
    assert err(obj_get, k, f"{ROOT}/a/cgroup.procs") == E.EACCES
    assert err(obj_get, k, "/sys/fs/bpf/dir") == E.EACCES
    assert link_id(k, obj_get(k, "/sys/fs/bpf/l")) == link_id(k, lk)
    assert prog_id(k, obj_get(k, "/sys/fs/bpf/dir/p", uapi.F_RDONLY)) == prog_id(k, prog)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o600), (0o077, 0o600), (0o277, 0o400)])
def test_pin_mode_and_owner(k: ModelKernel, umask: int, mode: int) -> None:
    root_pin = link_create(k, prog_for(k, EG), cgroup(k, "a"))
    pin(k, root_pin, "/sys/fs/bpf/root")
    user = k.process(uid=1000, umask=umask, fork=True)
    pin(user, root_pin, "/sys/fs/bpf/user")
    node = k._machine.vfs.lookup("/sys/fs/bpf/user")
    assert (node.mode, node.uid) == (mode, 1000)
    nobody = k.process(uid=65534)
    assert err(obj_get, nobody, "/sys/fs/bpf/root") == E.EACCES
    assert err(obj_get, user, "/sys/fs/bpf/user") == (0 if mode == 0o600 else E.EACCES)


def test_bpffs_mounts(k: ModelKernel) -> None:
    k.mkdir("/tmp/fs")
    k.mount_bpffs("/tmp/fs")
    prog = prog_for(k, EG)
    c = cgroup(k, "a")
    lk = link_create(k, prog, c)
    pin(k, lk, "/tmp/fs/l")
    k.close(lk)
    assert err(k.rmdir, "/tmp/fs") == E.EBUSY
    k.umount("/tmp/fs")  # the pins go: the link is detached eventually
    k.settle()
    assert not attached(k, c, prog)
    assert err(obj_get, k, "/tmp/fs/l") == E.ENOENT
    assert err(k.umount, "/tmp") == E.EINVAL
    assert err(k.umount, ROOT) == E.EBUSY
    k.rmdir("/tmp/fs")


# --- §12 -------------------------------------------------------------------------------


def test_rmdir_with_links_auto_detaches_eventually(k: ModelKernel) -> None:
    p, c = cgroup(k, "p"), cgroup(k, "p/c")
    prog, parent_prog = prog_for(k, EG), prog_for(k, EG)
    lk, plk = link_create(k, prog, c), link_create(k, parent_prog, p)
    legacy = prog_for(k, ING)
    attach(k, c, legacy, ING)
    legacy_id = prog_id(k, legacy)
    k.close(legacy)
    cg_id = k.cgroup_id(f"{ROOT}/p/c")
    assert err(k.rmdir, f"{ROOT}/p") == E.EBUSY  # a child cgroup
    k.rmdir(f"{ROOT}/p/c")
    assert info(k, lk)[0].cgroup_id == cg_id  # until the release
    for call in (lambda: attach(k, c, prog, EG, MULTI), lambda: link_create(k, prog, c),
                 lambda: query(k, c), lambda: detach(k, c, prog, EG)):
        assert err(call) == E.ENOENT
    wait_until(k, lambda: info(k, lk)[0].cgroup_id == 0)
    assert err(link_update, k, lk, prog) == E.ENOLINK
    assert link_detach(k, lk) == 0
    assert k.fdinfo(lk)["cgroup_id"] == "0"
    assert err(fd_by_id, k, legacy_id, Cmd.PROG_GET_FD_BY_ID) == E.ENOENT  # freed
    assert info(k, plk)[0].cgroup_id == k.cgroup_id(f"{ROOT}/p")  # ancestors unaffected


def test_socket_holds_the_bpf_state(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    sock = k.socket(f"{ROOT}/a")
    assert k.fd_kind(sock) == "other"
    k.rmdir(f"{ROOT}/a")
    k.settle()
    assert info(k, lk)[0].cgroup_id != 0  # no auto-detach while the socket lives
    assert link_update(k, lk, prog_for(k, EG)) == 0  # the offline window
    assert link_detach(k, lk) == 0
    lk2 = link_create(k, prog, cgroup(k, "b"))
    sock_b = k.socket(f"{ROOT}/b")
    k.rmdir(f"{ROOT}/b")
    k.settle()
    assert info(k, lk2)[0].cgroup_id != 0
    k.close(sock_b)
    wait_until(k, lambda: info(k, lk2)[0].cgroup_id == 0)


def test_dead_child_holds_parent_state(k: ModelKernel) -> None:
    """The kernel's child cgroups hold their ancestors' BPF state until released."""
    p, c = cgroup(k, "p"), cgroup(k, "p/c")
    lk = link_create(k, prog_for(k, EG), p)
    sock = k.socket(f"{ROOT}/p/c")
    k.rmdir(f"{ROOT}/p/c")
    k.rmdir(f"{ROOT}/p")
    k.settle()
    assert info(k, lk)[0].cgroup_id != 0
    k.close(sock)
    k.settle()
    assert info(k, lk)[0].cgroup_id == 0
    assert c > p


# --- §13 -------------------------------------------------------------------------------


def test_link_info(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    li, n = info(k, lk)
    assert (li.type, li.prog_id, li.cgroup_id, li.attach_type, n) == (
        3, prog_id(k, prog), k.cgroup_id(f"{ROOT}/a"), EG, 64)
    assert bytes(li)[12:16] == bytes(4) and not any(bytes(li)[28:])
    assert info(k, lk, size=8)[1] == 8
    assert info(k, lk, size=100)[1] == 64
    assert err(info, k, lk, size=100, fill=bytes(70) + b"\1") == E.E2BIG
    assert err(info, k, lk, size=5000) == E.E2BIG
    assert err(info, k, 9999) == E.EBADFD
    assert err(info, k, c) == E.EINVAL


def test_fdinfo_text(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    prog = prog_for(k, EG)
    lk = link_create(k, prog, c)
    fi = k.fdinfo(lk)
    assert list(fi) == ["pos", "flags", "mnt_id", "ino", "link_type", "link_id", "prog_tag",
                        "prog_id", "cgroup_id", "attach_type"]
    assert (fi["pos"], fi["flags"], fi["link_type"], fi["attach_type"]) == (
        "0", "02000000", "cgroup", "1")
    assert fi["link_id"] == str(link_id(k, lk))
    assert fi["prog_id"] == str(prog_id(k, prog))
    assert fi["cgroup_id"] == str(k.cgroup_id(f"{ROOT}/a"))
    assert fi["prog_tag"] == hashlib.sha256(RET1).hexdigest()[:16]  # 6.18: SHA-256
    assert (k.fd_kind(lk), k.fd_kind(prog), k.fd_kind(c)) == ("link", "prog", "other")


def test_ids_and_fd_by_id(k: ModelKernel) -> None:
    c = cgroup(k, "a")
    links = [link_create(k, prog_for(k, EG), c) for _ in range(3)]
    lids = [link_id(k, fd) for fd in links]
    assert all_ids(k) == lids
    k.close(links[1])
    assert next_id(k, lids[0]) == lids[2]
    assert err(next_id, k, lids[2]) == E.ENOENT
    fd = fd_by_id(k, lids[0])
    assert link_id(k, fd) == lids[0]
    assert err(fd_by_id, k, lids[0], flags=uapi.F_RDONLY) == E.EINVAL
    assert err(fd_by_id, k, 0) == E.ENOENT
    assert err(fd_by_id, k, lids[1]) == E.ENOENT
    assert err(next_id, k, 2**31 - 1) == E.EINVAL
    progs = [fd_by_id(k, i, Cmd.PROG_GET_FD_BY_ID) for i in all_ids(k, Cmd.PROG_GET_NEXT_ID)]
    assert len(progs) == 3 and all(k.fd_kind(fd) == "prog" for fd in progs)


def test_ids_cycle_and_are_not_reused_before_wrapping() -> None:
    k = ModelKernel(id_start=2**31 - 3)
    c = cgroup(k, "a")
    first = [link_create(k, prog_for(k, EG), c) for _ in range(2)]
    assert [link_id(k, fd) for fd in first] == [2**31 - 3, 2**31 - 2]
    k.close(first[0])
    nxt = link_create(k, prog_for(k, EG), c)
    assert link_id(k, nxt) == 1  # wrapped (INT_MAX itself is never used)
    assert link_id(k, link_create(k, prog_for(k, EG), c)) == 2
    assert all_ids(k) == [1, 2, 2**31 - 2]


def test_normalized_ids_match_across_machines() -> None:
    """§18: compare IDs by first appearance, never raw."""
    def run(k: ModelKernel) -> list[int]:
        c = cgroup(k, "a")
        seen: dict[int, int] = {}
        for _ in range(3):
            fd = link_create(k, prog_for(k, EG), c)
            seen.setdefault(link_id(k, fd), len(seen))
        return [seen[i] for i in all_ids(k)]

    assert run(ModelKernel()) == run(ModelKernel(id_start=1000)) == [0, 1, 2]


# --- §14 -------------------------------------------------------------------------------


def test_target_fd_table(k: ModelKernel) -> None:
    prog = prog_for(k, EG)
    cg = cgroup(k, "a")
    targets = {
        "root": (k.open_dir(ROOT), 0),
        "o_path": (cgroup(k, "a", path_only=True), 0),
        "tmp": (k.open_dir("/tmp"), E.EBADF),
        "bpffs": (k.open_dir("/sys/fs/bpf"), E.EBADF),
        "sys_fs": (k.open_dir("/sys/fs"), E.EBADF),
        "prog": (prog, E.EBADF),
        "closed": (9999, E.EBADF),
        "huge": (0xFFFFFFFF, E.EBADF),
    }
    for name, (fd, expect) in targets.items():
        got = [err(attach, k, fd, prog, EG, MULTI), err(link_create, k, prog, fd),
               err(query, k, fd), err(detach, k, fd, prog, EG)]
        assert got == [expect] * 3 + [expect or got[3]], name
    k.rmdir(f"{ROOT}/a")
    assert err(query, k, cg) == E.ENOENT
