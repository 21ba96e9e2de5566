"""The one text-encoder interface: instructions in, token embeddings and a padding mask out.

    encoder.encode(["pick up the red block", ...]) -> TextEmbedding
        tokens  float (B, L, D)   one vector per token; exactly zero at padding positions
        mask    bool  (B, L)      True at real tokens (right padding)
        pooled  float (B, D)      one sentence vector (None when the encoder has none)

A DiT cross-attends to `tokens`; a small head may read `pooled`. L is the longest instruction of
the batch, or `pad_to` when the encoder has one: Wan pads umT5 embeddings with zeros to 512 tokens
and its DiT cross-attends to all 512 without a mask, so a Wan-faithful setup uses `pad_to=512`;
other consumers use `mask`.

Every encoder has a `fingerprint`, a short string that changes whenever its outputs could change
(weights, tokenizer, config, max_length, dtype), so an on-disk cache keyed by it never serves
embeddings made by another encoder. Padding is not part of the fingerprint: caches hold each
instruction unpadded and pad when a batch is assembled (the valid tokens do not depend on the
padding, since attention masks the pads).

Frozen encoders (umT5, MiniLM) are plain objects, not `nn.Module`s: they are not part of a policy's
trainable state, never land in its checkpoint, and load their weights lazily on the first `encode`.
The learned per-task encoder is an `nn.Module` and reports `trainable = True`.
"""

from __future__ import annotations

import html
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TextEmbedding:
    """A batch of encoded instructions (see the module docstring for the layout)."""

    tokens: torch.Tensor  # (B, L, D) float, zeros at padding
    mask: torch.Tensor  # (B, L) bool, True at real tokens
    pooled: torch.Tensor | None = None  # (B, D) sentence vectors, or None

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"TextEmbedding.tokens must be (B, L, D), got {tuple(self.tokens.shape)}.")
        if self.mask.shape != self.tokens.shape[:2] or self.mask.dtype != torch.bool:
            raise ValueError(
                f"TextEmbedding.mask must be bool (B, L) = {tuple(self.tokens.shape[:2])}, "
                f"got {self.mask.dtype} {tuple(self.mask.shape)}."
            )
        if self.pooled is not None and self.pooled.shape != (self.tokens.shape[0], self.tokens.shape[2]):
            raise ValueError(f"TextEmbedding.pooled must be (B, D), got {tuple(self.pooled.shape)}.")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def dim(self) -> int:
        """The embedding width D."""
        return self.tokens.shape[2]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEmbedding:
        """Move tokens and pooled (device and/or float dtype) and the mask (device only)."""
        pooled = None if self.pooled is None else self.pooled.to(device=device, dtype=dtype)
        return TextEmbedding(self.tokens.to(device=device, dtype=dtype), self.mask.to(device=device), pooled)

    def sequences(self) -> list[torch.Tensor]:
        """The valid tokens of each instruction, unpadded: a list of B tensors (L_i, D)."""
        return [tok[m] for tok, m in zip(self.tokens, self.mask, strict=True)]

    def padded(self, length: int | None) -> TextEmbedding:
        """Right-pad (zeros, mask False) to `length` tokens; None or the current length: unchanged."""
        current = self.tokens.shape[1]
        if length is None or length == current:
            return self
        if length < current:
            raise ValueError(
                f"Cannot pad {current} tokens down to {length}: raise pad_to or lower max_length."
            )
        batch, _, dim = self.tokens.shape
        tokens = self.tokens.new_zeros(batch, length, dim)  # (B, length, D)
        tokens[:, :current] = self.tokens
        mask = self.mask.new_zeros(batch, length)  # (B, length)
        mask[:, :current] = self.mask
        return TextEmbedding(tokens, mask, self.pooled)

    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[torch.Tensor],
        pooled: Sequence[torch.Tensor] | None = None,
        pad_to: int | None = None,
    ) -> TextEmbedding:
        """Stack unpadded (L_i, D) token sequences, right-padded with zeros to the longest (or pad_to)."""
        if not sequences:
            raise ValueError("Cannot build a TextEmbedding from no sequences: pass at least one instruction.")
        length = max(seq.shape[0] for seq in sequences)
        if pad_to is not None:
            if length > pad_to:
                raise ValueError(
                    f"An instruction has {length} tokens, more than pad_to={pad_to}: raise pad_to."
                )
            length = pad_to
        first = sequences[0]
        tokens = first.new_zeros(len(sequences), length, first.shape[1])  # (B, L, D)
        mask = torch.zeros(len(sequences), length, dtype=torch.bool, device=first.device)  # (B, L)
        for i, seq in enumerate(sequences):
            tokens[i, : seq.shape[0]] = seq
            mask[i, : seq.shape[0]] = True
        stacked = None if pooled is None else torch.stack(list(pooled)).to(first.device)  # (B, D)
        return cls(tokens, mask, stacked)


def clean_text(text: str) -> str:
    """Normalise an instruction the way Wan's tokenizer wrapper does: unescape HTML, collapse spaces."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate a batch of instructions (a non-empty list of strings)."""
    if isinstance(texts, str):
        raise ValueError("encode() takes a list of instructions, not one string: wrap it as [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("encode() got an empty list: pass at least one instruction.")
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"Instructions must be strings, got {type(text).__name__}: {text!r}.")
    return texts


class TextEncoder(ABC):
    """Maps instructions to a `TextEmbedding`. Subclasses implement `_encode` and `fingerprint`."""

    #: short kind name ("umt5", "minilm", "learned")
    name: str = "text"
    #: True for encoders trained with the policy (never cached)
    trainable: bool = False
    #: embedding width D
    dim: int
    #: most tokens kept per instruction (longer ones are truncated)
    max_length: int
    #: pad every batch to this many tokens (None: to the longest instruction); also caps max_length
    pad_to: int | None = None

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the encoder and its weights: equal fingerprints give equal embeddings."""

    @property
    def device(self) -> torch.device:
        """Where `encode` puts its outputs."""
        return torch.device("cpu")

    @abstractmethod
    def _encode(self, texts: list[str]) -> TextEmbedding:
        """Encode a validated batch, padded to its longest instruction (not to `pad_to`)."""

    def encode(self, texts: Sequence[str]) -> TextEmbedding:
        """Encode a batch of instructions: tokens (B, L, D), mask (B, L), pooled (B, D)."""
        return self._encode(check_texts(texts)).padded(self.pad_to)

    def _check_padding(self) -> None:
        """Validate max_length and pad_to; a pad_to below max_length also caps max_length."""
        if self.max_length < 1:
            raise ValueError(f"{self.name}: max_length={self.max_length} must be >= 1.")
        if self.pad_to is not None:
            if self.pad_to < 1:
                raise ValueError(f"{self.name}: pad_to={self.pad_to} must be >= 1, or None for the longest.")
            self.max_length = min(self.max_length, self.pad_to)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, max_length={self.max_length}, pad_to={self.pad_to})"


_truncation_warned: set[str] = set()


def warn_truncation(name: str, max_length: int) -> None:
    """Warn once per encoder kind that an instruction filled all `max_length` tokens."""
    if name not in _truncation_warned:
        _truncation_warned.add(name)
        warnings.warn(
            f"{name}: an instruction reached max_length={max_length} tokens and may have been truncated; "
            "raise max_length if instructions are this long.",
            stacklevel=3,
        )
