"""The host's compiled walks (``_fastwalk.c``, built as ``libcgbpf_fastwalk.so`` beside
this file by ``make install``), loaded with ctypes: the queries of a cgroup subtree
(:func:`cgbpf.cgroup.query_tree`) and the link list (:func:`cgbpf.links`), one call each
instead of thousands.  Optional: where it was not built, and on the model kernel, the
same walks run in Python, with the same result (tested)."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import cast

#: The shared library's path (``make install`` builds it; the CI's clean clone too).
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libcgbpf_fastwalk.so")
Walker = Callable[..., int]
_lib: list[ctypes.CDLL | None] = []


def _load() -> ctypes.CDLL | None:
    """The built library, or None (not built, or built for another machine)."""
    if not _lib:
        lib = None
        if os.path.exists(PATH):
            try:
                lib = ctypes.CDLL(PATH)
                lib.cgbpf_tree_query.restype = lib.cgbpf_links.restype = ctypes.c_long
            except (OSError, AttributeError):
                lib = None
        _lib.append(lib)
    return _lib[0]


def walker() -> Walker | None:
    """``cgbpf_tree_query`` of the built library, or None."""
    lib = _load()
    return None if lib is None else cast(Walker, lib.cgbpf_tree_query)


def _call(fn: Walker, *args: object) -> bytes:
    """``fn(*args, out, cap)`` into a buffer that grows until the answer fits."""
    cap = 1 << 20
    while True:
        buf = ctypes.create_string_buffer(cap)
        n = fn(*args, buf, ctypes.c_ulong(cap))
        if n != -errno.ENOSPC:
            break
        cap *= 4
    if n < 0:
        raise OSError(-n, os.strerror(-n), int.from_bytes(buf.raw[:4], "little"))
    return buf.raw[:n]


def links() -> list[bytes] | None:
    """Every link's ``struct bpf_link_info`` (64 bytes each), in id order, from one call;
    None without the built library.  A failure is ``OSError`` with its errno."""
    lib = _load()
    if lib is None:
        return None
    raw = _call(cast(Walker, lib.cgbpf_links))
    return [raw[i:i + 64] for i in range(0, len(raw), 64)]


Found = list[tuple[str, int, list[tuple[int, int, int, list[int]]]]]


def tree_query(fn: Walker, root: str, types: list[int], effective: bool) -> Found:
    """One call of the walker: (path, cgroup id, [(attach type, hook flags, revision,
    ids)]) per cgroup.  A failed query raises ``OSError`` with its errno, naming the attach type."""
    arr = (ctypes.c_uint32 * len(types))(*types)
    raw = _call(fn, ctypes.c_char_p(os.fsencode(root)), arr, len(types), int(effective))
    words = memoryview(raw).cast("I")
    out: Found = []
    i = 0
    while i < len(words):
        plen = words[i]
        path = os.fsdecode(raw[4 * i + 4:4 * i + 4 + plen])
        i += 1 + (plen + 3) // 4
        cgroup_id = words[i] | words[i + 1] << 32
        hooks, count_of_hooks = [], words[i + 2]
        i += 3
        for _ in range(count_of_hooks):
            at, flags, count = words[i], words[i + 1], words[i + 4]
            revision = words[i + 2] | words[i + 3] << 32
            hooks.append((at, flags, revision, words[i + 5:i + 5 + count].tolist()))
            i += 5 + count
        out.append((path, cgroup_id, hooks))
    return out
