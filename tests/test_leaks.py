"""No leaks: fds are balanced over many mixed operations, failures included, and a
collected unclosed object warns (a link says that collecting it detaches)."""

from __future__ import annotations

import gc
import os
import warnings

import pytest

from cgbpf import AttachMode, BpfError, Cgroup, Link, Map, MapType, Program
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import EGRESS, host_only, load


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@host_only
def test_fd_count_unchanged_after_1000_operations(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a")
    pin_dir = scratch.bpffs()
    with load(kernel, name="a") as a, load(kernel, name="b") as b:
        before = open_fds()
        ops = 0
        while ops < 1000:
            with cg.link(a, EGRESS) as link:
                link.update(b)
                link.pin(os.path.join(pin_dir, "l"))
                with Link.from_pin(link.pins[0], kernel=kernel) as again:
                    again.unpin()
                cg.query(EGRESS)
                cg.query(EGRESS, effective=True)
                link.info()
                with pytest.raises(BpfError):  # a failure must not leak either
                    cg.attach(a, EGRESS, mode=AttachMode.EXCLUSIVE)
                with Program.from_id(a.id, kernel=kernel):
                    pass
                link.detach()
            cg.attach(a, EGRESS)
            cg.detach(a, EGRESS)
            with pytest.raises(BpfError):
                Program.load(b"\x95" + bytes(7), b.type, name="noexit", kernel=kernel)
            ops += 13
        assert open_fds() == before
        assert cg.query(EGRESS).ids == []


def test_leaked_link_warns_that_it_detaches(kernel: Kernel, scratch: Scratch) -> None:
    cg = scratch.cgroup("a")
    with load(kernel) as prog:
        link = cg.link(prog, EGRESS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del link
            gc.collect()
        messages = [str(w.message) for w in caught if w.category is ResourceWarning]
        assert len(messages) == 1 and "detaches program" in messages[0]
        assert cg.query(EGRESS).ids == []  # collected: the fd closed, the link detached


@pytest.mark.parametrize("make", ["program", "map", "cgroup"])
def test_other_leaked_objects_warn(kernel: Kernel, scratch: Scratch, make: str) -> None:
    factories = {
        "program": lambda: load(kernel),
        "map": lambda: Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1,
                                  kernel=kernel),
        "cgroup": lambda: Cgroup.open(scratch.path(), kernel=kernel),
    }
    obj = factories[make]()
    fd = obj.fileno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del obj
        gc.collect()
    assert [w.category for w in caught] == [ResourceWarning]
    assert str(caught[0].message).startswith("unclosed <")
    with pytest.raises(OSError):  # the fd is closed
        kernel.fd_kind(fd)
