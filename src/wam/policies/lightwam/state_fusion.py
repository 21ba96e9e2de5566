"""The StateFusionActionExpert: adapted backbone states of K layers -> a whole action chunk in one pass.

Design (B batch, L tokens, d backbone width, K adapter layers, P per-layer width, T trunk width,
H chunk steps, A action dim), as in the authors' `state_fusion_action_expert.py`:
    pool      per layer, a LearnedQueryPooler: LayerNorm on the tokens (B, L, d); Q learned queries
              cross-attend to them (multi-head attention) -> (B, Q, d); a softmax over Q learned
              logits merges the Q outputs into one vector; LayerNorm            -> (B, d)
    compress  per layer, LayerNorm, Linear d -> P, GELU(tanh), Linear P -> P   -> (B, P)
    fuse      concatenate the K layers (B, K*P); LayerNorm, Linear K*P -> T; residual MLP
              blocks (LayerNorm, Linear, GELU(tanh), Linear, + input)           -> (B, T)
    steps     sinusoidal embedding of the chunk steps 0..H-1 (H, S); LayerNorm, Linear S -> T,
              GELU(tanh), Linear T -> T; added to the fused state              -> (B, H, T)
    output    LayerNorm, Linear T -> T, GELU(tanh), Linear T -> A               -> (B, H, A)
No token attends to another step and no sampling loop runs: one forward gives the chunk.

The paper preset (d 1536, K 3, P 4608, T 6144, 16 queries, 8 heads) has about 351M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wam.models.wan.model import sinusoidal_embedding


def _mlp(n_in: int, width: int, n_out: int) -> nn.Sequential:
    """Linear, GELU(tanh), Linear."""
    return nn.Sequential(nn.Linear(n_in, width), nn.GELU(approximate="tanh"), nn.Linear(width, n_out))


class LearnedQueryPooler(nn.Module):
    """Tokens (B, L, d) -> one vector (B, d): Q learned queries cross-attend, then a softmax merge."""

    def __init__(self, dim: int, num_queries: int = 16, num_heads: int = 8) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"The pooler's {num_heads} heads must divide the token width {dim}: change num_heads."
            )
        self.token_norm = nn.LayerNorm(dim)
        self.queries = nn.Parameter(torch.zeros(num_queries, dim))
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.merge_logits = nn.Parameter(torch.zeros(num_queries))  # uniform merge at initialisation
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.token_norm(tokens)  # (B, L, d)
        queries = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1).to(kv.dtype)  # (B, Q, d)
        pooled, _ = self.attn(queries, kv, kv, need_weights=False)  # (B, Q, d)
        weights = F.softmax(self.merge_logits.float(), dim=0).to(pooled.dtype)  # (Q,)
        return self.out_norm(torch.einsum("q,bqd->bd", weights, pooled))  # (B, d)


class LayerCompressor(nn.Module):
    """One layer's pooled vector (B, d) -> (B, P): LayerNorm, Linear, GELU(tanh), Linear."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(x))  # (B, P)


class ResidualMLPBlock(nn.Module):
    """x + MLP(LayerNorm(x)) on (B, T)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))  # (B, T)


class StepEmbedding(nn.Module):
    """Chunk steps 0..H-1 -> (H, T): sinusoidal embedding, LayerNorm, MLP."""

    def __init__(self, step_dim: int, out_dim: int) -> None:
        super().__init__()
        self.step_dim = step_dim
        self.norm = nn.LayerNorm(step_dim)
        self.mlp = _mlp(step_dim, out_dim, out_dim)

    def forward(self, horizon: int, device: torch.device) -> torch.Tensor:
        steps = torch.arange(horizon, device=device, dtype=torch.float32)  # (H,)
        emb = sinusoidal_embedding(self.step_dim, steps)  # (H, S) float32
        # The norm in float32 whatever the parameters' dtype (bf16 under FSDP mixed precision), as
        # CUDA autocast runs layer_norm; CPU autocast would refuse float32 input with bf16 weights.
        norm = self.norm
        normed = F.layer_norm(emb, norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps)
        return self.mlp(normed)  # (H, T)


class StateFusionActionExpert(nn.Module):
    """K layers of token states {(B, L, d)} -> actions (B, H, A) in one forward pass."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        action_dim: int,
        *,
        num_queries: int = 16,
        num_heads: int = 8,
        per_layer_dim: int = 4608,
        trunk_dim: int = 6144,
        trunk_blocks: int = 1,
        step_dim: int = 256,
    ) -> None:
        super().__init__()
        if num_layers < 1 or action_dim < 1:
            raise ValueError(
                f"The action expert needs >= 1 layer and action dim, got {num_layers} and {action_dim}."
            )
        self.num_layers = num_layers
        self.poolers = nn.ModuleList(
            LearnedQueryPooler(dim, num_queries, num_heads) for _ in range(num_layers)
        )
        self.compressors = nn.ModuleList(LayerCompressor(dim, per_layer_dim) for _ in range(num_layers))
        self.fuse_norm = nn.LayerNorm(num_layers * per_layer_dim)
        self.fuse = nn.Linear(num_layers * per_layer_dim, trunk_dim)
        self.trunk = nn.ModuleList(ResidualMLPBlock(trunk_dim) for _ in range(trunk_blocks))
        self.step_embed = StepEmbedding(step_dim, trunk_dim)
        self.out_norm = nn.LayerNorm(trunk_dim)
        self.out = _mlp(trunk_dim, trunk_dim, action_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """PyTorch's default initialisation everywhere, except:

        - pooler queries ~ N(0, 0.02^2) and merge logits zero (a uniform merge), as the authors;
        - the last output Linear zero, so a fresh expert predicts the normalised zero (mean) action.
        """
        for pooler in self.poolers:
            nn.init.normal_(pooler.queries, std=0.02)
            nn.init.zeros_(pooler.merge_logits)
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def fuse_layers(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """K token states (B, L, d) -> the fused state (B, T)."""
        if len(states) != self.num_layers:
            raise ValueError(f"The action expert reads {self.num_layers} layers, got {len(states)}.")
        parts = [
            comp(pool(h)) for h, pool, comp in zip(states, self.poolers, self.compressors, strict=True)
        ]  # K x (B, P)
        x = self.fuse(self.fuse_norm(torch.cat(parts, dim=-1)))  # (B, T)
        for block in self.trunk:
            x = block(x)  # (B, T)
        return x

    def forward(self, states: Sequence[torch.Tensor], horizon: int) -> torch.Tensor:
        """K token states (B, L, d) and the chunk length H -> actions (B, H, A)."""
        fused = self.fuse_layers(states)  # (B, T)
        tokens = fused.unsqueeze(1) + self.step_embed(horizon, fused.device).to(fused.dtype)  # (B, H, T)
        return self.out(self.out_norm(tokens))  # (B, H, A)
