"""Fixtures of the dataset tests; the builders live in `lerobot_fixtures.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lerobot_fixtures import WRITER_FPS, build_v3, build_v21, make_truth, write_episodes, writer_features


@pytest.fixture(scope="session")
def lerobot_truth() -> dict:
    """Ground truth of the two-episode dataset of the hand-built v3.0 and v2.1 folders."""
    return make_truth()


@pytest.fixture(scope="session")
def lerobot_v3_root(tmp_path_factory: pytest.TempPathFactory, lerobot_truth: dict) -> Path:
    return build_v3(tmp_path_factory.mktemp("lerobot") / "v30", lerobot_truth)


@pytest.fixture(scope="session")
def lerobot_v21_root(tmp_path_factory: pytest.TempPathFactory, lerobot_truth: dict) -> Path:
    return build_v21(tmp_path_factory.mktemp("lerobot") / "v21", lerobot_truth)


@pytest.fixture(scope="session")
def written_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """Three episodes, two cameras, written and finalized by our writer; with their frames."""
    from wam.data import LeRobotDatasetWriter

    root = tmp_path_factory.mktemp("written") / "ds"
    writer = LeRobotDatasetWriter.create(
        root, fps=WRITER_FPS, features=writer_features(), robot_type="sawyer"
    )
    episodes = write_episodes(writer, range(3))
    writer.finalize()
    return root, episodes
