"""Fixtures for the model tests: a fresh 6.18 model machine per test."""

from __future__ import annotations

import pytest

from cgbpf.model import ModelKernel


@pytest.fixture
def k() -> ModelKernel:
    return ModelKernel()
