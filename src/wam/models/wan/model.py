"""The Wan video diffusion transformer (`WanDiT`), one implementation for both World Action Models.

Data flow, for latents x (B, C_in, F, H, W), timesteps and text embeddings (B, Lt, text_dim):
    patchify         Conv3d with kernel = stride = patch (1, 2, 2)   -> tokens (B, L, dim), grid (F, H', W')
    time_embed       sinusoid(t) -> MLP -> t_emb (B, T, dim); SiLU + Linear -> t_mod (B, T, 6, dim)
                     T = 1 for one timestep per sample, T = L for per-token timesteps
    text_embed       Linear, GELU(tanh), Linear                      -> context (B, Lt, dim)
    rope_table       3-D RoPE over (frame, row, column) of the grid
    run_blocks       num_layers x WanBlock; optional residual adapters after chosen blocks and the
                     token states of chosen blocks returned (Light-WAM reads them)
    apply_head       adaLN (2 vectors from t_emb) + Linear, then unpatchify -> (B, C_out, F, H, W)

Timesteps may be a scalar or (B,) (Wan2.1), (B, F) one per latent frame, or (B, L) one per token
(Wan2.2 TI2V: the clean first frame gets t=0 while the future frames are noised).

Module and parameter names are those of the original checkpoints (`diffusion_pytorch_model*.
safetensors` of the Wan-AI repositories): `patch_embedding`, `text_embedding.{0,2}`,
`time_embedding.{0,2}`, `time_projection.1`, `blocks.N.*`, `head.head`, `head.modulation`.
`load_pretrained` also reads the diffusers layout (see `loading.py`).

Precision: the time embedding, modulation, norms and residual sums are float32 (see blocks.py); the
residual stream has the dtype of the parameters, so a float32 model under `torch.autocast(bf16)`
behaves like the original inference code and a model cast to bf16 runs entirely in bf16.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from wam.models.wan.blocks import FP32LayerNorm, WanBlock
from wam.models.wan.config import WanConfig, get_wan_config
from wam.models.wan.loading import LoadResult, load_into, load_wan_state_dict, read_wan_config
from wam.models.wan.rope import RopeTable, rope_for_grid

Grid = tuple[int, int, int]  # (frames, rows, columns) of tokens after patchify


class WanFeatures(NamedTuple):
    """Backbone output without the head."""

    tokens: torch.Tensor  # (B, L, dim) token states after the last block
    grid: Grid  # token grid (F, H', W')
    t_emb: torch.Tensor  # (B, 1|L, dim) float32 timestep embedding (the head's conditioning)
    hidden: dict[int, torch.Tensor]  # block index -> (B, L, dim) states after that block (+ adapter)


class WanOutput(NamedTuple):
    """Model output; unpacks as `(sample, hidden)`."""

    sample: torch.Tensor  # (B, C_out, F, H, W) prediction (the flow-matching velocity)
    hidden: dict[int, torch.Tensor]  # block index -> (B, L, dim)


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """Wan's timestep embedding of t (N,): [cos(t w_i), sin(t w_i)], w_i = 10000^(-2i/dim) -> (N, dim)."""
    half = dim // 2
    t64 = t.to(torch.float64)  # (N,)
    freqs = torch.pow(10000.0, -torch.arange(half, device=t.device, dtype=torch.float64) / half)  # (half,)
    angles = torch.outer(t64, freqs)  # (N, half)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()  # (N, dim)


class Head(nn.Module):
    """Final adaLN + linear projection to patch values (original `Head`)."""

    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float) -> None:
        super().__init__()
        self.dim = dim
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim * patch_size[0] * patch_size[1] * patch_size[2])
        self.modulation = nn.Parameter(torch.empty(1, 2, dim))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """x (B, L, dim), t_emb (B, 1|L, dim) -> (B, L, C_out * prod(patch))."""
        table = self.modulation.float().unsqueeze(1) + t_emb.float().unsqueeze(2)  # (B, T, 2, dim)
        shift, scale = table.unbind(2)  # each (B, T, dim)
        h = (self.norm(x).float() * (1 + scale) + shift).type_as(x)  # (B, L, dim)
        return self.head(h)  # (B, L, C_out * prod(patch))


class WanDiT(nn.Module):
    """Wan text-to-video DiT with hidden-state taps, residual adapters and per-token timesteps."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU("tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(
            WanBlock(d, cfg.ffn_dim, cfg.num_heads, cfg.eps, cfg.qk_norm, cfg.cross_attn_norm, cfg.attn_dim)
            for _ in range(cfg.num_layers)
        )
        self.head = Head(d, cfg.out_channels, cfg.patch_size, cfg.eps)
        self.gradient_checkpointing = False  # recompute each block in backward to save activation memory
        self.init_weights()

    @classmethod
    def from_config(
        cls, cfg: WanConfig | str, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> WanDiT:
        """Build from a config or preset name; `device="meta"` allocates nothing (load weights later)."""
        cfg = get_wan_config(cfg) if isinstance(cfg, str) else cfg
        with torch.device(device if device is not None else "cpu"):
            model = cls(cfg)
        return model.to(dtype) if dtype is not None else model

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> WanDiT:
        """Build from a folder's config.json (original or diffusers); load its weights strictly."""
        model = cls.from_config(read_wan_config(path), device="meta", dtype=dtype)
        model.load_pretrained(path, strict=True)
        return model.to(device) if device is not None else model

    def init_weights(self) -> None:
        """The original Wan initialisation (every Linear bias starts at zero).

        - blocks (`WanBlock.init_weights`): xavier-uniform linears, unit norms, modulation ~ N(0, 1/dim);
        - patch embedding: xavier-uniform on the weight viewed as (dim, C_in * prod(patch)); its bias
          keeps PyTorch's Conv3d default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as the original leaves it;
        - text and time embedding linears: weight ~ N(0, 0.02^2); time projection: xavier-uniform;
        - head modulation ~ N(0, 1/dim); head.head weight zero, so a fresh model predicts zero everywhere.
        """
        for block in self.blocks:
            block.init_weights()
        nn.init.xavier_uniform_(self.patch_embedding.weight.view(self.cfg.dim, -1))
        fan_in = self.patch_embedding.weight[0].numel()
        nn.init.uniform_(self.patch_embedding.bias, -(fan_in**-0.5), fan_in**-0.5)  # PyTorch's Conv3d default
        for linear in (*self.text_embedding[::2], *self.time_embedding[::2]):  # the Linear layers
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        nn.init.xavier_uniform_(self.time_projection[1].weight)
        nn.init.zeros_(self.time_projection[1].bias)
        nn.init.normal_(self.head.modulation, std=self.cfg.dim**-0.5)
        nn.init.zeros_(self.head.head.weight)
        nn.init.zeros_(self.head.head.bias)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters, which is also the dtype of the residual stream."""
        return self.patch_embedding.weight.dtype

    # --- embeddings -------------------------------------------------------------------------------
    def patchify(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Latents (B, C_in, F, H, W) -> tokens (B, L, dim) and their grid (F, H', W'), L = F*H'*W'."""
        pt, ph, pw = self.cfg.patch_size
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(
                f"Latents must be (B, {self.cfg.in_channels}, F, H, W) for this model, got {tuple(x.shape)}."
            )
        if x.shape[2] % pt or x.shape[3] % ph or x.shape[4] % pw:
            raise ValueError(
                f"Latent size (F, H, W) = {tuple(x.shape[2:])} is not divisible by the patch "
                f"{self.cfg.patch_size}: crop or pad the latents."
            )
        tokens = self.patch_embedding(x.to(self.dtype))  # (B, dim, F, H', W')
        grid = (tokens.shape[2], tokens.shape[3], tokens.shape[4])
        return tokens.flatten(2).transpose(1, 2).contiguous().to(self.dtype), grid  # (B, L, dim)

    def token_grid(self, latent_size: tuple[int, ...]) -> Grid:
        """The token grid (F, H', W') of latents whose (F, H, W) size is `latent_size`."""
        f, h, w = latent_size
        pt, ph, pw = self.cfg.patch_size
        return f // pt, h // ph, w // pw

    def unpatchify(self, patches: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Per-token patch values (B, L, C * prod(patch)) -> latents (B, C, F*pt, H'*ph, W'*pw)."""
        f, h, w = grid
        pt, ph, pw = self.cfg.patch_size
        x = patches.reshape(patches.shape[0], f, h, w, pt, ph, pw, -1)  # (B, F, H', W', pt, ph, pw, C)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, F, pt, H', ph, W', pw)
        return x.reshape(x.shape[0], x.shape[1], f * pt, h * ph, w * pw)  # (B, C, F, H, W)

    def time_embed(self, timestep: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (B,), (B, F) or (B, L) -> float32 t_emb (B, T, dim), t_mod (B, T, 6, dim); T = 1 or L.

        Computed in float32 (outside autocast) from the parameters' dtype, like the original.
        """
        t = torch.as_tensor(timestep, device=self.patch_embedding.weight.device)
        num_tokens = grid[0] * grid[1] * grid[2]
        if t.ndim == 1:
            t = t[:, None]  # (B, 1)
        elif t.ndim != 2 or t.shape[1] not in (grid[0], num_tokens):
            raise ValueError(
                f"timestep has shape {tuple(t.shape)}: give (B,), (B, {grid[0]}) per latent frame "
                f"or (B, {num_tokens}) per token."
            )
        batch, steps = t.shape
        with torch.autocast(device_type=t.device.type, enabled=False):
            freq = sinusoidal_embedding(self.cfg.freq_dim, t.flatten()).to(self.dtype)  # (B*T0, freq_dim)
            t_emb = self.time_embedding(freq).float()  # (B*T0, dim)
            t_mod = self.time_projection(t_emb.to(self.dtype)).float()  # (B*T0, 6*dim)
        t_emb = t_emb.view(batch, steps, -1)  # (B, T0, dim)
        t_mod = t_mod.view(batch, steps, 6, -1)  # (B, T0, 6, dim)
        if steps != 1 and steps != num_tokens:  # one per frame: repeat over the frame's H'*W' tokens
            t_emb = t_emb.repeat_interleave(grid[1] * grid[2], dim=1)  # (B, L, dim)
            t_mod = t_mod.repeat_interleave(grid[1] * grid[2], dim=1)  # (B, L, 6, dim)
        return t_emb, t_mod

    def text_embed(self, context: torch.Tensor) -> torch.Tensor:
        """Text-encoder embeddings (B, Lt, text_dim) -> (B, Lt, dim)."""
        if context.ndim != 3 or context.shape[-1] != self.cfg.text_dim:
            raise ValueError(
                f"context must be (B, Lt, {self.cfg.text_dim}) text embeddings, got {tuple(context.shape)}."
            )
        return self.text_embedding(context.to(self.dtype))  # (B, Lt, dim)

    def rope_table(self, grid: Grid, frame_offset: int = 0) -> RopeTable:
        """RoPE (cos, sin), each (L, head_dim // 2), for a token grid starting at `frame_offset`."""
        device = self.patch_embedding.weight.device
        return rope_for_grid(self.cfg.head_dim, grid, frame_offset, self.cfg.rope_theta, device)

    # --- transformer ------------------------------------------------------------------------------
    def _check_layer_indices(self, indices: Sequence[int] | Mapping[int, nn.Module], what: str) -> None:
        n = len(self.blocks)
        bad = [i for i in indices if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"{what} index {bad[0]} is out of range: this model has blocks 0..{n - 1}.")

    def run_blocks(
        self,
        x: torch.Tensor,
        t_mod: torch.Tensor,
        context: torch.Tensor,
        rope: RopeTable,
        *,
        return_hidden: Sequence[int] = (),
        adapters: Mapping[int, nn.Module] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """All blocks on tokens x (B, L, dim); adapters add `adapter(x)` after their block.

        `adapters` maps block indices to modules; string keys (as in an `nn.ModuleDict`) are accepted.
        """
        adapters = {int(i): module for i, module in (adapters or {}).items()}
        self._check_layer_indices(return_hidden, "return_hidden")
        self._check_layer_indices(adapters, "adapters")
        wanted = set(return_hidden)
        hidden: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, t_mod, context, rope, attn_mask, use_reentrant=False)  # (B, L, dim)
            else:
                x = block(x, t_mod, context, rope, attn_mask)  # (B, L, dim)
            if i in adapters:
                x = x + adapters[i](x)  # (B, L, dim)
            if i in wanted:
                hidden[i] = x
        return x, hidden

    def forward_features(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        *,
        return_hidden: Sequence[int] = (),
        adapters: Mapping[int, nn.Module] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> WanFeatures:
        """The backbone without the head: latents (B, C_in, F, H, W) -> token states (B, L, dim)."""
        timestep = torch.as_tensor(timestep, device=x.device)
        if timestep.ndim == 0:  # one timestep for the whole batch
            timestep = timestep.expand(len(x))  # (B,)
        if len(timestep) != len(x) or len(context) != len(x):
            raise ValueError(
                f"Batch sizes differ: latents {len(x)}, timestep {len(timestep)}, context {len(context)}; "
                "give one timestep row and one text context per sample."
            )
        tokens, grid = self.patchify(x)  # (B, L, dim)
        t_emb, t_mod = self.time_embed(timestep, grid)  # (B, T, dim), (B, T, 6, dim)
        context = self.text_embed(context)  # (B, Lt, dim)
        rope = self.rope_table(grid)  # 2 x (L, head_dim // 2)
        tokens, hidden = self.run_blocks(
            tokens, t_mod, context, rope, return_hidden=return_hidden, adapters=adapters, attn_mask=attn_mask
        )  # (B, L, dim)
        return WanFeatures(tokens, grid, t_emb, hidden)

    def apply_head(self, tokens: torch.Tensor, t_emb: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Token states (B, L, dim) -> prediction (B, C_out, F, H, W), in the residual dtype."""
        return self.unpatchify(self.head(tokens, t_emb), grid).to(self.dtype)  # (B, C_out, F, H, W)

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        *,
        return_hidden: Sequence[int] = (),
        adapters: Mapping[int, nn.Module] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> WanOutput:
        """Latents (B, C_in, F, H, W), timesteps () | (B,) | (B, F) | (B, L), text (B, Lt, text_dim).

        attn_mask (optional) masks the self-attention: bool, broadcastable to (B, heads, L, L), True = attend.
        Returns the prediction (B, C_out, F, H, W) and the requested hidden states {block: (B, L, dim)}.
        """
        feats = self.forward_features(
            x, timestep, context, return_hidden=return_hidden, adapters=adapters, attn_mask=attn_mask
        )
        return WanOutput(self.apply_head(feats.tokens, feats.t_emb, feats.grid), feats.hidden)

    # --- checkpoints --------------------------------------------------------------------------------
    def load_pretrained(self, path: str | Path, strict: bool = True) -> LoadResult:
        """Load original-layout or diffusers-layout weights (file or folder); see `loading.load_into`."""
        return load_into(self, load_wan_state_dict(path), strict=strict, source=str(path))
