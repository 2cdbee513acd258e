"""Differential test: host and model driven by the same random operation sequences
(driver and operations in :mod:`differential`; the long fuzz is
``python tests/differential.py --steps 10000``)."""

from __future__ import annotations

import pytest

from cgbpf.kernel import Kernel
from differential import check


@pytest.mark.parametrize("kernel", ["host"], indirect=True)  # the conftest fixture
def test_host_and_model_agree(kernel: Kernel) -> None:
    """100 sequences of 40 steps, derandomized: the same sequences every run.  A
    divergence is raised with the minimised sequence, step by step, and the difference."""
    check(kernel, examples=100, steps=40, derandomize=True)
