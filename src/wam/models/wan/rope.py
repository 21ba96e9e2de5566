"""3-D rotary position embedding (RoPE) of the Wan DiT, over (frame, height, width) positions.

Wan rotates consecutive channel pairs (2i, 2i+1) of every head. With head_dim = d there are
c = d // 2 pairs, split per axis as in the original `rope_apply`:
    frame pairs  c - 2 * (c // 3)   height pairs  c // 3   width pairs  c // 3
Axis `a` with n pairs rotates pair i by the angle  pos_a * theta ** (-2 i / (2 n)).

A table is a pair (cos, sin), each float32 (L, d // 2), one row per token. Build it for a latent
grid (`rope_for_grid`, optionally starting at a frame offset) or for arbitrary integer positions
(`rope_for_positions`), so that a second token stream (e.g. Fast-WAM's action tokens) can be placed
in the same coordinate system. Angles are computed in float64 like the original, then cast.
"""

from __future__ import annotations

import torch

RopeTable = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each float32 (L, head_dim // 2)


def rope_axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Channel pairs given to the (frame, height, width) axes for one head."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"RoPE needs an even head_dim of at least 6, got {head_dim}.")
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def rope_for_positions(
    head_dim: int, positions: torch.Tensor, theta: float = 10000.0, device: torch.device | str | None = None
) -> RopeTable:
    """Rotary table for integer positions (L, 3) given as (frame, height, width) per token."""
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(
            f"positions must have shape (L, 3) = (frame, height, width), got {tuple(positions.shape)}."
        )
    device = positions.device if device is None else torch.device(device)
    pos = positions.to(device=device, dtype=torch.float64)  # (L, 3)
    angles = []
    for axis, n_pairs in enumerate(rope_axis_pairs(head_dim)):
        exponent = torch.arange(0, 2 * n_pairs, 2, device=device, dtype=torch.float64) / (2 * n_pairs)  # (n,)
        inv_freq = 1.0 / theta**exponent  # (n,)
        angles.append(pos[:, axis, None] * inv_freq[None, :])  # (L, n)
    angle = torch.cat(angles, dim=1)  # (L, head_dim // 2)
    return angle.cos().float(), angle.sin().float()


def grid_positions(
    grid: tuple[int, int, int], frame_offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """(F*H*W, 3) integer positions of a latent grid in token order (frame-major, then row, column)."""
    f, h, w = grid
    axes = [
        torch.arange(frame_offset, frame_offset + f, device=device),
        torch.arange(h, device=device),
        torch.arange(w, device=device),
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(f * h * w, 3)  # (L, 3)


def rope_for_grid(
    head_dim: int,
    grid: tuple[int, int, int],
    frame_offset: int = 0,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> RopeTable:
    """Rotary table for the tokens of an (F, H, W) latent grid whose first frame sits at `frame_offset`."""
    return rope_for_positions(head_dim, grid_positions(grid, frame_offset, device), theta)


def apply_rope(x: torch.Tensor, rope: RopeTable) -> torch.Tensor:
    """Rotate x (..., L, head_dim) by a table whose cos/sin broadcast to (..., L, head_dim // 2).

    Computed in float32 and returned in x's dtype.
    """
    cos, sin = rope  # each (L, head_dim // 2)
    pairs = x.float().unflatten(-1, (-1, 2))  # (..., L, head_dim // 2, 2)
    x_even, x_odd = pairs.unbind(-1)  # each (..., L, head_dim // 2)
    out_even = x_even * cos - x_odd * sin  # (..., L, head_dim // 2)
    out_odd = x_even * sin + x_odd * cos  # (..., L, head_dim // 2)
    return torch.stack((out_even, out_odd), dim=-1).flatten(-2).to(x.dtype)  # (..., L, head_dim)


def concat_rope(*tables: RopeTable) -> RopeTable:
    """Tables of several token streams joined along the token axis (for joint attention)."""
    return torch.cat([t[0] for t in tables], dim=0), torch.cat([t[1] for t in tables], dim=0)
