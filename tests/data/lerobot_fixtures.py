"""Builders of the dataset tests' data (imported by conftest.py and by test subprocesses).

`make_truth` is the ground truth of a tiny two-episode dataset; `build_v3` and `build_v21` write it
in the v3.0 and v2.1 layouts file by file with pyarrow and PyAV, the way LeRobot writes them
(per-episode encodes concatenated with FFmpeg's concat demuxer, like LeRobot's
`concatenate_video_files`), independently of `wam.data`'s writer. Frame g of that dataset is the
solid colour `truth_color(g)`, so a decoded frame identifies itself. `writer_episode` and
`write_episodes` make the patterned episodes the writer tests record with our writer.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FPS = 10
LENGTHS = (6, 9)
TASKS = ("pick the cube", "open the drawer")
CAMERA = "observation.images.top"
SIZE = 32


def truth_color(g: int) -> np.ndarray:
    """The solid RGB colour of global frame g."""
    return np.array([20 + 10 * g, 220 - 9 * g, 60 + 17 * (g % 5)], dtype=np.uint8)


def make_truth() -> dict:
    rng = np.random.default_rng(7)
    total = sum(LENGTHS)
    images = np.stack([np.broadcast_to(truth_color(g), (SIZE, SIZE, 3)) for g in range(total)])
    episode_index = np.concatenate([np.full(n, e) for e, n in enumerate(LENGTHS)]).astype(np.int64)
    frame_index = np.concatenate([np.arange(n) for n in LENGTHS]).astype(np.int64)
    return {
        "images": images.astype(np.uint8),  # (N, H, W, 3)
        "state": rng.normal(size=(total, 3)).astype(np.float32),
        "action": rng.normal(size=(total, 2)).astype(np.float32),
        "episode_index": episode_index,
        "frame_index": frame_index,
        "index": np.arange(total, dtype=np.int64),
        "timestamp": (frame_index / FPS).astype(np.float32),
        "task_index": episode_index.copy(),  # episode e has task e
        "starts": np.cumsum((0, *LENGTHS))[:-1],
    }


def encode_raw(path: Path, frames: np.ndarray, fps: int, encoder: str) -> None:
    """PyAV encode as LeRobot's `encode_video_frames` (g=2, crf=30, yuv420p)."""
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration at info level
    options = {"g": "2", "crf": "30"}
    if encoder == "libsvtav1":
        options.update({"preset": "12", "svtav1-params": "fast-decode=0"})
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, fps, options=options)
        stream.pix_fmt, stream.width, stream.height = "yuv420p", frames.shape[2], frames.shape[1]
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def concat_like_lerobot(inputs: list[Path], output: Path) -> None:
    """Remux with FFmpeg's concat demuxer, as `concatenate_video_files` in LeRobot."""
    import av

    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False) as listing:
        listing.write("ffconcat version 1.0\n" + "".join(f"file '{p.resolve()}'\n" for p in inputs))
    source = av.open(listing.name, "r", format="concat", options={"safe": "0"})
    with av.open(str(output), "w", options={"movflags": "faststart"}) as sink:
        in_stream = source.streams.video[0]
        out_stream = sink.add_stream_from_template(template=in_stream, opaque=True)
        out_stream.time_base = in_stream.time_base
        for packet in source.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            sink.mux(packet)
    source.close()
    Path(listing.name).unlink()


def _data_table(truth: dict, rows: slice, fixed: bool):
    import pyarrow as pa

    def vectors(values: np.ndarray):
        flat = pa.array(values.reshape(-1))
        if fixed:
            return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        offsets = pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, flat)

    return pa.table(
        {
            "observation.state": vectors(truth["state"][rows]),
            "action": vectors(truth["action"][rows]),
            "timestamp": pa.array(truth["timestamp"][rows]),
            "frame_index": pa.array(truth["frame_index"][rows]),
            "episode_index": pa.array(truth["episode_index"][rows]),
            "index": pa.array(truth["index"][rows]),
            "task_index": pa.array(truth["task_index"][rows]),
        }
    )


def _features(channel_name: str) -> dict:
    return {
        CAMERA: {
            "dtype": "video",
            "shape": [SIZE, SIZE, 3],
            "names": ["height", "width", channel_name],
            "info": {
                "video.fps": FPS,
                "video.height": SIZE,
                "video.width": SIZE,
                "video.channels": 3,
                "video.codec": "av1",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "has_audio": False,
            },
        },
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def build_v3(root: Path, truth: dict) -> Path:
    """Both episodes in data/chunk-000/file-000.parquet and one concatenated mp4."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    starts = truth["starts"]
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(_data_table(truth, slice(None), fixed=True), root / "data/chunk-000/file-000.parquet")
    parts = []
    for e, (start, n) in enumerate(zip(starts, LENGTHS, strict=True)):
        parts.append(root / f"tmp/ep{e}.mp4")
        encode_raw(parts[-1], truth["images"][start : start + n], FPS, "libsvtav1")
    video = root / f"videos/{CAMERA}/chunk-000/file-000.mp4"
    video.parent.mkdir(parents=True)
    concat_like_lerobot(parts, video)
    for p in parts:
        p.unlink()
    (root / "tmp").rmdir()
    durations = [n / FPS for n in LENGTHS]
    froms = [0.0, durations[0]]
    episodes = {
        "episode_index": [0, 1],
        "tasks": [[TASKS[0]], [TASKS[1]]],
        "length": list(LENGTHS),
        "data/chunk_index": [0, 0],
        "data/file_index": [0, 0],
        "dataset_from_index": [int(s) for s in starts],
        "dataset_to_index": [int(s + n) for s, n in zip(starts, LENGTHS, strict=True)],
        f"videos/{CAMERA}/chunk_index": [0, 0],
        f"videos/{CAMERA}/file_index": [0, 0],
        f"videos/{CAMERA}/from_timestamp": froms,
        f"videos/{CAMERA}/to_timestamp": [f + d for f, d in zip(froms, durations, strict=True)],
        "stats/action/mean": [
            truth["action"][s : s + n].mean(0).tolist() for s, n in zip(starts, LENGTHS, strict=True)
        ],
        "meta/episodes/chunk_index": [0, 0],
        "meta/episodes/file_index": [0, 0],
    }
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0, 1], "task": list(TASKS)}), root / "meta/tasks.parquet")
    stats = {
        "action": {
            "mean": truth["action"].mean(0).tolist(),
            "std": truth["action"].std(0).tolist(),
            "min": truth["action"].min(0).tolist(),
            "max": truth["action"].max(0).tolist(),
            "count": [len(truth["action"])],
        }
    }
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=4))
    info = {
        "codebase_version": "v3.0",
        "robot_type": "sawyer",
        "total_episodes": 2,
        "total_frames": int(sum(LENGTHS)),
        "total_tasks": 2,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": FPS,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": _features("channels"),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def build_v21(root: Path, truth: dict) -> Path:
    """One parquet and one mp4 per episode, jsonl metadata, variable-length list columns."""
    import pyarrow.parquet as pq

    meta = root / "meta"
    meta.mkdir(parents=True)
    episodes, episodes_stats = [], []
    for e, (start, n) in enumerate(zip(truth["starts"], LENGTHS, strict=True)):
        rows = slice(int(start), int(start + n))
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_data_table(truth, rows, fixed=False), path)
        encode_raw(
            root / f"videos/chunk-000/{CAMERA}/episode_{e:06d}.mp4", truth["images"][rows], FPS, "libx264"
        )
        episodes.append({"episode_index": e, "tasks": [TASKS[e]], "length": n})
        action = truth["action"][rows]
        episodes_stats.append(
            {
                "episode_index": e,
                "stats": {
                    "action": {
                        "min": action.min(0).tolist(),
                        "max": action.max(0).tolist(),
                        "mean": action.mean(0).tolist(),
                        "std": action.std(0).tolist(),
                        "count": [n],
                    }
                },
            }
        )
    (meta / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in episodes))
    (meta / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(TASKS))
    )
    (meta / "episodes_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in episodes_stats))
    info = {
        "codebase_version": "v2.1",
        "robot_type": "sawyer",
        "total_episodes": 2,
        "total_frames": int(sum(LENGTHS)),
        "total_tasks": 2,
        "total_videos": 2,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _features("channel"),
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    return root


# ----------------------------------------------------------------------------- our writer
WRITER_FPS = 20
WRITER_CAMERAS = ("observation.images.left", "observation.images.right")


def writer_features() -> dict:
    from wam.data import vector_feature, video_feature

    return {
        WRITER_CAMERAS[0]: video_feature(SIZE, SIZE),
        WRITER_CAMERAS[1]: video_feature(SIZE, SIZE),
        "observation.state": vector_feature(["x", "y", "z", "gripper"]),
        "action": vector_feature(4),
        "reward": {"dtype": "float64", "shape": (1,), "names": None},
    }


def writer_episode(seed: int, length: int) -> dict[str, np.ndarray]:
    """A patterned episode: gradients that move with time (so frames differ), random state/action."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, SIZE, dtype=np.float32)
    left = np.empty((length, SIZE, SIZE, 3), np.uint8)
    for t in range(length):
        left[t, :, :, 0] = ramp[None, :]
        left[t, :, :, 1] = ramp[:, None]
        left[t, :, :, 2] = (30 + 9 * t + 20 * seed) % 230
    right = np.ascontiguousarray(255 - left)
    return {
        WRITER_CAMERAS[0]: left,
        WRITER_CAMERAS[1]: right,
        "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(length, 4)).astype(np.float32),
        "reward": rng.normal(size=(length, 1)),
    }


WRITER_LENGTHS = (7, 12, 9)
WRITER_TASKS = ("reach the goal", "push the puck", "reach the goal")


def write_episodes(writer, seeds: range | list[int]) -> list[dict[str, np.ndarray]]:
    episodes = []
    for seed in seeds:
        frames = writer_episode(seed, WRITER_LENGTHS[seed % 3])
        writer.add_episode(
            frames, task=WRITER_TASKS[seed % 3], extra={"seed": seed, "success": seed % 2 == 0}
        )
        episodes.append(frames)
    return episodes
