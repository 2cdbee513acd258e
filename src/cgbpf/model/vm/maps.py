"""Program-side map operations (VM-SPEC §6): what ``bpf_map_lookup_elem``,
``bpf_map_update_elem`` and ``bpf_map_delete_elem`` do when a program calls them.

A lookup returns a pointer whose region *is* the element's bytes, so the program's
stores change the map; errors come back as negative errnos in R0, never as exceptions.
The element storage and the update rules are the map's own (:class:`..objects.Map`),
shared with the syscall side, as in the kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import uapi
from .regions import Mem, Ptr

if TYPE_CHECKING:
    from ..objects import Map, Value
    from .env import Env


def _neg(e: OSError) -> int:
    """The helper's return value for the map's refusal."""
    assert e.errno is not None
    return -e.errno


def value_region(m: Map, elem: Value) -> Mem:
    """The region of one element (made once, kept on the element); not writable by
    programs for a ``BPF_F_RDONLY_PROG`` map."""
    region = elem.region
    if region is None:
        name = f"{m.name.decode(errors='replace') or 'map'}#{m.id}"
        region = elem.region = Mem(name, elem, kind="map_value",
                                   writable=not m.flags & uapi.F_RDONLY_PROG)
    assert isinstance(region, Mem)
    return region


def lookup(env: Env, m: Map, key: bytes) -> Ptr | int:
    """A pointer to the value of ``key`` (a per-CPU map: the running CPU's copy), or NULL
    (the scalar 0)."""
    elem = m.element(key, env.cpu)
    return 0 if elem is None else Ptr(value_region(m, elem), 0)


def update(env: Env, m: Map, key: bytes, value: bytes, flags: int) -> int:
    """0, or the helper's negative errno (EINVAL, E2BIG, EEXIST, ENOENT); a per-CPU map:
    the running CPU's copy."""
    try:
        m.update_from(env.cpu, key, value, flags)
    except OSError as e:
        return _neg(e)
    return 0


def delete(env: Env, m: Map, key: bytes) -> int:
    """0, or the helper's negative errno (ARRAY: EINVAL; HASH, absent key: ENOENT)."""
    try:
        m.delete(key)
    except OSError as e:
        return _neg(e)
    return 0
