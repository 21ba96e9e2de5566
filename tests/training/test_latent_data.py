"""Cached clip latents attached to samples: padding, lookup by index, cache reuse, pickling, the hooks."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from training_fixtures import write_tiny_dataset

from wam.data import LeRobotDataset
from wam.models.codecs import CompactCodec, CompactCodecConfig, save_codec
from wam.policies.baseline.configuration import BaselineConfig
from wam.policies.lightwam.configuration import LightWAMConfig
from wam.training.latent_data import (
    LATENTS_KEY,
    LATENTS_PAD_KEY,
    LatentClipDataset,
    attach_video_latents,
    clip_spec_for,
    ensure_latent_cache,
    latent_frame_padding,
    needs_video_latents,
    resolve_codec,
)

CAMERA = "observation.images.corner2"
TINY_CODEC = CompactCodecConfig(z_dim=4, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)


def _config(codec: Path | None) -> LightWAMConfig:
    return LightWAMConfig(
        image_size=32, chunk_size=8, n_action_steps=4, prefix_steps=4, clip_frames=5, frame_stride=2,
        latent_channels=4, codec=None if codec is None else str(codec),
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("latent_data")
    root = write_tiny_dataset(base / "tiny", episodes=3, frames=11)
    torch.manual_seed(0)
    codec = CompactCodec(TINY_CODEC).eval()
    codec_dir = save_codec(codec, base / "codec")
    calls = []
    encode = codec.encode
    codec.encode = lambda frames: calls.append(frames.shape[0]) or encode(frames)  # count encoded clips
    cache = ensure_latent_cache(root, codec, clip_spec_for(_config(None)), base / "cache", progress=False)
    built = sum(calls)
    return {
        "root": root,
        "codec": codec,
        "codec_dir": codec_dir,
        "cache": cache,
        "calls": calls,
        "built": built,
        "base": base,
    }


def test_latent_frame_padding() -> None:
    pad = torch.tensor([False, False, True, True, True, True, True, True, True])  # T = 9 -> F = 3
    assert latent_frame_padding(pad).tolist() == [False, False, True]  # frame 1 still holds raw frame 1
    assert latent_frame_padding(torch.zeros(5, dtype=torch.bool)).tolist() == [False, False]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        latent_frame_padding(torch.zeros(6, dtype=torch.bool))


def test_samples_carry_the_latents_of_their_clip(setup: dict) -> None:
    root, codec, cache = setup["root"], setup["codec"], setup["cache"]
    episodes = LeRobotDataset(root, episodes=[1, 2])  # a subset: dataset rows != dataset indices
    data = LatentClipDataset(episodes, cache)
    assert len(data) == len(episodes) == 22 and data.meta is episodes.meta
    # independent reference: the clip's frames through delta_timestamps, encoded now
    fps = episodes.meta.fps
    clips = LeRobotDataset(root, episodes=[1, 2], delta_timestamps={CAMERA: [2 * k / fps for k in range(5)]})
    for row in (0, 7, 10, 21):  # episode starts, a middle frame, the episode ends
        item, clip = data[row], clips[row]
        assert int(item["index"]) == int(clip["index"])
        latents = item[LATENTS_KEY]
        assert latents.shape == (4, 2, 4, 4) and latents.dtype == torch.float32
        expected = codec.encode(clip[CAMERA][None])[0]  # (C, F, h, w)
        assert torch.allclose(latents, expected, atol=2e-2, rtol=1e-2)
        assert torch.equal(item[LATENTS_PAD_KEY], latent_frame_padding(clip[f"{CAMERA}_is_pad"]))
    assert data[10][LATENTS_PAD_KEY].tolist() == [False, True]  # the last frame: only padding ahead
    assert data[5][LATENTS_PAD_KEY].tolist() == [False, False]


def test_cache_is_reused_and_the_dataset_pickles(setup: dict) -> None:
    assert setup["built"] == 33  # one clip per frame of the 3 episodes
    before = sum(setup["calls"])
    again = ensure_latent_cache(setup["root"], setup["codec"], setup["cache"].spec, setup["base"] / "cache")
    assert again.folder == setup["cache"].folder and sum(setup["calls"]) == before  # nothing re-encoded
    data = LatentClipDataset(LeRobotDataset(setup["root"]), setup["cache"].folder)
    first = data[3]
    clone = pickle.loads(pickle.dumps(data))  # what a spawned DataLoader worker receives
    assert clone._cache is None
    assert torch.equal(clone[3][LATENTS_KEY], first[LATENTS_KEY])
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    batch = next(iter(loader))
    assert batch[LATENTS_KEY].shape == (3, 4, 2, 4, 4) and batch[LATENTS_PAD_KEY].shape == (3, 2)


def test_cache_of_another_dataset_is_refused(setup: dict, tmp_path: Path) -> None:
    other = write_tiny_dataset(tmp_path / "other", episodes=2, frames=11)
    with pytest.raises(ValueError, match="holds 33 clips but the dataset has 22 frames"):
        LatentClipDataset(LeRobotDataset(other), setup["cache"])


def test_hooks_for_the_training_pipeline(setup: dict) -> None:
    root = setup["root"]
    assert needs_video_latents(_config(None)) and not needs_video_latents(BaselineConfig())
    resolved = resolve_codec(_config(None), root)
    assert resolved.codec == str(root.resolve().parent / "tiny-codec")
    assert resolve_codec(_config(setup["codec_dir"]), root).codec == str(setup["codec_dir"])
    baseline = BaselineConfig()
    assert resolve_codec(baseline, root) is baseline
    policy = dataclasses.replace(_config(setup["codec_dir"]), latent_cache_dir=str(setup["base"] / "cache"))
    dataset = LeRobotDataset(root)
    wrapped = attach_video_latents(dataset, policy, root, progress=False)
    assert isinstance(wrapped, LatentClipDataset) and wrapped.cache_folder == setup["cache"].folder
    assert attach_video_latents(wrapped, policy, root) is wrapped  # idempotent
    assert np.isfinite(wrapped[0][LATENTS_KEY].numpy()).all()
    with pytest.raises(ValueError, match="reads no cached latents"):
        attach_video_latents(dataset, baseline, root)
