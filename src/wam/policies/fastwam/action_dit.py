"""Fast-WAM's action expert: a Wan-style DiT over the action chunk, one stream of the Mixture-of-Transformers.

Data flow, for noisy normalised actions (B, H, A), a timestep per sample (B,) and the raw context
(B, Lc, text_dim) (instruction tokens + the proprioception token):
    action_encoder   Linear(A, width)                              -> tokens (B, H, width)
    time_embed       sinusoid(t) -> MLP -> t_emb (B, 1, width); SiLU + Linear -> t_mod (B, 1, 6, width)
    text_embed       Linear, GELU(tanh), Linear                    -> context (B, Lc, width)
    rope             1-D RoPE over the chunk positions 0..H-1 (the whole head width, as the original)
    blocks           num_layers `ActionBlock`s, run jointly with the video blocks (see `mot.py`)
    head             Linear(width, A)                              -> velocity (B, H, A)

Heads and head width equal the video stream's so that the two streams attend jointly; the token
width is the action expert's own. The published expert (width 1024, FFN 4096, 30 layers) keeps the
Wan2.2-5B attention geometry (24 heads x 128 = 3072), so its q/k/v project 1024 -> 3072 and its
output 3072 -> 1024: `ActionBlock` is a `WanBlock` built with `attn_dim` = heads x head_dim, so
every step method of `WanBlock` is reused unchanged.

Module and parameter names follow the original `ActionDiT` (`action_encoder`, `text_embedding.{0,2}`,
`time_embedding.{0,2}`, `time_projection.1`, `blocks.N.*`, `head`), which are also the video DiT's
names: `init.py` interpolates the video weights into this module key by key.
"""

from __future__ import annotations

import torch
from torch import nn

from wam.models.wan.blocks import WanBlock
from wam.models.wan.model import sinusoidal_embedding
from wam.models.wan.rope import RopeTable


class ActionBlock(WanBlock):
    """A WanBlock of token width `dim` whose attentions work at width `attn_dim` (original `DiTBlock`)."""

    def __init__(
        self,
        dim: int,
        attn_dim: int,
        ffn_dim: int,
        num_heads: int,
        eps: float = 1e-6,
        qk_norm: bool = True,
        cross_attn_norm: bool = True,
    ) -> None:
        super().__init__(dim, ffn_dim, num_heads, eps, qk_norm, cross_attn_norm, attn_dim=attn_dim)


def action_rope(
    head_dim: int, length: int, theta: float = 10000.0, device: torch.device | str | None = None
) -> RopeTable:
    """1-D RoPE table (cos, sin), each (length, head_dim // 2): pair j turns by p * theta^(-2j/d) at p."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}.")
    pos = torch.arange(length, device=device, dtype=torch.float64)  # (H,)
    exponent = torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim  # (d/2,)
    inv_freq = 1.0 / theta**exponent  # (d/2,)
    angle = torch.outer(pos, inv_freq)  # (H, d/2)
    return angle.cos().float(), angle.sin().float()


class ActionDiT(nn.Module):
    """The action expert: embeddings, `num_layers` ActionBlocks and a linear head."""

    def __init__(
        self,
        action_dim: int,
        width: int,
        ffn_dim: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        text_dim: int,
        freq_dim: int = 256,
        eps: float = 1e-6,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        self.action_dim, self.width, self.freq_dim = action_dim, width, freq_dim
        self.num_heads, self.head_dim, self.rope_theta = num_heads, head_dim, rope_theta
        self.action_encoder = nn.Linear(action_dim, width)
        self.text_embedding = nn.Sequential(
            nn.Linear(text_dim, width), nn.GELU("tanh"), nn.Linear(width, width)
        )
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.blocks = nn.ModuleList(
            ActionBlock(width, num_heads * head_dim, ffn_dim, num_heads, eps) for _ in range(num_layers)
        )
        self.head = nn.Linear(width, action_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Wan's initialisation for the shared parts, plus the two action-only layers.

        - blocks: WanBlock's (xavier-uniform linears, zero biases, unit norms, modulation ~ N(0, 1/width));
        - text and time embedding linears ~ N(0, 0.02^2), time projection xavier-uniform (as WanDiT);
        - action_encoder xavier-uniform; head zero, so a fresh expert predicts zero velocity.
        `init.interpolate_from_video` later overwrites everything but action_encoder and head.
        """
        for block in self.blocks:
            block.init_weights()
        for linear in (*self.text_embedding[::2], *self.time_embedding[::2]):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        for linear in (self.time_projection[1], self.action_encoder):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters (the residual stream's)."""
        return self.action_encoder.weight.dtype

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Noisy normalised actions (B, H, A) -> tokens (B, H, width)."""
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be (B, H, {self.action_dim}), got {tuple(actions.shape)}.")
        return self.action_encoder(actions.to(self.dtype))  # (B, H, width)

    def time_embed(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (B,) -> float32 t_emb (B, 1, width) and t_mod (B, 1, 6, width)."""
        t = timestep.reshape(-1).to(self.action_encoder.weight.device)  # (B,)
        with torch.autocast(device_type=t.device.type, enabled=False):
            freq = sinusoidal_embedding(self.freq_dim, t).to(self.dtype)  # (B, freq_dim)
            t_emb = self.time_embedding(freq).float()  # (B, width)
            t_mod = self.time_projection(t_emb.to(self.dtype)).float()  # (B, 6*width)
        return t_emb[:, None], t_mod.view(len(t), 1, 6, -1)

    def text_embed(self, context: torch.Tensor) -> torch.Tensor:
        """Raw context (B, Lc, text_dim) -> (B, Lc, width)."""
        return self.text_embedding(context.to(self.dtype))  # (B, Lc, width)

    def rope_table(self, length: int) -> RopeTable:
        """RoPE of the H chunk positions: (cos, sin), each (H, head_dim // 2)."""
        return action_rope(self.head_dim, length, self.rope_theta, self.action_encoder.weight.device)

    def apply_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token states (B, H, width) -> velocity (B, H, A)."""
        return self.head(tokens)  # (B, H, A)
