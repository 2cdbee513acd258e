"""The model's BPF VM against the kernel's JIT, in BPF instructions per second, measured in
one run on the same programs: loops of N iterations whose body is ALU only, stack loads
and stores, or an ARRAY map lookup (a helper call).

Both run the program with ``Program.test_run`` (BPF_PROG_TEST_RUN) on one packet: the
kernel's time is its own ``duration_ns`` (mean of ``repeat`` runs, JIT code, no syscall
cost), the VM's is ``time.perf_counter`` around the model's test run (so it includes the
model's syscall, negligible next to N iterations).  Instructions are counted as the
program is written (the kernel inlines the ARRAY lookup: its JIT runs fewer).

    sudo .venv/bin/python bench/vm_speed.py [N] [REPEAT]

The host needs root; without it only the VM is measured."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import cgbpf
from cgbpf import Map, MapType, Program, ProgType, asm
from cgbpf.asm import FP, R0, R1, R2, R6
from cgbpf.kernel import Kernel

#: Ethernet + IPv4 + UDP, the smallest frame an IPv4 test run takes (34) plus UDP
PACKET = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c00000000401100007f0000017f000002") \
    + bytes(8)
#: program builder: (the kernel's io map, N) -> (instructions, instructions executed)
Builder = Callable[[Map, int], tuple[list[asm.Item], int]]


def alu(_: Map, n: int) -> tuple[list[asm.Item], int]:
    """r0 = sum of (i ^ 3): four instructions an iteration."""
    body = [asm.mov64(R0, 0), asm.mov64(R1, n), asm.Label("loop"), asm.add64(R0, R1),
            asm.xor64(R0, 3), asm.sub64(R1, 1), asm.jne(R1, 0, "loop"), asm.mov64(R0, 1),
            asm.exit_()]
    return body, 2 + 4 * n + 2


def stack(_: Map, n: int) -> tuple[list[asm.Item], int]:
    """A u64 on the stack loaded, added to and stored back: five an iteration."""
    body = [asm.st("dw", FP, -8, 0), asm.mov64(R1, n), asm.Label("loop"),
            asm.ldx("dw", R2, FP, -8), asm.add64(R2, R1), asm.stx("dw", FP, -8, R2),
            asm.sub64(R1, 1), asm.jne(R1, 0, "loop"), asm.mov64(R0, 1), asm.exit_()]
    return body, 2 + 5 * n + 2


def lookup(io: Map, n: int) -> tuple[list[asm.Item], int]:
    """``map_lookup_elem`` of key 0 in a one-entry ARRAY: eight an iteration (the
    two-slot map load counted once)."""
    body = [asm.mov64(R6, n), asm.Label("loop"), asm.st("w", FP, -4, 0), asm.mov64(R2, FP),
            asm.add64(R2, -4), asm.ld_map_fd(R1, io), asm.call(asm.FN_map_lookup_elem),
            asm.jeq(R0, 0, "out"), asm.sub64(R6, 1), asm.jne(R6, 0, "loop"),
            asm.Label("out"), asm.mov64(R0, 1), asm.exit_()]
    return body, 1 + 8 * n + 2


PROGRAMS: dict[str, Builder] = {"alu": alu, "stack": stack, "map lookup": lookup}


def seconds_per_run(k: Kernel, build: Builder, n: int, repeat: int) -> tuple[float, int]:
    """(seconds of one run, instructions it executes) of the program on ``k``: the
    kernel's own clock on the host, the wall clock around the call on the model."""
    with Map.create(MapType.ARRAY, key_size=4, value_size=8, max_entries=1, name="io",
                    kernel=k) as io:
        code, insns = build(io, n)
        with Program.load(code, ProgType.CGROUP_SKB, kernel=k) as prog:
            if k.name == "host":
                return prog.test_run(PACKET, repeat=repeat).duration_ns / 1e9, insns
            t0 = time.perf_counter()
            prog.test_run(PACKET)
            return time.perf_counter() - t0, insns


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    model = cgbpf.model()
    host = cgbpf.host() if os.geteuid() == 0 else None
    print(f"loops of {n} iterations; the kernel's mean of {repeat} runs, the VM's one run")
    print(f"{'program':12} {'insns':>8} {'kernel insn/s':>14} {'VM insn/s':>12} {'kernel/VM':>10}")
    for name, build in PROGRAMS.items():
        vm, insns = seconds_per_run(model, build, n, repeat)
        if host is None:
            print(f"{name:12} {insns:8} {'-':>14} {insns / vm:12.3g} {'-':>10}")
            continue
        jit, _ = seconds_per_run(host, build, n, repeat)
        print(f"{name:12} {insns:8} {insns / jit:14.3g} {insns / vm:12.3g} {vm / jit:9.0f}x")


if __name__ == "__main__":
    main()
