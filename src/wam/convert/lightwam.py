"""`wam convert lightwam`: the authors' Light-WAM checkpoint -> a wam Light-WAM run.

Their model (Light-WAM `src/lightwam/models/wan22/{lightwam,wan_video_dit,state_fusion_action_expert}.py`)
is a Wan DiT with LoRA and residual adapters (`MoT(mixtures={video})`) and a StateFusionActionExpert;
`save_checkpoint` stores `mot`, `state_fusion_action_expert` and `proprio_encoder`. Mapping (B = a
block index, K = a position in the adapter list, L = a LoRA-wrapped linear):
    mot.mixtures.video.<Wan key>                       -> backbone.<Wan key>
    mot.mixtures.video.blocks.B.L.{weight,bias}        -> backbone.blocks.B.L.base_layer.{weight,bias}
    ...blocks.B.{self,cross}_attn.lora_X.down_proj.weight  -> backbone.blocks.B.{..}_attn.X.lora_A.default
                                                              .weight
    ...blocks.B.{self,cross}_attn.lora_X.up_proj.weight    -> ....lora_B.default.weight   (peft naming; same
                                                              (r, in) / (out, r) shapes and alpha/r scale)
    ...blocks.B.ffn_lora_in / ffn_lora_out             -> backbone.blocks.B.ffn.0 / ffn.2 .lora_A/.lora_B
    mot.mixtures.video.wam_adapters.B.{norm,down_proj,up_proj}  -> adapters.B.{norm,down,up};
                                                          up is multiplied by their adapter_scale
    state_fusion_action_expert.layer_poolers.K.adapted.{token_norm,attn,output_norm}
                                                       -> action_expert.poolers.K.{token_norm,attn,out_norm}
        ....query_tokens / query_merge_logits          -> ....queries / merge_logits
    ...layer_compressors.K.{norm,fc1,fc2}              -> action_expert.compressors.K.{norm,mlp.0,mlp.2}
    ...fused_norm / fused_proj                         -> action_expert.fuse_norm / fuse
    ...trunk.J.{norm,fc1,fc2}                          -> action_expert.trunk.J.{norm,mlp.0,mlp.2}
    ...step_pos_proj.{0,1,3}                           -> action_expert.step_embed.{norm,mlp.0,mlp.2}
    ...output_norm / output.{0,2}                      -> action_expert.out_norm / out.{0,2}
    proprio_encoder.{weight,bias}                      -> context.state_proj.{weight,bias}
Only their default head (`feature_sources: [adapted]`, learned-query pooling, no merge_dim) exists
in wam; other heads fail with one line. LoRA rank, the LoRA-wrapped blocks and linears, the adapter
blocks and width, every head width and the number of queries are read off the tensors; LoRA alpha,
the adapter scale and the pooler's heads come from the YAML (`wam_adapter.*`,
`state_fusion_action_expert_config.token_pooling_num_heads`).
"""

from __future__ import annotations

import re
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

VIDEO, HEAD, PROPRIO = "mot.mixtures.video.", "state_fusion_action_expert.", "proprio_encoder."
DEFAULT_PRESET = "lightwam-wan2.1-1.3b"
LORA_KEY = re.compile(
    r"blocks\.(\d+)\.(self_attn\.lora_([qkvo])|cross_attn\.lora_([qkvo])|ffn_lora_(in|out))"
    r"\.down_proj\.weight"
)
FFN = {"in": "ffn.0", "out": "ffn.2"}
# wam head key (after "action_expert.") -> the authors' key (after "state_fusion_action_expert."), by regex
HEAD_RULES = (
    (r"poolers\.(\d+)\.queries", "layer_poolers.{0}.adapted.query_tokens"),
    (r"poolers\.(\d+)\.merge_logits", "layer_poolers.{0}.adapted.query_merge_logits"),
    (r"poolers\.(\d+)\.out_norm\.(\w+)", "layer_poolers.{0}.adapted.output_norm.{1}"),
    (r"poolers\.(\d+)\.(token_norm|attn)\.(.+)", "layer_poolers.{0}.adapted.{1}.{2}"),
    (r"compressors\.(\d+)\.norm\.(\w+)", "layer_compressors.{0}.norm.{1}"),
    (r"compressors\.(\d+)\.mlp\.0\.(\w+)", "layer_compressors.{0}.fc1.{1}"),
    (r"compressors\.(\d+)\.mlp\.2\.(\w+)", "layer_compressors.{0}.fc2.{1}"),
    (r"fuse_norm\.(\w+)", "fused_norm.{0}"),
    (r"fuse\.(\w+)", "fused_proj.{0}"),
    (r"trunk\.(\d+)\.norm\.(\w+)", "trunk.{0}.norm.{1}"),
    (r"trunk\.(\d+)\.mlp\.0\.(\w+)", "trunk.{0}.fc1.{1}"),
    (r"trunk\.(\d+)\.mlp\.2\.(\w+)", "trunk.{0}.fc2.{1}"),
    (r"step_embed\.norm\.(\w+)", "step_pos_proj.0.{0}"),
    (r"step_embed\.mlp\.0\.(\w+)", "step_pos_proj.1.{0}"),
    (r"step_embed\.mlp\.2\.(\w+)", "step_pos_proj.3.{0}"),
    (r"out_norm\.(\w+)", "output_norm.{0}"),
    (r"out\.([02])\.(\w+)", "output.{0}.{1}"),
)


def lora_layout(tensors: dict[str, Any]) -> tuple[list[int], list[str], int]:
    """(blocks, wam target names, rank) of the LoRA the checkpoint holds."""
    blocks: dict[int, set[str]] = {}
    rank = 0
    for key, value in tensors.items():
        m = LORA_KEY.fullmatch(key[len(VIDEO) :]) if key.startswith(VIDEO) else None
        if m is None:
            continue
        block, _, sq, cq, ffn = m.groups()
        name = f"self_attn.{sq}" if sq else f"cross_attn.{cq}" if cq else FFN[ffn]
        blocks.setdefault(int(block), set()).add(name)
        rank = value.shape[0]
    if not blocks:
        raise ConversionError(
            "The checkpoint holds no backbone LoRA (…lora_q.down_proj): wam's Light-WAM needs it."
        )
    targets = sorted(set.union(*blocks.values()))
    if any(blocks[b] != set(targets) for b in blocks):
        raise ConversionError(
            "The checkpoint's blocks wrap different linears with LoRA: wam wraps the same ones in "
            "every LoRA block."
        )
    return sorted(blocks), targets, rank


def infer_sizes(tensors: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Every size the tensors determine (see the module docstring)."""
    from wam.models.wan.config import WanConfig, inline_spec
    from wam.policies.lightwam.configuration import LoRASettings, StateFusionSettings

    patch = need(tensors, VIDEO + "patch_embedding.weight")  # (dim, C_in, pt, ph, pw)
    dim, c_in = patch.shape[0], patch.shape[1]
    # their wan2_1_t2v preset overrides the YAML's video_dit_config with the 1.3B sizes (12 heads x 128);
    # a checkpoint of another width was built without it (e.g. a tiny test model), so the YAML holds
    t2v = str(doc.get("video_backbone_type", "")) == "wan2_1_t2v" and dim == 1536
    forced = 12 if t2v else None
    heads, attn_head_dim = video_heads(tensors, doc, VIDEO, forced)
    wan = WanConfig(
        dim=dim,
        num_layers=len(count_indexed(tensors, VIDEO + "blocks.")),
        num_heads=heads,
        ffn_dim=need(tensors, VIDEO + "blocks.0.ffn.0.weight").shape[0],
        in_channels=c_in,
        out_channels=need(tensors, VIDEO + "head.head.weight").shape[0] // patch[0, 0].numel(),
        freq_dim=need(tensors, VIDEO + "time_embedding.0.weight").shape[1],
        patch_size=tuple(patch.shape[2:]),  # type: ignore[arg-type]
        eps=float(setting(doc, "video_dit_config.eps", 1e-6)),
        attn_head_dim=attn_head_dim,
    )
    blocks, targets, rank = lora_layout(tensors)
    adapters = count_indexed(tensors, VIDEO + "wam_adapters.")
    if not adapters:
        raise ConversionError("The checkpoint holds no wam_adapters: wam's Light-WAM reads adapted states.")
    sources = {k.split(".")[3] for k in tensors if k.startswith(HEAD + "layer_poolers.")}
    if sources != {"adapted"}:
        raise ConversionError(
            f"The action head pools {sorted(sources) or 'no'} features; wam's head pools the adapted states "
            "only (their default feature_sources: [adapted], learned_query pooling)."
        )
    lora = LoRASettings(
        rank=rank,
        alpha=float(setting(doc, "wam_adapter.lora_alpha", required=True)),
        targets=tuple(targets),
        layers=tuple(blocks) if blocks != list(range(wan.num_layers)) else (),
    )
    head = StateFusionSettings(
        num_queries=need(tensors, HEAD + "layer_poolers.0.adapted.query_tokens").shape[0],
        num_heads=int(setting(doc, "state_fusion_action_expert_config.token_pooling_num_heads", 8)),
        per_layer_dim=need(tensors, HEAD + "layer_compressors.0.fc1.weight").shape[0],
        trunk_dim=need(tensors, HEAD + "fused_proj.weight").shape[0],
        trunk_blocks=len(count_indexed(tensors, HEAD + "trunk.")),
        step_dim=need(tensors, HEAD + "step_pos_proj.1.weight").shape[1],
    )
    proprio = tensors.get(PROPRIO + "weight")  # (text_dim, proprio_dim)
    return {
        "backbone": inline_spec(wan),
        "latent_channels": c_in,
        "lora": lora,
        "adapter_layers": tuple(adapters),
        "adapter_width": need(tensors, VIDEO + f"wam_adapters.{adapters[0]}.down_proj.weight").shape[0],
        "head": head,
        "text_dim": need(tensors, VIDEO + "text_embedding.0.weight").shape[1],
        "action_dim": need(tensors, HEAD + "output.2.weight").shape[0],
        "state_dim": 0 if proprio is None else proprio.shape[1],
    }


def _head_source(key: str) -> str:
    for pattern, template in HEAD_RULES:
        m = re.fullmatch(pattern, key)
        if m:
            return HEAD + template.format(*m.groups())
    raise ConversionError(
        f"Internal: the wam Light-WAM head parameter '{key}' has no source in the authors' head."
    )


def _backbone_source(key: str) -> str:
    key = key.replace(".base_layer.", ".")
    m = re.fullmatch(r"(blocks\.\d+)\.(self_attn|cross_attn|ffn)\.(\w+)\.lora_([AB])\.default\.weight", key)
    if m is None:
        return VIDEO + key
    block, part, lin, ab = m.groups()
    proj = "down_proj" if ab == "A" else "up_proj"
    if part == "ffn":
        return f"{VIDEO}{block}.ffn_lora_{'in' if lin == '0' else 'out'}.{proj}.weight"
    return f"{VIDEO}{block}.{part}.lora_{lin}.{proj}.weight"


def key_map(cfg: ExperimentConfig, shapes: dict[str, tuple[int, ...]], adapter_scale: float = 1.0) -> KeyMap:
    """The authors' key of every wam parameter (see the module docstring)."""
    mapping: KeyMap = {}
    for key in shapes:
        if key.startswith("backbone."):
            mapping[_backbone_source(key[len("backbone.") :])] = Entry(key)
        elif key.startswith("adapters."):
            block, module, leaf = key.split(".")[1:]
            theirs = {"down": "down_proj", "up": "up_proj"}.get(module, module)
            src = f"{VIDEO}wam_adapters.{block}.{theirs}.{leaf}"
            scaled = module == "up" and adapter_scale != 1.0
            mapping[src] = Entry(
                key, (lambda t: t * adapter_scale) if scaled else None, "x adapter_scale" if scaled else ""
            )
        elif key.startswith("action_expert."):
            mapping[_head_source(key[len("action_expert.") :])] = Entry(key)
        elif key.startswith("context.state_proj."):
            mapping[PROPRIO + key[len("context.state_proj.") :]] = Entry(key)
        else:
            raise ConversionError(
                f"Internal: the wam Light-WAM parameter '{key}' has no source in the authors' checkpoint."
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
    """The authors' Light-WAM checkpoint `ckpt` with its model YAML `config` as a wam policy."""
    ckpt, config = Path(ckpt), Path(config)
    doc, payload, sizes, task = read_sources(ckpt, config, sets, task_config, infer_sizes)
    if setting(doc, "apply_video_latent_downsample_to_action_branch", False) is True:
        raise ConversionError(
            "The config sets apply_video_latent_downsample_to_action_branch: true (the action pass on "
            "pooled latents); wam's Light-WAM reads the current frame at full resolution, as the "
            "authors' released configs (false): convert a checkpoint trained that way."
        )
    changes: dict[str, Any] = {
        "backbone_weights": None,
        "backbone_layers": None,
        "codec": "wan2.1-vae" if sizes["latent_channels"] == 16 else None,
        "video_downsample": int(setting(doc, "video_latent_spatial_downsample_factor", 2)),
        **{k: v for k, v in sizes.items() if k != "text_dim"},
        **text_settings(sizes["text_dim"], int(setting(doc, "tokenizer_max_len", 128))),
        **scheduler_flows(doc, preset, {"video_flow": "video_scheduler"}),
    }
    weighting = setting(doc, "loss.action_temporal_weighting", {}) or {}
    if weighting.get("enabled") and isinstance(weighting.get("num_prefix_steps"), int):
        changes.update(
            prefix_steps=weighting["num_prefix_steps"], tail_weight=float(weighting.get("tail_weight", 0.0))
        )
    cfg = experiment(preset, changes, task, list(wam_sets or ()))
    stats_data, stats_from = load_stats(ckpt, stats)
    check_dims(stats_data, sizes["action_dim"], sizes["state_dim"])
    scale = float(setting(doc, "wam_adapter.adapter_scale", 1.0))
    policy = convert_with(
        cfg,
        payload.tensors,
        stats_data,
        lambda c, shapes: key_map(c, shapes, scale),
        f"Light-WAM checkpoint {ckpt.name}",
    )
    notes = [
        f"statistics from {stats_from}",
        text_note(cfg),
        mask_note(doc),
        f"backbone {sizes['backbone']}",
        f"LoRA rank {sizes['lora'].rank}",
    ]
    dataset = str(stats) if stats is not None and Path(stats).is_dir() else None
    return Converted(
        policy, cfg, stats_data, notes, source_record(ckpt, config, stats_from, payload.step, dataset)
    )
