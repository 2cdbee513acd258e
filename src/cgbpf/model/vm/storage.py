"""Cgroup local storage (VM-SPEC §6.5; issue 11 item 7): CGROUP_STORAGE and
PERCPU_CGROUP_STORAGE maps and ``bpf_get_local_storage``.

A storage map holds no elements of its own: attaching (PROG_ATTACH, LINK_CREATE) a
program that uses one gives the new entry the storage of key ``(cgroup id, attach type)``
(key_size 16) or ``cgroup id`` (key_size 8: one storage per cgroup, shared by its attach
types), made zeroed the first time and shared after that, by every program using the map
there.  The entry keeps it: LINK_UPDATE swaps the program, not the storage, as
``__cgroup_bpf_replace`` does.  ``bpf_get_local_storage`` returns the storage of the
entry being run, i.e. of the cgroup where the program is attached, not of the event's.

Lifetime, as measured on 6.18.44 (tests/test_storage.py, both kernels): a storage stays
in the map after its last program is detached (a value survives detach and re-attach,
LINK_UPDATE and closing the link) and goes when the cgroup's BPF state is released (the
cgroup removed and unheld) or with the map.  VM-SPEC §6.5 ("freed when the last such
attachment goes") describes kernels before 5.9.

From user space the storages are the map's elements, by key: lookup (a PERCPU map gives
every possible CPU's copy, each rounded up to 8 bytes), update of an existing storage
(flags ANY or EXIST; NOEXIST or others EINVAL; absent ENOENT), no delete (EINVAL), and
GET_NEXT_KEY newest first (an absent key is ENOENT).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Any

from ... import uapi
from ..memory import fail
from ..objects import Map, Value, join_copies, split_copies
from .maps import value_region
from .regions import Mem, Region

if TYPE_CHECKING:
    from ..cgroupfs import Cgroup
    from ..objects import Prog

CGROUP_STORAGE, PERCPU_CGROUP_STORAGE = uapi.MapType.CGROUP_STORAGE, \
    uapi.MapType.PERCPU_CGROUP_STORAGE
TYPES = frozenset({CGROUP_STORAGE, PERCPU_CGROUP_STORAGE})
KEY_SIZES = (8, 16)  # u64 cgroup id, or struct bpf_cgroup_storage_key (12 bytes padded)
#: The model's value-size limits (E2BIG): BPF_LOCAL_STORAGE_MAX_VALUE_SIZE is just under
#: 64 KiB, a per-CPU value is bound by PCPU_MIN_UNIT_SIZE (32 KiB).
VALUE_MAX = {CGROUP_STORAGE: 0xFFFF - 0x80, PERCPU_CGROUP_STORAGE: 32 << 10}


def check_create(a: Any) -> None:
    """``cgroup_storage_map_alloc``: key_size 8 or 16, a value, max_entries 0 (EINVAL);
    a value too large (E2BIG).  The flags were checked against the type's mask before."""
    if a.key_size not in KEY_SIZES or a.value_size == 0:
        raise fail(errno.EINVAL)
    if a.value_size > VALUE_MAX[a.map_type]:
        raise fail(errno.E2BIG)
    if a.max_entries:
        raise fail(errno.EINVAL)


class Storage:
    """One storage: a value per CPU for a PERCPU map, else one value."""

    def __init__(self, m: StorageMap, key: bytes) -> None:
        self.map, self.key = m, key
        self.values = [Value(m.value_size) for _ in range(m.ncopies)]

    def region(self, cpu: int) -> Mem:
        """The VM's view of the value a program on ``cpu`` sees (made once, kept)."""
        return value_region(self.map, self.values[cpu if self.map.ncopies > 1 else 0])


class StorageMap(Map):
    """A CGROUP_STORAGE or PERCPU_CGROUP_STORAGE map: its storages by key, newest first
    in ``order`` (the kernel's list)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storages: dict[bytes, Storage] = {}

    def key_of(self, cgroup: Cgroup, attach_type: int) -> bytes:
        if self.key_size == 8:
            return struct.pack("<Q", cgroup.ino)
        return struct.pack("<QII", cgroup.ino, attach_type, 0)

    def storage(self, cgroup: Cgroup, attach_type: int) -> Storage:
        """``bpf_cgroup_storages_alloc``: the existing storage for the key, or a new
        zeroed one that the cgroup releases (§ lifetime above)."""
        key = self.key_of(cgroup, attach_type)
        st = self.storages.get(key)
        if st is None:
            st = Storage(self, key)
            self.storages = {key: st, **self.storages}  # list_add: newest first
            cgroup.storages.append(st)
        return st

    def drop(self, st: Storage) -> None:
        """The cgroup's BPF state is released: its storages leave the map."""
        if self.storages.get(st.key) is st:
            del self.storages[st.key]

    def _get(self, key: bytes) -> Storage:
        st = self.storages.get(key)
        if st is None:
            raise fail(errno.ENOENT)
        return st

    def lookup(self, key: bytes) -> bytes:
        return join_copies(self._get(key).values, self.value_size)

    def update(self, key: bytes, value: bytes, flags: int) -> None:
        """``cgroup_storage_update_elem`` (non-PERCPU: the value; PERCPU: each CPU's,
        every copy rounded up to 8 bytes, as the lookup gives them)."""
        if flags & ~(uapi.F_LOCK | uapi.EXIST) or flags & uapi.F_LOCK:
            raise fail(errno.EINVAL)
        st = self._get(key)
        for v, copy in zip(st.values, split_copies(value, self.value_size, self.ncopies),
                           strict=True):
            v[:] = copy

    def delete(self, key: bytes) -> None:
        raise fail(errno.EINVAL)

    def next_key(self, key: bytes | None) -> bytes:
        keys = list(self.storages)
        if key is None:
            pos = 0
        elif key in self.storages:
            pos = keys.index(key) + 1
        else:
            raise fail(errno.ENOENT)
        if pos >= len(keys):
            raise fail(errno.ENOENT)
        return keys[pos]


def link(prog: Prog, cgroup: Cgroup, attach_type: int) -> dict[int, Storage]:
    """The storages a new entry of ``prog`` in ``cgroup``'s ``attach_type`` list
    carries, by storage map type (a program uses at most one map of each)."""
    return {m.type: m.storage(cgroup, attach_type) for m in prog.maps
            if isinstance(m, StorageMap)}


def regions(prog: Prog, storages: dict[int, Storage], cpu: int) -> dict[Map, Region]:
    """What ``bpf_get_local_storage(map)`` gives ``prog`` run from an entry that carries
    ``storages``: the entry's storage of the map's type, whatever map it came from
    (after LINK_UPDATE to a program with another map, the kernel's item still points to
    the old one)."""
    return {m: storages[m.type].region(cpu) for m in prog.maps
            if isinstance(m, StorageMap) and m.type in storages}
