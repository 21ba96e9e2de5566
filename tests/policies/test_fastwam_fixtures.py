"""Builders shared by the Fast-WAM tests (no tests here): a tiny config, a random-weight policy, batches."""

from __future__ import annotations

import dataclasses

import torch

from wam.policies.fastwam.configuration import FastWAMConfig
from wam.policies.fastwam.modeling import FastWAMPolicy

TASKS = ("reach the goal position", "close the drawer")
STATS = {
    "action": {"mean": [0.5, -1.0, 0.0, 2.0], "std": [2.0, 1.0, 1.0, 0.5]},
    "observation.state": {"mean": [0.0] * 4, "std": [1.0] * 4},
}
B, C, F, H_LAT, W_LAT = 3, 16, 2, 8, 8  # batch, latent channels, latent frames, latent grid
TOKENS_PER_FRAME = (H_LAT // 2) * (W_LAT // 2)
CHUNK = 8


def tiny_config(**overrides: object) -> FastWAMConfig:
    """A wan2.1-tiny video stream (2 layers, 2 heads of 32), a 32-wide action expert, chunk 8, F = 2."""
    fields: dict[str, object] = dict(
        image_size=64,
        chunk_size=CHUNK,
        n_action_steps=4,
        clip_frames=5,
        frame_stride=2,
        action_width=32,
        action_ffn_dim=64,
        action_dim=4,
        state_dim=4,
        tasks=TASKS,
    )
    fields.update(overrides)
    return FastWAMConfig(**fields)  # type: ignore[arg-type]


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Random values for every parameter (norm weights near 1), instead of the zero-output heads."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.1 * noise if "norm" in name else scale * noise)
    return module


def tiny_policy(seed: int = 0, **overrides: object) -> FastWAMPolicy:
    torch.manual_seed(seed)
    policy = FastWAMPolicy(tiny_config(**overrides), stats=STATS)
    return randomize_(policy, seed)  # type: ignore[return-value]


def with_variant(policy: FastWAMPolicy, variant: str) -> FastWAMPolicy:
    """The same weights under another variant (the variants share every weight)."""
    policy.config = dataclasses.replace(policy.config, variant=variant)
    return policy


def batch(b: int = B, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "video.latents": torch.randn(b, C, F, H_LAT, W_LAT, generator=g),
        "observation.state": torch.randn(b, 1, 4, generator=g),
        "action": torch.randn(b, CHUNK, 4, generator=g),
        "action_is_pad": torch.zeros(b, CHUNK, dtype=torch.bool),
        "task": [TASKS[i % 2] for i in range(b)],
    }
