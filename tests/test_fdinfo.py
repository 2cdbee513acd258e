"""``/proc/self/fdinfo`` of program, map and link fds (§13): the same keys in the same
order on the host and the model, and values that agree with the object's info and, for
the derived ones (memlock, verified_insns, prog_jited), with the host where its build
has the model's struct sizes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

import cgbpf
from cgbpf import AttachType, Link, Map, MapType, Program, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgbpf.map import PERCPU
from cgbpf.model import process
from cgtest import EGRESS, need_host

HEAD = ["pos", "flags", "mnt_id", "ino"]
KEYS = {
    "prog": [*HEAD, "prog_type", "prog_jited", "prog_tag", "memlock", "prog_id",
             "run_time_ns", "run_cnt", "recursion_misses", "verified_insns"],
    "map": [*HEAD, "map_type", "key_size", "value_size", "max_entries", "map_flags",
            "map_extra", "memlock", "map_id", "frozen"],
    "link": [*HEAD, "link_type", "link_id", "prog_tag", "prog_id", "cgroup_id", "attach_type"],
}
#: Values that name the object (ids) or the machine (the anon-inode mount and inode).
OWN = {"mnt_id", "ino", "prog_id", "map_id", "link_id", "cgroup_id"}
#: (type, key size, value size, max entries): hash sizes around the bucket rounding, and
#: the per-CPU and LRU types.
MAPS = [(MapType.ARRAY, 4, 8, 1), (MapType.ARRAY, 4, 12, 10), (MapType.ARRAY, 4, 100, 1000),
        (MapType.HASH, 4, 8, 1), (MapType.HASH, 4, 8, 16), (MapType.HASH, 4, 8, 17),
        (MapType.HASH, 12, 20, 100), (MapType.PERCPU_ARRAY, 4, 12, 10),
        (MapType.PERCPU_HASH, 4, 8, 17), (MapType.LRU_HASH, 12, 20, 100),
        (MapType.LRU_PERCPU_HASH, 4, 12, 10)]
HASHES = {MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH}
CONNECT4 = AttachType.CGROUP_INET4_CONNECT


def map_memlock(kernel: Kernel, t: MapType, key: int, value: int, n: int) -> int:
    """6.18's ``map_mem_usage`` (array_map_mem_usage, htab_map_mem_usage, prealloc): a
    per-CPU element has a pointer to a rounded-up value per CPU; only a plain HASH has
    extra elements."""
    value, cpus = -(-value // 8) * 8, kernel.possible_cpus()
    if t == MapType.ARRAY:
        return 312 + n * value
    if t == MapType.PERCPU_ARRAY:
        return 312 + n * (8 + value * cpus)
    head = 896 + 16 * (1 << (n - 1).bit_length()) + 32 * cpus
    elem = 48 + -(-key // 8) * 8
    if t in (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH):
        return head + (elem + 8 + value * cpus) * n
    if t == MapType.LRU_HASH:
        return head + (elem + value) * n
    return head + (elem + value) * (n + cpus) + 8 * cpus


@dataclass
class Objects:
    """Maps, programs and a link, made the same way on either kernel."""

    maps: list[Map]
    progs: list[Program]
    link: Link
    cgroup: cgbpf.Cgroup


#: Programs: straight-line code, a branch the verifier prunes (with a ld_imm64), and
#: 600 instructions (two pages).
def programs(counter: Map) -> list[tuple[list[asm.Item], ProgType, AttachType]]:
    long = [asm.mov64(asm.R0, 1)] * 599 + [asm.exit_()]
    return [(asm.return_program(1), ProgType.CGROUP_SKB, EGRESS),
            (asm.counter_program(counter), ProgType.CGROUP_SKB, EGRESS),
            (long, ProgType.CGROUP_SOCK_ADDR, CONNECT4)]


@pytest.fixture
def objects(kernel: Kernel, scratch: Scratch) -> Iterator[Objects]:
    with ExitStack() as stack:
        yield make_objects(kernel, scratch, stack)


def make_objects(kernel: Kernel, scratch: Scratch, stack: ExitStack) -> Objects:
    maps = [stack.enter_context(Map.create(t, key_size=k, value_size=v, max_entries=n,
                                           kernel=kernel)) for t, k, v, n in MAPS]
    progs = [stack.enter_context(Program.load(insns, t, expected_attach_type=at,
                                              name=f"fdinfo{i}", kernel=kernel))
             for i, (insns, t, at) in enumerate(programs(maps[0]))]
    cg = scratch.cgroup("a")
    link = stack.enter_context(cg.link(progs[1]))
    return Objects(maps, progs, link, cg)


def fdinfo(kernel: Kernel, obj: Map | Program | Link) -> dict[str, str]:
    return kernel.fdinfo(obj.fileno())


def test_keys_and_order(kernel: Kernel, objects: Objects) -> None:
    for kind, objs in (("map", objects.maps), ("prog", objects.progs),
                       ("link", [objects.link])):
        for obj in objs:
            assert list(fdinfo(kernel, obj)) == KEYS[kind], (kind, obj)


def test_prog_values(kernel: Kernel, objects: Objects) -> None:
    """prog_type, prog_tag and prog_id as in the info; JIT on; memlock whole pages that
    hold ``struct bpf_prog`` and 8 bytes per instruction; verified_insns at least 1 and
    at most the instructions loaded.  The exact numbers are the build's (struct sizes,
    verifier pruning): the model gives mainline 6.18's, as measured on the reference host
    (a ld_imm64 verified once, the pruned branch not at all), asserted here on the model
    and compared with the host by :func:`test_host_and_model_agree`."""
    exact = [("4096", "2"), ("4096", "10"), ("8192", "600")]
    for prog, (memlock, verified), (insns, _, _) in zip(
            objects.progs, exact, programs(objects.maps[0]), strict=True):
        info, fi = prog.info(), fdinfo(kernel, prog)
        assert (fi["prog_type"], fi["prog_tag"], fi["prog_id"]) == (
            str(int(info.type)), info.tag, str(info.id))
        assert (fi["pos"], fi["flags"], fi["prog_jited"]) == ("0", "02000002", "1")
        loaded = len(asm.assemble(insns)) // 8
        assert int(fi["memlock"]) % 4096 == 0 and int(fi["memlock"]) >= 8 * loaded, prog
        assert 1 <= int(fi["verified_insns"]) <= loaded, prog
        if kernel.name == "model":
            assert (fi["memlock"], fi["verified_insns"]) == (memlock, verified), prog
        assert (fi["run_time_ns"], fi["run_cnt"], fi["recursion_misses"]) == ("0", "0", "0")


def test_map_values(kernel: Kernel, objects: Objects) -> None:
    """The info's values; memlock grows with the entries and the value size; the exact
    numbers (the model: mainline 6.18's
    ``map_mem_usage`` on the reference host) are compared by
    :func:`test_host_and_model_agree`."""
    memlock: dict[tuple[MapType, int, int, int], int] = {}
    for m, (t, key, value, n) in zip(objects.maps, MAPS, strict=True):
        info, fi = m.info(), fdinfo(kernel, m)
        assert (fi["map_type"], fi["key_size"], fi["value_size"], fi["max_entries"],
                fi["map_id"]) == tuple(str(int(x)) for x in (
                    info.type, info.key_size, info.value_size, info.max_entries, info.id))
        assert (fi["pos"], fi["flags"], fi["map_flags"], fi["map_extra"], fi["frozen"]) == (
            "0", "02000002", "0x0", "0x0", "0")
        memlock[t, key, value, n] = int(fi["memlock"])
        if kernel.name == "model":
            assert memlock[t, key, value, n] == map_memlock(kernel, t, key, value, n)
    # Debian 6.1 counts whole pages (no map_mem_usage before 6.4): differences of less
    # than a page may vanish there, a hundred kB may not
    a, h = MapType.ARRAY, MapType.HASH
    assert memlock[a, 4, 8, 1] <= memlock[a, 4, 12, 10] < memlock[a, 4, 100, 1000]
    assert memlock[a, 4, 100, 1000] - memlock[a, 4, 8, 1] >= 1000 * 104 - 4096
    assert memlock[h, 4, 8, 1] <= memlock[h, 4, 8, 16] <= memlock[h, 4, 8, 17] <= \
        memlock[h, 12, 20, 100]  # one page each on Debian 6.1


def test_link_values(kernel: Kernel, objects: Objects) -> None:
    link, prog = objects.link, objects.progs[1]
    info, fi = link.info(), fdinfo(kernel, link)
    assert (fi["link_type"], fi["link_id"], fi["prog_id"], fi["prog_tag"], fi["cgroup_id"],
            fi["attach_type"]) == ("cgroup", str(info.id), str(prog.id), prog.info().tag,
                                   str(objects.cgroup.id), str(int(EGRESS)))
    assert (fi["pos"], fi["flags"]) == ("0", "02000000")  # O_CLOEXEC only
    link.update(objects.progs[0])
    fi = fdinfo(kernel, link)
    assert (fi["prog_id"], fi["prog_tag"]) == (str(objects.progs[0].id),
                                               objects.progs[0].info().tag)
    link.detach()
    assert fdinfo(kernel, link)["cgroup_id"] == "0" == str(link.info().cgroup_id)


def test_one_anon_inode(kernel: Kernel, objects: Objects) -> None:
    """Every bpf fd is on the same anon-inode mount and has the same inode (one shared
    anonymous inode); on the host it is the inode fstat reports, an eventfd's too."""
    objs: list[Map | Program | Link] = [*objects.maps, *objects.progs, objects.link]
    heads = {(fdinfo(kernel, o)["mnt_id"], fdinfo(kernel, o)["ino"]) for o in objs}
    assert len(heads) == 1
    if kernel.name == "host":
        ((mnt_id, ino),) = heads
        assert {os.fstat(o.fileno()).st_ino for o in objs} == {int(ino)}
        efd = os.eventfd(0)
        try:
            assert (kernel.fdinfo(efd)["mnt_id"], os.fstat(efd).st_ino) == (mnt_id, int(ino))
        finally:
            os.close(efd)


def test_host_and_model_agree() -> None:
    """The same objects on both kernels: identical keys in identical order, and identical
    values except the ids and the anon-inode mount and inode (and the memlock of a hash
    or per-CPU map when the host has another number of possible CPUs than the model's).  memlock and
    verified_insns are the build's numbers (struct sizes, verifier pruning): they are
    compared where the host's struct sizes are the model's, as told by the simplest
    objects (an ARRAY map of one entry, a two-instruction program); elsewhere (Debian
    6.12: 264 bytes of ``struct bpf_array`` where the reference 6.18 has 312) the
    invariants of :func:`test_prog_values` and :func:`test_map_values` hold instead."""
    host, model = need_host(), cgbpf.model("host")
    same_cpus = host.possible_cpus() == process.POSSIBLE_CPUS
    with ExitStack() as stack:
        a, b = (make_objects(k, stack.enter_context(Scratch(k, "cgbpf-test")), stack)
                for k in (host, model))
        same_build = all(fdinfo(host, x)[key] == fdinfo(model, y)[key] for x, y, key in (
            (a.maps[0], b.maps[0], "memlock"), (a.progs[1], b.progs[1], "verified_insns")))
        derived = set() if same_build else {"memlock", "verified_insns"}
        pairs: list[tuple[Map | Program | Link, Map | Program | Link]] = [
            *zip(a.maps, b.maps, strict=True), *zip(a.progs, b.progs, strict=True),
            (a.link, b.link)]
        # a hash map's fixed part is the build's too (this 6.18.44 build counts 32 bytes
        # per CPU less than the reference's: no HASHTAB_MAP_LOCK_COUNT counters): where it
        # differs, what each entry and bucket adds is compared instead
        hashes = [i for i, m in enumerate(MAPS) if m[0] in HASHES]
        head = [int(fdinfo(k, objs.maps[hashes[0]])["memlock"]) for k, objs in
                ((host, a), (model, b))]
        same_htab = same_cpus and head[0] == head[1]
        if same_cpus and not same_htab and "memlock" not in derived:
            assert [int(fdinfo(host, a.maps[i])["memlock"]) - head[0] for i in hashes] == \
                [int(fdinfo(model, b.maps[i])["memlock"]) - head[1] for i in hashes]
        for x, y in pairs:
            fx, fy = fdinfo(host, x), fdinfo(model, y)
            assert list(fx) == list(fy), (x, y)
            cpu_sized = {str(int(t)) for t in (HASHES if same_cpus else HASHES | PERCPU)}
            skip = OWN | derived | (
                set() if same_htab or fx.get("map_type") not in cpu_sized else {"memlock"})
            assert {k: v for k, v in fx.items() if k not in skip} == \
                {k: v for k, v in fy.items() if k not in skip}, (x, y)
