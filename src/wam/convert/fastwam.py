"""`wam convert fastwam`: the authors' Fast-WAM checkpoint -> a wam Fast-WAM run.

Their model (FastWAM `src/fastwam/models/wan22/{fastwam,mot,wan_video_dit,action_dit}.py`) is a
MoT over a Wan video DiT and an ActionDiT; `save_checkpoint` stores `mot` (= `mixtures.video.*`,
`mixtures.action.*`) and `proprio_encoder`. Both experts use the original Wan parameter names, which
are wam's (`wam.models.wan`, `wam.policies.fastwam.action_dit`), so the mapping is a set of exact
renames and no tensor changes layout:
    mot.mixtures.video.<k>      -> video.<k>        patch_embedding is the same Conv3d (dim, C, 1, 2, 2),
                                                    q/k/v/o separate Linears, modulation (1, 6, dim),
                                                    head.head + head.modulation (1, 2, dim)
    mot.mixtures.action.<k>     -> action.<k>       action_encoder, blocks (q/k/v at the attention width
                                                    heads x head_dim), plain Linear head
    proprio_encoder.{weight,bias} -> conditioning.proprio_encoder.{weight,bias}
Not stored by them and not needed: the RoPE tables (recomputed), the VAE and the text encoder.

Sizes read off the tensors: video width, depth, FFN, latent channels, patch, text width, timestep
frequency width (patch_embedding, blocks.*, time_embedding.0); action width, FFN, action_dim
(action_encoder); proprio_dim (proprio_encoder). From the model YAML: the number of heads
(`video_dit_config.num_heads`, `attn_head_dim`), eps, text length (`tokenizer_max_len`) and the
variant (`_target_`: create_fastwam / create_fastwam_joint / create_fastwam_idm).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wam.configs.base import ExperimentConfig
from wam.convert.common import (
    Converted,
    convert_with,
    count_indexed,
    experiment,
    mask_note,
    need,
    read_sources,
    scheduler_flows,
    setting,
    source_record,
    text_note,
    text_settings,
    video_heads,
)
from wam.convert.mapping import ConversionError, Entry, KeyMap
from wam.convert.stats import check_dims, load_stats

VIDEO, ACTION, PROPRIO = "mot.mixtures.video.", "mot.mixtures.action.", "proprio_encoder."
VARIANTS = {"create_fastwam": "fastwam", "create_fastwam_joint": "joint", "create_fastwam_idm": "idm"}
DEFAULT_PRESET = "fastwam-wan2.2-5b"


def infer_sizes(tensors: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Every size the tensors determine, checked against the heads the YAML gives."""
    from wam.models.wan.config import WanConfig, inline_spec

    patch = need(tensors, VIDEO + "patch_embedding.weight")  # (dim, C_in, pt, ph, pw)
    dim, c_in, kernel = patch.shape[0], patch.shape[1], tuple(patch.shape[2:])
    layers = count_indexed(tensors, VIDEO + "blocks.")
    heads, attn_head_dim = video_heads(tensors, doc, VIDEO, None)
    out_dim = need(tensors, VIDEO + "head.head.weight").shape[0] // math.prod(kernel)
    wan = WanConfig(
        dim=dim,
        num_layers=len(layers),
        num_heads=heads,
        ffn_dim=need(tensors, VIDEO + "blocks.0.ffn.0.weight").shape[0],
        in_channels=c_in,
        out_channels=out_dim,
        freq_dim=need(tensors, VIDEO + "time_embedding.0.weight").shape[1],
        patch_size=kernel,  # type: ignore[arg-type]
        eps=float(setting(doc, "video_dit_config.eps", 1e-6)),
        attn_head_dim=attn_head_dim,
    )
    encoder = need(tensors, ACTION + "action_encoder.weight")  # (width, action_dim)
    action_layers = count_indexed(tensors, ACTION + "blocks.")
    if len(action_layers) != len(layers):
        raise ConversionError(
            f"The action expert has {len(action_layers)} blocks and the video DiT {len(layers)}: "
            "Fast-WAM's MoT needs one action block per video block."
        )
    proprio = tensors.get(PROPRIO + "weight")  # (text_dim, proprio_dim)
    return {
        "wan": wan,
        "video_backbone": inline_spec(wan),
        "latent_channels": c_in,
        "text_dim": need(tensors, VIDEO + "text_embedding.0.weight").shape[1],
        "action_width": encoder.shape[0],
        "action_ffn_dim": need(tensors, ACTION + "blocks.0.ffn.0.weight").shape[0],
        "action_dim": encoder.shape[1],
        "state_dim": 0 if proprio is None else proprio.shape[1],
    }


def key_map(cfg: ExperimentConfig, shapes: dict[str, tuple[int, ...]]) -> KeyMap:
    """Exact renames from the authors' keys onto every wam parameter (see the module docstring)."""
    mapping: KeyMap = {}
    for key in shapes:
        if key.startswith("video."):
            mapping[VIDEO + key[len("video.") :]] = Entry(key)
        elif key.startswith("action."):
            mapping[ACTION + key[len("action.") :]] = Entry(key)
        elif key.startswith("conditioning.proprio_encoder."):
            mapping[PROPRIO + key[len("conditioning.proprio_encoder.") :]] = Entry(key)
        else:
            raise ConversionError(
                f"Internal: the wam Fast-WAM parameter '{key}' has no source in the authors' checkpoint."
            )
    return mapping


def convert(
    ckpt: str | Path,
    config: str | Path,
    *,
    sets: dict[str, Any] | None = None,
    stats: str | Path | None = None,
    task_config: str | Path | None = None,
    preset: str = DEFAULT_PRESET,
    wam_sets: list[str] | None = None,
) -> Converted:
    """The authors' Fast-WAM checkpoint `ckpt` with its model YAML `config` as a wam policy."""
    ckpt, config = Path(ckpt), Path(config)
    doc, payload, sizes, task = read_sources(ckpt, config, sets, task_config, infer_sizes)
    target = str(doc.get("_target_", "")).rsplit(".", 1)[-1]
    changes = {
        "variant": VARIANTS.get(target, "fastwam"),
        "video_weights": None,
        "codec": None if sizes["latent_channels"] != 48 else "wan2.2-vae",
        **{k: sizes[k] for k in ("video_backbone", "latent_channels", "action_width", "action_ffn_dim")},
        **{k: sizes[k] for k in ("action_dim", "state_dim")},
        **text_settings(sizes["text_dim"], int(setting(doc, "tokenizer_max_len", 128))),
        **scheduler_flows(doc, preset, {"action_flow": "action_scheduler", "video_flow": "video_scheduler"}),
    }
    cfg = experiment(preset, changes, task, list(wam_sets or ()))
    stats_data, stats_from = load_stats(ckpt, stats)
    check_dims(stats_data, sizes["action_dim"], sizes["state_dim"])
    policy = convert_with(cfg, payload.tensors, stats_data, key_map, f"Fast-WAM checkpoint {ckpt.name}")
    notes = [
        f"variant {changes['variant']}",
        f"statistics from {stats_from}",
        text_note(cfg),
        mask_note(doc),
        f"video DiT {sizes['video_backbone']}",
    ]
    dataset = str(stats) if stats is not None and Path(stats).is_dir() else None
    return Converted(
        policy, cfg, stats_data, notes, source_record(ckpt, config, stats_from, payload.step, dataset)
    )
