"""Instruction tokens for the cross-attention context of Light-WAM and Fast-WAM, written once.

Both policies read an instruction as a token sequence (B, Lt, D), from one of three encoders
(`policy.text_encoder`):
    learned   a trainable per-instruction table (`LearnedTaskEncoder`, `text_tokens` x `text_dim`),
              saved with the policy (`learned_instructions`)
    minilm    the frozen, packaged all-MiniLM-L6-v2 token states (D 384)
    umt5      Wan's frozen umT5-XXL (D 4096) from `text_path`, optionally cached on disk
A frozen encoder (`FrozenInstructions`) is built on first use, so a policy can be built without its
weights (e.g. on the meta device); it never joins the policy's weights. Its token sequences are
memoised per instruction (the valid tokens only, on the CPU). Each instruction is cut to
`text_length` tokens and zero-padded to exactly `text_length`, so an instruction's context does not
depend on the rest of the batch (the pretrained Wan DiT cross-attends to the padding without a mask,
as the original codes do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class FrozenInstructions:
    """A frozen encoder built on first use: B instructions -> float32 (B, length, width) on the CPU."""

    def __init__(
        self,
        kind: str,
        *,
        width: int,
        length: int,
        path: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.kind, self.width, self.length = kind, width, length
        self.path = path  # umt5: Wan's umT5-XXL folder or .pth
        self.cache_dir = str(Path(cache_dir).expanduser()) if cache_dir else None
        self.encoder: Any = None  # built on first use
        self.memo: dict[str, torch.Tensor] = {}  # instruction -> its valid tokens (L_i <= length, width)

    def _build(self) -> Any:
        from wam.models.text.factory import build_text_encoder

        kwargs: dict[str, Any] = {"max_length": self.length}
        if self.kind == "umt5":
            if not self.path:
                raise ValueError(
                    "policy.text_path is unset: point it at Wan's umT5-XXL folder (diffusers, HF or .pth)."
                )
            kwargs["path"] = self.path
        encoder = build_text_encoder(self.kind, cache_dir=self.cache_dir, **kwargs)
        if encoder.dim != self.width:
            raise ValueError(
                f"The {self.kind} encoder gives {encoder.dim}-wide tokens, the policy expects {self.width}: "
                "use the standard model for this encoder."
            )
        return encoder

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """B instructions -> float32 (B, length, width) on the CPU, zero-padded."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            if self.encoder is None:
                self.encoder = self._build()
            for text, seq in zip(missing, self.encoder.encode(missing).sequences(), strict=True):
                self.memo[text] = seq[: self.length].detach().float().cpu()  # (L_i, width)
        out = torch.zeros(len(texts), self.length, self.width)  # (B, Lt, D)
        for i, text in enumerate(texts):
            seq = self.memo[text]
            out[i, : seq.shape[0]] = seq
        return out


def learned_instructions(tasks: tuple[str, ...] | list[str], dim: int, tokens: int) -> torch.nn.Module:
    """The trainable per-instruction table over the dataset's instructions `tasks`."""
    from wam.models.text.learned import LearnedTaskEncoder

    if not tasks:
        raise ValueError("policy.tasks is empty: the learned text encoder needs the dataset's instructions.")
    return LearnedTaskEncoder(list(tasks), dim=dim, tokens=tokens)


def frozen_instructions(cfg: Any) -> FrozenInstructions:
    """The frozen encoder a Light-WAM or Fast-WAM config asks for (`text_encoder` minilm or umt5)."""
    return FrozenInstructions(
        cfg.text_encoder,
        width=cfg.context_dim,
        length=cfg.text_length,
        path=cfg.text_path,
        cache_dir=cfg.text_cache_dir,
    )
