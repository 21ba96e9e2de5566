"""Consolidate staged episodes into the LeRobotDataset v3.0 files, crash-safely.

1. Plan: each staged episode goes to the last data file (and, per camera, the last video file)
   while it stays under the size limit of info.json, then to the next chunk-XXX/file-XXX, as
   LeRobot's writer does (`data_files_size_in_mb`, `video_files_size_in_mb`, `chunks_size`).
2. Write every new or grown file under a temporary name: parquet row groups are copied (one per
   episode), mp4 packets are remuxed (no re-encoding; `video.concat_videos`), then meta/episodes,
   meta/tasks.parquet, meta/stats.json and meta/info.json.
3. Commit: write the redo log `.wam_staging/finalize.json` (atomically), rename every temporary
   file over its final name, delete the consumed staged episodes, delete the log.

`recover(root)` runs before a writer touches a folder. With a redo log it finishes the commit
(roll forward); without one it deletes temporary files (roll back). Either way the folder holds
each episode exactly once, so a kill at any moment loses at most the un-staged episode.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from wam.data.format import (
    EPISODES_PATH,
    INFO_PATH,
    STAGING_DIR,
    STATS_PATH,
    TASKS_PATH,
    column_keys,
    column_to_numpy,
    data_schema,
    features_from_json,
    next_chunk_file,
    video_keys,
)
from wam.data.fsio import atomic_write_json, fsync_path, iter_temp_files, read_json, temp_path_for
from wam.data.metadata import read_episodes_table
from wam.data.staging import StagedEpisode
from wam.data.stats import aggregate_feature_stats, numeric_stats, stats_from_columns, stats_to_columns
from wam.data.video import VideoEncoding, concat_videos, video_stream_info

REDO_LOG = "finalize.json"
MB = 1024**2
Location = tuple[int, int]  # (chunk_index, file_index)


def assign_files(
    start: Location | None, start_size_mb: float, sizes_mb: list[float], limit_mb: float, chunks_size: int
) -> list[Location]:
    """The file of each new item: append to `start` (of size `start_size_mb`) until the limit, then roll."""
    current, size = (start, start_size_mb) if start is not None else ((0, 0), 0.0)
    out = []
    for item in sizes_mb:
        if size > 0 and size + item >= limit_mb:
            current, size = next_chunk_file(*current, chunks_size), 0.0
        out.append(current)
        size += item
    return out


class _Outputs:
    """Temporary files standing in for final paths until the commit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temps: dict[Path, Path] = {}

    def temp(self, final: Path) -> Path:
        final.parent.mkdir(parents=True, exist_ok=True)
        self.temps[final] = temp_path_for(final)
        return self.temps[final]

    def effective(self, final: Path) -> Path:
        """Where the newest content of `final` is right now."""
        return self.temps.get(final, final)

    def discard(self) -> None:
        for tmp in self.temps.values():
            tmp.unlink(missing_ok=True)


def _size_mb(path: Path) -> float:
    return path.stat().st_size / MB if path.exists() else 0.0


def finalize_staged(root: Path, info: dict, staged: list[StagedEpisode], encoding: VideoEncoding) -> dict:
    """Consolidate `staged` into the dataset at `root`; return the new info.json content."""
    root = Path(root)
    features = features_from_json(info["features"])
    old = read_episodes_table(root)
    if old is not None:
        old = old.sort_by("episode_index")
    last_old = old.slice(len(old) - 1).to_pylist()[0] if old is not None and len(old) else None
    out = _Outputs(root)
    try:
        data_locs = _write_data(root, info, features, staged, last_old, out)
        video_locs = {k: _write_videos(root, info, k, staged, last_old, out) for k in video_keys(features)}
        rows = _episode_rows(features, staged, data_locs, video_locs)
        episodes = _write_episodes_meta(root, info, old, last_old, rows, out)
        tasks = _all_tasks(root, staged)
        _write_tasks(root / TASKS_PATH, tasks, out)
        stats = _dataset_stats(root, info, features, episodes, out)
        new_info = _new_info(root, info, features, episodes, len(tasks), encoding, out)
        _write_json(root / STATS_PATH, stats, out)
        _write_json(root / INFO_PATH, new_info, out)
    except BaseException:
        out.discard()
        raise
    _commit(root, out, staged)
    return new_info


# ----------------------------------------------------------------------------- data and videos
def _write_data(root, info, features, staged, last_old, out: _Outputs) -> list[Location]:
    import pyarrow.parquet as pq

    start = (last_old["data/chunk_index"], last_old["data/file_index"]) if last_old else None
    start_path = root / info["data_path"].format(chunk_index=start[0], file_index=start[1]) if start else None
    sizes = [_size_mb(ep.data_path) for ep in staged]
    locs = assign_files(
        start,
        _size_mb(start_path) if start_path else 0.0,
        sizes,
        info["data_files_size_in_mb"],
        info["chunks_size"],
    )
    schema = data_schema(features)
    for loc, group in groupby(zip(staged, locs, strict=True), key=lambda pair: pair[1]):
        final = root / info["data_path"].format(chunk_index=loc[0], file_index=loc[1])
        tmp = out.temp(final)
        with pq.ParquetWriter(tmp, schema, compression="snappy", use_dictionary=True) as writer:
            if loc == start and final.exists():  # grow the last file: copy its row groups first
                existing = pq.ParquetFile(final)
                for i in range(existing.num_row_groups):
                    writer.write_table(_conform(existing.read_row_group(i), schema))
            for ep, _ in group:  # one row group per episode
                writer.write_table(_conform(pq.read_table(ep.data_path), schema))
        fsync_path(tmp)
    return locs


def _conform(table, schema):
    """`table` with exactly the columns, types and metadata of `schema` (clear error otherwise)."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(
            f"A data file lacks columns {missing}; the dataset's features changed: start a new dataset."
        )
    return table.select(schema.names).cast(schema)


def _write_videos(root, info, key, staged, last_old, out: _Outputs) -> list[tuple[int, int, float, float]]:
    fps = int(info["fps"])
    has_old = last_old is not None and last_old.get(f"videos/{key}/chunk_index") is not None
    start = (last_old[f"videos/{key}/chunk_index"], last_old[f"videos/{key}/file_index"]) if has_old else None

    def path_of(loc: Location) -> Path:
        return root / info["video_path"].format(video_key=key, chunk_index=loc[0], file_index=loc[1])

    sizes = [_size_mb(ep.video_path(key)) for ep in staged]
    start_size = _size_mb(path_of(start)) if start else 0.0
    locs = assign_files(start, start_size, sizes, info["video_files_size_in_mb"], info["chunks_size"])
    result = []
    for loc, pairs in groupby(zip(staged, locs, strict=True), key=lambda pair: pair[1]):
        group = [ep for ep, _ in pairs]
        final = path_of(loc)
        head = [final] if loc == start and final.exists() else []
        tmp = out.temp(final)
        starts = concat_videos([*head, *(ep.video_path(key) for ep in group)], tmp)[len(head) :]
        fsync_path(tmp)
        result += [(loc[0], loc[1], s, s + ep.length / fps) for ep, s in zip(group, starts, strict=True)]
    return result


# ----------------------------------------------------------------------------- meta/episodes
def _episode_rows(features, staged, data_locs, video_locs) -> list[dict[str, Any]]:
    """meta/episodes rows of the staged episodes, columns in LeRobot's order, extras last."""
    rows = []
    for i, ep in enumerate(staged):
        row: dict[str, Any] = {
            "episode_index": ep.episode_index,
            "tasks": [ep.task],
            "length": ep.length,
            "data/chunk_index": data_locs[i][0],
            "data/file_index": data_locs[i][1],
            "dataset_from_index": ep.dataset_from_index,
            "dataset_to_index": ep.dataset_from_index + ep.length,
        }
        for key, locs in video_locs.items():
            chunk, file, start, end = locs[i]
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = start
            row[f"videos/{key}/to_timestamp"] = end
        row.update(stats_to_columns({k: ep.stats[k] for k in features if k in ep.stats}))
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        row.update(ep.extra)
        rows.append(row)
    return rows


def _write_episodes_meta(root, info, old, last_old, rows, out: _Outputs):
    """Append `rows` to the last meta/episodes file (rolling over by size); return all episodes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = (
        (last_old["meta/episodes/chunk_index"], last_old["meta/episodes/file_index"]) if last_old else None
    )

    def path_of(loc: Location) -> Path:
        return root / EPISODES_PATH.format(chunk_index=loc[0], file_index=loc[1])

    row_mb = pa.Table.from_pylist(rows).nbytes / max(len(rows), 1) / MB
    start_size = _size_mb(path_of(start)) if start else 0.0
    locs = assign_files(
        start, start_size, [row_mb] * len(rows), info["data_files_size_in_mb"], info["chunks_size"]
    )
    for row, loc in zip(rows, locs, strict=True):
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = loc
    new = pa.Table.from_pylist(rows)
    for loc, pairs in groupby(enumerate(locs), key=lambda pair: pair[1]):
        part = new.take([i for i, _ in pairs])
        final = path_of(loc)
        if loc == start and final.exists():
            part = pa.concat_tables([pq.read_table(final), part], promote_options="permissive")
        tmp = out.temp(final)
        pq.write_table(part, tmp, compression="snappy", use_dictionary=True)
        fsync_path(tmp)
    if old is None:
        return new
    return pa.concat_tables([old, new], promote_options="permissive")


# ----------------------------------------------------------------------------- tasks, stats, info
def _all_tasks(root: Path, staged: list[StagedEpisode]) -> dict[str, int]:
    from wam.data.metadata import read_tasks_parquet

    tasks = {task: index for index, task in read_tasks_parquet(root).items()}
    for ep in staged:
        if tasks.setdefault(ep.task, ep.task_index) != ep.task_index:
            raise ValueError(
                f"Staged episode {ep.episode_index} disagrees with meta/tasks.parquet on {ep.task!r}."
            )
    return dict(sorted(tasks.items(), key=lambda kv: kv[1]))


def tasks_table(tasks: dict[str, int]) -> pa.Table:
    """meta/tasks.parquet as pandas writes it: column task_index, the task string as the index."""
    import pyarrow as pa

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())], metadata={"pandas": json.dumps(pandas_meta)}
    )
    return pa.table({"task_index": list(tasks.values()), "task": list(tasks.keys())}, schema=schema)


def _write_tasks(final: Path, tasks: dict[str, int], out: _Outputs) -> None:
    import pyarrow.parquet as pq

    tmp = out.temp(final)
    pq.write_table(tasks_table(tasks), tmp)
    fsync_path(tmp)


def _write_json(final: Path, data: Any, out: _Outputs) -> None:
    tmp = out.temp(final)
    tmp.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    fsync_path(tmp)


def _dataset_stats(root, info, features, episodes, out: _Outputs) -> dict[str, dict[str, Any]]:
    """Exact stats of every parquet column over all frames; image stats aggregated over episodes."""
    import pyarrow.parquet as pq

    keys = column_keys(features)
    locs = sorted(
        {
            (r["data/chunk_index"], r["data/file_index"])
            for r in episodes.select(["data/chunk_index", "data/file_index"]).to_pylist()
        }
    )
    values: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for chunk, file in locs:
        final = root / info["data_path"].format(chunk_index=chunk, file_index=file)
        table = pq.read_table(out.effective(final), columns=keys)
        for key in keys:
            values[key].append(column_to_numpy(table.column(key), features[key]))
    stats: dict[str, dict[str, Any]] = {}
    for key, ft in features.items():
        if ft["dtype"] == "video":
            columns = [c for c in episodes.column_names if c.startswith(f"stats/{key}/")]
            per_episode = [stats_from_columns(row)[key] for row in episodes.select(columns).to_pylist()]
            stats[key] = aggregate_feature_stats(per_episode)
        else:
            stats[key] = numeric_stats(np.concatenate(values[key]))
    return {key: {k: np.asarray(v).tolist() for k, v in s.items()} for key, s in stats.items()}


def _new_info(root, info, features, episodes, num_tasks, encoding, out: _Outputs) -> dict:
    new = copy.deepcopy(info)
    total_frames = sum(episodes.column("length").to_pylist())
    new.update(
        total_episodes=len(episodes),
        total_frames=int(total_frames),
        total_tasks=num_tasks,
        splits={"train": f"0:{len(episodes)}"},
    )
    for key in video_keys(features):
        first = root / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
        probed = video_stream_info(out.effective(first))
        new["features"][key]["info"] = {**probed, **encoding.info(), "is_depth_map": False}
    return new


# ----------------------------------------------------------------------------- commit / recovery
def _commit(root: Path, out: _Outputs, staged: list[StagedEpisode]) -> None:
    """Log the renames durably, then apply them (info.json last)."""
    info_path = root / INFO_PATH
    order = sorted(out.temps, key=lambda p: p == info_path)
    log = {
        "renames": [[str(out.temps[f].relative_to(root)), str(f.relative_to(root))] for f in order],
        "remove": [ep.path.name for ep in staged],
    }
    atomic_write_json(root / STAGING_DIR / REDO_LOG, log)
    _apply_redo_log(root)


def _apply_redo_log(root: Path) -> None:
    staging = root / STAGING_DIR
    log_path = staging / REDO_LOG
    log = read_json(log_path)
    for tmp, final in log["renames"]:
        if (root / tmp).exists():
            os.replace(root / tmp, root / final)
    for parent in {(root / final).parent for _, final in log["renames"]}:
        fsync_path(parent)
    for name in log["remove"]:
        shutil.rmtree(staging / name, ignore_errors=True)
    log_path.unlink()
    fsync_path(staging)
    if not any(staging.iterdir()):
        staging.rmdir()


def recover(root: Path) -> str | None:
    """Finish (redo log present) or undo (temporary files only) an interrupted finalize."""
    root = Path(root)
    if (root / STAGING_DIR / REDO_LOG).exists():
        _apply_redo_log(root)
        return "completed an interrupted finalize"
    leftovers = [
        p for d in ("meta", "data", "videos") if (root / d).is_dir() for p in iter_temp_files(root / d)
    ]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return "removed files of an interrupted finalize" if leftovers else None
