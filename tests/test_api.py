"""The public surface: every exported name exists, and ``cgbpf.model`` stays the
function even though a package of the same name holds the model kernel."""

from __future__ import annotations

import importlib

import cgbpf


def test_exports_resolve() -> None:
    assert all(hasattr(cgbpf, name) for name in cgbpf.__all__)


def test_model_is_the_function_after_submodule_imports() -> None:
    for sub in ("profiles", "attach", "kernel", "machine"):
        importlib.import_module(f"cgbpf.model.{sub}")
    k = cgbpf.model("6.1")
    assert isinstance(k, cgbpf.ModelKernel) and k.profile == cgbpf.Profile.of("6.1")
