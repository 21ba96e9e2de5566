"""The reader on hand-built LeRobot v3.0 and v2.1 folders: items, deltas, filters, workers, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lerobot_fixtures import CAMERA, FPS, LENGTHS, SIZE, TASKS, truth_color

from wam.data import DatasetMeta, LeRobotDataset

KEYS = [
    CAMERA,
    "observation.state",
    "action",
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
    "task",
]


def color_of(image: torch.Tensor) -> np.ndarray:
    """Mean RGB (0..255) of a float (3, H, W) image."""
    return image.mean(dim=(1, 2)).numpy() * 255


def assert_frame(image: torch.Tensor, g: int) -> None:
    np.testing.assert_allclose(color_of(image), truth_color(g), atol=4, err_msg=f"frame {g}")


@pytest.mark.parametrize("version", ["v30", "v21"])
def test_items_match_the_truth(
    version: str, lerobot_v3_root: Path, lerobot_v21_root: Path, lerobot_truth: dict
) -> None:
    root = lerobot_v3_root if version == "v30" else lerobot_v21_root
    ds = LeRobotDataset(root)
    assert len(ds) == ds.num_frames == sum(LENGTHS) and ds.num_episodes == 2 and ds.fps == FPS
    assert (
        ds.meta.total_episodes == 2
        and ds.meta.total_frames == sum(LENGTHS)
        and ds.meta.camera_keys == [CAMERA]
    )
    assert ds.meta.tasks == dict(enumerate(TASKS)) and ds.meta.video_keys == [CAMERA]
    for g in range(len(ds)):
        item = ds[g]
        assert list(item) == KEYS  # LeRobot's order: cameras, parquet columns, task
        assert item[CAMERA].shape == (3, SIZE, SIZE) and item[CAMERA].dtype == torch.float32
        assert_frame(item[CAMERA], g)
        for key in ("observation.state", "action"):
            assert item[key].dtype == torch.float32
            np.testing.assert_array_equal(item[key].numpy(), lerobot_truth[key.split(".")[-1]][g])
        for key in ("frame_index", "episode_index", "index", "task_index"):
            assert item[key].shape == () and item[key].dtype == torch.int64
            assert item[key].item() == lerobot_truth[key][g]
        assert item["timestamp"].shape == () and item["timestamp"].dtype == torch.float32
        assert item["timestamp"].item() == pytest.approx(lerobot_truth["timestamp"][g])
        assert item["task"] == TASKS[lerobot_truth["episode_index"][g]]
    assert ds[-1]["index"].item() == len(ds) - 1
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_v21_and_v30_read_identically(lerobot_v3_root: Path, lerobot_v21_root: Path) -> None:
    deltas = {"action": [-0.1, 0.0, 0.1], CAMERA: [0.0, 0.2]}
    a = LeRobotDataset(lerobot_v3_root, delta_timestamps=deltas)
    b = LeRobotDataset(lerobot_v21_root, delta_timestamps=deltas)
    for g in range(len(a)):
        x, y = a[g], b[g]
        assert list(x) == list(y)
        for key, value in x.items():
            if key == CAMERA:  # two different encodes of the same frames
                assert value.shape == y[key].shape and (value - y[key]).abs().mean() < 0.02
            elif isinstance(value, torch.Tensor):
                assert value.dtype == y[key].dtype and torch.equal(value, y[key]), key
            else:
                assert value == y[key]


def test_meta_stats(lerobot_v3_root: Path, lerobot_v21_root: Path, lerobot_truth: dict) -> None:
    actions = lerobot_truth["action"]
    for root in (lerobot_v3_root, lerobot_v21_root):  # v2.1 aggregates meta/episodes_stats.jsonl
        stats = DatasetMeta(root).stats["action"]
        np.testing.assert_allclose(stats["mean"], actions.mean(0), rtol=1e-5)
        np.testing.assert_allclose(stats["std"], actions.std(0), rtol=1e-4)
        np.testing.assert_allclose(stats["min"], actions.min(0), rtol=1e-6)
        assert int(stats["count"][0]) == len(actions)


@pytest.mark.parametrize("version", ["v30", "v21"])
def test_delta_timestamps_clamp_and_pad_at_episode_edges(
    version: str, lerobot_v3_root: Path, lerobot_v21_root: Path, lerobot_truth: dict
) -> None:
    root = lerobot_v3_root if version == "v30" else lerobot_v21_root
    deltas = {"action": [-0.2, -0.1, 0.0, 0.1, 0.2], CAMERA: [-0.1, 0.0, 0.3], "observation.state": [0.0]}
    ds = LeRobotDataset(root, delta_timestamps=deltas)
    first, last = LENGTHS[0], LENGTHS[0] + LENGTHS[1] - 1  # first and last frame of episode 1

    item = ds[first]
    np.testing.assert_array_equal(
        item["action"].numpy(), lerobot_truth["action"][[first, first, first, first + 1, first + 2]]
    )
    assert item["action_is_pad"].tolist() == [True, True, False, False, False]
    assert item[CAMERA].shape == (3, 3, SIZE, SIZE) and item[f"{CAMERA}_is_pad"].tolist() == [
        True,
        False,
        False,
    ]
    for image, g in zip(item[CAMERA], [first, first, first + 3], strict=True):
        assert_frame(image, g)
    assert item["observation.state"].shape == (1, 3) and item["observation.state_is_pad"].tolist() == [False]

    item = ds[last]
    np.testing.assert_array_equal(
        item["action"].numpy(), lerobot_truth["action"][[last - 2, last - 1, last, last, last]]
    )
    assert item["action_is_pad"].tolist() == [False, False, False, True, True]
    assert item[f"{CAMERA}_is_pad"].tolist() == [False, False, True]
    for image, g in zip(item[CAMERA], [last - 1, last, last], strict=True):
        assert_frame(image, g)

    item = ds[first - 1]  # last frame of episode 0 never reaches into episode 1
    assert item["action"][-1].tolist() == lerobot_truth["action"][first - 1].tolist()
    assert item["action_is_pad"].tolist() == [False, False, False, True, True]


def test_single_delta_on_a_camera_gives_one_frame(lerobot_v3_root: Path) -> None:
    item = LeRobotDataset(lerobot_v3_root, delta_timestamps={CAMERA: [0.1]})[2]
    assert item[CAMERA].shape == (3, SIZE, SIZE)  # LeRobot squeezes a single decoded frame
    assert_frame(item[CAMERA], 3)


def test_bad_delta_timestamps_are_refused(lerobot_v3_root: Path) -> None:
    with pytest.raises(ValueError, match="multiples of 1/10"):
        LeRobotDataset(lerobot_v3_root, delta_timestamps={"action": [0.0, 0.05]})
    with pytest.raises(ValueError, match="not features"):
        LeRobotDataset(lerobot_v3_root, delta_timestamps={"actions": [0.0]})
    LeRobotDataset(lerobot_v3_root, delta_timestamps={"action": [0.1 + 5e-5]})  # within tolerance_s


def test_episode_filter(lerobot_v3_root: Path, lerobot_truth: dict) -> None:
    ds = LeRobotDataset(lerobot_v3_root, episodes=[1], delta_timestamps={"action": [-0.1, 0.0]})
    assert len(ds) == LENGTHS[1] and ds.num_episodes == 1
    item = ds[0]
    assert item["index"].item() == LENGTHS[0] and item["episode_index"].item() == 1
    assert item["action_is_pad"].tolist() == [True, False]
    np.testing.assert_array_equal(item["action"][0].numpy(), lerobot_truth["action"][LENGTHS[0]])
    assert_frame(item[CAMERA], LENGTHS[0])
    with pytest.raises(ValueError, match="not in"):
        LeRobotDataset(lerobot_v3_root, episodes=[5])


def test_seek_mode_equals_the_decoded_cache(lerobot_v3_root: Path) -> None:
    deltas = {CAMERA: [-0.1, 0.0, 0.2]}
    cached = LeRobotDataset(lerobot_v3_root, delta_timestamps=deltas)
    seeking = LeRobotDataset(lerobot_v3_root, delta_timestamps=deltas, video_cache_bytes=0)
    for g in (0, 5, 6, 11, 14):
        assert torch.equal(cached[g][CAMERA], seeking[g][CAMERA])
    assert cached._cache.decoded_files == 1 and seeking._cache.decoded_files == 0


def test_dataloader_with_workers(lerobot_v3_root: Path) -> None:
    ds = LeRobotDataset(lerobot_v3_root, delta_timestamps={"action": [0.0, 0.1], CAMERA: [0.0, 0.1]})
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    seen = []
    for batch in loader:
        assert batch[CAMERA].shape[1:] == (2, 3, SIZE, SIZE) and len(batch["task"]) == len(batch["index"])
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(ds)))


def test_errors_are_one_line_and_actionable(lerobot_v3_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"meta/info\.json"):
        LeRobotDataset(tmp_path / "missing")
    old = tmp_path / "old"
    shutil.copytree(lerobot_v3_root, old)
    info = json.loads((old / "meta/info.json").read_text())
    (old / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(ValueError, match="convert"):
        LeRobotDataset(old)
    (old / "meta/info.json").write_text(json.dumps(info))
    (old / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        LeRobotDataset(old)
    with pytest.raises(ValueError, match="pyav"):
        LeRobotDataset(lerobot_v3_root, video_backend="torchcodec")


def _run_forked(target, args: tuple, what: str) -> tuple[int, Any]:
    """Run `target(*args, queue)` in a forked child; its exit code and the queue. A hang fails the test."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail(f"a forked child hung {what}")
    return child.exitcode, queue


def _query_in_child(cache, path: str, queue) -> None:
    import gc

    frames = cache.frames(path, [0.3])  # the inherited cache must drop the parent's decoders safely
    gc.collect()
    queue.put(int(frames[0, 0, 0, 0]))


def test_decoders_do_not_cross_a_fork(lerobot_v3_root: Path) -> None:
    from wam.data.video_cache import VideoFrameCache

    path = str(lerobot_v3_root / f"videos/{CAMERA}/chunk-000/file-000.mp4")
    cache = VideoFrameCache(budget_bytes=0)  # seek mode: keeps a decoder open
    expected = int(cache.frames(path, [0.3])[0, 0, 0, 0])
    code, queue = _run_forked(_query_in_child, (cache, path), "on a decoder inherited from its parent")
    assert code == 0 and queue.get(timeout=5) == expected


def test_image_features_stored_in_parquet(lerobot_v3_root: Path, tmp_path: Path) -> None:
    """LeRobot's `image` dtype (PNG bytes in the parquet) decodes losslessly to float (C, H, W)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    root = tmp_path / "images"
    shutil.copytree(lerobot_v3_root, root)
    data_path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data_path)
    cells = []
    for g in range(table.num_rows):
        buffer = io.BytesIO()
        Image.fromarray(np.broadcast_to(truth_color(g)[::-1], (8, 8, 3)).copy()).save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    column = pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(table.add_column(0, "observation.images.wrist", column), data_path)
    info = json.loads((root / "meta/info.json").read_text())
    wrist = {"dtype": "image", "shape": [8, 8, 3], "names": ["height", "width", "channel"]}
    info["features"] = {"observation.images.wrist": wrist, **info["features"]}
    (root / "meta/info.json").write_text(json.dumps(info))

    ds = LeRobotDataset(root, delta_timestamps={"observation.images.wrist": [-0.1, 0.0]})
    assert ds.meta.camera_keys == ["observation.images.wrist", CAMERA]
    item = ds[4]
    assert item["observation.images.wrist"].shape == (2, 3, 8, 8)
    for image, g in zip(item["observation.images.wrist"], (3, 4), strict=True):
        np.testing.assert_allclose(color_of(image), truth_color(g)[::-1], atol=1e-3)
    assert item["observation.images.wrist_is_pad"].tolist() == [False, False]


def _decode_in_child(path: str, queue) -> None:
    from wam.data.video import decode_all

    queue.put(decode_all(Path(path))[0].sum(dtype=np.int64).item())


@pytest.mark.parametrize("codec", ["h264", "libsvtav1"])
def test_colour_conversion_does_not_cross_a_fork(tmp_path: Path, codec: str) -> None:
    """PyAV caches a threaded swscale context per thread: a child forked after the parent converted
    frames of the same size must not inherit it (it waited forever for the parent's threads)."""
    from wam.data.video import decode_all, write_mp4

    path = tmp_path / "clip.mp4"
    rng = np.random.default_rng(0)
    write_mp4(path, rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8), fps=10, codec=codec)
    expected = decode_all(path)[0].sum(dtype=np.int64).item()  # the parent converts: cache filled
    code, queue = _run_forked(_decode_in_child, (str(path),), "converting with its parent's swscale context")
    assert code == 0 and queue.get(timeout=5) == expected
