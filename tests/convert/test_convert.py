"""`wam convert` on tiny checkpoints in the authors' key layout (built here, see authors_layout.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from authors_layout import (
    FASTWAM_YAML,
    LIGHTWAM_YAML,
    fastwam_shapes,
    lightwam_shapes,
    random_state,
    save_flat,
    save_pt,
    write_stats,
)

from wam.convert import check
from wam.convert.build import write_run
from wam.convert.mapping import ConversionError

SETS = ["policy.image_size=64"]


def _fastwam(tmp_path: Path, state: dict | None = None, flat: bool = False):
    from wam.convert.fastwam import convert

    state = state if state is not None else random_state(fastwam_shapes())
    ckpt = save_flat(state, tmp_path / "fw.safetensors") if flat else save_pt(state, tmp_path / "fw.pt")
    (tmp_path / "fastwam.yaml").write_text(FASTWAM_YAML)
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    return state, convert(ckpt, tmp_path / "fastwam.yaml", preset="fastwam-tiny", wam_sets=SETS)


def _lightwam(tmp_path: Path):
    from wam.convert.lightwam import convert

    state = random_state(lightwam_shapes(), seed=1)
    ckpt = save_pt(state, tmp_path / "lw.pt")
    (tmp_path / "lightwam.yaml").write_text(LIGHTWAM_YAML)
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    return state, convert(ckpt, tmp_path / "lightwam.yaml", preset="lightwam-tiny", wam_sets=SETS)


# ---------------------------------------------------------------------------- an independent Wan forward
def _rope(x: torch.Tensor, grid: tuple[int, int, int], heads: int) -> torch.Tensor:
    """The authors' complex RoPE: pairs split d-2(d//3) / d//3 / d//3 over (frame, h, w)."""
    b, n, width = x.shape
    d = width // heads
    freqs = []
    for axis, size in zip((d - 2 * (d // 3), d // 3, d // 3), grid, strict=True):
        inv = 1.0 / (10000.0 ** (torch.arange(0, axis, 2)[: axis // 2].double() / axis))
        freqs.append(
            torch.polar(
                torch.ones(size, axis // 2, dtype=torch.float64),
                torch.outer(torch.arange(size).double(), inv),
            )
        )
    f, h, w = grid
    table = torch.cat(
        [
            freqs[0][:, None, None].expand(f, h, w, -1),
            freqs[1][None, :, None].expand(f, h, w, -1),
            freqs[2][None, None, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, 1, -1)
    xc = torch.view_as_complex(x.double().reshape(b, n, heads, -1, 2))
    return torch.view_as_real(xc * table).flatten(2).float()


def _reference_video(sd: dict, p: str, latents, t, context, heads: int) -> torch.Tensor:
    """Wan DiT with per-token timesteps (frame 0 at 0) and the first-frame-causal mask, from the weights."""
    lin = lambda x, n: F.linear(x, sd[f"{p}{n}.weight"], sd.get(f"{p}{n}.bias"))  # noqa: E731
    x = F.conv3d(latents, sd[f"{p}patch_embedding.weight"], sd[f"{p}patch_embedding.bias"], stride=(1, 2, 2))
    b, dim, f, h, w = x.shape
    x = x.flatten(2).transpose(1, 2)
    per_token = t[:, None].repeat(1, f * h * w)
    per_token[:, : h * w] = 0
    half = sd[f"{p}time_embedding.0.weight"].shape[1] // 2
    ang = torch.outer(per_token.flatten().double(), torch.pow(10000, -torch.arange(half).double() / half))
    sin = torch.cat([ang.cos(), ang.sin()], 1).float()
    temb = lin(F.silu(lin(sin, "time_embedding.0")), "time_embedding.2").reshape(b, -1, dim)
    tmod = lin(F.silu(temb), "time_projection.1").unflatten(2, (6, dim))
    ctx = lin(F.gelu(lin(context, "text_embedding.0"), approximate="tanh"), "text_embedding.2")
    mask = torch.ones(f * h * w, f * h * w, dtype=torch.bool)
    mask[: h * w, h * w :] = False
    rms = lambda y, n: y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * sd[f"{p}{n}.weight"]  # noqa: E731
    ln = lambda y: F.layer_norm(y, (dim,), eps=1e-6)  # noqa: E731
    split = lambda y: y.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
    for i in range(len({k[len(p) :].split(".")[1] for k in sd if k.startswith(p + "blocks.")})):
        q = f"blocks.{i}."
        sh, sc, g, sh2, sc2, g2 = (sd[f"{p}{q}modulation"] + tmod).chunk(6, dim=2)
        sh, sc, g, sh2, sc2, g2 = (z.squeeze(2) for z in (sh, sc, g, sh2, sc2, g2))
        y = ln(x) * (1 + sc) + sh
        qq = _rope(rms(lin(y, q + "self_attn.q"), q + "self_attn.norm_q"), (f, h, w), heads)
        kk = _rope(rms(lin(y, q + "self_attn.k"), q + "self_attn.norm_k"), (f, h, w), heads)
        att = F.scaled_dot_product_attention(
            split(qq), split(kk), split(lin(y, q + "self_attn.v")), attn_mask=mask
        )
        x = x + g * lin(att.transpose(1, 2).flatten(2), q + "self_attn.o")
        y = F.layer_norm(x, (dim,), sd[f"{p}{q}norm3.weight"], sd[f"{p}{q}norm3.bias"], eps=1e-6)
        qq = rms(lin(y, q + "cross_attn.q"), q + "cross_attn.norm_q")
        kk = rms(lin(ctx, q + "cross_attn.k"), q + "cross_attn.norm_k")
        att = F.scaled_dot_product_attention(split(qq), split(kk), split(lin(ctx, q + "cross_attn.v")))
        x = x + lin(att.transpose(1, 2).flatten(2), q + "cross_attn.o")
        y = ln(x) * (1 + sc2) + sh2
        x = x + g2 * lin(F.gelu(lin(y, q + "ffn.0"), approximate="tanh"), q + "ffn.2")
    shift, scale = (sd[f"{p}head.modulation"][None] + temb[:, :, None]).chunk(2, dim=2)
    out = lin(ln(x) * (1 + scale.squeeze(2)) + shift.squeeze(2), "head.head")
    c = out.shape[-1] // 4
    out = out.reshape(b, f, h, w, 1, 2, 2, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(b, c, f, 2 * h, 2 * w)


# ---------------------------------------------------------------------------- Fast-WAM
@pytest.mark.parametrize("flat", [False, True])
def test_fastwam_every_tensor_lands_unchanged_and_the_run_loads(tmp_path: Path, flat: bool) -> None:
    from wam.training.checkpoint import load_policy

    state, converted = _fastwam(tmp_path, flat=flat)
    folder = write_run(
        tmp_path / "run", converted.policy, converted.config, converted.stats, converted.source
    )
    assert (tmp_path / "run" / ".wam").is_file() and (folder / "model.safetensors").is_file()
    policy = load_policy(tmp_path / "run", device="cpu")
    sd = policy.state_dict()
    renames = {
        "mot.mixtures.video.": "video.",
        "mot.mixtures.action.": "action.",
        "proprio_encoder.": "conditioning.proprio_encoder.",
    }
    count = 0
    for group, keys in state.items():
        for key, value in keys.items():
            full = f"{group}.{key}"
            src = next(s for s in renames if full.startswith(s))
            assert torch.equal(sd[renames[src] + full[len(src) :]], value), full
            count += 1
    assert count == sum(len(k) for k in state.values())
    offset = sd["normalize_targets.features.action.offset"]  # mean_std from the authors' global_mean
    assert torch.allclose(offset, torch.tensor([0.0, 0.1, 0.2]))


def test_fastwam_velocity_matches_an_independent_wan_forward(tmp_path: Path) -> None:
    state, converted = _fastwam(tmp_path)
    write_run(tmp_path / "run", converted.policy, converted.config, converted.stats, converted.source)
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 8, 2, 4, 6, generator=gen)
    t = torch.tensor([700.0, 250.0])
    context = torch.randn(2, 5, 384, generator=gen)
    proprio = torch.randn(2, 4, generator=gen)
    actions = torch.randn(2, 16, 3, generator=gen)
    video, action = check.fastwam_velocity(
        tmp_path / "run", latents, t, actions, torch.tensor([900.0, 10.0]), context, proprio
    )
    sd = {f"{g}.{k}": v for g, keys in state.items() for k, v in keys.items()}
    token = F.linear(proprio, sd["proprio_encoder.weight"], sd["proprio_encoder.bias"])[:, None]
    ref = _reference_video(sd, "mot.mixtures.video.", latents, t, torch.cat([context, token], 1), heads=1)
    assert video.shape == ref.shape and action.shape == (2, 16, 3)
    assert (video - ref).abs().max() < 1e-4
    samples = check.fastwam_sample_actions(tmp_path / "run", latents[:, :, :1], actions, context, proprio)
    assert samples.shape == (2, 16, 3) and torch.isfinite(samples).all()


# ---------------------------------------------------------------------------- Light-WAM
def test_lightwam_tensors_land_with_their_transforms_and_lora_computes_theirs(tmp_path: Path) -> None:
    from wam.training.checkpoint import load_policy

    state, converted = _lightwam(tmp_path)
    write_run(tmp_path / "run", converted.policy, converted.config, converted.stats, converted.source)
    policy = load_policy(tmp_path / "run", device="cpu")
    mot, head = state["mot"], state["state_fusion_action_expert"]
    v = "mixtures.video."
    sd = policy.state_dict()
    assert torch.equal(
        sd["backbone.blocks.1.self_attn.q.base_layer.weight"], mot[v + "blocks.1.self_attn.q.weight"]
    )
    assert torch.equal(
        sd["backbone.blocks.2.ffn.2.lora_B.default.weight"], mot[v + "blocks.2.ffn_lora_out.up_proj.weight"]
    )
    assert torch.equal(
        sd["adapters.2.up.weight"], 0.5 * mot[v + "wam_adapters.2.up_proj.weight"]
    )  # adapter_scale
    assert torch.equal(sd["action_expert.poolers.1.queries"], head["layer_poolers.1.adapted.query_tokens"])
    assert torch.equal(sd["action_expert.step_embed.mlp.2.weight"], head["step_pos_proj.3.weight"])
    assert torch.equal(sd["context.state_proj.weight"], state["proprio_encoder"]["weight"])
    # their LoRA: y = W x + b + (alpha / r) up(down(x)); alpha 8, rank 4
    x = torch.randn(5, 32)
    wrapped = policy.backbone.blocks[0].cross_attn.k
    p = v + "blocks.0.cross_attn."
    theirs = F.linear(x, mot[p + "k.weight"], mot[p + "k.bias"]) + 2.0 * (
        x @ mot[p + "lora_k.down_proj.weight"].T @ mot[p + "lora_k.up_proj.weight"].T
    )
    assert (wrapped(x) - theirs).abs().max() < 1e-5
    chunk = check.lightwam_action_chunk(
        policy, torch.randn(2, 8, 1, 4, 4), torch.randn(2, 5, 384), torch.randn(2, 4)
    )
    video = check.lightwam_video_velocity(
        policy, torch.randn(2, 8, 2, 2, 2), torch.tensor([500.0, 5.0]), torch.randn(2, 5, 384)
    )
    assert chunk.shape == (2, 16, 3) and video.shape == (2, 8, 2, 2, 2)


# ---------------------------------------------------------------------------- strict errors
@pytest.mark.parametrize(
    ("edit", "word", "name"),
    [
        (
            lambda s: s["mot"].pop("mixtures.video.blocks.1.norm3.bias"),
            "MISSING",
            "mot.mixtures.video.blocks.1.norm3.bias",
        ),
        (
            lambda s: s["proprio_encoder"].__setitem__("extra", torch.zeros(2)),
            "UNEXPECTED",
            "proprio_encoder.extra",
        ),
        (
            lambda s: s["mot"].__setitem__("mixtures.action.head.bias", torch.zeros(5)),
            "MISMATCH",
            "mot.mixtures.action.head.bias",
        ),
    ],
)
def test_strict_mapping_names_the_group_in_one_line(tmp_path: Path, edit, word: str, name: str) -> None:
    state = random_state(fastwam_shapes())
    edit(state)
    with pytest.raises(ConversionError) as err:
        _fastwam(tmp_path, state)
    message = str(err.value)
    assert "\n" not in message and word in message and name in message


def test_missing_group_collapses_block_indices(tmp_path: Path) -> None:
    state = random_state(fastwam_shapes())
    for i in range(2):
        state["mot"].pop(f"mixtures.action.blocks.{i}.norm3.weight")
    with pytest.raises(
        ConversionError, match=r"MISSING mot\.mixtures\.action\.blocks\.\{0\.\.1\}\.norm3\.weight"
    ):
        _fastwam(tmp_path, state)


class NotATensor:
    """Anything pickled that is not a tensor, dict, list, number or string."""


def test_a_payload_needing_more_than_weights_is_refused(tmp_path: Path) -> None:
    from wam.convert.payload import load_payload

    path = tmp_path / "evil.pt"
    torch.save({"mot": {"w": torch.zeros(1)}, "extra": NotATensor()}, path)
    with pytest.raises(ValueError, match="weights_only") as err:
        load_payload(path)
    assert "\n" not in str(err.value)


def test_missing_heads_in_the_config_is_one_line(tmp_path: Path) -> None:
    from wam.convert.fastwam import convert

    ckpt = save_pt(random_state(fastwam_shapes()), tmp_path / "fw.pt")
    (tmp_path / "m.yaml").write_text("video_dit_config:\n  num_heads: ${data.heads}\n")
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    with pytest.raises(ConversionError, match=r"--set video_dit_config.num_heads"):
        convert(ckpt, tmp_path / "m.yaml", preset="fastwam-tiny", wam_sets=SETS)


def test_inline_wan_architecture_round_trips_and_rejects_bad_items() -> None:
    from wam.models.wan.config import get_wan_config, inline_spec

    cfg = get_wan_config("wan2.2-tiny")
    assert get_wan_config(inline_spec(cfg)).replace(text_dim=cfg.text_dim) == cfg
    assert "attn_head_dim" not in inline_spec(cfg)  # run folders written before the field still read
    wide = cfg.replace(dim=48, attn_head_dim=32)  # 2 heads x 32 on 48-wide tokens
    assert get_wan_config(inline_spec(wide)).replace(text_dim=cfg.text_dim) == wide
    with pytest.raises(ValueError, match="inline Wan"):
        get_wan_config("wan:dim=64,heads=2")


# ---------------------------------------------------------------------------- end to end through the CLI
def _cli() -> object:
    import typer

    from wam.commands import bench, convert

    app = typer.Typer()
    convert.register(app)
    bench.register(app)
    return app


def test_converted_run_goes_through_wam_convert_and_wam_bench(tmp_path: Path) -> None:
    """`wam convert lightwam` writes a run that `wam bench RUN --input latents` measures unchanged,
    also a run of a width no wam encoder makes (bench stands in a random context of that width)."""
    import json

    from typer.testing import CliRunner

    runner = CliRunner()
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    (tmp_path / "lw.yaml").write_text(LIGHTWAM_YAML)
    for name, text in (("minilm", 384), ("wide64", 64)):
        save_pt(random_state(lightwam_shapes(text=text), seed=2), tmp_path / f"{name}.pt")
        args = ["convert", "lightwam", str(tmp_path / f"{name}.pt"), "--config", str(tmp_path / "lw.yaml")]
        args += ["--out", str(tmp_path / name), "--preset", "lightwam-tiny", "--set", "policy.image_size=64"]
        result = runner.invoke(_cli(), args)
        assert result.exit_code == 0, result.output
    assert "64-wide instruction tokens" in " ".join(result.output.split())  # said at conversion
    report = tmp_path / "bench.json"
    args = ["bench", str(tmp_path / "minilm"), "--input", "latents", "--calls", "2", "--warmup", "1"]
    args += ["--device", "cpu", "--in-process", "--no-roofline", "--json", str(report)]
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["results"]
    assert entry["error"] is None and entry["latency"]["p50_ms"] > 0
    assert entry["policy"]["image_size"] == 64
    result = runner.invoke(_cli(), [*args[:1], str(tmp_path / "wide64"), *args[2:]])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["results"]  # bench seeds a stand-in of the run's width
    assert entry["error"] is None and entry["latency"]["p50_ms"] > 0
    assert "64-wide embedding" in entry["assumed"]["text"]


def test_a_precomputed_context_run_uses_the_tokens_put_in_its_memo(tmp_path: Path) -> None:
    """A 64-wide run encodes only instructions whose precomputed tokens were supplied (`memo`)."""
    from authors_layout import lightwam_shapes

    from wam.convert.lightwam import convert

    save_pt(random_state(lightwam_shapes(text=64), seed=2), tmp_path / "lw.pt")
    (tmp_path / "lw.yaml").write_text(LIGHTWAM_YAML)
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    policy = convert(tmp_path / "lw.pt", tmp_path / "lw.yaml", preset="lightwam-tiny", wam_sets=SETS).policy
    tokens = torch.randn(5, 64)
    policy.context._frozen.memo["open the drawer"] = tokens
    context = policy.context(["open the drawer"], torch.zeros(1, 4), torch.device("cpu"))  # (1, 16 + 1, 64)
    assert context.shape == (1, 17, 64) and torch.equal(context[0, :5], tokens) and not context[0, 5:16].any()
    with pytest.raises(ValueError, match="64-wide instruction tokens"):
        policy.context(["close the drawer"], torch.zeros(1, 4), torch.device("cpu"))


def test_a_bidirectional_video_mask_is_refused_in_one_line(tmp_path: Path) -> None:
    from wam.convert.fastwam import convert

    ckpt = save_pt(random_state(fastwam_shapes()), tmp_path / "fw.pt")
    yaml = FASTWAM_YAML.replace(
        "  eps: 1.0e-06\n", "  eps: 1.0e-06\n  video_attention_mask_mode: bidirectional\n", 1
    )
    (tmp_path / "m.yaml").write_text(yaml)
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    with pytest.raises(ConversionError, match="first_frame_causal") as err:
        convert(ckpt, tmp_path / "m.yaml", preset="fastwam-tiny", wam_sets=SETS)
    assert "\n" not in str(err.value)


def test_a_pooled_action_branch_is_refused_in_one_line(tmp_path: Path) -> None:
    """Their `apply_video_latent_downsample_to_action_branch: true` would run another action pass."""
    from wam.convert.lightwam import convert

    save_pt(random_state(lightwam_shapes(text=64), seed=2), tmp_path / "lw.pt")
    yaml = LIGHTWAM_YAML + "apply_video_latent_downsample_to_action_branch: true\n"
    (tmp_path / "lw.yaml").write_text(yaml)
    write_stats(tmp_path / "dataset_stats.json", 3, 4)
    with pytest.raises(ConversionError, match="apply_video_latent_downsample_to_action_branch") as err:
        convert(tmp_path / "lw.pt", tmp_path / "lw.yaml", preset="lightwam-tiny", wam_sets=SETS)
    assert "\n" not in str(err.value)
