"""Metadata of a LeRobot dataset folder, v3.0 or v2.x, behind one interface.

`DatasetMeta(root)` reads meta/ only (no frame data): info, features, tasks, stats and one
record per episode with its frame range and file locations. The layouts differ:
    v3.0  episodes from meta/episodes/*/*.parquet (index ranges, data/video chunk+file, video
          from/to timestamps inside the shared mp4), tasks from meta/tasks.parquet;
    v2.x  episodes from meta/episodes.jsonl (only lengths: ranges are cumulative sums), one data
          and one video file per episode (video timestamps start at 0), tasks from meta/tasks.jsonl,
          stats aggregated from meta/episodes_stats.jsonl (v2.1) or read from meta/stats.json (v2.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from wam.data.format import (
    EPISODES_DIR,
    INFO_PATH,
    LEGACY_EPISODES_PATH,
    LEGACY_EPISODES_STATS_PATH,
    LEGACY_TASKS_PATH,
    STAGING_DIR,
    STATS_PATH,
    SUPPORTED_READ_VERSIONS,
    TASKS_PATH,
    features_from_json,
    image_keys,
    video_keys,
)
from wam.data.fsio import read_json
from wam.data.stats import aggregate_stats, stats_from_columns, stats_from_json


def read_episodes_table(root: Path) -> pa.Table | None:
    """All meta/episodes parquet files of a v3.0 dataset as one arrow table (None if there are none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted((Path(root) / EPISODES_DIR).glob("*/*.parquet"))
    if not paths:
        return None
    tables = [pq.read_table(p) for p in paths]
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def read_tasks_parquet(root: Path) -> dict[int, str]:
    """meta/tasks.parquet (task strings stored as the pandas index) as {task_index: task}."""
    import pyarrow.parquet as pq

    path = Path(root) / TASKS_PATH
    if not path.exists():
        return {}
    table = pq.read_table(path)
    text_column = next(n for n in table.column_names if n != "task_index")
    tasks = table.column(text_column).to_pylist()
    indices = table.column("task_index").to_pylist()
    return dict(sorted(zip((int(i) for i in indices), tasks, strict=True)))


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class DatasetMeta:
    """The meta/ folder of a local LeRobot dataset (v3.0, v2.1 or v2.0)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not (self.root / INFO_PATH).exists():
            hint = "the folder does not exist" if not self.root.exists() else "it has no meta/info.json"
            raise FileNotFoundError(
                f"No LeRobot dataset at {self.root} ({hint}); pass the folder that holds meta/info.json."
            )
        self.info: dict[str, Any] = read_json(self.root / INFO_PATH)
        self.codebase_version: str = str(self.info.get("codebase_version"))
        if self.codebase_version not in SUPPORTED_READ_VERSIONS:
            raise ValueError(
                f"{self.root} is a LeRobot {self.codebase_version} dataset; wam reads "
                f"{', '.join(SUPPORTED_READ_VERSIONS)}: convert it with LeRobot's conversion script first."
            )
        self.fps: int = int(self.info["fps"])
        self.robot_type: str | None = self.info.get("robot_type")
        self.features: dict[str, dict] = features_from_json(self.info["features"])
        self.video_keys: list[str] = video_keys(self.features)
        self.image_keys: list[str] = image_keys(self.features)
        self.camera_keys: list[str] = [k for k in self.features if k in (*self.video_keys, *self.image_keys)]
        self.episodes: list[dict[str, Any]] = []
        self.tasks: dict[int, str] = {}
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        if self.codebase_version == "v3.0":
            self._load_v3()
        else:
            self._load_v2()
        self._position = {int(ep["episode_index"]): i for i, ep in enumerate(self.episodes)}

    # ------------------------------------------------------------------ loading
    def _load_v3(self) -> None:
        table = read_episodes_table(self.root)
        if table is not None:
            table = table.sort_by("episode_index")
            stats_cols = [c for c in table.column_names if c.startswith("stats/")]
            self.episodes = table.drop_columns(stats_cols).to_pylist()
            episode_stats = table.select(stats_cols).to_pylist() if stats_cols else []
        else:
            episode_stats = []
        self.tasks = read_tasks_parquet(self.root)
        if (self.root / STATS_PATH).exists():
            self.stats = stats_from_json(read_json(self.root / STATS_PATH))
        elif episode_stats:
            self.stats = aggregate_stats([stats_from_columns(row) for row in episode_stats])

    def _load_v2(self) -> None:
        for name in (LEGACY_EPISODES_PATH, LEGACY_TASKS_PATH):
            if not (self.root / name).exists():
                raise FileNotFoundError(
                    f"{self.root / name} is missing; the {self.codebase_version} dataset is incomplete."
                )
        rows = sorted(_read_jsonl(self.root / LEGACY_EPISODES_PATH), key=lambda r: r["episode_index"])
        start = 0
        for row in rows:
            length = int(row["length"])
            self.episodes.append({**row, "dataset_from_index": start, "dataset_to_index": start + length})
            start += length
        tasks = _read_jsonl(self.root / LEGACY_TASKS_PATH)
        self.tasks = {
            int(t["task_index"]): str(t["task"]) for t in sorted(tasks, key=lambda t: t["task_index"])
        }
        episodes_stats = self.root / LEGACY_EPISODES_STATS_PATH
        if self.codebase_version == "v2.1" and episodes_stats.exists():
            per_episode = [stats_from_json(r["stats"]) for r in _read_jsonl(episodes_stats)]
            self.stats = aggregate_stats(per_episode) if per_episode else {}
        elif (self.root / STATS_PATH).exists():
            self.stats = stats_from_json(read_json(self.root / STATS_PATH))

    # ------------------------------------------------------------------ totals
    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return int(sum(int(ep["dataset_to_index"]) - int(ep["dataset_from_index"]) for ep in self.episodes))

    @property
    def total_tasks(self) -> int:
        return len(self.tasks)

    @property
    def unfinalized_episodes(self) -> int:
        """Episodes a wam writer staged but did not consolidate yet (invisible to readers)."""
        staging = self.root / STAGING_DIR
        if not staging.is_dir():
            return 0
        return sum(1 for p in staging.iterdir() if p.is_dir() and p.name.startswith("ep-"))

    # ------------------------------------------------------------------ per-episode lookups
    def episode(self, episode_index: int) -> dict[str, Any]:
        """The metadata record of one episode (by its episode_index)."""
        try:
            return self.episodes[self._position[int(episode_index)]]
        except KeyError:
            raise ValueError(
                f"Episode {episode_index} is not in {self.root}; it has episodes "
                f"{self.episodes[0]['episode_index']}..{self.episodes[-1]['episode_index']}."
                if self.episodes
                else f"Episode {episode_index} is not in {self.root}: the dataset has no episodes."
            ) from None

    def data_file(self, episode_index: int) -> Path:
        ep = self.episode(episode_index)
        if self.codebase_version == "v3.0":
            rel = self.info["data_path"].format(
                chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"]
            )
        else:
            chunk = int(episode_index) // int(self.info["chunks_size"])
            rel = self.info["data_path"].format(episode_chunk=chunk, episode_index=int(episode_index))
        return self.root / rel

    def video_file(self, episode_index: int, video_key: str) -> Path:
        ep = self.episode(episode_index)
        if self.codebase_version == "v3.0":
            rel = self.info["video_path"].format(
                video_key=video_key,
                chunk_index=ep[f"videos/{video_key}/chunk_index"],
                file_index=ep[f"videos/{video_key}/file_index"],
            )
        else:
            chunk = int(episode_index) // int(self.info["chunks_size"])
            rel = self.info["video_path"].format(
                episode_chunk=chunk, video_key=video_key, episode_index=int(episode_index)
            )
        return self.root / rel

    def video_from_timestamp(self, episode_index: int, video_key: str) -> float:
        """Where the episode starts inside its video file (seconds); 0 for v2.x files."""
        if self.codebase_version != "v3.0":
            return 0.0
        return float(self.episode(episode_index)[f"videos/{video_key}/from_timestamp"])

    def task(self, task_index: int) -> str:
        return self.tasks[int(task_index)]
