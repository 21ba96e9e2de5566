"""Bad inputs of the data area: broken datasets, overwrite of what wam did not write, bad caches.

Every case is listed in CASES with a fragment of its one-line answer. `wam data info` cases run
through the CLI (exit 2, one `error:` line naming the file); `wam data verify` cases expect exit
1 and a problem line naming the file; library cases (the training and codec paths that read
datasets, the writer, the latent cache) expect one exception whose message names the file.
Each case breaks a fresh copy of the tiny fixtures of `lerobot_fixtures.py`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad_data_cases import CASES, DATA3, DATA21, EPISODES3, VIDEO3, VIDEO21
from lerobot_fixtures import CAMERA, WRITER_CAMERAS, write_episodes, writer_features

from one_line import assert_one_line_error, run_wam

CASE = {case.id: case for case in CASES}


# ----------------------------------------------------------------------------- breaking things
def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "ds"))


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _cut_tail(path: Path, nbytes: int = 200) -> None:
    """Drop the end of an mp4 whose index is at the front: it opens, then fails while decoding."""
    data = path.read_bytes()
    path.write_bytes(data[:-nbytes])


def _info(root: Path, change: Callable[[dict], object]) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    replaced = change(info)
    (root / "meta/info.json").write_text(json.dumps(info if replaced is None else replaced))


def _table(root: Path, rel: str, change: Callable) -> None:
    import pyarrow.parquet as pq

    path = root / rel
    pq.write_table(change(pq.read_table(path)), path)


def _set_column(table, name: str, values) -> object:
    import pyarrow as pa

    index = table.column_names.index(name)
    return table.set_column(index, name, pa.array(values, type=table.schema.field(name).type))


def _zero_bytes(path: Path, start: float, count: int, from_end: bool = False) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) - count if from_end else int(len(data) * start)
    data[at : at + count] = b"\0" * count
    path.write_bytes(bytes(data))


def _stats(root: Path, change: Callable[[dict], object]) -> None:
    stats = json.loads((root / "meta/stats.json").read_text())
    change(stats)
    (root / "meta/stats.json").write_text(json.dumps(stats))  # json writes NaN as NaN (Python reads it)


def _nan_action(root: Path) -> None:
    def change(t):
        actions = t.column("action").to_pylist()
        actions[2][0] = float("nan")
        return _set_column(t, "action", actions)

    _table(root, DATA3, change)


def _set_camera_shape(info: dict) -> None:
    info["features"][CAMERA]["shape"] = [64, 64, 3]


def _state_shape_4(info: dict) -> None:
    info["features"]["observation.state"]["shape"] = [4]


INFO_BREAKS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "info-truncated-data-parquet": ("v3", lambda r: _cut(r / DATA3)),
    "info-garbled-parquet-footer": ("v21", lambda r: _zero_bytes(r / DATA21, 0, 12, from_end=True)),
    "info-deleted-video": ("v3", lambda r: (r / VIDEO3).unlink()),
    "info-truncated-video": ("v3", lambda r: _cut(r / VIDEO3)),
    "info-empty-video": ("v21", lambda r: (r / VIDEO21).write_bytes(b"")),
    "info-v21-deleted-video": ("v21", lambda r: (r / VIDEO21).unlink()),
    "info-v21-short-video": (
        "v21",
        lambda r: shutil.copyfile(r / VIDEO21.replace("000001", "000000"), r / VIDEO21),
    ),
    "info-data-rows-short": ("v3", lambda r: _table(r, DATA3, lambda t: t.slice(0, 10))),
    "info-missing-features-key": ("v3", lambda r: _info(r, lambda i: i.pop("features") and None)),
    "info-info-not-object": ("v3", lambda r: _info(r, lambda i: [i])),
    "info-feature-without-shape": (
        "v3",
        lambda r: _info(r, lambda i: i["features"]["action"].pop("shape") and None),
    ),
    "info-unsupported-version": ("v3", lambda r: _info(r, lambda i: i.update(codebase_version="v1.6"))),
    "info-fps-not-a-number": ("v3", lambda r: _info(r, lambda i: i.update(fps="ten"))),
    "info-total-frames-wrong": ("v3", lambda r: _info(r, lambda i: i.update(total_frames=99))),
    "info-video-size-mismatch": ("v3", lambda r: _info(r, _set_camera_shape)),
    "info-bad-jsonl-line": (
        "v21",
        lambda r: (r / "meta/episodes.jsonl").write_text(
            (r / "meta/episodes.jsonl").read_text().splitlines()[0] + "\n{oops\n"
        ),
    ),
    "info-jsonl-missing-length": (
        "v21",
        lambda r: (r / "meta/episodes.jsonl").write_text(
            '{"episode_index": 0, "tasks": ["pick the cube"]}\n'
        ),
    ),
    "info-tasks-jsonl-cut": ("v21", lambda r: _cut(r / "meta/tasks.jsonl", 0.7)),
    "info-stats-not-a-mapping": ("v3", lambda r: (r / "meta/stats.json").write_text("[1, 2]")),
    "info-truncated-episodes-parquet": ("v3", lambda r: _cut(r / EPISODES3)),
    "info-truncated-tasks-parquet": ("v3", lambda r: _cut(r / "meta/tasks.parquet")),
    "info-nonfinite-stats": ("v3", lambda r: _stats(r, lambda s: s["action"].update(std=[float("nan")] * 2))),
    "info-episodes-missing-column": (
        "v3",
        lambda r: _table(r, EPISODES3, lambda t: t.drop_columns([f"videos/{CAMERA}/from_timestamp"])),
    ),
}


@pytest.fixture
def sources(lerobot_v3_root: Path, lerobot_v21_root: Path) -> dict[str, Path]:
    return {"v3": lerobot_v3_root, "v21": lerobot_v21_root}


@pytest.mark.parametrize("case_id", list(INFO_BREAKS))
def test_data_info_names_the_broken_file(case_id: str, sources, tmp_path: Path, capsys) -> None:
    source, breaks = INFO_BREAKS[case_id]
    root = _copy(sources[source], tmp_path)
    breaks(root)
    assert_one_line_error(run_wam(["data", "info", str(root)], capsys), CASE[case_id].expect)


def test_data_info_json_lists_the_problems(lerobot_v3_root: Path, tmp_path: Path, capsys) -> None:
    root = _copy(lerobot_v3_root, tmp_path)
    (root / VIDEO3).unlink()
    result = run_wam(["data", "info", str(root), "--json"], capsys)
    assert result.code == 2
    problems = json.loads(result.out)["problems"]
    assert len(problems) == 1 and VIDEO3 in problems[0]


# ----------------------------------------------------------------------------- verify
def _shift_timestamps(root: Path) -> None:
    _table(root, DATA3, lambda t: _set_column(t, "timestamp", t.column("timestamp").to_numpy() + 0.05))


def _index_gap(root: Path) -> None:
    def change(t):
        index = t.column("index").to_numpy().copy()
        index[6:] += 1
        return _set_column(t, "index", index)

    _table(root, DATA3, change)


def _reverse_frame_index(root: Path) -> None:
    _table(root, DATA21, lambda t: _set_column(t, "frame_index", t.column("frame_index").to_numpy()[::-1]))


def _late_episode(root: Path) -> None:
    def change(t):
        for name in (f"videos/{CAMERA}/from_timestamp", f"videos/{CAMERA}/to_timestamp"):
            values = t.column(name).to_numpy().copy()
            values[1] += 0.1
            t = _set_column(t, name, values)
        return t

    _table(root, EPISODES3, change)


VERIFY_BREAKS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "verify-garbled-video": ("v3", lambda r: _zero_bytes(r / VIDEO3, 0.5, 300)),
    "verify-timestamps-off": ("v3", _shift_timestamps),
    "verify-index-gap": ("v3", _index_gap),
    "verify-frame-index-order": ("v21", _reverse_frame_index),
    "verify-from-timestamp-wrong": ("v3", _late_episode),
    "verify-feature-shape-mismatch": ("v3", lambda r: _info(r, _state_shape_4)),
    "verify-nan-in-column": ("v3", _nan_action),
}


@pytest.mark.parametrize("case_id", list(VERIFY_BREAKS))
def test_data_verify_reports_the_problem_with_its_file(case_id: str, sources, tmp_path: Path, capsys) -> None:
    source, breaks = VERIFY_BREAKS[case_id]
    root = _copy(sources[source], tmp_path)
    breaks(root)
    result = run_wam(["data", "verify", str(root)], capsys)
    assert result.code == 1, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    lines = result.out.strip().splitlines()
    assert any(CASE[case_id].expect.lower() in line.lower() for line in lines[:-1]), result.out
    assert "problem(s)" in lines[-1]


def test_data_verify_passes_clean_datasets(sources, written_dataset, capsys) -> None:
    for root in (sources["v3"], sources["v21"], written_dataset[0]):
        result = run_wam(["data", "verify", str(root)], capsys)
        assert result.code == 0, result.out
        assert result.out.strip().splitlines() == [result.out.strip()] and "no problems" in result.out


# ----------------------------------------------------------------------------- library readers
def _raises(case_id: str, call: Callable[[], object]) -> None:
    with pytest.raises((ValueError, FileNotFoundError, FileExistsError)) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and CASE[case_id].expect.lower() in message.lower(), message


def test_train_truncated_video(lerobot_v3_root: Path, tmp_path: Path) -> None:
    from wam.data import LeRobotDataset

    root = _copy(lerobot_v3_root, tmp_path)
    _cut_tail(root / VIDEO3)
    for budget in (0, 2**30):  # seek per query, and whole-file decode into the frame cache
        _raises("train-truncated-video", lambda b=budget: LeRobotDataset(root, video_cache_bytes=b)[7])


def test_codec_truncated_video(lerobot_v3_root: Path, tmp_path: Path) -> None:
    from wam.data.latent_cache import EpisodeSpan, LeRobotEpisodeSource

    root = _copy(lerobot_v3_root, tmp_path)
    _cut_tail(root / VIDEO3)
    source = LeRobotEpisodeSource(root)
    _raises("codec-truncated-video", lambda: source.episode_frames(EpisodeSpan(1, 6, 9), CAMERA))


def test_train_truncated_parquet(lerobot_v3_root: Path, tmp_path: Path) -> None:
    from wam.data import LeRobotDataset

    root = _copy(lerobot_v3_root, tmp_path)
    _cut(root / DATA3)
    _raises("train-truncated-parquet", lambda: LeRobotDataset(root))


def test_train_missing_column(lerobot_v3_root: Path, tmp_path: Path) -> None:
    from wam.data import LeRobotDataset

    root = _copy(lerobot_v3_root, tmp_path)
    _table(root, DATA3, lambda t: t.drop_columns(["action"]))
    _raises("train-missing-column", lambda: LeRobotDataset(root))


def test_train_shape_mismatch(lerobot_v3_root: Path, tmp_path: Path) -> None:
    from wam.data import LeRobotDataset

    root = _copy(lerobot_v3_root, tmp_path)
    _info(root, _state_shape_4)
    _raises("train-shape-mismatch", lambda: LeRobotDataset(root))


def test_train_only_staged(tmp_path: Path) -> None:
    from wam.data import LeRobotDataset, LeRobotDatasetWriter

    root = tmp_path / "ds"
    write_episodes(LeRobotDatasetWriter.create(root, fps=20, features=writer_features()), [0])
    _raises("train-only-staged", lambda: LeRobotDataset(root))


def test_writer_refuses_non_finite_values(tmp_path: Path) -> None:
    from wam.data import LeRobotDatasetWriter

    writer = LeRobotDatasetWriter.create(tmp_path / "ds", fps=20, features=writer_features())
    (good,) = write_episodes(writer, [0])
    length = len(good["action"])
    for case_id, key, value in (
        ("writer-nan-action", "action", np.nan),
        ("writer-float64-overflow", "observation.state", 1e300),
    ):
        frames = {k: np.array(v) for k, v in good.items()}
        frames[key] = frames[key].astype(np.float64)
        frames[key][2, 0] = value
        _raises(case_id, lambda f=frames: writer.add_episode(f, task="pick the cube"))
    assert writer.num_episodes == 1 and length > 2  # nothing was saved


def _tiny_train(root: Path, out: Path) -> list[str]:
    camera = WRITER_CAMERAS[0].rsplit(".", 1)[1]
    sets = ["policy.image_size=null", "policy.dim=32", "policy.num_layers=1", "train.batch_size=2"]
    sets += ["train.num_workers=0", "train.plot=false", f"policy.cameras={camera}"]
    args = ["train", "--preset", "baseline-tiny", "--data", str(root), "--out", str(out), "--steps", "1"]
    return args + [arg for item in sets for arg in ("--set", item)]


def test_train_nonfinite_stats(tmp_path: Path, capsys) -> None:
    root = _wam_dataset(tmp_path / "ds")
    _stats(root, lambda s: s["action"].update(mean=[float("inf"), 0.0, 0.0, 0.0]))
    result = run_wam(_tiny_train(root, tmp_path / "run"), capsys)
    line = assert_one_line_error(result, CASE["train-nonfinite-stats"].expect)
    assert "'mean' of 'action'" in line and "wam data verify" in line


def test_train_zero_episodes(tmp_path: Path, capsys) -> None:
    from wam.data import LeRobotDatasetWriter

    root = tmp_path / "ds"
    LeRobotDatasetWriter.create(root, fps=20, features=writer_features()).finalize()
    result = run_wam(_tiny_train(root, tmp_path / "run"), capsys)
    assert_one_line_error(result, CASE["train-zero-episodes"].expect)


def test_finalize_not_a_dataset(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    result = run_wam(["data", "finalize", str(tmp_path / "empty")], capsys)
    assert_one_line_error(result, CASE["finalize-not-a-dataset"].expect)


# ----------------------------------------------------------------------------- replacing and deleting
def _wam_dataset(root: Path) -> Path:
    from wam.data import LeRobotDatasetWriter

    writer = LeRobotDatasetWriter.create(root, fps=20, features=writer_features())
    write_episodes(writer, [0])
    writer.finalize()
    return root


def test_overwrite_user_notes(tmp_path: Path) -> None:
    from wam.data import LeRobotDatasetWriter

    root = _wam_dataset(tmp_path / "ds")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("keep me")
    _raises(
        "overwrite-user-notes",
        lambda: LeRobotDatasetWriter.create(root, fps=20, features=writer_features(), overwrite=True),
    )
    assert (root / "notes" / "todo.txt").read_text() == "keep me" and (root / "meta/info.json").exists()
    shutil.rmtree(root / "notes")  # without the user's folder, the overwrite goes ahead
    fresh = LeRobotDatasetWriter.create(root, fps=20, features=writer_features(), overwrite=True)
    assert fresh.num_episodes == 0 and not (root / "data").exists()


def test_overwrite_foreign_lerobot(lerobot_v3_root: Path, tmp_path: Path) -> None:
    from wam.data import LeRobotDatasetWriter

    root = _copy(lerobot_v3_root, tmp_path)
    _raises(
        "overwrite-foreign-lerobot",
        lambda: LeRobotDatasetWriter.create(root, fps=20, features=writer_features(), overwrite=True),
    )
    assert (root / DATA3).exists()


def test_overwrite_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wam.data import LeRobotDatasetWriter

    root = _wam_dataset(tmp_path / "ds")
    monkeypatch.chdir(root)
    _raises(
        "overwrite-current-folder",
        lambda: LeRobotDatasetWriter.create(Path("."), fps=20, features=writer_features(), overwrite=True),
    )
    assert (root / "meta/info.json").exists()


COLLECT = [
    "collect",
    "metaworld",
    "--tasks",
    "reach-v3",
    "--episodes",
    "1",
    "--image-size",
    "32",
    "--workers",
    "0",
]


@pytest.mark.parametrize(
    "case_id,flag",
    [
        ("collect-non-dataset", None),
        ("collect-resume-non-dataset", "--resume"),
        ("collect-overwrite-non-dataset", "--overwrite"),
    ],
)
def test_collect_into_a_folder_of_notes(case_id: str, flag: str | None, tmp_path: Path, capsys) -> None:
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("keep me")
    args = [*COLLECT, "--out", str(out), *([flag] if flag else [])]
    assert_one_line_error(run_wam(args, capsys), CASE[case_id].expect)
    assert (out / "todo.txt").read_text() == "keep me"


def test_collect_overwrite_user_notes(tmp_path: Path, capsys) -> None:
    root = _wam_dataset(tmp_path / "ds")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("keep me")
    result = run_wam([*COLLECT, "--out", str(root), "--overwrite"], capsys)
    assert_one_line_error(result, CASE["collect-overwrite-user-notes"].expect)
    assert (root / "notes" / "todo.txt").read_text() == "keep me" and (root / "meta/info.json").exists()


class _TinySource:
    """One 5-frame episode of one 16x16 camera (an EpisodeSource)."""

    camera_keys = ("cam",)

    def episodes(self):
        from wam.data.latent_cache import EpisodeSpan

        return [EpisodeSpan(0, 0, 5)]

    def episode_frames(self, episode, camera_key):
        import torch

        return torch.rand(episode.length, 3, 16, 16)

    def fingerprint(self) -> str:
        return "tiny"


def test_latent_cache_foreign_folder(tmp_path: Path) -> None:
    from wam.data.latent_cache import LatentCache
    from wam.models.codecs import CompactCodec, CompactCodecConfig

    folder = tmp_path / "ds-latents"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    codec = CompactCodec(
        CompactCodecConfig(z_dim=4, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)
    )
    _raises(
        "latent-cache-foreign-folder",
        lambda: LatentCache.build(
            _TinySource(), codec, clip_frames=5, frame_stride=1, cache_dir=folder, progress=False
        ),
    )
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_latent_cache_truncated_shard(tmp_path: Path) -> None:
    from wam.data.latent_cache import CACHE_FORMAT, LatentCache

    folder = tmp_path / "cache" / ("0" * 16)
    folder.mkdir(parents=True)
    np.save(folder / "episode_000000.npy", np.zeros((5, 4, 2, 2, 2), np.float16))
    _cut(folder / "episode_000000.npy", 0.6)
    manifest = {
        "format": CACHE_FORMAT,
        "key": "0" * 64,
        "complete": True,
        "clips": {
            "camera_keys": ["cam"],
            "clip_frames": 5,
            "frame_stride": 1,
            "image_size": None,
            "tile_layout": "horizontal",
            "dtype": "float16",
        },
        "episodes": [[0, 0, 5]],
        "latent_shape": [4, 2, 2, 2],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    cache = LatentCache(folder)
    _raises("latent-cache-truncated-shard", lambda: cache.latents(0))


def test_every_case_has_a_test() -> None:
    tested = {
        *INFO_BREAKS,
        *VERIFY_BREAKS,
        "train-truncated-video",
        "codec-truncated-video",
        "train-truncated-parquet",
        "train-missing-column",
        "train-shape-mismatch",
        "train-only-staged",
        "finalize-not-a-dataset",
        "overwrite-user-notes",
        "overwrite-foreign-lerobot",
        "overwrite-current-folder",
        "collect-non-dataset",
        "collect-resume-non-dataset",
        "collect-overwrite-non-dataset",
        "collect-overwrite-user-notes",
        "latent-cache-foreign-folder",
        "latent-cache-truncated-shard",
        "writer-nan-action",
        "writer-float64-overflow",
        "train-nonfinite-stats",
        "train-zero-episodes",
    }
    assert tested == set(CASE) and len(CASE) == len(CASES)
