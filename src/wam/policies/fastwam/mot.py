"""Mixture-of-Transformers: several token streams, each with its own blocks, one joint attention per layer.

At layer i every stream s applies its own block (`WanBlock` step methods, reused for both streams):
    mod_s           = block_s.modulation_params(t_mod_s)
    q_s, k_s, v_s   = block_s.self_attn_qkv(x_s, mod_s, rope_s)        each (B, heads, L_s, head_dim)
    o               = attention(cat_s q_s, cat_s k_s, cat_s v_s, mask)  over the joint sequence
    x_s             = block_s.cross_attn_ffn(block_s.self_attn_out(x_s, o_s, mod_s), context_s, mod_s)
so norms, projections, cross-attention and FFN are per stream while attention is shared. All streams
need the same number of heads and head width; token widths may differ.

Cached inference (Fast-WAM): the video stream never reads the action stream (see `mask.py`), so
`prefill` runs the video blocks alone once and keeps each layer's keys/values; `cached_forward`
then runs the action blocks only, their queries reading [cached video keys | own keys] with the
action rows of the joint mask. The video stream does not run again inside the action loop.

These are functions over blocks and tensors: the policy owns the modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from wam.models.wan.blocks import WanBlock, attention
from wam.models.wan.rope import RopeTable

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (k, v), each (B, heads, Lv, head_dim)


class Stream(NamedTuple):
    """One token stream entering the blocks."""

    tokens: torch.Tensor  # (B, L, D) token states before layer 0
    t_mod: torch.Tensor  # (B, 1|L, 6, D) float32 projected timestep embedding
    context: torch.Tensor  # (B, Lc, D) cross-attention context in this stream's width
    rope: RopeTable  # (cos, sin), each (L, head_dim // 2)


def _joint_layer(
    blocks: Sequence[WanBlock],
    streams: Sequence[Stream],
    xs: Sequence[torch.Tensor],
    mask: torch.Tensor | None,
) -> list[torch.Tensor]:
    """One layer of every stream with one attention over their concatenated tokens."""
    mods = [
        block.modulation_params(s.t_mod) for block, s in zip(blocks, streams, strict=True)
    ]  # 6 x (B, 1|L_s, D_s)
    qkv = [
        block.self_attn_qkv(x, mod, s.rope)
        for block, x, mod, s in zip(blocks, xs, mods, streams, strict=True)
    ]
    q, k, v = (torch.cat([t[i] for t in qkv], dim=2) for i in range(3))  # each (B, heads, sum L_s, hd)
    out = attention(q, k, v, mask)  # (B, heads, sum L_s, hd)
    pieces = out.split([x.shape[1] for x in xs], dim=2)  # (B, heads, L_s, hd) per stream
    return [
        block.cross_attn_ffn(block.self_attn_out(x, o, mod), s.context, mod)  # (B, L_s, D_s)
        for block, x, o, mod, s in zip(blocks, xs, pieces, mods, streams, strict=True)
    ]


def joint_forward(
    stacks: Sequence[Sequence[WanBlock]],
    streams: Sequence[Stream],
    mask: torch.Tensor | None,
    gradient_checkpointing: bool = False,
) -> list[torch.Tensor]:
    """Every stream through all its blocks with joint attention; returns the final (B, L_s, D_s) per stream.

    stacks[s] are the blocks of stream s (equal depths); mask is bool (sum L_s, sum L_s), True = attend,
    in the order of `streams`. With `gradient_checkpointing` each layer is recomputed in backward.
    """
    depths = {len(stack) for stack in stacks}
    if len(depths) != 1:
        raise ValueError(f"Every stream needs the same number of blocks, got {sorted(depths)}.")
    total = sum(s.tokens.shape[1] for s in streams)
    if mask is not None and tuple(mask.shape[-2:]) != (total, total):
        raise ValueError(f"The joint mask is {tuple(mask.shape)} but the streams hold {total} tokens.")
    xs = [s.tokens for s in streams]
    for layer in range(depths.pop()):
        blocks = [stack[layer] for stack in stacks]
        if gradient_checkpointing and torch.is_grad_enabled():
            xs = checkpoint(_joint_layer, blocks, streams, xs, mask, use_reentrant=False)
        else:
            xs = _joint_layer(blocks, streams, xs, mask)
    return list(xs)


def prefill(blocks: Sequence[WanBlock], stream: Stream, mask: torch.Tensor | None) -> KVCache:
    """Run one stream alone and keep every layer's self-attention keys and values.

    mask: the stream's own (L, L) part of the joint mask. The last layer's attention output is not
    needed by anyone (only its keys/values are), so that layer stops after computing them.
    """
    cache: KVCache = []
    x = stream.tokens  # (B, L, D)
    for i, block in enumerate(blocks):
        mod = block.modulation_params(stream.t_mod)  # 6 x (B, 1|L, D)
        q, k, v = block.self_attn_qkv(x, mod, stream.rope)  # each (B, heads, L, hd)
        cache.append((k, v))
        if i + 1 < len(blocks):
            x = block.self_attn_out(x, attention(q, k, v, mask), mod)  # (B, L, D)
            x = block.cross_attn_ffn(x, stream.context, mod)  # (B, L, D)
    return cache


def cached_forward(
    blocks: Sequence[WanBlock], stream: Stream, cache: KVCache, mask: torch.Tensor | None
) -> torch.Tensor:
    """A stream whose queries read [cached keys | its own keys] at every layer -> (B, L, D).

    mask: (L, Lcache + L) rows of the joint mask for this stream's queries.
    """
    if len(cache) != len(blocks):
        raise ValueError(f"The cache holds {len(cache)} layers but the stream has {len(blocks)} blocks.")
    x = stream.tokens  # (B, La, D)
    for block, (k_cached, v_cached) in zip(blocks, cache, strict=True):
        mod = block.modulation_params(stream.t_mod)  # 6 x (B, 1, D)
        q, k, v = block.self_attn_qkv(x, mod, stream.rope)  # each (B, heads, La, hd)
        k_all = torch.cat([k_cached, k], dim=2)  # (B, heads, Lv + La, hd)
        v_all = torch.cat([v_cached, v], dim=2)  # (B, heads, Lv + La, hd)
        x = block.self_attn_out(x, attention(q, k_all, v_all, mask), mod)  # (B, La, D)
        x = block.cross_attn_ffn(x, stream.context, mod)  # (B, La, D)
    return x
