"""Staged episodes: each saved episode is a folder committed by one atomic rename.

    <root>/.wam_staging/tmp-ep-000012-<rand>/   being written (deleted by the next writer)
    <root>/.wam_staging/ep-000012/              committed: durable, consolidated by finalize()
        data.parquet          the episode's frames with their final columns (index, task_index, ...)
        videos/<key>.mp4      one mp4 per camera, frame i at i / fps
        episode.json          length, task, extra, per-episode stats (written last)

A process killed while writing leaves only a `tmp-` folder, never a half episode. Two writers
appending to one dataset collide on the rename of the same `ep-` folder and the second one fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.format import STAGING_DIR
from wam.data.fsio import atomic_write_json, fsync_path, read_json
from wam.data.stats import Stats, stats_from_json, stats_to_json
from wam.data.video import VideoEncoding, encode_video

EPISODE_JSON = "episode.json"
DATA_FILE = "data.parquet"


@dataclass(frozen=True)
class StagedEpisode:
    """One committed episode waiting to be consolidated into the v3.0 files."""

    path: Path  # its folder
    episode_index: int  # global episode index
    length: int  # frames
    dataset_from_index: int  # global index of its first frame
    task: str  # the instruction
    task_index: int  # index of `task` in meta/tasks
    extra: dict[str, Any]  # user columns of meta/episodes (seed, success, ...)
    stats: dict[str, Stats]  # per-feature stats of this episode

    @property
    def data_path(self) -> Path:
        return self.path / DATA_FILE

    def video_path(self, key: str) -> Path:
        return self.path / "videos" / f"{key}.mp4"


def staging_dir(root: Path) -> Path:
    return Path(root) / STAGING_DIR


def write_staged_episode(
    root: Path,
    record: dict[str, Any],
    table,
    videos: dict[str, np.ndarray],
    fps: int,
    encoding: VideoEncoding,
) -> StagedEpisode:
    """Write one episode under a temporary folder and commit it with a rename.

    `record` holds episode_index, length, dataset_from_index, task, task_index, extra, stats;
    `table` is its arrow data table; `videos` maps each camera to uint8 (T, H, W, 3) frames.
    """
    import pyarrow.parquet as pq

    staging = staging_dir(root)
    staging.mkdir(parents=True, exist_ok=True)
    index = int(record["episode_index"])
    final = staging / f"ep-{index:06d}"
    tmp = staging / f"tmp-ep-{index:06d}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "videos").mkdir(parents=True)
        pq.write_table(table, tmp / DATA_FILE, compression="snappy", use_dictionary=True)
        fsync_path(tmp / DATA_FILE)
        for key, frames in videos.items():
            encode_video(tmp / "videos" / f"{key}.mp4", frames, fps, encoding)
            fsync_path(tmp / "videos" / f"{key}.mp4")
        fsync_path(tmp / "videos")
        atomic_write_json(tmp / EPISODE_JSON, {**record, "stats": stats_to_json(record["stats"])})
        if final.exists():
            raise FileExistsError(
                f"Episode {index} is already staged in {staging}: another writer is appending to this "
                "dataset; use one writer per dataset folder."
            )
        os.rename(tmp, final)
        fsync_path(staging)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_staged_episode(final)


def load_staged_episode(path: Path) -> StagedEpisode:
    record = read_json(path / EPISODE_JSON)
    return StagedEpisode(
        path=path,
        episode_index=int(record["episode_index"]),
        length=int(record["length"]),
        dataset_from_index=int(record["dataset_from_index"]),
        task=str(record["task"]),
        task_index=int(record["task_index"]),
        extra=dict(record.get("extra") or {}),
        stats=stats_from_json(record["stats"]),
    )


def remove_incomplete(root: Path) -> int:
    """Delete folders of episodes that were being written when a process died; return how many."""
    staging = staging_dir(root)
    if not staging.is_dir():
        return 0
    removed = 0
    for path in staging.iterdir():
        if path.is_dir() and (path.name.startswith("tmp-") or not (path / EPISODE_JSON).exists()):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def list_staged(root: Path) -> list[StagedEpisode]:
    """Committed staged episodes, by episode index."""
    staging = staging_dir(root)
    if not staging.is_dir():
        return []
    paths = [p for p in staging.iterdir() if p.is_dir() and p.name.startswith("ep-")]
    episodes = [load_staged_episode(p) for p in paths if (p / EPISODE_JSON).exists()]
    return sorted(episodes, key=lambda e: e.episode_index)
