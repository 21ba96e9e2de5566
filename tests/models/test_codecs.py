"""Latent codecs: time layout, shapes, normalisation, tiny Wan VAEs via diffusers, compact codec training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wam.models.codecs import (
    WAN_VAE_PRESETS,
    CompactCodec,
    CompactCodecConfig,
    TensorClipSource,
    WanVAECodec,
    downsample_latents,
    latent_num_frames,
    load_codec,
    pixel_num_frames,
    save_codec,
    train_codec,
    upsample_latents,
)
from wam.models.codecs.wan import (
    WAN21_LATENTS_MEAN,
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    preset_diffusers_config,
    wan_vae_geometry,
)

TINY = CompactCodecConfig(z_dim=4, spatial_stride=8, channels=(8, 8, 16), num_res_blocks=1, groups=4)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny tensors: one intra-op thread is faster, and immune to a busy shared CPU (tested: 20x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_wan(version: str):
    """A randomly initialised AutoencoderKLWan with the geometry of a released VAE but tiny widths."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    common = dict(
        base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    if version == "2.1":
        return AutoencoderKLWan(z_dim=16, **common)  # diffusers' defaults hold the Wan2.1 tables
    return AutoencoderKLWan(
        z_dim=48,
        decoder_base_dim=12,
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        latents_mean=list(WAN22_LATENTS_MEAN),
        latents_std=list(WAN22_LATENTS_STD),
        **common,
    )


def moving_squares(n: int = 24, t: int = 5, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Synthetic clips (n, t, 3, size, size) in [0, 1]: a coloured square sliding over a grey floor."""
    gen = torch.Generator().manual_seed(seed)
    clips = torch.full((n, t, 3, size, size), 0.3)
    for i in range(n):
        colour = torch.rand(3, generator=gen)
        y, x = (int(v) for v in torch.randint(0, size - 10, (2,), generator=gen))
        for k in range(t):
            clips[i, k, :, y : y + 8, x + k : x + k + 8] = colour[:, None, None]
    return clips


# ----------------------------------------------------------------------------- time layout and shapes
@pytest.mark.parametrize(("t", "f"), [(1, 1), (5, 2), (9, 3), (33, 9)])
def test_causal_time_layout(t, f):
    assert latent_num_frames(t) == f and pixel_num_frames(f) == t


@pytest.mark.parametrize("t", [0, 2, 4, 6, 8])
def test_clip_lengths_other_than_1_plus_4k_are_refused(t):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        latent_num_frames(t)
    if t:
        with pytest.raises(ValueError, match="1 \\+ 4k"):
            CompactCodec(TINY).encode(torch.rand(1, t, 3, 16, 16))


def test_compact_round_trip_shapes_and_range():
    codec = CompactCodec(TINY).eval()
    for t, f in [(1, 1), (5, 2), (9, 3)]:
        z = codec.encode(torch.rand(2, t, 3, 16, 24))
        assert z.shape == (2, 4, f, 2, 3) == (2, *codec.latent_shape(t, 16, 24))
        frames = codec.decode(z)
        assert frames.shape == (2, t, 3, 16, 24) and frames.min() >= 0 and frames.max() <= 1
    with pytest.raises(ValueError, match="multiples of 8"):
        codec.encode(torch.rand(1, 5, 3, 20, 16))
    assert (codec.z_dim, codec.spatial_stride, codec.temporal_stride) == (4, 8, 4)
    assert 100_000 < sum(p.numel() for p in CompactCodec().parameters()) < 1_000_000  # "a few hundred K"


def test_compact_codec_is_causal_in_groups_of_four():
    codec = CompactCodec(TINY).eval()
    x = torch.rand(1, 9, 3, 16, 16)
    z = codec.encode(x)  # (1, C, 3, 2, 2)
    y = x.clone()
    y[:, 5:] = torch.rand(1, 4, 3, 16, 16)  # frames of latent frame 2 only
    zy = codec.encode(y)
    assert torch.equal(z[:, :, :2], zy[:, :, :2]) and not torch.allclose(z[:, :, 2], zy[:, :, 2])
    y[:, 1:] = 0.5  # everything but the first frame
    assert torch.equal(codec.encode(y)[:, :, 0], z[:, :, 0])  # the first frame is encoded alone


def test_downsample_and_upsample_latents():
    z = torch.randn(2, 16, 3, 14, 28)
    down = downsample_latents(z, 2)  # Light-WAM: 16x3x28x56 -> 16x3x14x28 style
    assert down.shape == (2, 16, 3, 7, 14)
    assert torch.allclose(down[0, 0, 0, 0, 0], z[0, 0, 0, :2, :2].mean())
    assert downsample_latents(z[0], 2).shape == (16, 3, 7, 14)  # unbatched (C, F, h, w)
    assert downsample_latents(z, 1) is z
    assert upsample_latents(down, 2).shape == z.shape
    with pytest.raises(ValueError, match="not divisible by 4"):
        downsample_latents(z, 4)
    flat = torch.ones(1, 2, 1, 4, 4)
    assert torch.allclose(upsample_latents(downsample_latents(flat, 2), 2), flat)


def test_config_validation():
    with pytest.raises(ValueError, match="power of two"):
        CompactCodecConfig(spatial_stride=6)
    with pytest.raises(ValueError, match="log2"):
        CompactCodecConfig(spatial_stride=16, channels=(8, 8, 8))
    with pytest.raises(ValueError, match="groups"):
        CompactCodecConfig(channels=(8, 8, 12), groups=8)


# ----------------------------------------------------------------------------- Wan VAEs (tiny, random)
def test_tiny_wan21_vae_through_diffusers(tmp_path):
    vae = tiny_wan("2.1").eval()
    vae.save_pretrained(tmp_path / "vae")
    codec = load_codec(tmp_path / "vae")
    assert isinstance(codec, WanVAECodec)
    assert (codec.z_dim, codec.spatial_stride, codec.temporal_stride) == (16, 8, 4)
    assert codec.latents_mean.tolist() == pytest.approx(WAN21_LATENTS_MEAN)
    frames = torch.rand(1, 5, 3, 32, 32)
    z = codec.encode(frames)
    assert z.shape == (1, 16, 2, 4, 4)
    with torch.no_grad():  # reference: diffusers directly, posterior mean, published table
        raw = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode()
    mean = torch.tensor(WAN21_LATENTS_MEAN)[None, :, None, None, None]
    std = torch.tensor(vae.config.latents_std)[None, :, None, None, None]
    assert torch.allclose(z, (raw - mean) / std, atol=1e-5)
    assert torch.equal(codec.encode(frames), z)  # deterministic: the posterior mean
    out = codec.decode(z)
    assert out.shape == (1, 5, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        codec.encode(torch.rand(1, 4, 3, 32, 32))


def test_tiny_wan22_vae_is_patchified_to_stride_16(tmp_path):
    tiny_wan("2.2").save_pretrained(tmp_path / "model" / "vae")
    codec = load_codec(tmp_path / "model")  # a diffusers model root holding vae/
    assert isinstance(codec, WanVAECodec)
    assert (codec.z_dim, codec.spatial_stride) == (48, 16)
    assert codec.latents_std.tolist() == pytest.approx(WAN22_LATENTS_STD)
    z = codec.encode(torch.rand(2, 9, 3, 32, 48))
    assert z.shape == (2, 48, 3, 2, 3)
    assert codec.decode(z).shape == (2, 9, 3, 32, 48)
    assert codec.downsample(codec.encode(torch.rand(1, 1, 3, 64, 64)), 2).shape == (1, 48, 1, 2, 2)


@pytest.mark.parametrize(
    ("name", "z", "stride", "params_m"), [("wan2.1-vae", 16, 8, 127), ("wan2.2-vae", 48, 16, 705)]
)
def test_preset_architectures_match_the_released_vaes(name, z, stride, params_m):
    from diffusers import AutoencoderKLWan

    config = preset_diffusers_config(name)
    with torch.device("meta"):
        vae = AutoencoderKLWan(**config)
    assert wan_vae_geometry(vae.config) == (stride, 4) and vae.config.z_dim == z == len(config["latents_std"])
    assert round(sum(p.numel() for p in vae.parameters()) / 1e6) == params_m


def test_wan_presets_resolve_only_in_the_local_hf_cache(tmp_path):
    assert (WAN_VAE_PRESETS["wan2.1-vae"].z_dim, WAN_VAE_PRESETS["wan2.2-vae"].spatial_stride) == (16, 16)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        WanVAECodec.from_preset("wan2.1-vae", cache_dir=tmp_path)
    repo = tmp_path / "models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    tiny_wan("2.1").save_pretrained(repo / "snapshots" / "0123abcd" / "vae")
    codec = WanVAECodec.from_preset("wan2.1-vae", cache_dir=tmp_path)
    assert codec.encode(torch.rand(1, 1, 3, 16, 16)).shape == (1, 16, 1, 2, 2)


# ----------------------------------------------------------------------------- fingerprint, save/load
def test_fingerprint_tracks_weights_and_table(tmp_path):
    codec = CompactCodec(TINY)
    fp = codec.fingerprint
    save_codec(codec, tmp_path / "c")
    assert load_codec(tmp_path / "c").fingerprint == fp
    with torch.no_grad():
        next(codec.parameters()).add_(1e-3)
    assert codec.fingerprint != fp
    other = CompactCodec(TINY)
    other.load_state_dict(load_codec(tmp_path / "c").state_dict())
    assert other.fingerprint == fp
    other.set_normalization(torch.zeros(4), torch.full((4,), 2.0))
    assert other.fingerprint != fp


def test_load_codec_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="presets"):
        load_codec(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"type": "mystery"}))
    with pytest.raises(ValueError, match="neither"):
        load_codec(tmp_path / "other")
    save_codec(CompactCodec(TINY), tmp_path / "half")
    (tmp_path / "half" / "config.json").unlink()  # as if interrupted before the last write
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_codec(tmp_path / "half")


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("codec")
    clips = moving_squares(size=24)
    result = train_codec(
        TensorClipSource(clips),
        out,
        steps=30,
        batch_size=4,
        lr=3e-3,
        stats_clips=24,
        codec=TINY,
        progress=False,
    )
    return result, clips


def test_train_codec_decreases_loss_and_saves(trained):
    result, _ = trained
    assert len(result.losses) == 30
    assert sum(result.losses[-5:]) / 5 < 0.6 * sum(result.losses[:5]) / 5
    assert 10.0 < result.psnr_db < 60.0
    config = json.loads((result.out_dir / "config.json").read_text())
    stats = json.loads((result.out_dir / "stats.json").read_text())
    assert config["type"] == "compact" and config["config"]["z_dim"] == 4
    assert len(stats["latents_mean"]) == 4 and stats["recon_psnr_db"] == pytest.approx(result.psnr_db)
    assert not list(result.out_dir.glob(".*"))  # no temporary leftovers


def test_trained_codec_latents_are_normalised_on_its_data(trained):
    result, clips = trained
    codec = load_codec(result.out_dir)
    z = codec.encode(clips)  # (N, C, F, h, w)
    per_channel = z.transpose(0, 1).reshape(4, -1)
    assert per_channel.mean(1).abs().max() < 0.05
    assert (per_channel.std(1) - 1).abs().max() < 0.05
    raw = codec.encode_raw(clips.permute(0, 2, 1, 3, 4) * 2 - 1)
    assert (raw.transpose(0, 1).reshape(4, -1).std(1) - 1).abs().max() > 0.05  # the table did the work


def test_saved_codec_reloads_to_identical_outputs(trained):
    result, clips = trained
    first, second = load_codec(result.out_dir), load_codec(result.out_dir)
    assert first.fingerprint == second.fingerprint == result.fingerprint
    z = first.encode(clips[:4])
    assert torch.equal(z, second.encode(clips[:4]))
    assert torch.equal(first.decode(z), second.decode(z))


def test_train_codec_rejects_unknown_options_and_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'steps'"):
        train_codec(TensorClipSource(moving_squares(2)), tmp_path, stepz=3)
    with pytest.raises(ValueError, match="multiples of the codec stride"):
        train_codec(
            TensorClipSource(moving_squares(2, size=20)), tmp_path, steps=1, codec=TINY, progress=False
        )
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        train_codec(TensorClipSource(moving_squares(2)), tmp_path, clip_frames=4)


# ------------------------------------------------------------------------ on a LeRobot dataset, and the CLI
CAMS = ("observation.images.top", "observation.images.wrist")


@pytest.fixture
def dataset_root(tmp_path):
    """A tiny v3.0 dataset: two 32x32 h264 cameras, two episodes of 8 frames."""
    data = pytest.importorskip("wam.data")
    if not hasattr(data, "LeRobotDataset"):
        pytest.skip("wam.data.LeRobotDataset is not available")
    pytest.importorskip("pyarrow.parquet", reason="pyarrow cannot be imported in this environment")
    from wam.data import LeRobotDatasetWriter, vector_feature, video_feature

    features = {c: video_feature(32, 32) for c in CAMS} | {"action": vector_feature(2)}
    writer = LeRobotDatasetWriter.create(tmp_path / "ds", fps=10, features=features, video_codec="h264")
    clips = (moving_squares(2, t=8) * 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()  # (2, 8, 32, 32, 3)
    for episode in clips:
        frames = {CAMS[0]: episode, CAMS[1]: episode[:, ::-1].copy(), "action": np.zeros((8, 2), np.float32)}
        writer.add_episode(frames, task="push the block")
    writer.finalize()
    return tmp_path / "ds"


def test_train_codec_on_a_lerobot_dataset(dataset_root):
    result = train_codec(
        dataset_root,
        steps=3,
        batch_size=3,
        stats_clips=6,
        frame_stride=2,
        image_size=16,
        codec=TINY,
        progress=False,
    )
    assert result.out_dir == dataset_root.parent / "ds-codec"  # next to the dataset, never inside it
    codec = load_codec(result.out_dir)
    assert codec.fingerprint == result.fingerprint
    assert codec.encode(torch.rand(1, 5, 3, 16, 16)).shape == (1, 4, 2, 2, 2)
    assert json.loads((result.out_dir / "stats.json").read_text())["stats_clips"] == 6


def test_cli_train_codec_then_cache_latents(dataset_root):
    import typer
    from typer.testing import CliRunner

    from wam.commands import codec as codec_commands

    app = typer.Typer()
    codec_commands.register(app)
    runner = CliRunner()
    data = str(dataset_root)
    train = ["train-codec", "--data", data, "--steps", "2", "--image-size", "16", "--z-dim", "4"]
    result = runner.invoke(app, train)
    assert result.exit_code == 0, result.output
    assert (
        "reconstruction PSNR" in result.output
        and (dataset_root.parent / "ds-codec" / "config.json").is_file()
    )
    again = runner.invoke(app, train)
    assert isinstance(again.exception, FileExistsError) and "--overwrite" in str(again.exception)
    cache = [
        "cache-latents",
        "--data",
        data,
        "--clip-frames",
        "5",
        "--frame-stride",
        "2",
        "--image-size",
        "16",
    ]
    result = runner.invoke(app, cache)
    assert result.exit_code == 0, result.output
    assert "16 clips cached as 4x2x2x4 float16 latents" in result.output  # two cameras side by side
    bad = runner.invoke(app, [*cache[:-2], "--layout", "robotwin"])
    assert isinstance(bad.exception, ValueError) and "exactly 3" in str(bad.exception)
