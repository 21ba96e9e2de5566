"""The text context the Light-WAM backbone cross-attends to: instruction tokens plus a state token.

    context = [ instruction tokens (B, Lt, D) | Linear(state) (B, 1, D) ]        D = the text width

As in the authors' code, proprioception is not a video token: a Linear maps the normalised state
to the text width and the result is appended to the instruction's token sequence, so every block's
cross-attention (and its LoRA) can read it, in both backbone passes.

Instruction encoders (`policy.text_encoder`):
    learned   a trainable per-instruction table (`LearnedTaskEncoder`, `text_tokens` x `text_dim`)
    minilm    frozen all-MiniLM-L6-v2 (D 384), packaged with the library
    umt5      frozen umT5-XXL (D 4096) from `text_path`, zero-padded to `text_length` tokens (512 =
              what the pretrained Wan DiT saw; it cross-attends to the padding without a mask)
Frozen encoders are built on first use (so a policy can be built without their weights, e.g. on
the meta device), never join the policy's weights, and their outputs are memoised per instruction
(the valid tokens only; padding is added per batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from wam.policies.lightwam.configuration import LightWAMConfig


class InstructionContext(nn.Module):
    """(instructions, normalised state) -> the backbone's text context (B, Lt (+1), D)."""

    def __init__(self, cfg: LightWAMConfig, state_dim: int) -> None:
        super().__init__()
        self.kind = cfg.text_encoder
        self.width = cfg.context_dim
        self.cfg = cfg
        if self.kind == "learned":
            from wam.models.text.learned import LearnedTaskEncoder

            if not cfg.tasks:
                raise ValueError(
                    "policy.tasks is empty: the learned text encoder needs the dataset's instructions."
                )
            self.encoder = LearnedTaskEncoder(list(cfg.tasks), dim=cfg.text_dim, tokens=cfg.text_tokens)
        self._frozen: Any = None  # the frozen encoder, built on first use
        self._memo: dict[str, torch.Tensor] = {}  # instruction -> its valid tokens (L_i, D), CPU
        self.state_proj = nn.Linear(state_dim, self.width) if state_dim else None

    def _frozen_encoder(self) -> Any:
        if self._frozen is None:
            from wam.models.text.factory import TextEncoderConfig

            if self.kind == "umt5" and not self.cfg.text_path:
                raise ValueError(
                    "policy.text_path is unset: point it at Wan's umT5-XXL folder to encode instructions."
                )
            cache = str(Path(self.cfg.text_cache_dir).expanduser()) if self.cfg.text_cache_dir else None
            self._frozen = TextEncoderConfig(
                kind=self.kind, path=self.cfg.text_path, max_length=self.cfg.text_length, cache_dir=cache
            ).build()
        return self._frozen

    def instruction_tokens(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """B instructions -> token embeddings (B, Lt, D), zeros at padding."""
        if self.kind == "learned":
            return self.encoder.encode(texts).tokens.to(device)  # (B, tokens, D)
        from wam.models.text.base import TextEmbedding

        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            emb = self._frozen_encoder().encode(missing)
            self._memo.update(
                {t: seq.detach().cpu() for t, seq in zip(missing, emb.sequences(), strict=True)}
            )
        padded = TextEmbedding.from_sequences([self._memo[t] for t in texts], pad_to=self.cfg.text_length)
        return padded.tokens.to(device=device, dtype=torch.float32)  # (B, text_length, D)

    def forward(self, texts: list[str], state: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """Instructions (B) and normalised state (B, S) or None -> context (B, Lt (+1), D)."""
        tokens = self.instruction_tokens(list(texts), device)  # (B, Lt, D)
        if self.state_proj is None:
            return tokens
        if state is None:
            raise ValueError("The batch has no 'observation.state' but the policy reads proprioception.")
        state_token = self.state_proj(state.to(device=device, dtype=self.state_proj.weight.dtype))  # (B, D)
        return torch.cat([tokens, state_token[:, None].to(tokens.dtype)], dim=1)  # (B, Lt + 1, D)
