"""PERCPU_ARRAY, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH on both kernels (issue 11
item 4, VM-SPEC §6.3, §6.4): MAP_CREATE's checks and errnos as measured on 6.18.44, the
syscall side (a per-CPU value is every possible CPU's copy, each rounded up to 8 bytes),
programs counting real packets into per-CPU maps (one CPU's copy each), and an LRU hash
that evicts rather than fail.  Which LRU elements go is the kernel's choice (it evicts in
batches, per-CPU lists): only the newest key's presence and the bound are tested."""

from __future__ import annotations

import errno
import struct

import pytest

from cgbpf import BpfError, Map, MapType, Program, ProgType, asm, uapi
from cgbpf._scratch import Scratch
from cgbpf._traffic import send_from
from cgbpf.asm import FP, R0, R1, R2, R3, R4
from cgbpf.kernel import Kernel
from cgtest import EGRESS

T = MapType
NO_PREALLOC, NO_COMMON_LRU, NUMA, ZERO_SEED, INNER_MAP = 1, 2, 4, 64, 1 << 12
ARP = bytes(12) + b"\x08\x06" + bytes(28)
#: (type, key size, value size, max_entries, flags) -> errno (0: created)
CREATE = [
    (T.PERCPU_ARRAY, 4, 8, 1, 0, 0), (T.PERCPU_ARRAY, 8, 8, 1, 0, errno.EINVAL),
    (T.PERCPU_ARRAY, 4, 0, 1, 0, errno.EINVAL), (T.PERCPU_ARRAY, 4, 8, 0, 0, errno.EINVAL),
    (T.PERCPU_ARRAY, 4, 32768, 1, 0, 0), (T.PERCPU_ARRAY, 4, 32769, 1, 0, errno.E2BIG),
    (T.PERCPU_ARRAY, 4, 8, 1, NUMA, errno.EINVAL),
    (T.PERCPU_ARRAY, 4, 8, 1, uapi.F_MMAPABLE, errno.EINVAL),
    (T.PERCPU_ARRAY, 4, 8, 1, INNER_MAP, errno.EINVAL),
    (T.PERCPU_ARRAY, 4, 8, 1, uapi.F_RDONLY_PROG, 0),
    (T.PERCPU_HASH, 8, 8, 1, 0, 0), (T.PERCPU_HASH, 0, 8, 1, 0, errno.EINVAL),
    (T.PERCPU_HASH, 4, 8, 0, 0, errno.EINVAL), (T.PERCPU_HASH, 4, 32769, 1, 0, errno.E2BIG),
    (T.PERCPU_HASH, 4, 8, 1, NO_PREALLOC, 0), (T.PERCPU_HASH, 4, 8, 1, ZERO_SEED, 0),
    (T.PERCPU_HASH, 4, 8, 1, NO_COMMON_LRU, errno.EINVAL),
    (T.PERCPU_HASH, 4, 8, 1, NUMA, errno.EINVAL),
    (T.LRU_HASH, 4, 8, 1, 0, 0), (T.LRU_HASH, 4, 8, 0, 0, errno.EINVAL),
    (T.LRU_HASH, 4, 32769, 1, 0, 0), (T.LRU_HASH, 4, 8, 1, NO_PREALLOC, uapi.ENOTSUPP),
    (T.LRU_HASH, 4, 8, 0, NO_PREALLOC, uapi.ENOTSUPP), (T.LRU_HASH, 4, 8, 1, NUMA, 0),
    (T.LRU_HASH, 4, 8, 1, NO_COMMON_LRU, 0),
    (T.LRU_HASH, 4, 8, 1, NO_COMMON_LRU | NUMA, errno.EINVAL),
    (T.LRU_PERCPU_HASH, 4, 8, 1, 0, 0), (T.LRU_PERCPU_HASH, 4, 32769, 1, 0, errno.E2BIG),
    (T.LRU_PERCPU_HASH, 4, 8, 1, NUMA, errno.EINVAL),
    (T.LRU_PERCPU_HASH, 4, 8, 1, NO_PREALLOC | NUMA, uapi.ENOTSUPP),
]


def u32(i: int) -> bytes:
    return struct.pack("<I", i)


def copies(m: Map, kernel: Kernel, value: bytes | None) -> list[int]:
    """The u64 copies of a per-CPU value, one per possible CPU."""
    assert value is not None and len(value) == 8 * kernel.possible_cpus() == m.value_len
    return list(struct.unpack(f"<{kernel.possible_cpus()}Q", value))


@pytest.mark.parametrize(("t", "key", "value", "n", "flags", "err"), CREATE)
def test_create_checks(kernel: Kernel, t: MapType, key: int, value: int, n: int, flags: int,
                       err: int) -> None:
    if not err:
        Map.create(t, key_size=key, value_size=value, max_entries=n, flags=flags,
                   kernel=kernel).close()
        return
    with pytest.raises(BpfError) as e:
        Map.create(t, key_size=key, value_size=value, max_entries=n, flags=flags,
                   kernel=kernel)
    assert e.value.errno == err


@pytest.mark.parametrize("t", [T.LRU_HASH, T.LRU_PERCPU_HASH])
def test_no_common_lru_rounds_max_entries(kernel: Kernel, t: MapType) -> None:
    """An LRU list per CPU, each as long: max_entries rounded up to a multiple of the
    possible CPUs."""
    cpus = kernel.possible_cpus()
    with Map.create(t, key_size=4, value_size=8, max_entries=cpus + 1, flags=NO_COMMON_LRU,
                    kernel=kernel) as m:
        assert m.info().max_entries == 2 * cpus


def test_percpu_array_from_user_space(kernel: Kernel) -> None:
    cpus = kernel.possible_cpus()
    with Map.create(T.PERCPU_ARRAY, key_size=4, value_size=4, max_entries=3,
                    kernel=kernel) as m:
        assert m.value_len == 8 * cpus  # 4 bytes, rounded up to 8, per CPU
        assert m.lookup(u32(1)) == bytes(8 * cpus)
        value = b"".join(struct.pack("<II", 10 + i, 0) for i in range(cpus))
        m.update(u32(1), value, flags=uapi.EXIST)
        assert m.lookup(u32(1)) == value
        assert m.lookup(u32(3)) is None
        for key, flags, err in ((u32(3), uapi.ANY, errno.E2BIG), (u32(1), uapi.NOEXIST,
                                errno.EEXIST), (u32(0), 3, errno.EINVAL)):
            with pytest.raises(BpfError) as e:
                m.update(key, value, flags=flags)
            assert e.value.errno == err
        with pytest.raises(BpfError) as e:
            m.delete(u32(1))
        assert e.value.errno == errno.EINVAL
        assert list(m.keys()) == [u32(0), u32(1), u32(2)]


@pytest.mark.parametrize("t", [T.PERCPU_HASH, T.LRU_PERCPU_HASH])
def test_percpu_hash_from_user_space(kernel: Kernel, t: MapType) -> None:
    cpus = kernel.possible_cpus()
    with Map.create(t, key_size=4, value_size=8, max_entries=2, kernel=kernel) as m:
        value = b"".join(struct.pack("<Q", 100 + i) for i in range(cpus))
        m.update(u32(7), value)
        assert copies(m, kernel, m.lookup(u32(7))) == [100 + i for i in range(cpus)]
        with pytest.raises(BpfError) as e:
            m.update(u32(7), value, flags=uapi.NOEXIST)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(BpfError) as e:
            m.update(u32(8), value, flags=uapi.EXIST)
        assert e.value.errno == errno.ENOENT
        m.update(u32(8), bytes(8 * cpus))
        assert set(m.keys()) == {u32(7), u32(8)}
        if t == T.PERCPU_HASH:
            with pytest.raises(BpfError) as e:
                m.update(u32(9), value)
            assert e.value.errno == errno.E2BIG
        m.delete(u32(7))
        assert m.lookup(u32(7)) is None
        with pytest.raises(BpfError) as e:
            m.delete(u32(7))
        assert e.value.errno == errno.ENOENT


@pytest.mark.parametrize("t", [T.LRU_HASH, T.LRU_PERCPU_HASH])
@pytest.mark.parametrize("n", [2, 16])
def test_lru_evicts_when_full(kernel: Kernel, t: MapType, n: int) -> None:
    """Filled past max_entries, every insert succeeds: the map never holds more than
    max_entries and the newest key is there with its value.  NOEXIST of a present key is
    EEXIST while the map has room (once it is full, the kernel takes a node for the new
    element first, which may evict that very key: seen on Debian 6.1 with one CPU)."""
    with Map.create(t, key_size=4, value_size=8, max_entries=n, kernel=kernel) as m:
        value = bytes(m.value_len)
        m.update(u32(0), value)
        with pytest.raises(BpfError) as e:
            m.update(u32(0), value, flags=uapi.NOEXIST)
        assert e.value.errno == errno.EEXIST
        for i in range(3 * n):
            value = struct.pack("<Q", i) * (m.value_len // 8)
            m.update(u32(i), value)
            assert m.lookup(u32(i)) == value
            assert len(list(m.keys())) <= n
        with pytest.raises(BpfError) as e:
            m.update(u32(1), 3 * value, flags=uapi.ANY)
        assert e.value.errno == errno.EINVAL  # a value of the wrong size


@pytest.mark.parametrize("t", [T.PERCPU_ARRAY, T.PERCPU_HASH, T.LRU_PERCPU_HASH])
def test_program_counts_per_cpu(kernel: Kernel, scratch: Scratch, t: MapType) -> None:
    """``map_lookup_elem`` + atomic add on egress: each packet counts on the CPU that
    sent it, and the copies add up to the packets."""
    cg = scratch.cgroup("pcpu")
    with Map.create(t, key_size=4, value_size=8, max_entries=4, kernel=kernel) as m:
        if t != T.PERCPU_ARRAY:
            m.update(u32(0), bytes(m.value_len))  # the program only counts into it
        with Program.load(asm.counter_program(m), ProgType.CGROUP_SKB,
                          expected_attach_type=EGRESS, kernel=kernel) as p, \
                cg.link(p, EGRESS):
            assert send_from(cg.path, 5, kernel=kernel) == 5
        assert sum(copies(m, kernel, m.lookup(u32(0)))) == 5


@pytest.mark.parametrize("t", [T.PERCPU_ARRAY, T.PERCPU_HASH])
def test_program_update_writes_one_cpu(kernel: Kernel, t: MapType) -> None:
    """``map_update_elem`` from a program writes the running CPU's copy: the others keep
    theirs (PERCPU_ARRAY) or are zero (a new PERCPU_HASH element)."""
    with Map.create(t, key_size=4, value_size=8, max_entries=1, kernel=kernel) as m:
        old = 7 if t == T.PERCPU_ARRAY else 0
        if old:
            m.update(u32(0), struct.pack("<Q", old) * kernel.possible_cpus())
        insns = [asm.st("w", FP, -4, 0), asm.st("dw", FP, -16, 5), asm.ld_map_fd(R1, m),
                 asm.mov64(R2, FP), asm.add64(R2, -4), asm.mov64(R3, FP), asm.add64(R3, -16),
                 asm.mov64(R4, 0), asm.call(2), asm.mov64(R0, 1), asm.exit_()]
        with Program.load(insns, ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
                          kernel=kernel) as p:
            assert p.test_run(ARP).retval == 1
        got = copies(m, kernel, m.lookup(u32(0)))
        assert sorted(got) == sorted([5] + [old] * (len(got) - 1))
