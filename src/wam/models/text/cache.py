"""On-disk cache of text embeddings, keyed by encoder fingerprint and instruction text.

Layout (one small safetensors file per instruction, so writers never contend on an index):

    <root>/<fingerprint>/encoder.json            who made the entries (name, dim, fingerprint)
    <root>/<fingerprint>/<sha1(text)>.safetensors
        tokens  (L_i, D)   the instruction's valid tokens, unpadded, in the encoder's dtype
        pooled  (D,)       its sentence vector (absent when the encoder has none)
        metadata {"text": the instruction, "fingerprint": ...}

A changed encoder (weights, tokenizer, max_length, dtype) has another fingerprint and therefore
another folder: it never reads old entries. Files are written to a temporary name in the same folder
and renamed, so a reader sees a whole file or none, and concurrent writers of the same entry are
harmless. An unreadable or mismatching file counts as a miss and is rewritten.

`CachedTextEncoder(encoder, cache_dir)` wraps any frozen encoder: hits come from memory or disk,
misses are encoded in one batch and stored. With a lazily loaded encoder (umT5, MiniLM) a fully
cached run never loads the weights. Trainable encoders are refused: their outputs change as they
train.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from wam.models.text.base import TextEmbedding, TextEncoder, check_texts

_FINGERPRINT = re.compile(r"^[A-Za-z0-9_.-]+$")
Entry = tuple[torch.Tensor, torch.Tensor | None]  # (tokens (L, D), pooled (D,) or None)


def text_key(text: str) -> str:
    """The file stem of an instruction: sha1 of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TextEmbeddingCache:
    """Per-instruction embedding files under `root/<fingerprint>/` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def folder(self, fingerprint: str) -> Path:
        """The folder holding one encoder's entries."""
        if not _FINGERPRINT.match(fingerprint):
            raise ValueError(
                f"Fingerprint {fingerprint!r} is not a safe folder name: use letters, digits, '-_.'."
            )
        return self.root / fingerprint

    def path_for(self, fingerprint: str, text: str) -> Path:
        """The file of one (encoder, instruction) entry."""
        return self.folder(fingerprint) / f"{text_key(text)}.safetensors"

    def get(self, fingerprint: str, text: str) -> Entry | None:
        """(tokens (L, D), pooled (D,) or None) on the CPU, or None when absent or unreadable."""
        path = self.path_for(fingerprint, text)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as fh:
                if (fh.metadata() or {}).get("text") != text:
                    return None
                tokens = fh.get_tensor("tokens")
                pooled = fh.get_tensor("pooled") if "pooled" in set(fh.keys()) else None
        except Exception as err:  # a truncated or foreign file: treat as a miss, it gets rewritten
            warnings.warn(f"Ignoring unreadable text-embedding cache file {path} ({err}).", stacklevel=2)
            return None
        return tokens, pooled

    def put(
        self, fingerprint: str, text: str, tokens: torch.Tensor, pooled: torch.Tensor | None = None
    ) -> Path:
        """Store one instruction's tokens (L, D) and pooled (D,) or None, atomically; returns the path."""
        if tokens.ndim != 2:
            raise ValueError(f"Cache entries hold unpadded tokens (L, D), got {tuple(tokens.shape)}.")
        path = self.path_for(fingerprint, text)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"tokens": tokens.detach().to("cpu").contiguous()}
        if pooled is not None:
            tensors["pooled"] = pooled.detach().to("cpu").contiguous()
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            save_file(tensors, str(tmp), metadata={"text": text, "fingerprint": fingerprint})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def describe(self, fingerprint: str, info: dict) -> None:
        """Write `encoder.json` (who made these entries) once per fingerprint folder."""
        path = self.folder(fingerprint) / "encoder.json"
        if path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(path, json.dumps({"fingerprint": fingerprint, **info}, indent=2).encode())

    def count(self, fingerprint: str) -> int:
        """How many instructions are stored for one encoder."""
        folder = self.folder(fingerprint)
        return sum(1 for _ in folder.glob("*.safetensors")) if folder.is_dir() else 0


class CachedTextEncoder(TextEncoder):
    """A frozen encoder behind a memory + disk cache; same outputs, each instruction encoded once."""

    def __init__(self, encoder: TextEncoder, cache_dir: str | Path, memory_entries: int = 4096) -> None:
        if encoder.trainable:
            raise ValueError(
                f"Cannot cache the trainable {encoder.name!r} encoder: its embeddings change as it trains; "
                "use it without cache_dir."
            )
        if memory_entries < 0:
            raise ValueError(f"memory_entries={memory_entries} must be >= 0 (0 disables the memory cache).")
        self.encoder = encoder
        self.cache = TextEmbeddingCache(cache_dir)
        self.name = encoder.name
        self.dim = encoder.dim
        self.max_length = encoder.max_length
        self.pad_to = encoder.pad_to
        self.memory_entries = memory_entries
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._fingerprint: str | None = None
        self.hits = 0  # instructions served from memory or disk
        self.misses = 0  # instructions the wrapped encoder had to encode

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:  # the wrapped encoder is frozen: compute once
            self._fingerprint = self.encoder.fingerprint
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def _remember(self, text: str, entry: Entry) -> None:
        if self.memory_entries == 0:
            return
        self._memory[text] = entry
        self._memory.move_to_end(text)
        while len(self._memory) > self.memory_entries:
            self._memory.popitem(last=False)

    def _lookup(self, text: str) -> Entry | None:
        if text in self._memory:
            self._memory.move_to_end(text)
            return self._memory[text]
        entry = self.cache.get(self.fingerprint, text)
        if entry is not None:
            self._remember(text, entry)
        return entry

    def _encode_misses(self, texts: list[str]) -> dict[str, Entry]:
        """Encode the missing instructions in one batch and store each one unpadded."""
        fingerprint = self.fingerprint
        self.cache.describe(fingerprint, {"name": self.name, "dim": self.dim, "max_length": self.max_length})
        emb = self.encoder._encode(texts)  # padded to the longest of the misses
        pooled = emb.pooled if emb.pooled is not None else [None] * len(texts)
        found: dict[str, Entry] = {}
        for text, tokens, vector in zip(texts, emb.sequences(), pooled, strict=True):
            entry = (tokens.to("cpu"), None if vector is None else vector.to("cpu"))
            self.cache.put(fingerprint, text, *entry)
            self._remember(text, entry)
            found[text] = entry
        return found

    def _encode(self, texts: list[str]) -> TextEmbedding:
        unique = list(dict.fromkeys(texts))
        entries: dict[str, Entry] = {}
        missing = []
        for text in unique:
            entry = self._lookup(text)
            if entry is None:
                missing.append(text)
            else:
                entries[text] = entry
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if missing:
            entries.update(self._encode_misses(missing))
        device = self.device
        sequences = [entries[t][0].to(device) for t in texts]
        pooled_list = [entries[t][1] for t in texts]
        pooled = None if any(p is None for p in pooled_list) else [p.to(device) for p in pooled_list]
        return TextEmbedding.from_sequences(sequences, pooled)

    def warm(self, texts: Sequence[str], batch_size: int = 64) -> int:
        """Precompute and store the given instructions in batches; returns how many were encoded."""
        before = self.misses
        unique = list(dict.fromkeys(check_texts(texts)))
        for start in range(0, len(unique), batch_size):
            self._encode(unique[start : start + batch_size])
        return self.misses - before
