"""The baseline policy: a small Wan-block transformer that regresses action chunks (no world model).

Design (B batch, N cameras, S image size, p patch, g = S / p, H chunk, A action dim):
    images    each camera (B, 3, S, S) in [0, 1] -> [-1, 1]; training adds a random shift of up to
              `random_shift` pixels (replicate padding), the usual augmentation of pixel BC
    patches   Conv2d(3, dim, p, stride p) -> (B, g*g, dim) per camera, + a learned camera embedding
    state     normalised proprioception (B, S_dim) -> Linear -> one token (B, 1, dim)
    queries   H learned action-query tokens (H, dim), one per chunk step
    text      instruction -> text encoder (learned per-task embedding by default, MiniLM selectable)
              -> sentence vector -> MLP -> c (B, dim): the cross-attention context (one token) and,
              through SiLU + Linear (zero-initialised), the adaLN modulation of every block
    trunk     `num_layers` WanBlocks (reused from `wam.models.wan`, not forked) over the sequence
              [camera patches | state | queries], full attention, 3-D RoPE at positions
                  camera c patch (r, k)  -> (0, r, c*g + k)     cameras side by side
                  state                  -> (1, 0, 0)
                  query i                -> (2 + i, 0, 0)       chunk steps along the time axis
    head      LayerNorm + Linear on the query tokens -> (B, H, A) normalised actions
Loss: MSE between predicted and normalised target actions, padded steps (`action_is_pad`, past
the episode end) zeroed. Inference: one forward pass, then unnormalise.

Pixels rather than latents: the tiny presets run on 64x64 frames, where a 8x8 patch is as
compact as a codec latent and needs no encoder to download, run or cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wam.models.wan.blocks import WanBlock
from wam.models.wan.rope import rope_for_positions
from wam.policies.base import Batch
from wam.policies.baseline.configuration import BaselineConfig
from wam.policies.torch_policy import TorchPolicy


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image (B, C, S, S) by a random offset in [-pad, pad] pixels (replicate padding)."""
    b, _, s, _ = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")  # (B, C, S + 2p, S + 2p)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2)).tolist()  # B x [row, column]
    # B slices copy less memory than one advanced-indexing gather (several times faster on a CPU)
    return torch.stack(
        [padded[i, :, r : r + s, c : c + s] for i, (r, c) in enumerate(offsets)]
    )  # (B, C, S, S)


def _frozen_encoder(kind: str) -> Any:
    """The frozen MiniLM encoder (packaged weights, loaded on first use, never downloaded)."""
    if kind != "minilm":
        raise ValueError(f"The baseline supports text encoders 'learned' and 'minilm', not {kind!r}.")
    from wam.models.text.minilm import MiniLMEncoder

    return MiniLMEncoder()


class TaskConditioner(nn.Module):
    """Instructions -> one conditioning vector per sample (B, dim) through a text encoder.

    The learned per-task encoder is trained with the policy; frozen encoders (MiniLM) are not part
    of the policy's weights and their sentence vectors are memoised per instruction.
    """

    def __init__(self, cfg: BaselineConfig) -> None:
        super().__init__()
        self.kind = cfg.text_encoder
        if self.kind == "learned":
            from wam.models.text.learned import LearnedTaskEncoder

            if not cfg.tasks:
                raise ValueError(
                    "policy.tasks is empty: the learned text encoder needs the dataset's instructions."
                )
            self.encoder = LearnedTaskEncoder(list(cfg.tasks), dim=cfg.text_dim)
            width = self.encoder.dim
        else:
            self._frozen = _frozen_encoder(self.kind)
            width = self._frozen.dim
        self._memo: dict[str, torch.Tensor] = {}
        self.proj = nn.Sequential(
            nn.Linear(width, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )

    def _sentences(self, texts: list[str], device: torch.device) -> torch.Tensor:
        if self.kind == "learned":
            emb = self.encoder.encode(texts)
        else:
            missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
            if missing:
                out = self._frozen.encode(missing)
                vectors = out.pooled if out.pooled is not None else out.tokens.mean(dim=1)  # (M, D)
                self._memo.update(
                    {t: v.detach().float().cpu() for t, v in zip(missing, vectors, strict=True)}
                )
            return torch.stack([self._memo[t] for t in texts]).to(device)  # (B, D)
        if emb.pooled is not None:
            return emb.pooled.to(device)  # (B, D)
        weights = emb.mask.to(emb.tokens.dtype).unsqueeze(-1)  # (B, L, 1)
        return ((emb.tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)).to(device)  # (B, D)

    def forward(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """list of B instructions -> (B, dim)."""
        return self.proj(self._sentences(list(texts), device))  # (B, dim)


class BaselinePolicy(TorchPolicy):
    """No-world-model baseline: Wan blocks on pixels + state + instruction -> action chunk."""

    name = "baseline"

    def __init__(self, config: BaselineConfig, stats: Mapping[str, Mapping] | None = None) -> None:
        super().__init__(config, stats)
        cfg = config

        d, grid = cfg.dim, cfg.image_size // cfg.patch_size
        self.grid = grid
        self.patch_embed = nn.Conv2d(3, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.cameras), d))
        self.state_proj = nn.Linear(self.state_dim, d) if self.state_dim else None
        self.action_queries = nn.Parameter(torch.zeros(cfg.chunk_size, d))
        self.task = TaskConditioner(cfg)
        self.cond_proj = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(WanBlock(d, cfg.ffn_dim, cfg.num_heads) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(d)
        self.action_head = nn.Linear(d, self.action_dim)
        cos, sin = rope_for_positions(d // cfg.num_heads, self._token_positions())
        self.register_buffer("rope_cos", cos, persistent=False)  # (L, head_dim / 2)
        self.register_buffer("rope_sin", sin, persistent=False)  # (L, head_dim / 2)
        self.init_weights()

    def _token_positions(self) -> torch.Tensor:
        """(L, 3) RoPE positions (frame, row, column) of [camera patches | state | queries]."""
        g, n_cams = self.grid, len(self.cameras)
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")  # (g, g) each
        cams = [
            torch.stack([torch.zeros_like(rows), rows, cols + c * g], -1).reshape(-1, 3)
            for c in range(n_cams)
        ]
        state = [torch.tensor([[1, 0, 0]])] if self.state_dim else []
        queries = torch.stack(
            [2 + torch.arange(self.chunk_size), *([torch.zeros(self.chunk_size, dtype=torch.long)] * 2)], -1
        )
        return torch.cat([*cams, *state, queries])  # (L, 3)

    def init_weights(self) -> None:
        """Special initialisations (WanBlocks keep their own: xavier linears, N(0, 1/dim) modulation).

        - patch embedding: xavier-uniform on the (dim, 3*p*p) weight, zero bias;
        - camera embeddings, action queries: N(0, 0.02^2); state and text projections: xavier, zero bias;
        - cond_proj (text -> adaLN) zero, so every block starts from its own learned modulation;
        - action head zero, so a fresh policy predicts the mean (normalised zero) action.
        """
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.config.dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.camera_embed, std=0.02)
        nn.init.normal_(self.action_queries, std=0.02)
        for linear in [m for m in self.task.proj if isinstance(m, nn.Linear)] + (
            [self.state_proj] if self.state_proj is not None else []
        ):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        for tensor in (
            self.cond_proj[1].weight,
            self.cond_proj[1].bias,
            self.action_head.weight,
            self.action_head.bias,
        ):
            nn.init.zeros_(tensor)

    # ------------------------------------------------------------------ the network
    def _image(self, batch: Batch, key: str) -> torch.Tensor:
        img = batch[key]
        if img.ndim == 5:  # (B, T, 3, S, S) from a dataset window: the current frame is the last
            img = img[:, -1]
        if img.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"'{key}' images are {tuple(img.shape[-2:])}, the policy expects "
                f"{self.image_size}x{self.image_size}: "
                "render or resize to the policy's image_size."
            )
        return img.float()  # (B, 3, S, S)

    def predict_normalized(self, batch: Batch) -> torch.Tensor:
        """Normalised observations -> normalised action chunk (B, H, A)."""
        tokens = []
        for c, key in enumerate(self.config.image_keys):
            img = self._image(batch, key) * 2.0 - 1.0  # (B, 3, S, S) in [-1, 1]
            if self.training and self.config.random_shift:
                img = random_shift(img, self.config.random_shift)  # (B, 3, S, S)
            patches = self.patch_embed(img).flatten(2).transpose(1, 2)  # (B, g*g, dim)
            tokens.append(patches + self.camera_embed[c])  # (B, g*g, dim)
        b = tokens[0].shape[0]
        if self.state_proj is not None:
            state = batch["observation.state"].float()
            state = state[:, -1] if state.ndim == 3 else state  # (B, S_dim)
            tokens.append(self.state_proj(state)[:, None])  # (B, 1, dim)
        tokens.append(self.action_queries.expand(b, -1, -1))  # (B, H, dim)
        x = torch.cat(tokens, dim=1)  # (B, L, dim)
        cond = self.task(batch["task"], x.device)  # (B, dim)
        t_mod = self.cond_proj(cond).view(b, 1, 6, -1)  # (B, 1, 6, dim)
        context = cond[:, None]  # (B, 1, dim)
        rope = (self.rope_cos, self.rope_sin)  # 2 x (L, head_dim / 2)
        for block in self.blocks:
            x = block(x, t_mod, context, rope)  # (B, L, dim)
        queries = x[:, -self.chunk_size :]  # (B, H, dim)
        return self.action_head(self.norm_out(queries))  # (B, H, A)

    # ------------------------------------------------------------------ the policy contract
    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a dataset batch: masked MSE on normalised actions."""
        batch = self.normalize_targets(self.normalize_inputs(batch))
        pred = self.predict_normalized(batch)  # (B, H, A)
        target = batch["action"].float()  # (B, H, A)
        valid = (
            ~batch["action_is_pad"]
            if "action_is_pad" in batch
            else torch.ones_like(target[..., 0], dtype=torch.bool)
        )
        weights = valid.to(pred.dtype).unsqueeze(-1)  # (B, H, 1)
        # A mean over all B*H*A entries with padded steps zeroed (as LeRobot's ACT): every sample
        # weighs the same whatever the padding, so micro-batch means average to the batch mean.
        loss = (F.mse_loss(pred, target, reduction="none") * weights).mean()
        l1 = ((pred - target).abs().detach() * weights).mean()
        return loss, {"action_l1": float(l1)}

    def infer_normalized(self, batch: Batch) -> torch.Tensor:
        """Inference on a normalised batch: one forward pass (B, H, A)."""
        return self.predict_normalized(batch)
