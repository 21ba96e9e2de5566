"""`LeRobotDatasetWriter`: record episodes into a LeRobotDataset v3.0 folder, crash-safely.

    w = LeRobotDatasetWriter.create(root, fps=80, features=FEATURES, robot_type="sawyer")
    w.add_episode({"observation.images.corner2": imgs, "observation.state": s, "action": a},
                  task="reach the goal", extra={"seed": 12, "success": True})
    w.finalize()                       # meta/ + data/ + videos/ now form a valid v3.0 dataset
    w = LeRobotDatasetWriter.resume(root)   # later: continue (after a crash or a finalize)

Design. `add_episode` encodes the episode (parquet with its final columns, one mp4 per camera,
stats) into a staging folder and commits it with one rename (see `staging.py`): once it returns
the episode is durable, and a kill at any moment leaves the whole episode or none of it.
`finalize` consolidates the staged episodes into LeRobot's shared files (see `finalize.py`)
through a redo log, so it too can be interrupted anywhere. Both `create` and `resume` first repair
what an interrupted run left behind. One writer per folder: a second one fails on commit.

Ownership. `create` writes the marker `.wam_dataset` at the top of the folder. `overwrite=True`
replaces only a folder carrying it (or wam's staging folder) that holds nothing but dataset
files, and never the current, home or root folder (`check_replaceable`): a user's notes kept
next to the data block the overwrite with a one-line refusal naming them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.format import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_FEATURES,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    INFO_PATH,
    STAGING_DIR,
    VIDEO_PATH,
    WAM_MARKER,
    column_keys,
    data_schema,
    features_from_json,
    features_to_json,
    validate_user_features,
    video_keys,
    with_default_features,
)
from wam.data.fsio import atomic_write_json, read_json
from wam.data.stats import image_stats, numeric_stats
from wam.data.video import VideoEncoding, dataset_encoding, encoding_for, encoding_spec
from wam.finite import nonfinite_count

ExtraValue = int | float | str | bool
# Columns of meta/episodes that `extra` may not shadow (besides anything with a '/').
_EPISODE_COLUMNS = frozenset({"episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index"})


class LeRobotDatasetWriter:
    """Appends episodes to a LeRobotDataset v3.0 folder. Build with `create` or `resume`."""

    def __init__(self, root: Path, info: dict, encoding: VideoEncoding) -> None:
        from wam.data.staging import list_staged

        self.root = Path(root)
        self._info = info
        self._encoding = encoding
        self._features = features_from_json(info["features"])
        self._user_keys = [k for k in self._features if k not in DEFAULT_FEATURES]
        self._finalized_episodes = int(info["total_episodes"])
        self._finalized_frames = int(info["total_frames"])
        self._tasks, self._extras = self._load_finalized()
        self._staged = list_staged(self.root)
        expected_index, expected_frame = self._finalized_episodes, self._finalized_frames
        for ep in self._staged:
            if ep.episode_index != expected_index or ep.dataset_from_index != expected_frame:
                raise ValueError(
                    f"Staged episode folder {ep.path} does not continue the dataset (expected episode "
                    f"{expected_index}); move it out of {STAGING_DIR} and resume again."
                )
            self._tasks.setdefault(ep.task, ep.task_index)
            self._extras.append(dict(ep.extra))
            expected_index, expected_frame = expected_index + 1, expected_frame + ep.length

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        root: str | Path,
        fps: int,
        features: dict[str, dict],
        robot_type: str | None = None,
        video_codec: str = "av1",
        overwrite: bool = False,
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    ) -> LeRobotDatasetWriter:
        """Start a new dataset in `root` (an existing non-empty folder needs `overwrite=True`)."""
        root = Path(root)
        if not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be a positive integer, got {fps!r}.")
        if min(chunks_size, data_files_size_in_mb, video_files_size_in_mb) < 1:
            raise ValueError("chunks_size, data_files_size_in_mb and video_files_size_in_mb must be >= 1.")
        user_features = validate_user_features(features)
        encoding = encoding_for(video_codec)
        _prepare_root(root, overwrite)
        all_features = features_to_json(with_default_features(user_features))
        for key in video_keys(user_features):  # remembered until finalize probes the real stream
            all_features[key]["info"] = {
                "video.codec": encoding.codec,
                "video.pix_fmt": encoding.pix_fmt,
                **encoding.info(),
            }
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": video_files_size_in_mb,
            "fps": fps,
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": all_features,
        }
        atomic_write_json(root / INFO_PATH, info)
        return cls(root, info, encoding)

    @classmethod
    def resume(cls, root: str | Path, video_codec: str | None = None) -> LeRobotDatasetWriter:
        """Continue a dataset (interrupted or finalized): repairs leftovers, then reopens it.

        New episodes are encoded as the dataset's videos were; a `video_codec` spec that differs
        from them raises ValueError (one dataset, one encoding).
        """
        from wam.data.finalize import recover
        from wam.data.staging import remove_incomplete

        root = Path(root)
        if not (root / INFO_PATH).exists():
            raise FileNotFoundError(
                f"No dataset at {root} (meta/info.json is missing): pass the folder of a dataset wam "
                "wrote, or start a new one (LeRobotDatasetWriter.create, `wam collect`)."
            )
        recover(root)
        remove_incomplete(root)
        info = read_json(root / INFO_PATH)
        if not isinstance(info, dict) or info.get("codebase_version") != CODEBASE_VERSION:
            raise ValueError(
                f"{root} is a LeRobot {info.get('codebase_version')} dataset; "
                "only v3.0 datasets can be extended."
            )
        encoding = dataset_encoding(root, info)
        have = encoding_spec(encoding)
        wanted = have if video_codec is None else encoding_spec(encoding_for(video_codec))
        if wanted != have:
            raise ValueError(
                f"{root} was recorded with video encoding {have}, not {wanted}: continue it with {have} "
                "(or name no encoding), or start a new dataset."
            )
        return cls(root, info, encoding)

    def _load_finalized(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        from wam.data.metadata import read_episodes_table, read_tasks_parquet

        tasks = {task: index for index, task in read_tasks_parquet(self.root).items()}
        table = read_episodes_table(self.root)
        if table is None:
            return tasks, []
        table = table.sort_by("episode_index")
        extra_cols = [c for c in table.column_names if "/" not in c and c not in _EPISODE_COLUMNS]
        return tasks, table.select(extra_cols).to_pylist()

    # ------------------------------------------------------------------ state
    @property
    def num_episodes(self) -> int:
        """Whole episodes saved so far (finalized or staged)."""
        return self._finalized_episodes + len(self._staged)

    @property
    def num_frames(self) -> int:
        return self._finalized_frames + sum(ep.length for ep in self._staged)

    @property
    def episode_extras(self) -> list[dict[str, Any]]:
        """The `extra` dict of every saved episode, in episode order."""
        return [dict(e) for e in self._extras]

    @property
    def fps(self) -> int:
        return int(self._info["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return features_from_json(self._info["features"])

    # ------------------------------------------------------------------ writing
    def add_episode(
        self, frames: dict[str, np.ndarray], task: str, extra: dict[str, ExtraValue] | None = None
    ) -> int:
        """Save one episode durably; return its episode_index.

        `frames` maps every feature to an array with leading dim T: cameras uint8 (T, H, W, 3),
        other features (T, *shape). `extra` values become columns of meta/episodes.
        """
        from wam.data.staging import write_staged_episode

        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty instruction string.")
        arrays, length = self._check_frames(frames)
        extra = self._check_extra(extra or {})
        episode_index, start = self.num_episodes, self.num_frames
        task_index = self._tasks.get(task, len(self._tasks))
        columns = self._frame_columns(arrays, length, episode_index, start, task_index)
        stats = {}
        for key, ft in self._features.items():  # LeRobot's order: user features, then defaults
            stats[key] = image_stats(arrays[key]) if ft["dtype"] == "video" else numeric_stats(columns[key])
        record = {
            "episode_index": episode_index,
            "length": length,
            "dataset_from_index": start,
            "task": task,
            "task_index": task_index,
            "extra": extra,
            "stats": stats,
        }
        videos = {k: arrays[k] for k in video_keys(self._features)}
        table = _arrow_table(columns, self._features)
        staged = write_staged_episode(self.root, record, table, videos, self.fps, self._encoding)
        self._staged.append(staged)
        self._tasks.setdefault(task, task_index)
        self._extras.append(dict(extra))
        return episode_index

    def _check_frames(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        missing = [k for k in self._user_keys if k not in frames]
        unknown = [k for k in frames if k not in self._user_keys]
        if missing or unknown:
            raise ValueError(
                f"add_episode frames must hold exactly the features; missing {missing}, unknown {unknown}."
            )
        lengths = {k: len(v) for k, v in frames.items()}
        length = next(iter(lengths.values()))
        if length < 1 or any(n != length for n in lengths.values()):
            raise ValueError(f"Every feature needs the same number T >= 1 of frames; got {lengths}.")
        arrays = {}
        for key in self._user_keys:
            ft, value = self._features[key], np.asarray(frames[key])
            expected = (length, *ft["shape"])
            if ft["dtype"] == "video":
                if value.dtype != np.uint8 or value.shape != expected:
                    raise ValueError(
                        f"{key} must be uint8 {expected} (T, H, W, 3), got {value.dtype} {value.shape}."
                    )
            else:
                if value.shape == (length,) and ft["shape"] == (1,):
                    value = value.reshape(expected)
                if value.shape != expected or not np.can_cast(value.dtype, ft["dtype"], "same_kind"):
                    raise ValueError(
                        f"{key} must be {ft['dtype']} {expected}, got {value.dtype} {value.shape}."
                    )
                with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: refused below
                    value = value.astype(ft["dtype"], copy=False)
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    frame = int(np.argwhere(~np.isfinite(value.reshape(length, -1)))[0, 0])
                    raise ValueError(
                        f"{key} holds {nonfinite_count(value)} (first at frame {frame}): a dataset keeps "
                        "finite numbers only; fix the recording (the episode was not saved)."
                    )
            arrays[key] = np.ascontiguousarray(value)
        return arrays, length

    def _check_extra(self, extra: dict[str, Any]) -> dict[str, ExtraValue]:
        clean: dict[str, ExtraValue] = {}
        for key, value in extra.items():
            if not isinstance(key, str) or "/" in key or key in _EPISODE_COLUMNS:
                raise ValueError(f"extra key {key!r} is reserved or contains '/'; rename it (e.g. 'seed').")
            value = value.item() if isinstance(value, np.generic) else value
            if not isinstance(value, (bool, int, float, str)):
                raise ValueError(
                    f"extra[{key!r}] must be an int, float, str or bool, got {type(value).__name__}."
                )
            clean[key] = value
        if self._extras and set(clean) != set(self._extras[0]):
            raise ValueError(
                f"extra keys {sorted(clean)} differ from earlier episodes' {sorted(self._extras[0])}; "
                "pass the same keys for every episode."
            )
        for key, value in clean.items():
            earlier = self._extras[0].get(key) if self._extras else None
            if earlier is not None and _extra_kind(earlier) != _extra_kind(value):
                raise ValueError(
                    f"extra[{key!r}] is a {type(value).__name__} but was a {type(earlier).__name__} before."
                )
        return clean

    def _frame_columns(self, arrays, length, episode_index, start, task_index) -> dict[str, np.ndarray]:
        frame_index = np.arange(length, dtype=np.int64)
        columns = {k: arrays[k] for k in column_keys(self._features) if k in arrays}
        columns.update(
            timestamp=(frame_index / self.fps).astype(np.float32),
            frame_index=frame_index,
            episode_index=np.full(length, episode_index, dtype=np.int64),
            index=np.arange(start, start + length, dtype=np.int64),
            task_index=np.full(length, task_index, dtype=np.int64),
        )
        return columns

    def finalize(self) -> None:
        """Write/refresh all meta; the folder is then a valid v3.0 dataset. Idempotent."""
        from wam.data.finalize import finalize_staged, recover

        recover(self.root)
        if not self._staged:
            return
        self._info = finalize_staged(self.root, self._info, self._staged, self._encoding)
        self._finalized_episodes = int(self._info["total_episodes"])
        self._finalized_frames = int(self._info["total_frames"])
        self._staged = []


def _extra_kind(value: ExtraValue) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "str"


def _arrow_table(columns: dict[str, np.ndarray], features: dict[str, dict]):
    """One episode's data table in the schema of `format.data_schema`."""
    import pyarrow as pa

    schema = data_schema(features)
    arrays = []
    for field in schema:
        value = columns[field.name]  # (T,) or (T, D)
        if pa.types.is_fixed_size_list(field.type):
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(value.reshape(-1)), value.shape[1]))
        else:
            arrays.append(pa.array(value.reshape(-1)))
    return pa.Table.from_arrays(arrays, schema=schema)


# What `_prepare_root` may delete on overwrite: the entries of a dataset folder wam writes, and in
# them only files of the kinds the dataset holds. Anything else is the user's and blocks overwrite.
_DATASET_ENTRIES = {
    "meta": (".json", ".jsonl", ".parquet"),
    "data": (".parquet",),
    "videos": (".mp4",),
    STAGING_DIR: None,  # wam's own staging folder: everything in it is wam's
    WAM_MARKER: None,
}


def is_wam_dataset(root: Path) -> bool:
    """True when `root` holds a dataset that wam's writer started (its marker or its staging folder)."""
    root = Path(root)
    return (root / WAM_MARKER).is_file() or (root / STAGING_DIR).is_dir()


def foreign_content(root: Path) -> Path | None:
    """The first file or folder under `root` that a wam dataset does not hold (None if there is none)."""
    from wam.data.fsio import is_temp_path

    for entry in sorted(Path(root).iterdir()):
        if entry.name not in _DATASET_ENTRIES:
            if not is_temp_path(entry):
                return entry
            continue
        suffixes = _DATASET_ENTRIES[entry.name]
        if suffixes is None:
            continue
        if not entry.is_dir():
            return entry
        for path in sorted(entry.rglob("*")):
            if path.is_file() and not path.name.endswith(suffixes) and not is_temp_path(path):
                return path
    return None


def check_replaceable(root: Path, flag: str = "overwrite=True") -> None:
    """Raise FileExistsError unless `root` is a dataset wam wrote, holding nothing else.

    Never replaced: the current folder, the home folder, the filesystem root or a folder above
    one of them; a folder that is not a dataset, or a LeRobot dataset wam did not write (no
    `.wam_dataset` marker and no staging folder); a dataset holding anything that is not part of
    it (e.g. the user's `notes/`), which is named in the refusal.
    """
    from wam.outputs import protected_reason  # here, not at the top: wam.outputs imports wam.data.fsio

    root = Path(root)
    why = protected_reason(root)
    if why is not None:
        raise FileExistsError(
            f"{root}: {why}, so {flag} will not delete it; choose a new folder for the dataset."
        )
    if not ((root / INFO_PATH).exists() or (root / STAGING_DIR).exists()):
        raise FileExistsError(
            f"{root} is not a LeRobot dataset, so {flag} will not delete it; choose another folder."
        )
    if not is_wam_dataset(root):
        raise FileExistsError(
            f"{root} is a LeRobot dataset that wam did not write (no {WAM_MARKER} marker), so {flag} will "
            "not delete it; delete it yourself or choose another folder."
        )
    extra = foreign_content(root)
    if extra is not None:
        raise FileExistsError(
            f"{root} holds {extra.relative_to(root)}, which is not part of the dataset, so {flag} will not "
            "delete it; move it out or choose another folder."
        )


def _prepare_root(root: Path, overwrite: bool) -> None:
    """Make `root` an empty folder for a new dataset; with `overwrite`, empty a dataset wam wrote.

    Overwrite deletes only the entries a wam dataset holds (`check_replaceable` refuses otherwise);
    the folder itself is kept.
    """
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file; choose a folder path for the dataset.")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{root} already exists and is not empty; pass overwrite=True to replace it or use "
                "LeRobotDatasetWriter.resume (`wam collect --resume`) to continue it."
            )
        check_replaceable(root)
        for entry in sorted(root.iterdir()):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / WAM_MARKER, {"writer": "wam", "format": CODEBASE_VERSION})
