"""The latent cache: clip cutting and padding, camera tiling, build/reuse/invalidate/resume, reading."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch

from wam.data.latent_cache import (
    LOCK_NAME,
    MANIFEST_NAME,
    ClipSpec,
    EpisodeSpan,
    LatentCache,
    check_cache_root,
    clip_frame_indices,
    dataset_fingerprint,
    default_cache_root,
    tile_cameras,
)
from wam.models.codecs import CompactCodec, CompactCodecConfig

TINY = CompactCodecConfig(z_dim=4, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster, and immune to a busy shared CPU (tested: 20x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeSource:
    """An in-memory EpisodeSource: random frames per (episode, camera); counts reads; can fail mid-build."""

    def __init__(self, lengths=(7, 5, 9), cameras=("cam_a", "cam_b"), size=16, version="v1", fail_at=None):
        self.camera_keys = tuple(cameras)
        self.version, self.fail_at, self.reads = version, fail_at, 0
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.spans = [
            EpisodeSpan(10 + i, int(s), int(n)) for i, (s, n) in enumerate(zip(starts, lengths, strict=True))
        ]
        gen = torch.Generator().manual_seed(0)
        self.frames = {
            (span.episode_index, cam): torch.rand(span.length, 3, size, size, generator=gen)
            for span in self.spans
            for cam in cameras
        }

    def episodes(self):
        return list(self.spans)

    def episode_frames(self, episode, camera_key):
        if episode.episode_index == self.fail_at:
            raise RuntimeError("simulated crash")
        self.reads += 1
        return self.frames[(episode.episode_index, camera_key)]

    def fingerprint(self):
        return hashlib.sha256(f"{self.version}{[s.length for s in self.spans]}".encode()).hexdigest()


def counting(codec):
    """Wrap codec.encode to count the clips it encodes."""
    codec.calls = 0
    encode = codec.encode

    def wrapped(frames):
        codec.calls += frames.shape[0]
        return encode(frames)

    codec.encode = wrapped
    return codec


@pytest.fixture
def codec():
    torch.manual_seed(0)
    return counting(CompactCodec(TINY).eval())


def build(source, codec, cache_dir, **kw):
    params = dict(clip_frames=5, frame_stride=2, batch_size=4, progress=False) | kw
    return LatentCache.build(source, codec, cache_dir=cache_dir, **params)


# ----------------------------------------------------------------------------- pure helpers
def test_clip_indices_clamp_to_the_episode_end_like_lerobot():
    index, pad = clip_frame_indices(10, ClipSpec(("c",), clip_frames=5, frame_stride=2))
    assert index.shape == (10, 5)
    assert index[0].tolist() == [0, 2, 4, 6, 8]
    assert index[5].tolist() == [5, 7, 9, 9, 9] and pad[5].tolist() == [False, False, False, True, True]
    assert index[9].tolist() == [9] * 5


def test_tile_cameras_layouts():
    a, b, c = (torch.full((2, 3, 16, 16), v) for v in (0.1, 0.5, 0.9))
    horizontal = tile_cameras({"a": a, "b": b})
    assert horizontal.shape == (2, 3, 16, 32) and torch.equal(horizontal[..., 16:], b)
    assert tile_cameras([a, b], "vertical").shape == (2, 3, 32, 16)
    robotwin = tile_cameras([a, b, c], "robotwin")  # head on top, two wrists below at half size
    assert robotwin.shape == (2, 3, 24, 16)
    assert torch.allclose(robotwin[..., 16:, :8], torch.tensor(0.5)) and torch.allclose(
        robotwin[..., 16:, 8:], torch.tensor(0.9)
    )
    assert tile_cameras([a]) is a
    with pytest.raises(ValueError, match="exactly 3"):
        tile_cameras([a, b], "robotwin")
    with pytest.raises(ValueError, match="share their height"):
        tile_cameras([a, torch.zeros(2, 3, 8, 16)])
    with pytest.raises(ValueError, match="Unknown tile layout"):
        tile_cameras([a, b], "diagonal")


def test_dataset_fingerprint_tracks_meta_content_and_data_files(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "meta" / "info.json").write_text('{"fps": 10}')
    (tmp_path / "data" / "file-000.parquet").write_bytes(b"1234")
    fp = dataset_fingerprint(tmp_path)
    assert dataset_fingerprint(tmp_path) == fp
    (tmp_path / "meta" / "info.json").write_text('{"fps": 20}')
    fp2 = dataset_fingerprint(tmp_path)
    assert fp2 != fp
    (tmp_path / "data" / "file-000.parquet").write_bytes(b"12345")
    assert dataset_fingerprint(tmp_path) != fp2
    assert default_cache_root(tmp_path / "ds") == tmp_path / "ds-latents"


# ----------------------------------------------------------------------------- build and read
def test_build_gives_the_codec_latents_of_every_clip(tmp_path, codec):
    source = FakeSource()
    cache = build(source, codec, tmp_path)
    assert len(cache) == 21 and cache.latent_shape == (4, 2, 2, 4)  # 16x32 tiled image, 5 frames -> F=2
    assert codec.calls == 21
    for index in (0, 6, 7, 13, 20):  # episode starts/ends, including fully padded clips
        span = next(s for s in source.spans if s.start <= index < s.start + s.length)
        local = index - span.start
        rows = np.minimum(local + 2 * np.arange(5), span.length - 1)
        views = [source.frames[(span.episode_index, cam)][rows] for cam in source.camera_keys]
        expected = codec.encode(torch.cat(views, dim=-1)[None])[0]  # (C, F, h, w)
        assert torch.allclose(cache.latents(index), expected, atol=2e-3)  # float16 storage
    assert cache.clip_is_pad(6).tolist() == [False, True, True, True, True]
    assert cache.latents_batch([0, 20]).shape == (2, 4, 2, 2, 4)
    with pytest.raises(IndexError):
        cache.latents(21)
    assert not [
        p for p in cache.folder.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME
    ]  # no temp files


def test_second_build_is_a_no_op(tmp_path, codec):
    first = build(FakeSource(), codec, tmp_path)
    codec.calls = 0
    source = FakeSource()
    second = build(source, codec, tmp_path)
    assert codec.calls == 0 and source.reads == 0
    assert second.folder == first.folder and torch.equal(second.latents(3), first.latents(3))
    assert LatentCache(first.folder).key == first.key  # reopening by folder


def test_dataset_change_invalidates(tmp_path, codec):
    first = build(FakeSource(version="v1"), codec, tmp_path)
    codec.calls = 0
    second = build(FakeSource(version="v2"), codec, tmp_path)
    assert second.folder != first.folder and codec.calls == 21


def test_codec_change_invalidates(tmp_path, codec):
    first = build(FakeSource(), codec, tmp_path)
    with torch.no_grad():
        next(codec.parameters()).mul_(1.01)
    codec.calls = 0
    second = build(FakeSource(), codec, tmp_path)
    assert second.folder != first.folder and codec.calls == 21
    assert not torch.equal(second.latents(0), first.latents(0))


def test_clip_parameters_change_the_key(tmp_path, codec):
    base = build(FakeSource(), codec, tmp_path)
    assert build(FakeSource(), codec, tmp_path, frame_stride=1).folder != base.folder
    single = build(FakeSource(), codec, tmp_path, camera_keys=["cam_b"], dtype="float32")
    assert single.folder != base.folder and single.latent_shape == (4, 2, 2, 2)


def test_interrupted_build_resumes(tmp_path, codec):
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(FakeSource(fail_at=12), codec, tmp_path)  # the third episode fails
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert sorted(p.name for p in folder.glob("episode_*.npy")) == [
        "episode_000010.npy",
        "episode_000011.npy",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        LatentCache(folder)
    (folder / ".episode_000012.dead.wamtmp.npy").write_bytes(b"torn")  # a crashed write's leftover
    codec.calls = 0
    resumed = build(FakeSource(), codec, tmp_path)
    assert resumed.folder == folder and codec.calls == 9  # only the missing episode
    assert not (folder / ".episode_000012.dead.wamtmp.npy").exists()
    fresh = build(FakeSource(), codec, tmp_path / "fresh")
    for index in range(len(fresh)):
        assert torch.equal(resumed.latents(index), fresh.latents(index))


def test_build_validates_sizes_and_params(tmp_path, codec):
    with pytest.raises(ValueError, match="multiples of 8"):
        build(FakeSource(size=12), codec, tmp_path)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        build(FakeSource(), codec, tmp_path, clip_frames=4)
    with pytest.raises(ValueError, match="cache_dir is required"):
        LatentCache.build(FakeSource(), codec, progress=False)
    resized = build(FakeSource(size=12), codec, tmp_path, image_size=8)
    assert resized.latent_shape == (4, 2, 1, 2)


def test_shards_are_memory_mapped(tmp_path, codec):
    cache = build(FakeSource(), codec, tmp_path)
    cache.latents(0)
    (shard,) = [s for s in cache._shards.values()]
    assert isinstance(shard, np.memmap) and os.path.samefile(
        shard.filename, cache.folder / "episode_000010.npy"
    )


# ----------------------------------------------------------------------------- a real LeRobot dataset
CAMS = ("observation.images.a", "observation.images.b")


def write_dataset(root, lengths=(6, 9)):
    """A tiny v3.0 dataset: two 16x16 h264 cameras, 10 fps."""
    from wam.data import LeRobotDatasetWriter, vector_feature, video_feature

    features = {cam: video_feature(16, 16) for cam in CAMS} | {
        "observation.state": vector_feature(2),
        "action": vector_feature(2),
    }
    writer = LeRobotDatasetWriter.create(root, fps=10, features=features, video_codec="h264")
    rng = np.random.default_rng(0)
    for length in lengths:
        frames = {cam: rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8) for cam in CAMS}
        frames |= {k: rng.random((length, 2), dtype=np.float32) for k in ("observation.state", "action")}
        writer.add_episode(frames, task="push the block")
    writer.finalize()
    return root


@pytest.fixture
def lerobot_root(tmp_path):
    data = pytest.importorskip("wam.data")
    if not hasattr(data, "LeRobotDataset"):
        pytest.skip("wam.data.LeRobotDataset is not available")
    pytest.importorskip("pyarrow.parquet", reason="pyarrow cannot be imported in this environment")
    return write_dataset(tmp_path / "ds")


def test_build_from_a_lerobot_dataset_matches_its_reader(lerobot_root, codec):
    from wam.data import LeRobotDataset

    cache = LatentCache.build(lerobot_root, codec, clip_frames=5, frame_stride=2, progress=False)
    assert cache.folder.parent == lerobot_root.parent / "ds-latents" and len(cache) == 15
    dataset = LeRobotDataset(
        lerobot_root, delta_timestamps={cam: [k * 2 / 10 for k in range(5)] for cam in CAMS}
    )
    for index in (0, 4, 5, 6, 14):  # lerobot's clamping at the end of each episode
        item = dataset[index]
        expected = codec.encode(torch.cat([item[cam] for cam in CAMS], dim=-1)[None])[0]
        assert torch.allclose(cache.latents(index), expected, atol=2e-3)
        assert torch.equal(cache.clip_is_pad(index), item[f"{CAMS[0]}_is_pad"])
    codec.calls = 0
    assert (
        LatentCache.build(lerobot_root, codec, clip_frames=5, frame_stride=2, progress=False).folder
        == cache.folder
    )
    assert codec.calls == 0


def test_appending_an_episode_invalidates_the_cache(lerobot_root, codec):
    from wam.data import LeRobotDatasetWriter

    first = LatentCache.build(lerobot_root, codec, clip_frames=5, frame_stride=2, progress=False)
    writer = LeRobotDatasetWriter.resume(lerobot_root)
    rng = np.random.default_rng(1)
    frames = {cam: rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8) for cam in CAMS}
    frames |= {k: rng.random((4, 2), dtype=np.float32) for k in ("observation.state", "action")}
    writer.add_episode(frames, task="push the block")
    writer.finalize()
    second = LatentCache.build(lerobot_root, codec, clip_frames=5, frame_stride=2, progress=False)
    assert second.folder != first.folder and len(second) == 19


# ----------------------------------------------------------------------------- concurrent builds
def test_a_second_build_waits_for_the_first_and_reuses_its_cache(tmp_path, codec):
    """Two trainings on one dataset: the later build must not delete the earlier one's temp files."""
    import shutil
    import threading
    import time

    from filelock import FileLock

    probe = build(FakeSource(), codec, tmp_path / "probe")  # the finished cache the other process makes
    folder = tmp_path / "cache" / probe.folder.name
    folder.mkdir(parents=True)
    started = json.loads((probe.folder / MANIFEST_NAME).read_text()) | {"complete": False}
    (folder / MANIFEST_NAME).write_text(json.dumps(started))  # the other build's first write
    live_tmp = folder / ".episode_000010.1234abcd.wamtmp.npy"  # then its episodes, mid-write
    live_tmp.write_bytes(b"half written")
    other = FileLock(str(folder / LOCK_NAME))
    other.acquire()
    codec.calls = 0
    built: list[LatentCache] = []
    waiter = threading.Thread(target=lambda: built.append(build(FakeSource(), codec, tmp_path / "cache")))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and live_tmp.exists() and not list(folder.glob("episode_*.npy"))
    for path in probe.folder.iterdir():  # the other process finishes its build
        shutil.copy2(path, folder / path.name)
    live_tmp.unlink()
    other.release()
    waiter.join(timeout=30)
    assert not waiter.is_alive() and built[0].folder == folder
    assert codec.calls == 0  # reused, not encoded again
    for index in range(len(probe)):
        assert torch.equal(built[0].latents(index), probe.latents(index))


def test_a_key_folder_holding_only_a_build_lock_is_a_cache_being_started(tmp_path, codec):
    folder = tmp_path / "cache" / ("0123456789abcdef")
    folder.mkdir(parents=True)
    (folder / LOCK_NAME).touch()
    check_cache_root(tmp_path / "cache")  # another build has just taken its lock: not a user's folder
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a wam latent cache"):
        check_cache_root(tmp_path / "cache")
