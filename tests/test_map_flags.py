"""Map flags, BTF-typed maps, MAP_FREEZE and global data, on the host and the model: the
MAP_CREATE errnos of flag and BTF combinations, the syscall-side effect of RDONLY/WRONLY
and of freezing, the program-side effect of RDONLY_PROG/WRONLY_PROG on direct map
value access (PSEUDO_MAP_VALUE), and (host) a program that reads a frozen
RDONLY_PROG|MMAPABLE value and counts it into another map for real traffic."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable

import pytest

from cgbpf import BpfError, Map, MapType, Program, ProgType, VerifierError, _sys, asm, uapi
from cgbpf._scratch import Scratch
from cgbpf.btf.handle import Handle
from cgbpf.kernel import Kernel
from cgbpf.map import MapOptions
from cgbpf.testing import send_from
from cgbpf.uapi import btf_type, raw_btf
from cgtest import EGRESS

E, ARRAY, HASH = errno, MapType.ARRAY, MapType.HASH
RDONLY, WRONLY = uapi.F_RDONLY, uapi.F_WRONLY
RDONLY_PROG, WRONLY_PROG, MMAPABLE = uapi.F_RDONLY_PROG, uapi.F_WRONLY_PROG, uapi.F_MMAPABLE
KEY0 = bytes(4)

#: [1] int, [2] long, [3] int *, [4] int (void), [5] FUNC main, [6] VAR x, [7] DATASEC
#: .bss {x}, [8] FWD fw
TYPES = raw_btf(
    btf_type(1, 1, 0, 4, 1 << 24 | 32) + btf_type(5, 1, 0, 8, 1 << 24 | 64)
    + btf_type(0, 2, 0, 1) + btf_type(0, 13, 0, 1) + btf_type(10, 12, 0, 4)
    + btf_type(15, 14, 0, 1, 1) + btf_type(17, 15, 1, 4, 6, 0, 4) + btf_type(22, 7, 0, 0),
    b"\0int\0long\0main\0x\0.bss\0fw\0")

#: name -> (type, value size, flags, (key type id, value type id) or None, errno);
#: measured on 6.18 (type ids of TYPES).
CREATES: dict[str, tuple[MapType, int, int, tuple[int, int] | None, int]] = {
    "plain": (ARRAY, 4, 0, None, 0),
    "RDONLY": (ARRAY, 4, RDONLY, None, 0), "WRONLY": (ARRAY, 4, WRONLY, None, 0),
    "RDONLY|WRONLY": (ARRAY, 4, RDONLY | WRONLY, None, E.EINVAL),
    "RDONLY_PROG": (ARRAY, 4, RDONLY_PROG, None, 0),
    "WRONLY_PROG": (ARRAY, 4, WRONLY_PROG, None, 0),
    "RDONLY_PROG|WRONLY_PROG": (ARRAY, 4, RDONLY_PROG | WRONLY_PROG, None, E.EINVAL),
    "MMAPABLE": (ARRAY, 4, MMAPABLE, None, 0),
    "rodata": (ARRAY, 4, RDONLY_PROG | MMAPABLE, None, 0),
    "hash MMAPABLE": (HASH, 4, MMAPABLE, None, E.EINVAL),
    "hash RDONLY_PROG": (HASH, 4, RDONLY_PROG, None, 0),
    "array NO_PREALLOC": (ARRAY, 4, 1 << 0, None, E.EINVAL),
    "hash NO_PREALLOC": (HASH, 4, 1 << 0, None, 0),
    "NO_COMMON_LRU": (HASH, 4, 1 << 1, None, E.EINVAL),
    "NUMA_NODE": (ARRAY, 4, 1 << 2, None, 0),
    "array ZERO_SEED": (ARRAY, 4, 1 << 6, None, E.EINVAL),
    "hash ZERO_SEED": (HASH, 4, 1 << 6, None, 0),
    "PRESERVE_ELEMS": (ARRAY, 4, 1 << 11, None, E.EINVAL),
    "array INNER_MAP": (ARRAY, 4, 1 << 12, None, 0),
    "hash INNER_MAP": (HASH, 4, 1 << 12, None, E.EINVAL),
    "bit 9": (ARRAY, 4, 1 << 9, None, E.EINVAL),
    "btf int/int": (ARRAY, 4, 0, (1, 1), 0),
    "btf hash int/int": (HASH, 4, 0, (1, 1), 0),
    "btf value long, size 4": (ARRAY, 4, 0, (1, 2), E.EINVAL),
    "btf value long, size 8": (ARRAY, 8, 0, (1, 2), 0),
    "btf key long": (ARRAY, 4, 0, (2, 1), E.EINVAL),
    "btf no key": (ARRAY, 4, 0, (0, 1), E.EINVAL),
    "btf no value": (ARRAY, 4, 0, (1, 0), E.EINVAL),
    "btf hash no key": (HASH, 4, 0, (0, 1), E.EINVAL),
    "btf global data": (ARRAY, 4, 0, (0, 7), 0),
    "btf value var": (ARRAY, 4, 0, (1, 6), 0),
    "btf value pointer": (ARRAY, 8, 0, (1, 3), 0),
    "btf value func": (ARRAY, 4, 0, (1, 5), E.EINVAL),
    "btf value func_proto": (ARRAY, 4, 0, (1, 4), E.EINVAL),
    "btf value fwd": (ARRAY, 4, 0, (1, 8), E.EINVAL),
    "btf value out of range": (ARRAY, 4, 0, (1, 99), E.EINVAL),
}


@pytest.mark.parametrize("case", list(CREATES))
def test_create(kernel: Kernel, case: str) -> None:
    map_type, value_size, flags, ids, want = CREATES[case]
    with Handle.load(TYPES, kernel=kernel) as types:
        options = MapOptions(btf=types, btf_key_type_id=ids[0], btf_value_type_id=ids[1]) \
            if ids else None
        try:
            m = Map.create(map_type, key_size=4, value_size=value_size, max_entries=1,
                           flags=flags, name="flags", options=options, kernel=kernel)
        except BpfError as e:
            assert e.errno == want and e.command == "MAP_CREATE"
            return
        with m:
            assert want == 0
            info = m.info()
            # RDONLY/WRONLY are the fd's access mode, not kept in the map's flags
            assert info.flags == flags & ~(RDONLY | WRONLY)
            assert kernel.fdinfo(m.fd)["map_flags"] == hex(info.flags)
            if ids:
                assert (info.btf_id, info.btf_key_type_id, info.btf_value_type_id) == (
                    types.id, *ids)
            else:
                assert info.btf_id == 0


def test_create_fields(kernel: Kernel) -> None:
    """The BTF fd, map_extra and vmlinux value types as the kernel takes them."""
    def create(**fields: int) -> int:
        attr = uapi.MapCreateAttr(map_type=ARRAY, key_size=4, value_size=4, max_entries=1)
        for name, value in fields.items():
            setattr(attr, name, value)
        try:
            kernel.close(kernel.bpf(uapi.Cmd.MAP_CREATE, attr))
        except OSError as e:
            return e.errno or 0
        return 0

    with Handle.load(TYPES, kernel=kernel) as types, Map.create(
            ARRAY, key_size=4, value_size=4, max_entries=1, kernel=kernel) as other:
        assert create(btf_fd=types.fd) == 0  # no type ids: the fd is not looked at
        assert create(btf_fd=0xFFFF, btf_key_type_id=1, btf_value_type_id=1) == E.EBADF
        assert create(btf_fd=other.fd, btf_key_type_id=1, btf_value_type_id=1) == E.EINVAL
        assert create(btf_fd=types.fd, btf_key_type_id=1, btf_value_type_id=1,
                      btf_vmlinux_value_type_id=1) == E.EINVAL  # STRUCT_OPS only
        assert create(map_extra=1) == E.EINVAL  # bloom filters only
        assert create(inner_map_fd=other.fd) == 0  # ignored by an ARRAY


def test_name_characters(kernel: Kernel) -> None:
    """libbpf names global data maps "OBJ.bss": letters, digits, '_' and '.'."""
    for name in ("smoke.bss", "a_b.rodata", "x" * 15):
        Map.create(ARRAY, key_size=4, value_size=4, max_entries=1, name=name,
                   kernel=kernel).close()
    for name in ("a-b", "a b"):
        with pytest.raises(BpfError) as e:
            Map.create(ARRAY, key_size=4, value_size=4, max_entries=1, name=name,
                       kernel=kernel)
        assert e.value.errno == E.EINVAL


def outcome(fn: Callable[[], object]) -> str:
    try:
        fn()
    except BpfError as e:
        return errno.errorcode[e.errno or 0]
    return "ok"


def ops(m: Map) -> dict[str, str]:
    """What the syscall side may do with ``m``: update, lookup, next key, delete."""
    return {"update": outcome(lambda: m.update(KEY0, bytes(m.value_size))),
            "lookup": outcome(lambda: m.lookup(KEY0)),
            "keys": outcome(lambda: list(m.keys())),
            "delete": outcome(lambda: m.delete(KEY0))}


def test_syscall_access(kernel: Kernel) -> None:
    """RDONLY and WRONLY make the new fd read- or write-only (EPERM for the other side);
    an fd opened by id has full access again.  The program-side flags change nothing
    here."""
    def hash_map(flags: int) -> Map:
        return Map.create(HASH, key_size=4, value_size=4, max_entries=2, flags=flags,
                          kernel=kernel)

    with hash_map(RDONLY) as ro, hash_map(WRONLY) as wo, hash_map(RDONLY_PROG) as rp:
        assert ops(ro) == {"update": "EPERM", "lookup": "ok", "keys": "ok", "delete": "EPERM"}
        assert ops(wo) == {"update": "ok", "lookup": "EPERM", "keys": "EPERM", "delete": "ok"}
        assert ops(rp) == {"update": "ok", "lookup": "ok", "keys": "ok", "delete": "ok"}
        assert kernel.fdinfo(ro.fd)["flags"] == "02000000"  # O_RDONLY
        assert kernel.fdinfo(wo.fd)["flags"] == "02000001"  # O_WRONLY
        with Map.from_id(ro.id, kernel=kernel) as again:
            assert ops(again)["update"] == "ok"


def test_freeze(kernel: Kernel) -> None:
    """MAP_FREEZE (5.2): syscall-side writes are EPERM from then on, through every fd;
    a second freeze is EPERM too (a frozen map's fds cannot write); a read-only fd cannot
    freeze; the program side is unchanged; fdinfo says frozen."""
    with Map.create(HASH, key_size=4, value_size=4, max_entries=2, kernel=kernel) as m:
        m.update(KEY0, b"abcd")
        assert kernel.fdinfo(m.fd)["frozen"] == "0"
        m.freeze()
        assert kernel.fdinfo(m.fd)["frozen"] == "1"
        assert ops(m) == {"update": "EPERM", "lookup": "ok", "keys": "ok", "delete": "EPERM"}
        assert m.lookup(KEY0) == b"abcd"
        with pytest.raises(BpfError) as e:
            m.freeze()
        # EPERM on 6.12 and 6.18 (a frozen map's fds lost write access), EBUSY (already
        # frozen) on Debian 6.1; the model: 6.18
        again_errno = (E.EPERM, E.EBUSY) if kernel.name == "host" else (E.EPERM,)
        assert (e.value.errno in again_errno, e.value.command) == (True, "MAP_FREEZE")
        with Map.from_id(m.id, kernel=kernel) as again:
            assert ops(again)["update"] == "EPERM"
    with Map.create(ARRAY, key_size=4, value_size=4, max_entries=1, flags=RDONLY,
                    kernel=kernel) as ro:
        try:  # EPERM on 6.12 and 6.18 (freezing needs a writable fd); Debian 6.1 freezes
            ro.freeze()
            assert kernel.name == "host" and kernel.fdinfo(ro.fd)["frozen"] == "1"
        except BpfError as e:
            assert e.errno == E.EPERM
    with pytest.raises(OSError) as os_e:
        _sys.map_freeze(kernel, 0xFFFF)
    assert os_e.value.errno == E.EBADF


def value_program(m: Map, body: list[asm.Item]) -> list[asm.Item]:
    return [asm.ld_map_value(1, m, 4), *body, asm.mov64(0, 1), asm.exit_()]


#: name -> (map type, entries, flags, program body after r1 = &value + 4, errno)
DIRECT: dict[str, tuple[MapType, int, int, list[asm.Item], int]] = {
    "address only": (ARRAY, 1, 0, [], 0),
    "store": (ARRAY, 1, 0, [asm.st("w", 1, 0, 5)], 0),
    "load": (ARRAY, 1, 0, [asm.ldx("w", 0, 1, 0)], 0),
    "load past the value": (ARRAY, 1, 0, [asm.ldx("dw", 0, 1, 0)], E.EACCES),
    "hash": (HASH, 1, 0, [], E.EINVAL),
    "two entries": (ARRAY, 2, 0, [], uapi.ENOTSUPP),
    "RDONLY_PROG load": (ARRAY, 1, RDONLY_PROG, [asm.ldx("w", 0, 1, 0)], 0),
    "RDONLY_PROG store": (ARRAY, 1, RDONLY_PROG, [asm.st("w", 1, 0, 5)], E.EACCES),
    "RDONLY_PROG atomic": (ARRAY, 1, RDONLY_PROG, [asm.mov64(2, 1),
                                                   asm.atomic_add("w", 1, 0, 2)], E.EACCES),
    "WRONLY_PROG store": (ARRAY, 1, WRONLY_PROG, [asm.st("w", 1, 0, 5)], 0),
    "WRONLY_PROG load": (ARRAY, 1, WRONLY_PROG, [asm.ldx("w", 0, 1, 0)], E.EACCES),
}


@pytest.mark.parametrize("case", list(DIRECT))
def test_direct_value_access(kernel: Kernel, case: str) -> None:
    """PSEUDO_MAP_VALUE (global data, 5.2): one-entry ARRAYs only (HASH EINVAL, more
    entries ENOTSUPP); the verifier refuses (EACCES) a store into a RDONLY_PROG value, a
    load from a WRONLY_PROG one, and an access past the value."""
    map_type, entries, flags, body, want = DIRECT[case]
    with Map.create(map_type, key_size=4, value_size=8, max_entries=entries, flags=flags,
                    kernel=kernel) as m:
        try:
            Program.load(value_program(m, body), ProgType.CGROUP_SKB,
                         expected_attach_type=EGRESS, kernel=kernel).close()
            got = 0
        except BpfError as e:
            got = e.errno or 0
            if want in (E.EACCES, E.EINVAL):
                assert isinstance(e, VerifierError) and e.log
        assert got == want


def test_global_data_effect(kernel: Kernel, scratch: Scratch) -> None:
    """A ".rodata" map (RDONLY_PROG|MMAPABLE, frozen, BTF: no key, a DATASEC value) read
    through PSEUDO_MAP_VALUE, its value added to a ".bss" counter per packet: on the host
    three datagrams from a child in the cgroup count 3 x 7."""
    rodata_btf = raw_btf(btf_type(1, 1, 0, 8, 64) + btf_type(6, 14, 0, 1, 1)
                         + btf_type(11, 15, 1, 8, 2, 0, 8), b"\0long\0step\0.rodata\0")
    with Handle.load(rodata_btf, kernel=kernel) as types, Map.create(
            ARRAY, key_size=4, value_size=8, max_entries=1, flags=RDONLY_PROG | MMAPABLE,
            name="data.rodata", options=MapOptions(btf=types, btf_value_type_id=3),
            kernel=kernel) as rodata, Map.create(
            ARRAY, key_size=4, value_size=8, max_entries=1, name="data.bss",
            kernel=kernel) as bss:
        rodata.update(KEY0, struct.pack("<Q", 7))
        rodata.freeze()
        prog = Program.load([
            asm.ld_map_value(1, rodata, 0), asm.ldx("dw", 2, 1, 0),
            asm.ld_map_value(3, bss, 0), asm.atomic_add("dw", 3, 0, 2),
            asm.mov64(0, 1), asm.exit_()], ProgType.CGROUP_SKB, expected_attach_type=EGRESS,
            name="global_data", kernel=kernel)
        assert rodata.info().btf_id == types.id
        cg = scratch.cgroup("global-data")
        with prog, cg.link(prog):
            assert send_from(cg.path, 3, kernel=kernel) == 3
            assert bss.lookup(KEY0) == struct.pack("<Q", 21)
            assert rodata.lookup(KEY0) == struct.pack("<Q", 7)
