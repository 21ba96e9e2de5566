"""What the frozen Hugging Face encoders (umT5, MiniLM) share: lazy loading, tokenising, masking.

A subclass says where its files are (`_fingerprint_paths`), how to load model and tokenizer
(`_load`) and how to pool (`_pool`). The model is loaded on the first `encode` (or `load()`), so a
`CachedTextEncoder` whose cache already holds every instruction never reads the weights.

Encoding: clean the text (Wan's whitespace clean), tokenise with right padding to the longest
instruction and truncation at `max_length`, run the encoder under `torch.no_grad()` (not inference
mode: the outputs may feed a training graph), take the last hidden states and zero them at the
padding positions.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch

from wam.models.text.base import TextEmbedding, TextEncoder, clean_text, warn_truncation
from wam.models.text.fingerprint import fingerprint_files

CLEAN_VERSION = "whitespace-v1"  # bump when `clean_text` changes, so old caches miss


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The given device, or CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, L, D) over the True positions of mask (B, L), in float32 -> (B, D)."""
    weights = mask.to(torch.float32).unsqueeze(-1)  # (B, L, 1)
    total = (hidden.float() * weights).sum(dim=1)  # (B, D)
    return total / weights.sum(dim=1).clamp(min=1.0)  # (B, D)


class HFTextEncoder(TextEncoder):
    """A frozen transformers encoder + tokenizer, loaded lazily; outputs on `device` in `dtype`."""

    def __init__(
        self,
        dim: int,
        max_length: int,
        pad_to: int | None,
        device: torch.device | str | None,
        dtype: torch.dtype,
    ) -> None:
        self.dim = dim
        self.max_length = max_length
        self.pad_to = pad_to
        self._device = resolve_device(device)
        self.dtype = dtype
        self._model: torch.nn.Module | None = None
        self._tokenizer: Any = None
        self._fingerprint: str | None = None
        self._check_padding()

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _load(self) -> tuple[torch.nn.Module, Any]:
        """Load (model, tokenizer) from local files; nothing is downloaded."""

    @abstractmethod
    def _fingerprint_paths(self) -> list[Path]:
        """The files and folders whose content determines the outputs (weights, config, tokenizer)."""

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sentence vector (B, D) from hidden states (B, L, D); default: the masked mean."""
        return masked_mean(hidden, mask)

    # ------------------------------------------------------------------ public
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (they load on the first `encode`)."""
        return self._model is not None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            extra = {
                "class": type(self).__name__,
                "max_length": self.max_length,
                "dtype": str(self.dtype),
                "clean": CLEAN_VERSION,
            }
            self._fingerprint = fingerprint_files(self.name, self._fingerprint_paths(), extra)
        return self._fingerprint

    def load(self) -> HFTextEncoder:
        """Load the weights now (otherwise the first `encode` does); returns self."""
        if self._model is None:
            model, tokenizer = self._load()
            self._model = model.to(device=self._device, dtype=self.dtype).eval().requires_grad_(False)
            tokenizer.padding_side = "right"
            self._tokenizer = tokenizer
        return self

    def _encode(self, texts: list[str]) -> TextEmbedding:
        self.load()
        assert self._model is not None
        batch = self._tokenizer(
            [clean_text(t) for t in texts],
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(self._device)  # (B, L)
        mask = batch["attention_mask"].to(self._device).bool()  # (B, L)
        if bool((mask.sum(dim=1) >= self.max_length).any()):
            warn_truncation(self.name, self.max_length)
        with torch.no_grad():
            hidden = self._model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, L, D)
        tokens = (hidden * mask.unsqueeze(-1)).to(self.dtype)  # (B, L, D), zeros at padding
        pooled = self._pool(hidden, mask).to(self.dtype)  # (B, D)
        return TextEmbedding(tokens, mask, pooled)
