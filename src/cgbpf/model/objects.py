"""BPF objects (programs, maps, links), their global cyclic IDs and their refcounts.

Every holder of an object (an open file, a bpffs pin, a legacy cgroup entry, a link, a
program using a map) takes a reference with :meth:`Obj.get` and drops it with
:meth:`Obj.put`.  The last ``put`` frees the object: its ID disappears and, for a link,
the link is detached.  Only a link can be freed *deferred* (§11: the last pin unlinked);
the machine runs that work later (see :mod:`cgbpf.model.machine`).

Maps implement ARRAY (u32 keys, every element exists) and HASH with the kernel's
E2BIG/ENOENT/EEXIST rules, their per-CPU variants and LRU hashes (VM-SPEC §6.3, §6.4);
map flags are kept (the access ones act in :mod:`.commands`), and a map can be frozen.
Element values are mutable (:class:`Value`): a program holding a pointer to one
(:mod:`.vm.maps`) writes the map, and a HASH update replaces the element as the kernel
does (VM-SPEC §6.2), so a stale pointer sees what the kernel's would.  BTF objects hold a
parsed BTF blob.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .. import uapi
from .memory import fail

if TYPE_CHECKING:
    from .btf import Btf
    from .cgroupfs import Cgroup

INT_MAX = 2**31 - 1
T = TypeVar("T")
ObjT = TypeVar("ObjT", bound="Obj")
Defer = Callable[[Callable[[], None]], None]


class IdSpace(Generic[T]):
    """``idr_alloc_cyclic(idr, obj, 1, INT_MAX)``: IDs are global, increasing and cyclic,
    and a freed ID is only reused after the counter wraps (§13)."""

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self._objs: dict[int, T] = {}

    def alloc(self, obj: T) -> int:
        if len(self._objs) >= INT_MAX - 1:
            raise fail(errno.ENOSPC)
        while self._next in self._objs or not 1 <= self._next < INT_MAX:
            self._next = self._next + 1 if self._next < INT_MAX else 1
        ident, self._next = self._next, self._next + 1
        self._objs[ident] = obj
        return ident

    def free(self, ident: int) -> None:
        self._objs.pop(ident, None)

    def get(self, ident: int) -> T | None:
        return self._objs.get(ident)

    def next_after(self, start: int) -> int | None:
        """The smallest live ID above ``start`` (``idr_get_next``)."""
        return min((i for i in self._objs if i > start), default=None)


class Obj:
    """A refcounted BPF object with an ID; ``kind`` is its anon-inode name (§1.3)."""

    kind: ClassVar[str]
    evict_deferred: ClassVar[bool] = False

    def __init__(self, ids: IdSpace[Any], defer: Defer) -> None:
        self.refs = 0
        self._ids = ids
        self._defer = defer
        self.id = 0

    def publish(self: ObjT) -> ObjT:
        """Give the object its ID (``bpf_*_alloc_id``)."""
        self.id = self._ids.alloc(self)
        return self

    def get(self: ObjT) -> ObjT:
        self.refs += 1
        return self

    def put(self, *, evict: bool = False) -> None:
        """Drop a reference.  The last one frees the object, as deferred kernel work if it
        comes from inode eviction and the object is a link (§11: last pin unlinked)."""
        self.refs -= 1
        if self.refs == 0:
            if evict and self.evict_deferred:
                self._defer(self.free)
            else:
                self.free()

    def free(self) -> None:
        self._ids.free(self.id)


class BtfObj(Obj):
    """A BTF object (BTF_LOAD): programs and maps that use it hold a reference."""

    kind = "btf"

    def __init__(self, ids: IdSpace[BtfObj], defer: Defer, btf: Btf) -> None:
        super().__init__(ids, defer)
        self.btf = btf


class Value(bytearray):
    """One map element's bytes (of one CPU, for a per-CPU map).  ``region`` is the VM's
    view of it (a map_value region, made on a program's first lookup and kept, so that
    pointers to the same element compare equal)."""

    __slots__ = ("region",)

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.region: object = None


M = uapi.MapType
#: Map types whose every element exists (a u32 index); of one value per possible CPU;
#: that evict the least recently used element instead of failing for lack of room.
ARRAY_TYPES = frozenset({M.ARRAY, M.PERCPU_ARRAY})
PERCPU_TYPES = frozenset({M.PERCPU_ARRAY, M.PERCPU_HASH, M.LRU_PERCPU_HASH,
                          M.PERCPU_CGROUP_STORAGE})
LRU_TYPES = frozenset({M.LRU_HASH, M.LRU_PERCPU_HASH})
F_NO_PREALLOC = 1 << 0  # a hash's elements are allocated on insert


def _stride(value_size: int, ncopies: int) -> int:
    return value_size if ncopies == 1 else -(-value_size // 8) * 8


def copies_len(value_size: int, ncopies: int) -> int:
    """The length of a syscall's value: one value, or (``ncopies`` > 1, a per-CPU map) a
    copy per possible CPU, each rounded up to 8 bytes."""
    return _stride(value_size, ncopies) * ncopies


def join_copies(copies: list[Value], value_size: int) -> bytes:
    """The syscall's value of an element's copies (zero padding between them)."""
    pad = bytes(_stride(value_size, len(copies)) - value_size)
    return b"".join(bytes(c) + pad for c in copies)


def split_copies(value: bytes, value_size: int, ncopies: int) -> list[bytes]:
    """The copies in a syscall's value (:func:`copies_len` bytes)."""
    step = _stride(value_size, ncopies)
    return [value[i * step:i * step + value_size] for i in range(ncopies)]


class Map(Obj):
    """An ARRAY, HASH, their PERCPU variants or an LRU hash; ``data`` holds the elements
    that exist (keys as bytes; an element is one :class:`Value` per copy: ``ncopies``, a
    per-CPU map's possible CPUs, else 1; an ARRAY element is made, zeroed, on first
    touch); ``btf`` (with the key and value type ids) describes them; ``frozen`` after
    MAP_FREEZE.  A HASH keeps the kernel's per-CPU spare element and LIFO free list
    (``htab_map_update_elem``): updating a present key fills the spare and swaps it with
    the old element, a new key takes the last freed element; a per-CPU hash updates in
    place.  An LRU map keeps ``data`` oldest first: a program's lookup or an update makes
    the element the newest, an insert into a full map evicts the oldest."""

    kind = "map"

    def __init__(self, ids: IdSpace[Map], defer: Defer, *,
                 map_type: int, key_size: int, value_size: int, max_entries: int,
                 flags: int, name: bytes, btf: BtfObj | None = None,
                 btf_key_type_id: int = 0, btf_value_type_id: int = 0,
                 ncopies: int = 1) -> None:
        super().__init__(ids, defer)
        self.type, self.key_size, self.value_size = map_type, key_size, value_size
        self.max_entries, self.flags, self.name = max_entries, flags, name
        self.btf = btf.get() if btf is not None else None
        self.btf_key_type_id, self.btf_value_type_id = btf_key_type_id, btf_value_type_id
        self.ncopies = ncopies
        self.frozen = False
        self.is_array = map_type in ARRAY_TYPES
        self.is_lru = map_type in LRU_TYPES
        self.data: dict[bytes, list[Value]] = {}
        self._spare: list[Value] | None = None
        self._free: list[list[Value]] = []

    def free(self) -> None:
        super().free()
        if self.btf is not None:
            self.btf.put()

    @property
    def value_len(self) -> int:
        """What a MAP_LOOKUP_ELEM/UPDATE_ELEM value holds (:func:`copies_len`)."""
        return copies_len(self.value_size, self.ncopies)

    def _index(self, key: bytes) -> int | None:
        i = int.from_bytes(key, "little")
        return i if i < self.max_entries else None

    def _new(self) -> list[Value]:
        return [Value(self.value_size) for _ in range(self.ncopies)]

    def _touch(self, key: bytes, elem: list[Value]) -> None:
        """An LRU element becomes the newest."""
        del self.data[key]
        self.data[key] = elem

    def element(self, key: bytes, cpu: int = 0) -> Value | None:
        """The element a program on ``cpu`` points to after its lookup (None: no such
        element): a per-CPU map's copy of that CPU."""
        elem = self.data.get(key)
        if elem is None and self.is_array and self._index(key) is not None:
            elem = self.data[key] = self._new()
        if elem is None:
            return None
        if self.is_lru:
            self._touch(key, elem)
        return elem[cpu if self.ncopies > 1 else 0]

    def lookup(self, key: bytes) -> bytes:
        """The syscall's lookup: a copy of the value (every CPU's, for a per-CPU map)."""
        elem = self.data.get(key)
        if elem is None and not (self.is_array and self._index(key) is not None):
            raise fail(errno.ENOENT)
        return bytes(self.value_len) if elem is None else join_copies(elem, self.value_size)

    def _fill(self, elem: list[Value], value: bytes, cpu: int | None) -> None:
        """Write the syscall's value (``cpu`` None: every copy) or a program's on
        ``cpu`` (a per-CPU map: that CPU's copy)."""
        if cpu is None:
            for copy, v in zip(elem, split_copies(value, self.value_size, self.ncopies),
                               strict=True):
                copy[:] = v
        else:
            elem[cpu if self.ncopies > 1 else 0][:] = value

    def update(self, key: bytes, value: bytes, flags: int) -> None:
        """The syscall's update (every CPU's copy, for a per-CPU map)."""
        self._store(key, value, flags, None)

    def update_from(self, cpu: int, key: bytes, value: bytes, flags: int) -> None:
        """A program's update on ``cpu``: one value (a per-CPU map: that CPU's copy)."""
        self._store(key, value, flags, cpu)

    def _store(self, key: bytes, value: bytes, flags: int, cpu: int | None) -> None:
        """``flags``: ``ANY``, ``NOEXIST`` or ``EXIST``, and ``F_LOCK`` (no model map
        has a spin lock: EINVAL), checked in the order of ``array_map_update_elem`` and
        ``htab_map_update_elem``; ``value`` and ``cpu`` as :meth:`_fill` takes them.  An
        ARRAY element and a per-CPU hash's are overwritten in place; a HASH element is
        replaced; a program's new per-CPU element has zeros on the other CPUs."""
        if flags & ~uapi.F_LOCK > uapi.EXIST:
            raise fail(errno.EINVAL)
        if self.is_array:
            if self._index(key) is None:
                raise fail(errno.E2BIG)
            if flags & uapi.NOEXIST:
                raise fail(errno.EEXIST)
            if flags & uapi.F_LOCK:
                raise fail(errno.EINVAL)
            self.element(key)
            self._fill(self.data[key], value, cpu)
            return
        if flags & uapi.F_LOCK:
            raise fail(errno.EINVAL)
        old = self.data.get(key)
        if old is not None and flags & uapi.NOEXIST:
            raise fail(errno.EEXIST)
        if old is None and flags & uapi.EXIST:
            raise fail(errno.ENOENT)
        if old is not None and self.ncopies > 1:
            self._fill(old, value, cpu)
            if self.is_lru:
                self._touch(key, old)
            return
        if old is None and len(self.data) >= self.max_entries:
            if not self.is_lru:
                raise fail(errno.E2BIG)
            self._free.append(self.data.pop(next(iter(self.data))))
        if old is not None:
            new = self._spare if self._spare is not None else self._new()
            self._spare = old
        else:
            new = self._free.pop() if self._free else self._new()
            if cpu is not None and self.ncopies > 1:
                for copy in new:
                    copy[:] = bytes(self.value_size)
        self._fill(new, value, cpu)
        if self.is_lru:
            self.data.pop(key, None)
        self.data[key] = new

    def delete(self, key: bytes) -> None:
        if self.is_array:
            raise fail(errno.EINVAL)
        elem = self.data.pop(key, None)
        if elem is None:
            raise fail(errno.ENOENT)
        self._free.append(elem)

    def next_key(self, key: bytes | None) -> bytes:
        """``BPF_MAP_GET_NEXT_KEY``: the first key if ``key`` is None or absent."""
        if self.is_array:
            i = self._index(key) if key is not None else None
            nxt = 0 if i is None else i + 1
            if nxt >= self.max_entries:
                raise fail(errno.ENOENT)
            return nxt.to_bytes(4, "little")
        keys = list(self.data)
        pos = keys.index(key) + 1 if key in keys else 0
        if pos >= len(keys):
            raise fail(errno.ENOENT)
        return keys[pos]


class Prog(Obj):
    """A loaded program.  It keeps the maps it uses alive."""

    kind = "prog"

    def __init__(self, ids: IdSpace[Prog], defer: Defer, *,
                 prog_type: int, expected_attach_type: int, insns: bytes, tag: bytes,
                 name: bytes, maps: list[Map], enforce_eat: bool, uid: int,
                 btf: BtfObj | None = None, func_info: bytes = b"", line_info: bytes = b"",
                 ) -> None:
        super().__init__(ids, defer)
        self.type, self.expected_attach_type = prog_type, expected_attach_type
        self.insns, self.tag, self.name, self.uid = insns, tag, name, uid
        #: ns since boot, as ``bpf_prog_info.load_time``
        self.load_time = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        #: §2.1 note (a): a CGROUP_SKB EGRESS prog that may return 2 or 3.
        self.enforce_eat = enforce_eat
        self.maps = [m.get() for m in maps]
        #: The program's BTF and its func_info/line_info records (8 and 16 bytes each).
        self.btf = btf.get() if btf is not None else None
        self.func_info, self.line_info = func_info, line_info
        #: the VM's decoded form (:func:`.vm.interp.code`), made on the first run
        self.vm_code: object = None

    def free(self) -> None:
        super().free()
        for m in self.maps:
            m.put()
        if self.btf is not None:
            self.btf.put()


class Link(Obj):
    """A cgroup bpf_link.  ``cgroup`` is None once the link is defunct (§11, §12); the
    link keeps its (last) program either way."""

    kind = "link"
    evict_deferred = True

    def __init__(self, ids: IdSpace[Link], defer: Defer,
                 prog: Prog, attach_type: int) -> None:
        super().__init__(ids, defer)
        self.prog, self.attach_type = prog, attach_type
        self.cgroup: Cgroup | None = None

    def free(self) -> None:
        """Last owner gone: an attached link is detached (§11), then the program put."""
        if self.cgroup is not None:
            self.cgroup.detach_link(self)
        super().free()
        self.prog.put()
