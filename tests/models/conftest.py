"""Fixtures for the model-level comparisons (tests/models/test_models.py).

The exports and reference data live in .cache/models and are reused across runs (see
export_models.py); within a run they are created on first use, model by model.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_models  # noqa: E402


def tenet_binary_path() -> Path:
    """$TENET_BIN (relative paths are taken from the current directory), else build/tenet."""
    env = os.environ.get("TENET_BIN")
    return Path(env).resolve() if env else export_models.REPO_ROOT / "build" / "tenet"


@pytest.fixture(scope="session")
def tenet_bin() -> Path:
    """The tenet binary's path. A missing binary fails the tests that need it
    (test_models.require_tenet), in the test rather than here, so that it is reported as FAILED
    rather than as a fixture ERROR, and never skipped."""
    return tenet_binary_path()


@pytest.fixture(scope="session")
def reference():
    """reference(model, batch) -> export_models.Reference, memoised for the session."""
    cache: dict[tuple[str, int], export_models.Reference] = {}

    def get(model: str, batch: int) -> export_models.Reference:
        key = (model, batch)
        if key not in cache:
            cache[key] = export_models.ensure_reference(model, batch)
        return cache[key]

    return get
