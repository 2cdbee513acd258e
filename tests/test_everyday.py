"""Everyday calls, on both kernels: processes into a cgroup and out of it, a cgroup from
its id (and a link's cgroup), every program and map on the system, iterating a map
(MAP_GET_NEXT_KEY as the kernel answers it), and unpinning programs and maps."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import cgbpf
from cgbpf import (
    AttachType,
    BpfError,
    Cgroup,
    LinkDefunct,
    Map,
    MapType,
    Program,
    ProgType,
    _sys,
    asm,
)
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel
from cgbpf.uapi import Cmd
from cgtest import load

#: No process has this pid: above the largest pid_max Linux allows (PID_MAX_LIMIT, 2**22).
NO_SUCH_PID = 2**22 + 1


def key(i: int) -> bytes:
    return struct.pack("<I", i)


def raises(err: int, fn: Callable[[], Any]) -> BpfError:
    with pytest.raises(BpfError) as e:
        fn()
    assert e.value.errno == err, e.value
    return e.value


class Child:
    """A process that does nothing until stopped: on the host a forked child that sleeps
    (only ever this test's own child is killed, and it is waited for); on the model,
    another model process."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        if isinstance(kernel, ModelKernel):
            self._proc: ModelKernel | None = kernel.process()
            self.pid = self._proc.pid
            return
        self._proc = None
        self.pid = os.fork()
        if self.pid == 0:  # the child never returns into pytest
            try:
                time.sleep(60)
            finally:
                os._exit(0)

    def stop(self) -> None:
        """Kill and reap it: it is then in no cgroup."""
        if self._proc is not None:
            self._proc.exit()
        elif self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.pid = 0


@contextmanager
def child(kernel: Kernel) -> Iterator[Child]:
    c = Child(kernel)
    try:
        yield c
    finally:
        if c.pid:
            c.stop()


# --------------------------------------------------------------------------- processes


def test_add_process_and_processes(kernel: Kernel, scratch: Scratch) -> None:
    a, b = scratch.cgroup("a"), scratch.cgroup("a/b")
    with child(kernel) as c:
        pid = c.pid
        assert a.processes() == b.processes() == []
        b.add_process(pid)
        assert b.processes() == [pid]
        assert a.processes() == []  # the cgroup's own processes, not its descendants'
        a.add_process(pid)
        assert (a.processes(), b.processes()) == ([pid], [])
        e = raises(errno.EBUSY, a.remove)  # a cgroup with a process in it stays
        assert e.command == "rmdir"
        c.stop()
        assert a.processes() == []
        raises(errno.ESRCH, lambda: a.add_process(pid))
    b.remove()
    scratch.forget(b.path)
    a.remove()  # nothing left in it: removable at once
    scratch.forget(a.path)


def test_add_process_errors(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a")
    e = raises(errno.ESRCH, lambda: cg.add_process(NO_SUCH_PID))
    assert e.command == "cgroup.procs" and "no process" in str(e) and cg.path in str(e)
    assert isinstance(e, ProcessLookupError)
    raises(errno.EINVAL, lambda: cg.add_process(-1))
    again = Cgroup.open(cg.path, kernel=kernel)
    cg.remove()
    scratch.forget(again.path)
    with child(kernel) as c:
        e = raises(errno.ENOENT, lambda: again.add_process(c.pid))
        assert "removed" in str(e)
    raises(errno.ENOENT, again.processes)
    again.close()
    raises(errno.EBADF, again.processes)
    with pytest.raises(TypeError):
        again.add_process("1")  # type: ignore[arg-type]


def test_model_processes_follow_fork_and_exit() -> None:
    """A forked model process starts in its parent's cgroup, a new one in the root; pid 0
    is the caller; an exited process is no longer found (ESRCH)."""
    k = cgbpf.model()
    with Scratch(k, "cgbpf-test") as s:
        cg = s.cgroup("a")
        p = k.process()
        p.move_process(cg.path, 0)
        assert cg.processes() == [p.pid]
        forked, fresh = p.process(fork=True), p.process()
        assert cg.processes() == sorted([p.pid, forked.pid])
        assert fresh.pid in k.cgroup_processes(k.cgroup_root)
        nobody = k.process(uid=65534)  # cgroup.procs is root's, mode 0644
        with Cgroup.open(cg.path, kernel=nobody) as theirs:
            raises(errno.EACCES, lambda: theirs.add_process(0))
            assert theirs.processes() == sorted([p.pid, forked.pid])
        for q in (p, forked, fresh, nobody):
            q.exit()
        assert cg.processes() == []
        raises(errno.ESRCH, lambda: cg.add_process(p.pid))


# --------------------------------------------------------------------------- cgroup ids


def test_from_id(kernel: Kernel, scratch: Scratch) -> None:
    cgs = [scratch.cgroup(p) for p in ("a", "a/b", "a/b/c", "d")]
    for cg in cgs:
        with Cgroup.from_id(cg.id, kernel=kernel) as found:
            assert (found.path, found.id) == (cg.path, cg.id)
    root_id = kernel.cgroup_id(kernel.cgroup_root)
    with Cgroup.from_id(root_id, kernel=kernel) as root:
        assert root.path == kernel.cgroup_root
    gone = cgs[3].id
    cgs[3].remove()
    scratch.forget(cgs[3].path)
    e = raises(errno.ENOENT, lambda: Cgroup.from_id(gone, kernel=kernel))
    assert isinstance(e, FileNotFoundError) and str(gone) in str(e)
    with pytest.raises(TypeError):
        Cgroup.from_id("1", kernel=kernel)  # type: ignore[arg-type]


def test_from_link(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a/b")
    with load(kernel) as prog, cg.link(prog) as link:
        with Cgroup.from_link(link) as found:
            assert (found.path, found.id) == (cg.path, cg.id)
        link.detach()
        raises(errno.ENOLINK, lambda: Cgroup.from_link(link))
        with pytest.raises(LinkDefunct):
            Cgroup.from_link(link)


# --------------------------------------------------------------------------- listing


class Racing:
    """The kernel, with ``before(cmd, attr)`` run before each bpf(2) call: the way to
    free an object between two calls of a walk."""

    def __init__(self, kernel: Kernel, before: Callable[[int, Any], None]) -> None:
        self._kernel, self._before = kernel, before

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int:
        self._before(cmd, attr)
        return self._kernel.bpf(cmd, attr, size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)


def test_programs_and_maps(kernel: Kernel) -> None:
    m = Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=4, name="everyday",
                   kernel=kernel)
    progs = [load(kernel, name=f"everyday{i}") for i in range(2)]
    try:
        listed = {p.id: p for p in cgbpf.programs(kernel=kernel)}
        for p in progs:
            assert listed[p.id] == p.info()
        ids = [p.id for p in cgbpf.programs(kernel=kernel)]
        assert ids == sorted(ids)
        maps = {i.id: i for i in cgbpf.maps(kernel=kernel)}
        assert maps[m.id] == m.info() and maps[m.id].name == "everyday"
        gone = progs.pop()
        gone.close()
        assert gone.id not in {p.id for p in cgbpf.programs(kernel=kernel)}
    finally:
        for p in progs:
            p.close()
        m.close()


@pytest.mark.parametrize("what", ["programs", "maps"])
def test_a_walk_skips_what_vanishes(kernel: Kernel, what: str) -> None:
    """An object freed between its id (GET_NEXT_ID) and its fd (GET_FD_BY_ID) is passed
    over; the walk goes on to the next."""
    objs: list[Any] = [load(kernel, name=f"walk{i}") for i in range(3)] \
        if what == "programs" else [Map.create(MapType.ARRAY, key_size=4, value_size=8,
                                               max_entries=1, kernel=kernel)
                                    for _ in range(3)]
    victim = objs[1]
    by_id = Cmd.PROG_GET_FD_BY_ID if what == "programs" else Cmd.MAP_GET_FD_BY_ID

    def before(cmd: int, attr: Any) -> None:
        if cmd == by_id and attr.start_id == victim.id:
            victim.close()  # its last reference: freed now

    walk = cgbpf.programs if what == "programs" else cgbpf.maps
    try:
        ids = [i.id for i in walk(kernel=Racing(kernel, before))]  # type: ignore[arg-type]
        assert victim.closed
        assert objs[0].id in ids and objs[2].id in ids and victim.id not in ids
    finally:
        for o in objs:
            o.close()


# --------------------------------------------------------------------------- map iteration


def next_key(kernel: Kernel, m: Map, k: int | None) -> int | str:
    """MAP_GET_NEXT_KEY as the syscall answers it: the next key, or the errno's name."""
    out = ctypes.create_string_buffer(4)
    kb = None if k is None else ctypes.create_string_buffer(key(k), 4)
    try:
        _sys.map_elem(kernel, Cmd.MAP_GET_NEXT_KEY, m.fd, kb, out)
    except OSError as e:
        return errno.errorcode[e.errno or 0]
    return int(struct.unpack("<I", out.raw)[0])


def test_get_next_key_as_the_kernel(kernel: Kernel) -> None:
    """Measured on 6.18, the same on the model: an ARRAY starts at 0 from no key and from
    any index out of range, and ends after the last; a HASH starts from the first key
    from no key and from a missing key (a walk whose key was deleted starts again)."""
    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=3,
                    kernel=kernel) as a:
        assert [next_key(kernel, a, k) for k in (None, 0, 1, 2, 3, 100, 0xFFFFFFFF)] == \
            [0, 1, 2, "ENOENT", 0, 0, 0]
    with Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=4,
                    kernel=kernel) as h:
        assert (next_key(kernel, h, None), next_key(kernel, h, 5)) == ("ENOENT", "ENOENT")
        h.update(key(7), bytes(8))
        assert [next_key(kernel, h, k) for k in (None, 7, 5)] == [7, "ENOENT", 7]
        for i in (1, 2, 3):
            h.update(key(i), bytes(8))
        first = next_key(kernel, h, None)
        walk = [first]
        while isinstance(walk[-1], int):
            walk.append(next_key(kernel, h, walk[-1]))
        assert sorted(walk[:-1]) == [1, 2, 3, 7] and walk[-1] == "ENOENT"  # type: ignore
        assert next_key(kernel, h, 5) == first  # from a missing key: the first again


def test_iterate_an_array(kernel: Kernel) -> None:
    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=4,
                    kernel=kernel) as m:
        m.update(key(2), struct.pack("<Q", 42))
        assert list(m.keys()) == list(m) == [key(i) for i in range(4)]
        assert dict(m.items()) == {key(i): struct.pack("<Q", 42 if i == 2 else 0)
                                   for i in range(4)}


def test_iterate_a_hash(kernel: Kernel) -> None:
    with Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=16,
                    kernel=kernel) as m:
        assert list(m) == [] and list(m.items()) == []
        want = {key(i): struct.pack("<Q", i * 10) for i in range(10)}
        for k, v in want.items():
            m.update(k, v)
        got = list(m.keys())
        assert sorted(got) == sorted(want) and len(got) == len(set(got))
        assert dict(m.items()) == want and list(m) == got


def test_delete_while_iterating(kernel: Kernel) -> None:
    """Deleting the key just given: the kernel starts the walk again from the first key,
    and no key comes twice; a key deleted before its lookup is skipped by items()."""
    with Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=16,
                    kernel=kernel) as m:
        keys = {key(i) for i in range(8)}
        for k in keys:
            m.update(k, bytes(8))
        seen = []
        for k in m:
            seen.append(k)
            m.delete(k)
        assert sorted(seen) == sorted(keys) and list(m) == []
        for k in keys:
            m.update(k, bytes(8))
        seen = []
        for i, k in enumerate(m):  # every other key deleted as it comes
            seen.append(k)
            if i % 2 == 0:
                m.delete(k)
        assert sorted(seen) == sorted(keys) and len(list(m)) == 4


def test_items_skips_a_key_deleted_before_its_lookup(kernel: Kernel) -> None:
    with Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=4,
                    kernel=kernel) as m:
        for i in range(3):
            m.update(key(i), struct.pack("<Q", i))
        victim = next(iter(m))
        other = Map.from_id(m.id, kernel=kernel)

        def before(cmd: int, attr: Any) -> None:
            if cmd == Cmd.MAP_LOOKUP_ELEM and ctypes.string_at(attr.key, 4) == victim:
                other.delete(victim)

        racing = Map.from_id(m.id, kernel=Racing(kernel, before))  # type: ignore[arg-type]
        try:
            items = dict(racing.items())
            assert victim not in items and len(items) == 2
            assert items == {k: v for k, v in m.items()}
        finally:
            racing.close()
            other.close()


# --------------------------------------------------------------------------- unpin


def poll(cond: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.mark.parametrize("what", ["program", "map"])
def test_unpin_programs_and_maps(kernel: Kernel, scratch: Scratch, what: str) -> None:
    fs = scratch.bpffs()
    path, other = os.path.join(fs, "obj"), os.path.join(fs, "other")
    cls: type[Program] | type[Map] = Program if what == "program" else Map
    walk = cgbpf.programs if what == "program" else cgbpf.maps
    obj = load(kernel) if what == "program" else \
        Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, kernel=kernel)
    with obj:
        raises(errno.ENOENT, obj.unpin)  # no pin known to this object
        obj.pin(path)
        obj.pin(other)
        assert obj.pins == [path, other]
        obj.unpin()  # the last one made
        assert obj.pins == [path]
        raises(errno.ENOENT, lambda: cls.from_pin(other, kernel=kernel))
        e = raises(errno.ENOENT, lambda: obj.unpin(other))
        assert isinstance(e, FileNotFoundError) and other in str(e)
        obj_id = obj.id
    assert obj_id in {i.id for i in walk(kernel=kernel)}  # the pin holds it
    with cls.from_pin(path, kernel=kernel) as again:
        assert again.pins == [path] and again.id == obj_id
        again.unpin()
        assert again.pins == []
    poll(lambda: obj_id not in {i.id for i in walk(kernel=kernel)},
         f"the {what} is freed once its last pin and fd are gone")


def test_program_info_beyond_id_type_tag_name(kernel: Kernel) -> None:
    """Load time, uid, map ids, instruction counts, jited, run statistics (0 unless
    kernel.bpf_stats_enabled), verified instructions."""
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1,
                    kernel=kernel) as m, Program.load(
            asm.counter_program(m), ProgType.CGROUP_SKB,
            expected_attach_type=AttachType.CGROUP_INET_EGRESS, kernel=kernel) as p:
        info = p.info()
        assert before <= info.load_time <= time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        assert (info.created_by_uid, info.map_ids, info.jited) == (os.geteuid(), (m.id,), True)
        # the model: 6.18's count (a ld_imm64 once); Debian 6.12 verifies 11 of the 11
        assert info.insns >= 11 and 1 <= info.verified_insns <= 11
        assert kernel.name == "host" or info.verified_insns == 10
        assert (info.run_cnt, info.run_time_ns) == (0, 0)  # never run (or stats off)
