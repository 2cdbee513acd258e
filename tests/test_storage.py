"""Cgroup local storage on both kernels (issue 11 item 7, the kernel's cg_storage_multi
selftest as reference): a CGROUP_STORAGE counter program on egress, real traffic, the
value read from user space by key (cgroup id, attach type); what detach and re-attach,
LINK_UPDATE, link close, two programs on one map and cgroup removal do to it.  The
model does what the 6.18 host does (measured here): a storage outlives its programs and
goes with the cgroup."""

from __future__ import annotations

import errno
import struct
import time
from typing import Any

import pytest

from cgbpf import BpfError, Map, MapType, Program, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf._traffic import send_from
from cgbpf.asm import R0, R1, R2
from cgbpf.kernel import Kernel
from cgbpf.model import ModelKernel
from cgtest import EGRESS, INGRESS


def storage_map(kernel: Kernel, key_size: int = 16) -> Map:
    return Map.create(MapType.CGROUP_STORAGE, key_size=key_size, value_size=8,
                      max_entries=0, name="cnt", kernel=kernel)


def adder(kernel: Kernel, m: Map, add: int = 1, attach_type: Any = EGRESS) -> Program:
    """``*bpf_get_local_storage(m, 0) += add; return 1``."""
    insns = [asm.ld_map_fd(R1, m), asm.mov64(R2, 0), asm.call(81), asm.mov64(R1, add),
             asm.atomic_add("dw", R0, 0, R1), asm.mov64(R0, 1), asm.exit_()]
    return Program.load(insns, ProgType.CGROUP_SKB, expected_attach_type=attach_type,
                        kernel=kernel)


def send(kernel: Kernel, path: str, n: int = 1) -> None:
    """``n`` datagrams from inside the cgroup to a receiver bound there (each one egress
    and one ingress run)."""
    assert send_from(path, n, kernel=kernel) == n


def value(m: Map, cgroup_id: int, attach_type: int = EGRESS) -> int | None:
    key = struct.pack("<Q", cgroup_id) if m.key_size == 8 else \
        struct.pack("<QII", cgroup_id, attach_type, 0)
    raw = m.lookup(key)
    return None if raw is None else struct.unpack("<Q", raw)[0]


def test_key_size_12_is_einval(kernel: Kernel) -> None:
    with pytest.raises(BpfError) as e:
        Map.create(MapType.CGROUP_STORAGE, key_size=12, value_size=8, max_entries=0,
                   kernel=kernel)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(BpfError) as e:
        Map.create(MapType.CGROUP_STORAGE, key_size=16, value_size=8, max_entries=1,
                   kernel=kernel)
    assert e.value.errno == errno.EINVAL


def test_counter_and_lifetime(kernel: Kernel, scratch: Scratch) -> None:
    """Counts per packet; survives detach and re-attach, LINK_UPDATE to another program
    on the same map and closing the link; goes when the cgroup is removed."""
    cg = scratch.cgroup("st")
    m = storage_map(kernel)
    one, ten = adder(kernel, m, 1), adder(kernel, m, 10)
    try:
        assert value(m, cg.id) is None  # nothing attached yet: no storage
        link = cg.link(one, EGRESS)
        assert value(m, cg.id) == 0  # made (zeroed) at attach
        send(kernel, cg.path, 3)
        assert value(m, cg.id) == 3
        link.close()
        assert value(m, cg.id) == 3  # detached: the storage stays
        send(kernel, cg.path)
        assert value(m, cg.id) == 3
        link = cg.link(one, EGRESS)
        send(kernel, cg.path)
        assert value(m, cg.id) == 4  # re-attached: the same storage
        link.update(ten)
        send(kernel, cg.path)
        assert value(m, cg.id) == 14  # LINK_UPDATE keeps the entry's storage
        cg.attach(one, EGRESS)  # a second program on the same map and hook
        send(kernel, cg.path)
        assert value(m, cg.id) == 25  # both add to the one storage
        cg.detach(one, EGRESS)
        link.close()
        cid = cg.id
        cg.close()
        scratch.kernel.rmdir(cg.path)
        deadline = time.monotonic() + 5
        while value(m, cid) is not None:  # the release is deferred work (§12)
            assert time.monotonic() < deadline, "storage not freed 5 s after rmdir"
            if isinstance(kernel, ModelKernel):
                kernel.settle()
            time.sleep(0.01)
    finally:
        for obj in (one, ten, m):
            obj.close()


def test_key_size_8_is_per_cgroup(kernel: Kernel, scratch: Scratch) -> None:
    """A storage keyed by cgroup id only: egress and ingress programs share it."""
    cg = scratch.cgroup("st8")
    m = storage_map(kernel, key_size=8)
    out, inn = adder(kernel, m, 1), adder(kernel, m, 100, INGRESS)
    try:
        with cg.link(out, EGRESS), cg.link(inn, INGRESS):
            send(kernel, cg.path, 2)
            assert value(m, cg.id) == 202
            with pytest.raises(BpfError) as e:
                m.update(struct.pack("<QII", cg.id, 0, 0)[:8], bytes(8), flags=1)  # NOEXIST
            assert e.value.errno == errno.EINVAL
            m.update(struct.pack("<Q", cg.id), struct.pack("<Q", 40))
            send(kernel, cg.path)
            assert value(m, cg.id) == 141
    finally:
        for obj in (out, inn, m):
            obj.close()


def test_ancestor_program_sees_its_own_cgroup_storage(kernel: Kernel,
                                                      scratch: Scratch) -> None:
    """A program attached to the parent runs for the child's packets with the parent's
    storage (the entry's cgroup, not the event's)."""
    parent, child = scratch.cgroup("up"), scratch.cgroup("up/down")
    m = storage_map(kernel)
    one = adder(kernel, m)
    try:
        with parent.link(one, EGRESS), child.link(one, EGRESS):
            send(kernel, child.path, 2)
            send(kernel, parent.path, 1)
            assert (value(m, parent.id), value(m, child.id)) == (3, 2)
    finally:
        one.close()
        m.close()


def test_percpu_storage_from_user_space(kernel: Kernel, scratch: Scratch) -> None:
    """A PERCPU_CGROUP_STORAGE value reads and writes as one copy per possible CPU, each
    rounded up to 8 bytes; the packets count on whichever CPU sent them."""
    cg = scratch.cgroup("pcpu")
    m = Map.create(MapType.PERCPU_CGROUP_STORAGE, key_size=16, value_size=4,
                   max_entries=0, name="pcpu", kernel=kernel)
    cpus = kernel.possible_cpus()
    assert m.value_len == 8 * cpus
    insns = [asm.ld_map_fd(R1, m), asm.mov64(R2, 0), asm.call(81), asm.mov64(R1, 1),
             asm.atomic_add("w", R0, 0, R1), asm.mov64(R0, 1), asm.exit_()]
    try:
        with Program.load(insns, ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
                          kernel=kernel) as p, cg.link(p, EGRESS):
            key = struct.pack("<QII", cg.id, EGRESS, 0)
            send(kernel, cg.path, 3)
            raw = m.lookup(key)
            assert raw is not None and len(raw) == 8 * cpus
            assert sum(struct.unpack_from("<I", raw, 8 * i)[0] for i in range(cpus)) == 3
            m.update(key, bytes(8 * cpus), flags=2)  # EXIST
            assert m.lookup(key) == bytes(8 * cpus)
            with pytest.raises(BpfError) as e:
                m.update(key, bytes(4))
            assert e.value.errno == errno.EINVAL and "per possible CPU" in str(e.value)
    finally:
        m.close()
