"""Fast-WAM's cross-attention context: instruction tokens plus one proprioception token.

    context = [ text tokens (B, Lt, text_dim) | proprio_encoder(state) (B, 1, text_dim) ]

as the original appends its projected proprioception to the (umT5) prompt embedding; the shared raw
context then enters each stream through that stream's own `text_embedding` MLP, so the video and the
action stream both cross-attend to the instruction and the state.

Instruction encoders (`policy.text_encoder`):
    learned   a trainable per-task table (`LearnedTaskEncoder`, `text_tokens` x `text_dim`), saved
              with the policy
    minilm    the frozen, packaged all-MiniLM-L6-v2 token states (width 384)
    umt5      Wan's frozen umT5-XXL (width 4096) from `text_path`, optionally cached on disk
Frozen encoders are not part of the policy's weights: they are built on first use and their token
sequences memoised per instruction. Each instruction is cut to `text_length` tokens and zero-padded
to exactly `text_length`, so an instruction's context does not depend on the rest of the batch (Wan's
cross-attention reads the padding, which the original also leaves visible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from wam.policies.fastwam.configuration import FastWAMConfig


class FrozenInstructions:
    """A frozen encoder built on first use; (Lt, D) token sequences memoised per instruction (CPU)."""

    def __init__(self, cfg: FastWAMConfig) -> None:
        self.cfg = cfg
        self.width = cfg.context_dim
        self._encoder: Any = None
        self._memo: dict[str, torch.Tensor] = {}

    def _build(self) -> Any:
        from wam.models.text.factory import build_text_encoder

        cfg = self.cfg
        kwargs: dict[str, Any] = {"max_length": cfg.text_length}
        if cfg.text_encoder == "umt5":
            if not cfg.text_path:
                raise ValueError(
                    "policy.text_path is unset: point it at Wan's umT5-XXL folder (diffusers, HF or .pth)."
                )
            kwargs["path"] = cfg.text_path
        cache = str(Path(cfg.text_cache_dir).expanduser()) if cfg.text_cache_dir else None
        encoder = build_text_encoder(cfg.text_encoder, cache_dir=cache, **kwargs)
        if encoder.dim != self.width:
            raise ValueError(
                f"The {cfg.text_encoder} encoder gives {encoder.dim}-wide tokens, the policy expects "
                f"{self.width}: use the standard model for this encoder."
            )
        return encoder

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """B instructions -> float32 (B, text_length, D) on the CPU, zero-padded."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            if self._encoder is None:
                self._encoder = self._build()
            for text, seq in zip(missing, self._encoder.encode(missing).sequences(), strict=True):
                self._memo[text] = seq[: self.cfg.text_length].detach().float().cpu()  # (Lt_i, D)
        out = torch.zeros(len(texts), self.cfg.text_length, self.width)  # (B, Lt, D)
        for i, text in enumerate(texts):
            seq = self._memo[text]
            out[i, : seq.shape[0]] = seq
        return out


class Conditioning(nn.Module):
    """Instructions and proprioception -> the raw context (B, Lt + 1, text_dim) both streams read."""

    def __init__(self, cfg: FastWAMConfig) -> None:
        super().__init__()
        self.width = cfg.context_dim
        self.length = cfg.text_tokens if cfg.text_encoder == "learned" else cfg.text_length
        self.encoder: nn.Module | None = None
        self._frozen: FrozenInstructions | None = None
        if cfg.text_encoder == "learned":
            from wam.models.text.learned import LearnedTaskEncoder

            if not cfg.tasks:
                raise ValueError(
                    "policy.tasks is empty: the learned text encoder needs the dataset's instructions."
                )
            self.encoder = LearnedTaskEncoder(list(cfg.tasks), dim=cfg.text_dim, tokens=cfg.text_tokens)
        else:
            self._frozen = FrozenInstructions(cfg)
        state_dim = int(cfg.state_dim or 0)
        # original `proprio_encoder`: the normalised state as one extra context token
        self.proprio_encoder = nn.Linear(state_dim, self.width) if state_dim else None
        self.init_weights()

    def init_weights(self) -> None:
        """proprio_encoder: xavier-uniform weight, zero bias (the learned text table keeps its own init)."""
        if self.proprio_encoder is not None:
            nn.init.xavier_uniform_(self.proprio_encoder.weight)
            nn.init.zeros_(self.proprio_encoder.bias)

    def text(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """B instructions -> (B, Lt, text_dim)."""
        if self.encoder is not None:
            return self.encoder.encode(texts).tokens.to(device)  # (B, Lt, text_dim)
        assert self._frozen is not None
        return self._frozen(texts).to(device)  # (B, Lt, text_dim)

    def forward(self, texts: list[str], state: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """Instructions and normalised state (B, S) or (B, 1, S) -> context (B, Lt [+ 1], text_dim)."""
        context = self.text(list(texts), device)  # (B, Lt, text_dim)
        if self.proprio_encoder is None:
            return context
        if state is None:
            raise ValueError("The batch has no 'observation.state' but the policy was trained with state.")
        state = state[:, -1] if state.ndim == 3 else state  # (B, S): the current state
        state = state.to(device, self.proprio_encoder.weight.dtype)
        token = self.proprio_encoder(state)[:, None]  # (B, 1, text_dim)
        return torch.cat([context, token.to(context.dtype)], dim=1)  # (B, Lt + 1, text_dim)
