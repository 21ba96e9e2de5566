"""The smallest instruction encoder: a learned embedding per training instruction, plus a fallback.

    e(text) = row[task(text)] + mean_w word[hash(w) mod num_buckets]     (tokens, dim) per instruction

* `row` is a learned table with one entry of `tokens` x `dim` per known instruction and one extra
  "unknown" entry; an instruction is looked up after lower-casing and collapsing whitespace.
* `word` is a learned table of hashed word vectors (crc32 of each lower-case word, so the hash is
  stable across runs and machines), averaged over the instruction's words.

An instruction never seen in training is encoded, never refused: it takes the "unknown" row plus
its bag of words, so an unseen instruction that shares words with seen ones lands near them. To
train that path, in training mode each known instruction is replaced by the "unknown" row with
probability `unknown_dropout` (the word vectors then carry the instruction alone). The first time an
instruction is met that is not in the table, a warning names it (once per instruction).

The embedding has no padding: mask is all True, L = `tokens`; pooled is the mean over the tokens.
The list of known instructions is configuration, not weights: save `encoder.tasks` with the policy
config and rebuild the encoder from it before loading the state dict.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Sequence

import torch
from torch import nn

from wam.models.text.base import TextEmbedding, TextEncoder
from wam.models.text.fingerprint import fingerprint_module

_WORD = re.compile(r"[a-z0-9]+")


def canonical_instruction(text: str) -> str:
    """The lookup key of an instruction: lower case, single spaces, no outer spaces."""
    return " ".join(text.lower().split())


def word_buckets(text: str, num_buckets: int) -> list[int]:
    """Stable hashed bucket of every word of `text` (crc32, independent of PYTHONHASHSEED)."""
    return [zlib.crc32(word.encode()) % num_buckets for word in _WORD.findall(text.lower())]


class LearnedTaskEncoder(nn.Module, TextEncoder):
    """Trainable per-instruction embeddings (B, tokens, dim) with a hashed bag-of-words fallback."""

    name = "learned"
    trainable = True

    def __init__(
        self,
        tasks: Sequence[str],
        dim: int,
        tokens: int = 1,
        num_buckets: int = 1024,
        unknown_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        keys = list(dict.fromkeys(canonical_instruction(t) for t in tasks))
        if not keys or any(not k for k in keys):
            raise ValueError(
                "LearnedTaskEncoder needs a non-empty list of non-empty instructions (the dataset's)."
            )
        if dim < 1 or tokens < 1 or num_buckets < 1:
            raise ValueError(f"dim={dim}, tokens={tokens} and num_buckets={num_buckets} must all be >= 1.")
        if not 0.0 <= unknown_dropout < 1.0:
            raise ValueError(f"unknown_dropout={unknown_dropout} must be in [0, 1): try 0.1.")
        self.tasks = keys  # known instructions, in table order (save them with the policy config)
        self._index = {key: i for i, key in enumerate(keys)}
        self.unknown = len(keys)  # row index of the "unknown" entry
        self.dim = dim
        self.max_length = tokens
        self.pad_to = None
        self.tokens = tokens
        self.num_buckets = num_buckets
        self.unknown_dropout = unknown_dropout
        self.table = nn.Parameter(torch.empty(len(keys) + 1, tokens, dim))  # (T+1, tokens, dim)
        self.words = nn.EmbeddingBag(num_buckets, tokens * dim, mode="mean")  # bag -> (tokens*dim,)
        self._warned: set[str] = set()
        self.init_weights()

    def init_weights(self) -> None:
        """Rows ~ N(0, 0.02^2); word vectors ~ N(0, 0.002^2), so a seen instruction starts near its row."""
        nn.init.normal_(self.table, std=0.02)
        nn.init.normal_(self.words.weight, std=0.002)

    @property
    def device(self) -> torch.device:
        return self.table.device

    @property
    def fingerprint(self) -> str:
        extra = {"class": type(self).__name__, "tasks": self.tasks, "num_buckets": self.num_buckets}
        return fingerprint_module(self.name, self, extra)

    def task_index(self, texts: Sequence[str]) -> torch.Tensor:
        """(B,) row of each instruction; unseen ones get the "unknown" row (and a one-time warning)."""
        rows = []
        for text in texts:
            key = canonical_instruction(text)
            row = self._index.get(key, self.unknown)
            if row == self.unknown and key not in self._warned:
                self._warned.add(key)
                warnings.warn(
                    f"Instruction {text!r} was not seen in training: encoding it from its words "
                    "(the 'unknown' row plus hashed word vectors).",
                    stacklevel=3,
                )
            rows.append(row)
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def _bag_of_words(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, tokens, dim) mean of the hashed word vectors of each instruction (zeros when it has none)."""
        flat: list[int] = []
        offsets: list[int] = []
        for text in texts:
            offsets.append(len(flat))
            flat.extend(word_buckets(text, self.num_buckets))
        ids = torch.tensor(flat, dtype=torch.long, device=self.device)  # (sum of words,)
        starts = torch.tensor(offsets, dtype=torch.long, device=self.device)  # (B,)
        return self.words(ids, starts).view(len(texts), self.tokens, self.dim)  # (B, tokens, dim)

    def _encode(self, texts: list[str]) -> TextEmbedding:
        rows = self.task_index(texts)  # (B,)
        if self.training and self.unknown_dropout > 0:
            drop = torch.rand(rows.shape, device=self.device) < self.unknown_dropout  # (B,)
            rows = torch.where(drop, torch.full_like(rows, self.unknown), rows)
        tokens = self.table[rows] + self._bag_of_words(texts)  # (B, tokens, dim)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=self.device)  # (B, tokens)
        return TextEmbedding(tokens, mask, tokens.mean(dim=1))

    def forward(self, texts: Sequence[str]) -> TextEmbedding:
        """Same as `encode` (so hooks and DDP wrappers see a forward call)."""
        return self.encode(texts)
