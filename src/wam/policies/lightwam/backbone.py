"""The adapted Wan backbone of Light-WAM: pretrained weights, LoRA, residual adapters, freezing.

`build_backbone(cfg)` returns the `WanDiT` with its pretrained weights loaded (when
`backbone_weights` is set) and LoRA injected on the configured linears (`lora.py`); every
non-LoRA weight is frozen there, the caller unfreezes the video head. The K residual adapters live
outside the DiT, in an `nn.ModuleDict` keyed by block index, and are passed to it per call.

`adapted_states(...)` is the action pass: the current latent frame through blocks 0 .. max(K)
only, returning the adapted token states h + adapter(h) after each adapter block. Blocks past the
last adapter cannot change what the action expert reads, so they are skipped (on the 30-block
backbone with adapters after 8/16/24 that is 5 of 30 blocks saved on every action pass); the
loop mirrors `WanDiT.run_blocks` up to that block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from wam.models.wan import ResidualAdapter, WanDiT
from wam.policies.lightwam.configuration import LightWAMConfig
from wam.policies.lightwam.lora import apply_lora, is_lora_parameter

RELEASED_BACKBONES = ("wan2.1-1.3b", "wan2.2-5b")  # presets that are pointless without their weights


def build_backbone(cfg: LightWAMConfig) -> WanDiT:
    """The frozen Wan DiT with pretrained weights (if any) and LoRA on the configured linears."""
    wan_cfg = cfg.backbone_config()
    backbone = WanDiT(wan_cfg)  # on the current default device (meta for parameter counts)
    on_meta = backbone.patch_embedding.weight.is_meta
    if cfg.backbone_weights and not on_meta:
        backbone.load_pretrained(cfg.backbone_weights, strict=True)
    elif cfg.backbone in RELEASED_BACKBONES and not cfg.backbone_weights and not on_meta:
        raise ValueError(
            f"policy.backbone_weights is unset for the released backbone {cfg.backbone}: point it at the "
            "pretrained DiT folder (a frozen random backbone cannot learn), or use a tiny preset."
        )
    backbone.requires_grad_(False)
    apply_lora(backbone, cfg.lora, cfg.resolved_lora_layers())
    backbone.gradient_checkpointing = cfg.gradient_checkpointing
    return backbone


def build_adapters(cfg: LightWAMConfig) -> nn.ModuleDict:
    """One ResidualAdapter (zero-initialised up projection) per adapter block, keyed by its index."""
    wan = cfg.backbone_config()
    return nn.ModuleDict(
        {
            str(i): ResidualAdapter(wan.dim, cfg.adapter_width, eps=wan.eps)
            for i in cfg.resolved_adapter_layers()
        }
    )


def set_trainable(
    backbone: WanDiT, train_head: bool, last_block: int | None, train_base: bool = False
) -> None:
    """Which backbone weights learn: LoRA (of blocks <= last_block when given), the video head with
    train_head, and with train_base every other weight too (blocks after last_block stay frozen)."""
    for name, param in backbone.named_parameters():
        trainable = train_base or is_lora_parameter(name)
        if trainable and last_block is not None and name.startswith("blocks."):
            trainable = int(name.split(".")[1]) <= last_block  # "blocks.N.<linear>.lora_A.default.weight"
        param.requires_grad_(trainable)
    backbone.head.requires_grad_(train_head)


def adapted_states(
    backbone: WanDiT,
    latents: torch.Tensor,
    context: torch.Tensor,
    adapters: nn.ModuleDict,
    layers: Sequence[int],
) -> dict[int, torch.Tensor]:
    """The action pass: latents (B, C, 1, h, w) at t = 0 -> {block: adapted states (B, L, dim)}.

    One latent frame: the first-frame-causal mask of the video pass is all True here, so no mask.
    """
    zero = torch.zeros(latents.shape[0], device=latents.device)  # (B,) t = 0: the frame is clean
    tokens, grid = backbone.patchify(latents)  # (B, L, dim), (1, h/2, w/2)
    _, t_mod = backbone.time_embed(zero, grid)  # (B, 1, 6, dim)
    ctx = backbone.text_embed(context)  # (B, Lt, dim)
    rope = backbone.rope_table(grid)  # 2 x (L, head_dim / 2)
    wanted, states = set(layers), {}
    for i, block in enumerate(backbone.blocks[: max(layers) + 1]):
        if backbone.gradient_checkpointing and torch.is_grad_enabled():
            tokens = checkpoint(block, tokens, t_mod, ctx, rope, None, use_reentrant=False)  # (B, L, dim)
        else:
            tokens = block(tokens, t_mod, ctx, rope)  # (B, L, dim)
        if str(i) in adapters:
            tokens = tokens + adapters[str(i)](tokens)  # (B, L, dim): h' = h + adapter(h)
        if i in wanted:
            states[i] = tokens
    return states
