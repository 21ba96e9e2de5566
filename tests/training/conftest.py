"""Fixtures of the training tests; the builders live in `training_fixtures.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_fixtures import write_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")
