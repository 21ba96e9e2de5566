"""Fingerprints: short strings that change whenever an encoder's outputs could change.

Two sources, both cheap enough to compute at every start-up:

* files on disk (`fingerprint_files`): name, size and content of every file of the weight and
  tokenizer folders. Files up to 32 MiB are hashed whole; larger ones (an 11 GB umT5-XXL checkpoint)
  are hashed through 64 evenly spaced 64 KiB windows plus their size, which reads 4 MiB and still
  catches any real change of weights (fine-tuning rewrites nearly every byte; the first window
  holds the safetensors header with every tensor's name, shape and offset);
* a module in memory (`fingerprint_module`): name, shape, dtype and up to 4096 evenly spaced
  elements of every parameter and buffer.

Both fold in `extra` (class name, max_length, dtype, ...) and return `<kind>-<20 hex digits>`, safe
as a folder name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

WHOLE_FILE_LIMIT = 32 * 2**20  # files up to this size are hashed whole
WINDOWS = 64  # windows sampled from a larger file
WINDOW_SIZE = 64 * 2**10  # bytes per window
MODULE_SAMPLES = 4096  # elements sampled per tensor of an in-memory module


def _finish(kind: str, digest: Any) -> str:
    safe_kind = re.sub(r"[^a-z0-9]+", "", kind.lower()) or "text"
    return f"{safe_kind}-{digest.hexdigest()[:20]}"


def _hash_extra(digest: Any, extra: Mapping[str, Any]) -> None:
    digest.update(json.dumps(dict(extra), sort_keys=True, default=str).encode())


def _hash_file(digest: Any, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as fh:
        if size <= WHOLE_FILE_LIMIT:
            for block in iter(lambda: fh.read(2**20), b""):
                digest.update(block)
            return
        for i in range(WINDOWS):
            fh.seek((size - WINDOW_SIZE) * i // (WINDOWS - 1))
            digest.update(fh.read(WINDOW_SIZE))


def list_files(paths: Iterable[Path | str]) -> list[Path]:
    """The regular files of the given files and folders (folders non-recursive, hidden files skipped)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist: check the text-encoder path.")
    return files


def fingerprint_files(kind: str, paths: Iterable[Path | str], extra: Mapping[str, Any]) -> str:
    """Fingerprint of the files in `paths` (see the module docstring) and of `extra`."""
    digest = hashlib.sha256()
    _hash_extra(digest, extra)
    for path in list_files(paths):
        _hash_file(digest, path)
    return _finish(kind, digest)


def fingerprint_module(kind: str, module: torch.nn.Module, extra: Mapping[str, Any]) -> str:
    """Fingerprint of a module's state (strided samples of every tensor) and of `extra`."""
    digest = hashlib.sha256()
    _hash_extra(digest, extra)
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().reshape(-1)  # (N,)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if flat.numel() > MODULE_SAMPLES:
            flat = flat[torch.linspace(0, flat.numel() - 1, MODULE_SAMPLES, device=flat.device).long()]
        digest.update(flat.to("cpu", torch.float64).numpy().tobytes())
    return _finish(kind, digest)
