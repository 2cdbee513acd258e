"""Wrong Python types at the public entry points: a TypeError naming the call, the
parameter and what it takes, before anything reaches the kernel."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cgbpf import AttachType, Cgroup, Map, MapType, Program, ProgType, asm
from cgbpf._scratch import Scratch
from cgbpf.kernel import Kernel
from cgtest import EGRESS, load

OK = asm.return_program(1)
Case = Callable[[Kernel, Scratch, Program], object]
CASES: dict[str, tuple[Case, str]] = {
    "code as str": (lambda k, s, p: Program.load("r0 = 1; exit", ProgType.CGROUP_SKB,  # type: ignore[arg-type]
                                                 kernel=k), "Program.load(): insns"),
    "code as int": (lambda k, s, p: Program.load(7, ProgType.CGROUP_SKB, kernel=k),  # type: ignore[arg-type]
                    "Program.load(): insns"),
    "prog type as str": (lambda k, s, p: Program.load(OK, "cgroup_skb", kernel=k),  # type: ignore[arg-type]
                         "Program.load(): prog_type"),
    "name as bytes": (lambda k, s, p: Program.load(OK, ProgType.CGROUP_SKB, name=b"x",  # type: ignore[arg-type]
                                                   kernel=k), "Program.load(): name"),
    "map key size as str": (lambda k, s, p: Map.create(MapType.ARRAY, key_size="4",  # type: ignore[arg-type]
                                                       value_size=8, max_entries=1, kernel=k),
                            "Map.create(): key_size"),
    "link of a str": (lambda k, s, p: s.cgroup("a").link("count"),  # type: ignore[arg-type]
                      "Cgroup.link(): prog"),
    "attach type as str": (lambda k, s, p: s.cgroup("a").link(p, "egress"),  # type: ignore[arg-type]
                           "Cgroup.link(): attach_type"),
    "attach of None": (lambda k, s, p: s.cgroup("a").attach(None, EGRESS),  # type: ignore[arg-type]
                       "Cgroup.attach(): prog"),
    "query type as str": (lambda k, s, p: s.cgroup("a").query("egress"),  # type: ignore[arg-type]
                          "Cgroup.query(): attach_type"),
    "cgroup path as int": (lambda k, s, p: Cgroup.open(3, kernel=k),  # type: ignore[arg-type]
                           "Cgroup.open(): path"),
    "pin path as bytes": (lambda k, s, p: p.pin(b"/sys/fs/bpf/x"),  # type: ignore[arg-type]
                          "Program.pin(): path"),
    "id as str": (lambda k, s, p: Program.from_id("1", kernel=k),  # type: ignore[arg-type]
                  "Program.from_id(): obj_id"),
    "map key as str": (lambda k, s, p: _lookup(k, "k"), "Map.lookup(): key"),
}


def _lookup(k: Kernel, key: object) -> object:
    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, kernel=k) as m:
        return m.lookup(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES)
def test_wrong_type_is_a_clear_type_error(kernel: Kernel, scratch: Scratch, case: str) -> None:
    call, where = CASES[case]
    with load(kernel) as prog, pytest.raises(TypeError) as e:
        call(kernel, scratch, prog)
    assert str(e.value).startswith(where) and " must be " in str(e.value), str(e.value)


def test_right_types_still_work(kernel: Kernel, scratch: Scratch) -> None:
    """bytes, bytearray and asm lists are code; an int attach type is an attach type."""
    code = asm.assemble(OK)
    for insns in (code, bytearray(code), memoryview(code), OK, tuple(OK)):
        Program.load(insns, ProgType.CGROUP_SKB, expected_attach_type=int(EGRESS),
                     kernel=kernel).close()
    with load(kernel) as prog, scratch.cgroup("a").link(prog, int(AttachType.CGROUP_INET_EGRESS)):
        pass
