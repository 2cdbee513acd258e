"""Loading a clang-compiled object: cgbpf (``Collection.load`` + ``close``) against
``bpftool prog loadall OBJ PINDIR`` (libbpf), measured side by side in one run,
interleaved A B A B, on the real kernel.

    sudo .venv/bin/python bench/load_object.py [N]

Objects: the seed's program (tests/bpf/seed_link.c: two programs, .bss) and
tests/bpf/globals.c (two programs with subprograms, a HASH map, .bss/.data/.rodata),
compiled here with clang.  bpftool's time is the whole command (a process: exec, libbpf
open, load, pin), so its start-up (``bpftool version``) is printed too; its pins go to a
bpffs mounted on a temporary directory, removed after each load and unmounted at the end.
Prints the median per load and the ratio.  Needs root, clang and bpftool."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cgbpf
from cgbpf.collection import Collection, CollectionSpec

SOURCES = Path(__file__).resolve().parent.parent / "tests" / "bpf"
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"


def compile_c(name: str, out: str) -> str:
    machine = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True,
                             check=False).stdout.strip() or "x86_64-linux-gnu"
    obj = os.path.join(out, f"{name}.o")
    subprocess.run(["clang", "-target", "bpf", "-g", "-O2", f"-I/usr/include/{machine}",
                    "-c", str(SOURCES / f"{name}.c"), "-o", obj], check=True)
    return obj


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def main(n: int) -> None:
    k = cgbpf.host()
    with tempfile.TemporaryDirectory(prefix="cgbpf-bench-") as tmp:
        objs = [compile_c(name, tmp) for name in ("seed_link", "globals")]
        pins = os.path.join(tmp, "bpffs")
        os.mkdir(pins)
        k.mount_bpffs(pins)
        try:
            startup = statistics.median(timed(lambda: subprocess.run(
                [BPFTOOL, "version"], capture_output=True, check=True)) for _ in range(n))
            print(f"bpftool start-up (bpftool version): {startup:.2f} ms\n")
            print(f"{'object':<16}{'cgbpf':>10}{'(read)':>10}{'bpftool':>10}{'ratio':>8}")
            for obj in objs:
                run(obj, pins, n)
        finally:
            shutil.rmtree(os.path.join(pins, "prog"), ignore_errors=True)
            k.umount(pins)


def run(obj: str, pins: str, n: int) -> None:
    dest = os.path.join(pins, "prog")

    def cgbpf_load() -> None:
        Collection.load(obj).close()

    def bpftool_load() -> None:
        subprocess.run([BPFTOOL, "prog", "loadall", obj, dest], check=True,
                       capture_output=True)
        shutil.rmtree(dest)  # the pins: the programs go with them

    cgbpf_load()  # warm up
    bpftool_load()
    a: list[float] = []
    b: list[float] = []
    for _ in range(n):
        a.append(timed(cgbpf_load))
        b.append(timed(bpftool_load))
    read = statistics.median(timed(lambda: CollectionSpec.read(obj)) for _ in range(n))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"{Path(obj).stem:<16}{ma:>8.2f}ms{read:>8.2f}ms{mb:>8.2f}ms{ma / mb:>7.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
