"""The v3.0 writer: round trip, the format to the letter, refusal, resume, crash safety, file roll-over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lerobot_fixtures import (
    SIZE,
    WRITER_CAMERAS,
    WRITER_FPS,
    WRITER_LENGTHS,
    WRITER_TASKS,
    write_episodes,
    writer_episode,
    writer_features,
)

from wam.data import LeRobotDataset, LeRobotDatasetWriter
from wam.data import finalize as finalize_module
from wam.data.finalize import assign_files

SRC = Path(__file__).resolve().parents[2] / "src"


def read_all(root: Path) -> LeRobotDataset:
    return LeRobotDataset(root, video_cache_bytes=1 << 30)


def check_episodes(ds: LeRobotDataset, episodes: list[dict[str, np.ndarray]], tasks: list[str]) -> None:
    """Every frame of `ds` equals `episodes` (numbers exactly, images within codec error)."""
    assert ds.num_episodes == len(episodes)
    index = 0
    for e, frames in enumerate(episodes):
        length = len(frames["action"])
        for t in range(length):
            item = ds[index]
            assert item["index"].item() == index and item["episode_index"].item() == e
            assert item["frame_index"].item() == t and item["timestamp"].item() == pytest.approx(t / ds.fps)
            np.testing.assert_array_equal(item["observation.state"].numpy(), frames["observation.state"][t])
            np.testing.assert_array_equal(item["action"].numpy(), frames["action"][t])
            assert item["reward"].item() == pytest.approx(float(frames["reward"][t, 0]), rel=1e-6)
            for cam in WRITER_CAMERAS:
                image = item[cam].permute(1, 2, 0).numpy() * 255  # (H, W, 3)
                assert np.abs(image - frames[cam][t]).mean() < 8, (e, t, cam)
            assert item["task"] == tasks[e]
            index += 1
    assert index == len(ds)


def test_round_trip(written_dataset) -> None:
    root, episodes = written_dataset
    ds = read_all(root)
    check_episodes(ds, episodes, list(WRITER_TASKS))
    item = ds[0]
    assert item["observation.state"].dtype.is_floating_point and item["reward"].dtype == item["action"].dtype
    assert item[WRITER_CAMERAS[0]].shape == (3, SIZE, SIZE)
    assert ds.meta.tasks == {0: "reach the goal", 1: "push the puck"}
    assert [ep["seed"] for ep in ds.meta.episodes] == [0, 1, 2]
    assert [ep["success"] for ep in ds.meta.episodes] == [True, False, True]


def test_files_follow_the_v30_format_to_the_letter(written_dataset) -> None:
    root, episodes = written_dataset
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        ".wam_dataset",  # wam's marker: `overwrite` replaces only folders that carry it
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        f"videos/{WRITER_CAMERAS[0]}/chunk-000/file-000.mp4",
        f"videos/{WRITER_CAMERAS[1]}/chunk-000/file-000.mp4",
    ]
    info = json.loads((root / "meta/info.json").read_text())
    assert list(info) == [
        "codebase_version",
        "robot_type",
        "total_episodes",
        "total_frames",
        "total_tasks",
        "chunks_size",
        "data_files_size_in_mb",
        "video_files_size_in_mb",
        "fps",
        "splits",
        "data_path",
        "video_path",
        "features",
    ]
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "sawyer" and info["fps"] == WRITER_FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(WRITER_LENGTHS), 2)
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (
        1000,
        100,
        200,
    )
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    user = list(writer_features())
    assert list(info["features"]) == [
        *user,
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    cam = info["features"][WRITER_CAMERAS[0]]
    assert cam["shape"] == [SIZE, SIZE, 3] and cam["names"] == ["height", "width", "channels"]
    assert cam["info"]["video.codec"] == "av1" and cam["info"]["video.fps"] == WRITER_FPS
    for key in (
        "video.height",
        "video.width",
        "video.pix_fmt",
        "video.channels",
        "has_audio",
        "video.g",
        "video.crf",
        "is_depth_map",
    ):
        assert key in cam["info"]

    data = pq.ParquetFile(root / "data/chunk-000/file-000.parquet")
    schema = data.schema_arrow
    assert schema.names == [
        "observation.state",
        "action",
        "reward",
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]  # no video columns
    assert schema.field("observation.state").type == pa.list_(pa.float32(), 4)
    assert schema.field("reward").type == pa.float64() and schema.field("timestamp").type == pa.float32()
    assert all(
        schema.field(k).type == pa.int64() for k in ("frame_index", "episode_index", "index", "task_index")
    )
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["action"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "List"}
    assert data.num_row_groups == 3  # one per episode, like LeRobot's writer

    episodes_meta = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    names = episodes_meta.column_names
    expected_head = [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
    ]
    assert names[:7] == expected_head
    for cam_key in WRITER_CAMERAS:
        for col in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            assert f"videos/{cam_key}/{col}" in names
    for key in info["features"]:
        for stat in ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"):
            assert f"stats/{key}/{stat}" in names
    assert names[-4:] == ["meta/episodes/chunk_index", "meta/episodes/file_index", "seed", "success"]
    assert episodes_meta.schema.field("tasks").type == pa.list_(pa.string())
    rows = episodes_meta.to_pylist()
    assert [r["dataset_from_index"] for r in rows] == [0, 7, 19]
    assert [r[f"videos/{WRITER_CAMERAS[0]}/from_timestamp"] for r in rows] == pytest.approx(
        [0.0, 7 / 20, 19 / 20]
    )
    assert rows[2][f"videos/{WRITER_CAMERAS[0]}/to_timestamp"] == pytest.approx(28 / 20)
    assert np.asarray(rows[0][f"stats/{WRITER_CAMERAS[0]}/mean"]).shape == (3, 1, 1)

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0, 1], "task": ["reach the goal", "push the puck"]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == [
        "task"
    ]  # pandas index, as LeRobot

    stats = json.loads((root / "meta/stats.json").read_text())
    assert list(stats) == list(info["features"])
    actions = np.concatenate([ep["action"] for ep in episodes])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(actions, 0.99, axis=0), rtol=1e-5)
    assert stats["index"]["count"] == [sum(WRITER_LENGTHS)] and stats["index"]["max"] == [
        sum(WRITER_LENGTHS) - 1
    ]
    image = np.asarray(stats[WRITER_CAMERAS[0]]["mean"])
    assert image.shape == (3, 1, 1) and image.min() > 0 and image.max() < 1


def test_create_refuses_an_existing_folder(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer = LeRobotDatasetWriter.create(root, fps=10, features=writer_features())
    write_episodes(writer, [0])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        LeRobotDatasetWriter.create(root, fps=10, features=writer_features())
    fresh = LeRobotDatasetWriter.create(root, fps=10, features=writer_features(), overwrite=True)
    assert fresh.num_episodes == 0 and not (root / ".wam_staging").exists()
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a LeRobot dataset"):
        LeRobotDatasetWriter.create(precious, fps=10, features=writer_features(), overwrite=True)
    assert (precious / "todo.txt").exists()
    with pytest.raises(FileNotFoundError, match="create"):
        LeRobotDatasetWriter.resume(tmp_path / "nothing")


def test_bad_features_and_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        LeRobotDatasetWriter.create(
            tmp_path / "a", fps=10, features={"index": {"dtype": "int64", "shape": (1,)}}
        )
    with pytest.raises(ValueError, match="even"):
        LeRobotDatasetWriter.create(
            tmp_path / "b", fps=10, features={"cam": {"dtype": "video", "shape": (33, 32, 3)}}
        )
    writer = LeRobotDatasetWriter.create(tmp_path / "c", fps=10, features=writer_features())
    frames = writer_episode(0, 5)
    with pytest.raises(ValueError, match="missing"):
        writer.add_episode({k: v for k, v in frames.items() if k != "action"}, task="t")
    with pytest.raises(ValueError, match="uint8"):
        writer.add_episode(
            {**frames, WRITER_CAMERAS[0]: frames[WRITER_CAMERAS[0]].astype(np.float32)}, task="t"
        )
    with pytest.raises(ValueError, match="same number"):
        writer.add_episode({**frames, "action": frames["action"][:3]}, task="t")
    writer.add_episode(frames, task="t", extra={"seed": 1})
    with pytest.raises(ValueError, match="same keys"):
        writer.add_episode(frames, task="t", extra={"seed": 2, "success": True})
    with pytest.raises(ValueError, match="was a int"):
        writer.add_episode(frames, task="t", extra={"seed": "two"})
    assert writer.num_episodes == 1


def test_resume_ignores_a_half_written_episode(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer = LeRobotDatasetWriter.create(root, fps=WRITER_FPS, features=writer_features())
    episodes = write_episodes(writer, [0, 1])
    # a process killed while writing episode 2 leaves a temporary folder with partial files
    half = root / ".wam_staging" / "tmp-ep-000002-deadbeef"
    (half / "videos").mkdir(parents=True)
    (half / "data.parquet").write_bytes(b"PAR1 truncated")
    resumed = LeRobotDatasetWriter.resume(root)
    assert not half.exists()
    assert resumed.num_episodes == 2 and [e["seed"] for e in resumed.episode_extras] == [0, 1]
    episodes += write_episodes(resumed, [2])
    resumed.finalize()
    check_episodes(read_all(root), episodes, list(WRITER_TASKS))


def test_resume_after_finalize_appends_to_the_same_files(written_dataset, tmp_path: Path) -> None:
    import shutil

    source, episodes = written_dataset
    root = tmp_path / "copy"
    shutil.copytree(source, root)
    writer = LeRobotDatasetWriter.resume(root)
    assert writer.num_episodes == 3 and [e["seed"] for e in writer.episode_extras] == [0, 1, 2]
    episodes = episodes + write_episodes(writer, [3, 4])
    writer.finalize()
    writer.finalize()  # idempotent
    ds = read_all(root)
    check_episodes(ds, episodes, [WRITER_TASKS[s % 3] for s in range(5)])
    assert len(list((root / "data").rglob("*.parquet"))) == 1  # grown in place, not a new file per session
    assert len(list((root / "videos").rglob("*.mp4"))) == 2
    assert json.loads((root / "meta/info.json").read_text())["total_episodes"] == 5


@pytest.mark.parametrize("finalize_first", [True, False])
def test_a_resumed_dataset_adds_episodes_at_the_quality_it_was_started_with(
    tmp_path: Path, finalize_first: bool
) -> None:
    root = tmp_path / "ds"
    spec = "h264:crf=10,pix_fmt=yuv444p"
    writer = LeRobotDatasetWriter.create(root, fps=WRITER_FPS, features=writer_features(), video_codec=spec)
    episodes = write_episodes(writer, [0, 1])
    if finalize_first:
        writer.finalize()
    resumed = LeRobotDatasetWriter.resume(root)  # no codec given: the dataset's own settings
    episodes += write_episodes(resumed, [2])
    resumed.finalize()  # the old resume encoded at crf 30, yuv420p, and could not concatenate
    features = json.loads((root / "meta/info.json").read_text())["features"]
    for cam in WRITER_CAMERAS:
        stream = features[cam]["info"]
        assert stream["video.pix_fmt"] == "yuv444p" and stream["video.crf"] == 10
    check_episodes(read_all(root), episodes, list(WRITER_TASKS))
    with pytest.raises(ValueError, match="recorded with video encoding h264:crf=10,pix_fmt=yuv444p, not av1"):
        LeRobotDatasetWriter.resume(root, video_codec="av1")  # a resume never mixes two encodings
    assert LeRobotDatasetWriter.resume(root, video_codec="libx264:pix_fmt=yuv444p,crf=10").num_episodes == 3


def test_kill_during_collection_loses_at_most_the_current_episode(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    script = (
        f"import sys; sys.path[:0] = [{str(SRC)!r}, {str(Path(__file__).parent)!r}]\n"
        "from lerobot_fixtures import writer_features, write_episodes\n"
        "from wam.data import LeRobotDatasetWriter\n"
        f"w = LeRobotDatasetWriter.create({str(root)!r}, fps=20, features=writer_features())\n"
        "seed = 0\n"
        "while True:\n"
        "    write_episodes(w, [seed]); seed += 1\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )
    staging = root / ".wam_staging"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(staging.glob("ep-*"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list(staging.glob("ep-*")))
    assert committed >= 3
    writer = LeRobotDatasetWriter.resume(root)
    assert writer.num_episodes == committed
    assert not list(staging.glob("tmp-*"))
    writer.finalize()
    ds = read_all(root)
    expected = [writer_episode(s, WRITER_LENGTHS[s % 3]) for s in range(committed)]
    check_episodes(ds, expected, [WRITER_TASKS[s % 3] for s in range(committed)])


def test_interrupted_finalize_is_undone_or_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ds"
    writer = LeRobotDatasetWriter.create(root, fps=WRITER_FPS, features=writer_features())
    episodes = write_episodes(writer, [0, 1])
    writer.finalize()
    episodes += write_episodes(writer, [2])

    # crash before the redo log: temporary files only -> rolled back, the staged episode stays
    monkeypatch.setattr(finalize_module, "_commit", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        writer.finalize()
    monkeypatch.undo()
    resumed = LeRobotDatasetWriter.resume(root)
    assert not [p for p in root.rglob("*") if ".wamtmp" in p.name]
    assert resumed.num_episodes == 3
    with pytest.warns(UserWarning, match="not finalized"):
        assert read_all(root).num_episodes == 2

    # crash after the redo log, half-way through the renames -> completed on resume
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(finalize_module.os, "replace", flaky_replace)
    with pytest.raises(KeyboardInterrupt):
        resumed.finalize()
    monkeypatch.undo()
    assert (root / ".wam_staging" / "finalize.json").exists()
    again = LeRobotDatasetWriter.resume(root)
    assert again.num_episodes == 3 and not (root / ".wam_staging").exists()
    check_episodes(read_all(root), episodes, [WRITER_TASKS[s % 3] for s in range(3)])


def test_files_roll_over_at_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finalize_module, "MB", 1024)  # limits in KiB so that tiny files roll over
    root = tmp_path / "ds"
    writer = LeRobotDatasetWriter.create(
        root,
        fps=WRITER_FPS,
        features=writer_features(),
        chunks_size=2,
        data_files_size_in_mb=6,
        video_files_size_in_mb=3,
    )
    episodes = write_episodes(writer, range(4))
    writer.finalize()
    episodes += write_episodes(writer, [4])
    writer.finalize()
    data_files = sorted(str(p.relative_to(root)) for p in (root / "data").rglob("*.parquet"))
    assert len(data_files) >= 2 and "data/chunk-000/file-001.parquet" in data_files
    video_files = sorted((root / "videos" / WRITER_CAMERAS[0]).rglob("*.mp4"))
    assert (
        len(video_files) >= 3 and (root / "videos" / WRITER_CAMERAS[0] / "chunk-001").is_dir()
    )  # chunks_size=2
    ds = read_all(root)
    check_episodes(ds, episodes, [WRITER_TASKS[s % 3] for s in range(5)])
    starts = [ep[f"videos/{WRITER_CAMERAS[0]}/from_timestamp"] for ep in ds.meta.episodes]
    assert starts.count(0.0) == len(video_files)  # each new file starts its timeline at 0


def test_assign_files_rolls_like_lerobot() -> None:
    assert assign_files(None, 0.0, [40, 40, 40, 150, 10], 100, chunks_size=3) == [
        (0, 0),
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
    ]
    assert assign_files((0, 4), 90.0, [5, 10], 100, chunks_size=1000) == [(0, 4), (0, 5)]
