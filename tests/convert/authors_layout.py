"""Tiny checkpoints in the authors' key layout, written for the tests (not the authors' code).

`fastwam_state` / `lightwam_state` list the parameter names and shapes the authors' modules have
(FastWAM `MoT(mixtures={video: WanVideoDiT, action: ActionDiT})` + `proprio_encoder`; Light-WAM
`MoT(mixtures={video: WanVideoDiT with LoRA and wam_adapters})` + `state_fusion_action_expert` +
`proprio_encoder`) at tiny sizes, filled with seeded random values; `save_pt` writes them as their
`save_checkpoint` payload and `save_flat` as a flattened safetensors file.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT = 384  # instruction width (MiniLM's, so the run can encode instructions)


def _linear(out: dict, name: str, n_in: int, n_out: int, bias: bool = True) -> None:
    out[f"{name}.weight"] = (n_out, n_in)
    if bias:
        out[f"{name}.bias"] = (n_out,)


def _norm(out: dict, name: str, dim: int) -> None:
    out[f"{name}.weight"] = (dim,)
    out[f"{name}.bias"] = (dim,)


def _dit_block(out: dict, p: str, dim: int, attn: int, ffn: int) -> None:
    for a in ("self_attn", "cross_attn"):
        for lin in "qkv":
            _linear(out, f"{p}{a}.{lin}", dim, attn)
        _linear(out, f"{p}{a}.o", attn, dim)
        out[f"{p}{a}.norm_q.weight"] = (attn,)
        out[f"{p}{a}.norm_k.weight"] = (attn,)
    _norm(out, f"{p}norm3", dim)
    _linear(out, f"{p}ffn.0", dim, ffn)
    _linear(out, f"{p}ffn.2", ffn, dim)
    out[f"{p}modulation"] = (1, 6, dim)


def _embeddings(out: dict, p: str, dim: int, freq: int, text: int = TEXT) -> None:
    _linear(out, f"{p}text_embedding.0", text, dim)
    _linear(out, f"{p}text_embedding.2", dim, dim)
    _linear(out, f"{p}time_embedding.0", freq, dim)
    _linear(out, f"{p}time_embedding.2", dim, dim)
    _linear(out, f"{p}time_projection.1", dim, 6 * dim)


def video_dit_shapes(
    p: str,
    dim: int,
    layers: int,
    ffn: int,
    channels: int,
    freq: int,
    text: int = TEXT,
    attn: int | None = None,
) -> dict:
    """WanVideoDiT (patch (1, 2, 2)) parameter shapes under prefix p; `attn`: heads x attn_head_dim."""
    out: dict = {f"{p}patch_embedding.weight": (dim, channels, 1, 2, 2), f"{p}patch_embedding.bias": (dim,)}
    _embeddings(out, p, dim, freq, text)
    for i in range(layers):
        _dit_block(out, f"{p}blocks.{i}.", dim, attn or dim, ffn)
    _linear(out, f"{p}head.head", dim, channels * 4)
    out[f"{p}head.modulation"] = (1, 2, dim)
    return out


def fastwam_shapes(
    dim=32,
    layers=2,
    heads=2,
    ffn=64,
    channels=8,
    freq=16,
    width=16,
    action_ffn=32,
    action_dim=3,
    proprio=4,
    text=TEXT,
    attn=None,
):
    """{group: {key: shape}} of the authors' Fast-WAM checkpoint at tiny sizes (attention width `attn`,
    default dim, in both experts)."""
    mot = video_dit_shapes("mixtures.video.", dim, layers, ffn, channels, freq, text, attn)
    p = "mixtures.action."
    _linear(mot, f"{p}action_encoder", action_dim, width)
    _embeddings(mot, p, width, freq, text)
    for i in range(layers):
        _dit_block(mot, f"{p}blocks.{i}.", width, attn or dim, action_ffn)  # attention: heads x head_dim
    _linear(mot, f"{p}head", width, action_dim)
    return {"mot": mot, "proprio_encoder": {"weight": (text, proprio), "bias": (text,)}}


def random_state(shapes: dict, seed: int = 0, scale: float = 0.2) -> dict:
    """Seeded random tensors for {group: {key: shape}}; norm weights near 1."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for group, keys in shapes.items():
        out[group] = {}
        for key, shape in keys.items():
            t = torch.randn(shape, generator=gen) * scale
            if (
                key.endswith("norm_q.weight")
                or key.endswith("norm_k.weight")
                or ("norm" in key and key.endswith("weight"))
            ):
                t = 1.0 + t
            out[group][key] = t
    return out


def save_pt(state: dict, path: Path, step: int | None = 123) -> Path:
    torch.save({**state, "step": step, "torch_dtype": "torch.bfloat16"}, path)
    return path


def save_flat(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({f"{g}.{k}": v.contiguous() for g, keys in state.items() for k, v in keys.items()}, path)
    return path


FASTWAM_YAML = """_target_: fastwam.runtime.create_fastwam
tokenizer_max_len: 16
proprio_dim: ${data.train.processor.proprio_output_dim}
mot_checkpoint_mixed_attn: true
video_dit_config:
  patch_size: [1, 2, 2]
  hidden_dim: 32
  num_heads: 1
  attn_head_dim: 32
  num_layers: 2
  eps: 1.0e-06
  use_gradient_checkpointing: ${model.mot_checkpoint_mixed_attn}
  action_dim: ${data.train.processor.action_output_dim}
action_dit_config:
  action_dim: ${data.train.processor.action_output_dim}
  hidden_dim: 16
  num_heads: 1
  attn_head_dim: 32
"""


def write_stats(path: Path, action_dim: int, state_dim: int) -> Path:
    """An authors'-layout dataset_stats.json."""
    import json

    def entry(dim: int, lo: float, hi: float) -> dict:
        return {
            "global_min": [lo - i for i in range(dim)],
            "global_max": [hi + i for i in range(dim)],
            "global_mean": [0.1 * i for i in range(dim)],
            "global_std": [1.0 + i for i in range(dim)],
            "global_q01": [lo for _ in range(dim)],
            "global_q99": [hi for _ in range(dim)],
        }

    path.write_text(
        json.dumps(
            {"action": {"default": entry(action_dim, -1, 2)}, "state": {"default": entry(state_dim, -3, 1)}}
        )
    )
    return path


def _lora(out: dict, name: str, n_in: int, n_out: int, rank: int) -> None:
    out[f"{name}.down_proj.weight"] = (rank, n_in)
    out[f"{name}.up_proj.weight"] = (n_out, rank)


def lightwam_shapes(
    dim=32,
    layers=3,
    ffn=64,
    channels=8,
    freq=16,
    rank=4,
    adapters=(1, 2),
    width=8,
    queries=4,
    per_layer=16,
    trunk=24,
    step=8,
    action_dim=3,
    proprio=4,
    text=TEXT,
    attn=None,
):
    """{group: {key: shape}} of the authors' Light-WAM checkpoint at tiny sizes (LoRA on all 10 linears;
    attention width `attn`, default dim)."""
    p = "mixtures.video."
    mot = video_dit_shapes(p, dim, layers, ffn, channels, freq, text, attn)
    a_w = attn or dim
    for i in range(layers):
        for a in ("self_attn", "cross_attn"):
            for lin in "qkv":
                _lora(mot, f"{p}blocks.{i}.{a}.lora_{lin}", dim, a_w, rank)
            _lora(mot, f"{p}blocks.{i}.{a}.lora_o", a_w, dim, rank)
        _lora(mot, f"{p}blocks.{i}.ffn_lora_in", dim, ffn, rank)
        _lora(mot, f"{p}blocks.{i}.ffn_lora_out", ffn, dim, rank)
    for b in adapters:
        _norm(mot, f"{p}wam_adapters.{b}.norm", dim)
        _linear(mot, f"{p}wam_adapters.{b}.down_proj", dim, width)
        _linear(mot, f"{p}wam_adapters.{b}.up_proj", width, dim)
    head: dict = {}
    for k in range(len(adapters)):
        q = f"layer_poolers.{k}.adapted."
        _norm(head, f"{q}token_norm", dim)
        head[f"{q}query_tokens"] = (queries, dim)
        head[f"{q}attn.in_proj_weight"] = (3 * dim, dim)
        head[f"{q}attn.in_proj_bias"] = (3 * dim,)
        _linear(head, f"{q}attn.out_proj", dim, dim)
        head[f"{q}query_merge_logits"] = (queries,)
        _norm(head, f"{q}output_norm", dim)
        _norm(head, f"layer_compressors.{k}.norm", dim)
        _linear(head, f"layer_compressors.{k}.fc1", dim, per_layer)
        _linear(head, f"layer_compressors.{k}.fc2", per_layer, per_layer)
    _norm(head, "fused_norm", per_layer * len(adapters))
    _linear(head, "fused_proj", per_layer * len(adapters), trunk)
    _norm(head, "trunk.0.norm", trunk)
    _linear(head, "trunk.0.fc1", trunk, trunk)
    _linear(head, "trunk.0.fc2", trunk, trunk)
    _norm(head, "step_pos_proj.0", step)
    _linear(head, "step_pos_proj.1", step, trunk)
    _linear(head, "step_pos_proj.3", trunk, trunk)
    _norm(head, "output_norm", trunk)
    _linear(head, "output.0", trunk, trunk)
    _linear(head, "output.2", trunk, action_dim)
    return {
        "mot": mot,
        "state_fusion_action_expert": head,
        "proprio_encoder": {"weight": (text, proprio), "bias": (text,)},
    }


LIGHTWAM_YAML = """_target_: lightwam.runtime.create_lightwam
video_backbone_type: wan2_1_t2v
video_latent_spatial_downsample_factor: 2
tokenizer_max_len: 16
proprio_dim: ${data.train.processor.proprio_output_dim}
wam_adapter:
  use_wam_adapter: true
  adapter_layer_indices: [1, 2]
  adapter_dim: 8
  adapter_scale: 0.5
  use_backbone_lora: true
  lora_rank: 4
  lora_alpha: 8.0
state_fusion_action_expert_config:
  token_pooling_type: learned_query
  token_pooling_num_queries: 4
  token_pooling_num_heads: 2
  feature_sources: [adapted]
video_dit_config:
  hidden_dim: 32
  num_heads: 2
  attn_head_dim: 16
  num_layers: 3
  eps: 1.0e-06
  action_dim: ${data.train.processor.action_output_dim}
"""
