"""BPF programs in C for the tests: compiled with clang at test time, the way users build
them (``clang -target bpf -g -O2 -c``, libbpf's headers from Debian's libbpf-dev).

Objects are cached by the hash of the source (and the headers beside it) in ``CGBPF_BPF_CACHE``
(default: a per-user directory under the system's temporary directory), so a suite
compiles each program once.  Where clang is missing the test skips saying so, and fails
under ``CI=true`` (the project's setup installs clang).  The kernel matrix compiles every
source here on the host into the job's cache: its guests have no compiler.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

#: The C sources of the tests.
SOURCES = Path(__file__).resolve().parent / "bpf"
CI = os.environ.get("CI") == "true"
CLANG = os.environ.get("CLANG", "clang")


def cache_dir() -> Path:
    d = Path(os.environ.get("CGBPF_BPF_CACHE")
             or Path(tempfile.gettempdir()) / f"cgbpf-bpfc-{os.getuid()}")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def _argv(source: Path, out: Path) -> list[str]:
    machine = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True,
                             check=False).stdout.strip() or "x86_64-linux-gnu"
    return [CLANG, "-target", "bpf", "-g", "-O2", "-Wall", "-Werror",
            f"-I/usr/include/{machine}", f"-I{source.parent}",
            "-c", str(source), "-o", str(out)]


def key(source: Path) -> str:
    """The cache name of an object: the hash of the source and of the headers beside it."""
    h = hashlib.sha256(source.read_bytes())
    for header in sorted(source.parent.glob("*.h")):
        h.update(header.read_bytes())
    return f"{source.stem}-{h.hexdigest()[:16]}.o"


def compile_c(name: str) -> Path:
    """The object for ``tests/bpf/NAME`` (``.c`` added if missing), compiled if not
    cached.  A compile error fails the test with clang's message."""
    source = SOURCES / (name if name.endswith(".c") else f"{name}.c")
    out = cache_dir() / key(source)
    if out.exists():
        return out
    if shutil.which(CLANG) is None:
        why = f"{CLANG} is not installed (make deps installs it from Debian)"
        if CI:
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    r = subprocess.run(_argv(source, tmp), capture_output=True, text=True,
                       check=False)
    if r.returncode:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"clang failed on {source.name}:\n{r.stderr}")
    tmp.replace(out)
    return out


def compile_all(dest: Path) -> list[Path]:
    """Every source under ``tests/bpf`` compiled into ``dest`` (for the kernel matrix)."""
    old = os.environ.get("CGBPF_BPF_CACHE")
    os.environ["CGBPF_BPF_CACHE"] = str(dest)
    try:
        return [compile_c(s.name) for s in sorted(SOURCES.glob("*.c"))]
    finally:
        if old is None:
            del os.environ["CGBPF_BPF_CACHE"]
        else:
            os.environ["CGBPF_BPF_CACHE"] = old
