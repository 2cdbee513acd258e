"""The public surface: every exported name exists; ``import cgbpf`` does not load the
model kernel; ``cgbpf.model`` is one name, the model package, which is callable."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import cgbpf

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def test_exports_resolve() -> None:
    assert all(hasattr(cgbpf, name) for name in cgbpf.__all__)


def test_model_is_the_package_and_callable_after_submodule_imports() -> None:
    for sub in ("profiles", "attach", "kernel", "machine"):
        importlib.import_module(f"cgbpf.model.{sub}")
    import cgbpf.model as package

    assert package is cgbpf.model is sys.modules["cgbpf.model"]
    k = cgbpf.model("6.1")
    assert isinstance(k, cgbpf.ModelKernel) and k.profile == cgbpf.Profile.of("6.1")
    assert package.Profile is cgbpf.Profile and package.ModelKernel is cgbpf.ModelKernel


def test_import_cgbpf_does_not_load_the_model() -> None:
    code = ("import sys, cgbpf; assert not [m for m in sys.modules if m.startswith("
            "('cgbpf.model', 'cgbpf.btf', 'cgbpf.collection', 'cgbpf.elf', 'elftools'))],"
            " sorted(sys.modules); cgbpf.Link; cgbpf.model('5.7');"
            " assert 'cgbpf.model.attach' in sys.modules;"
            " assert cgbpf.CollectionSpec is sys.modules['cgbpf.collection'].CollectionSpec;"
            " assert cgbpf.btf.Spec and 'elftools' in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
