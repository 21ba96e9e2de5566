"""Build a text encoder by kind name, from keyword arguments or from a typed `TextEncoderConfig`.

    build_text_encoder("minilm")                                   the default, offline MiniLM
    build_text_encoder("umt5", path="Wan2.1-T2V-1.3B-Diffusers", pad_to=512, cache_dir="~/.cache/wam/text")
    build_text_encoder("learned", tasks=[...], dim=256)

A typo in the kind gets a "did you mean"; an argument the encoder does not take is named together
with the ones it does. `cache_dir` wraps a frozen encoder in a `CachedTextEncoder`.
This module imports no torch until an encoder is built, so configs can import it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wam.models.text.base import TextEncoder

# kind -> "module:Class" (imported only when that kind is built)
ENCODER_CLASSES: dict[str, str] = {
    "minilm": "wam.models.text.minilm:MiniLMEncoder",
    "umt5": "wam.models.text.umt5:UMT5Encoder",
    "learned": "wam.models.text.learned:LearnedTaskEncoder",
}
DTYPES = ("float32", "bfloat16", "float16")


def check_kind(kind: str) -> str:
    """Return `kind` when it names an encoder; otherwise raise with a did-you-mean."""
    if kind in ENCODER_CLASSES:
        return kind
    close = difflib.get_close_matches(kind, list(ENCODER_CLASSES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"Unknown text encoder {kind!r}: {hint}Choose one of {', '.join(ENCODER_CLASSES)}.")


def encoder_class(kind: str) -> type[TextEncoder]:
    """The class implementing one encoder kind (imports its module)."""
    module, name = ENCODER_CLASSES[check_kind(kind)].split(":")
    return getattr(importlib.import_module(module), name)


def build_text_encoder(kind: str, cache_dir: str | Path | None = None, **kwargs: Any) -> TextEncoder:
    """Build the `kind` encoder with `kwargs`; wrap it in a disk cache when `cache_dir` is given."""
    cls = encoder_class(kind)
    accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Text encoder {kind!r} takes no {', '.join(unknown)}: it accepts {', '.join(accepted)}."
        )
    encoder = cls(**kwargs)
    if cache_dir is not None:
        from wam.models.text.cache import CachedTextEncoder

        return CachedTextEncoder(encoder, cache_dir)
    return encoder


@dataclass
class TextEncoderConfig:
    """Which instruction encoder a policy uses, and its options."""

    kind: str = "minilm"  # "minilm" (default, offline), "umt5" (Wan's umT5-XXL) or "learned" (per-task table)
    path: str | None = None  # umt5: diffusers Wan folder, UMT5 folder or Wan .pth; minilm: None = packaged
    tokenizer_path: str | None = None  # umt5: tokenizer folder when it is not found beside the weights
    max_length: int | None = None  # tokens kept per instruction; None = the encoder's (umt5 512, minilm 256)
    pad_to: int | None = None  # pad batches to this length, capping max_length (Wan: 512); None = longest
    dim: int = 256  # learned: embedding width
    tokens: int = 1  # learned: tokens per instruction
    unknown_dropout: float = 0.1  # learned: training probability of encoding a known instruction as unseen
    cache_dir: str | None = None  # frozen encoders: on-disk embedding cache folder; None = no cache
    dtype: str | None = None  # frozen encoders: "float32", "bfloat16", "float16"; None = bf16 on GPU (umt5)
    device: str | None = None  # frozen encoders: where they run; None = CUDA when available

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if self.kind == "umt5" and not self.path:
            raise ValueError(
                "text encoder umt5 needs path: a diffusers Wan folder, a UMT5 folder or Wan's .pth."
            )
        if self.kind == "learned" and self.cache_dir is not None:
            raise ValueError(
                "The learned text encoder trains with the policy and cannot be cached: drop cache_dir."
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(
                f"text max_length={self.max_length} must be >= 1, or None for the encoder's default."
            )
        if self.pad_to is not None and self.pad_to < 1:
            raise ValueError(
                f"text pad_to={self.pad_to} must be >= 1, or None to pad to the longest instruction."
            )
        if self.dim < 1 or self.tokens < 1:
            raise ValueError(f"text dim={self.dim} and tokens={self.tokens} must be >= 1.")
        if not 0.0 <= self.unknown_dropout < 1.0:
            raise ValueError(f"text unknown_dropout={self.unknown_dropout} must be in [0, 1): try 0.1.")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(
                f"text dtype={self.dtype!r} is unknown: use one of {', '.join(DTYPES)}, or None."
            )

    def build(self, tasks: Sequence[str] = ()) -> TextEncoder:
        """Build the encoder; `tasks` (the dataset's instructions) are required by "learned"."""
        if self.kind == "learned":
            return build_text_encoder(
                "learned",
                tasks=list(tasks),
                dim=self.dim,
                tokens=self.tokens,
                unknown_dropout=self.unknown_dropout,
            )
        kwargs: dict[str, Any] = {"pad_to": self.pad_to, "device": self.device}
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        if self.dtype is not None:
            import torch

            kwargs["dtype"] = getattr(torch, self.dtype)
        if self.kind == "umt5":
            kwargs.update(path=self.path, tokenizer_path=self.tokenizer_path)
        elif self.path is not None:
            kwargs["path"] = self.path
        return build_text_encoder(self.kind, cache_dir=self.cache_dir, **kwargs)
