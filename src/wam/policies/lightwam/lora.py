"""LoRA on the frozen Wan backbone, through peft, and its exact parameter count.

peft's `inject_adapter_in_model` replaces each targeted `nn.Linear` in place by a LoRA layer:
    y = W x + b + (alpha / r) * B A dropout(x),   A (r, in) kaiming-uniform, B (out, r) zero
so a fresh adapter leaves the backbone unchanged. The targets are given as one regular expression
over original Wan module names, `blocks\\.(i|j|...)\\.(self_attn\\.q|...|ffn\\.2)`, matched in full, so
only the configured blocks and linears are wrapped. The wrapped linear's weights move to
`<name>.base_layer.*` and the adapter's to `<name>.lora_A.default.weight` / `lora_B.default.weight`:
pretrained weights must be loaded before `apply_lora` (see `backbone.py`).

Injection works on the meta device (no weight is allocated), which `wam info` relies on;
`lora_parameter_count` gives the same number from the config alone: r * (in + out) per linear.

peft (with transformers) is imported inside `apply_lora`: importing it costs seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from wam.models.wan.config import WanConfig
from wam.policies.lightwam.configuration import LoRASettings

ADAPTER_NAME = "default"  # peft's adapter name (part of the LoRA parameter names)
LORA_MARKER = "lora_"  # substring of every LoRA parameter name


def target_pattern(layers: Sequence[int], targets: Sequence[str]) -> str:
    """The full-match regex of the linears to wrap, e.g. blocks\\.(0|1)\\.(self_attn\\.q|ffn\\.0)."""
    if not layers or not targets:
        raise ValueError("LoRA needs at least one block and one target linear: check policy.lora.")
    blocks = "|".join(str(int(i)) for i in sorted(set(layers)))
    linears = "|".join(re.escape(t) for t in targets)
    return rf"blocks\.({blocks})\.({linears})"


def linear_shapes(cfg: WanConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of every LoRA-able linear of a Wan block, by its name inside the block."""
    d, f = cfg.dim, cfg.ffn_dim
    shapes = {f"{attn}.{p}": (d, d) for attn in ("self_attn", "cross_attn") for p in "qkvo"}
    shapes.update({"ffn.0": (d, f), "ffn.2": (f, d)})
    return shapes


def lora_parameter_count(cfg: WanConfig, settings: LoRASettings, layers: Sequence[int]) -> int:
    """Parameters LoRA adds to the backbone: rank * (in + out) for each wrapped linear (no biases)."""
    shapes = linear_shapes(cfg)
    per_block = sum(settings.rank * sum(shapes[t]) for t in settings.targets)
    return per_block * len(set(layers))


def apply_lora(backbone: nn.Module, settings: LoRASettings, layers: Sequence[int]) -> list[str]:
    """Wrap the targeted linears of `backbone` with LoRA in place; returns the wrapped module names.

    Afterwards only the LoRA weights require gradients inside `backbone` (peft freezes the rest).
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_pattern(layers, settings.targets),
        bias="none",
    )
    inject_adapter_in_model(config, backbone, adapter_name=ADAPTER_NAME)
    wrapped = [name for name, module in backbone.named_modules() if hasattr(module, "base_layer")]
    expected = len(set(layers)) * len(settings.targets)
    if len(wrapped) != expected:
        raise RuntimeError(
            f"LoRA wrapped {len(wrapped)} linears, expected {expected}: the backbone layout changed."
        )
    return wrapped


def is_lora_parameter(name: str) -> bool:
    """True for the names of LoRA weights (A and B matrices)."""
    return LORA_MARKER in name
