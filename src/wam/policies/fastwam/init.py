"""Initialising the action expert by interpolating the video DiT's weights, as the Fast-WAM authors do.

The authors build their action expert (width 1024, FFN 4096) from the pretrained Wan2.2-5B video DiT
(width 3072, FFN 14336) offline (`scripts/preprocess_action_dit_backbone.py`); this is the same
recipe, applied when the policy is built:
    - every action-expert tensor except `action_encoder.*` and `head.*` (which keep their own
      initialisation) takes the video tensor of the same name;
    - a tensor of the same shape is copied; otherwise it is resized dimension by dimension, in order,
      with 1-D linear interpolation (align_corners=True), so the first and last entries are kept;
    - alpha scaling: when the last (input) dimension of a tensor with at least 2 dims was resized, it
      is multiplied by alpha = sqrt(d_in_video / d_in_action), so that a linear layer fed a narrower
      input keeps the variance of its output (this also scales the (1, 6, dim) modulation tables).
Attention weights keep their head geometry (heads x head_dim equal in both streams), so q/k/v only
shrink along their input dimension and o along its output dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SKIPPED_PREFIXES = ("action_encoder.", "head.")  # action-only layers, never taken from the video DiT


def resize_dim(tensor: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Linear interpolation (align_corners=True) of `tensor` along `dim` to `size` entries, in float32."""
    if tensor.shape[dim] == size:
        return tensor.float()
    moved = tensor.float().movedim(dim, -1)  # (..., n)
    lead = moved.shape[:-1]
    flat = moved.reshape(-1, 1, moved.shape[-1])  # (N, 1, n)
    if moved.shape[-1] == 1:  # a single entry cannot be interpolated: repeat it
        out = flat.expand(-1, -1, size)
    else:
        out = F.interpolate(flat, size=size, mode="linear", align_corners=True)  # (N, 1, size)
    return out.reshape(*lead, size).movedim(-1, dim)


def resize_like(source: torch.Tensor, shape: tuple[int, ...], alpha_scaling: bool = True) -> torch.Tensor:
    """`source` resized to `shape` (same rank) dimension by dimension, alpha-scaled; float32."""
    if source.ndim != len(shape):
        raise ValueError(
            f"Cannot resize a tensor of shape {tuple(source.shape)} to {shape}: the ranks differ."
        )
    out = source.float()
    for dim, size in enumerate(shape):
        out = resize_dim(out, dim, size)
    if alpha_scaling and source.ndim >= 2 and source.shape[-1] != shape[-1]:
        out = out * math.sqrt(source.shape[-1] / shape[-1])
    return out


@torch.no_grad()
def interpolate_from_video(action: nn.Module, video: nn.Module, alpha_scaling: bool = True) -> dict[str, int]:
    """Overwrite the action expert's shared tensors with resized copies of the video DiT's.

    Returns {"copied": n, "interpolated": n, "kept": n} (kept: the action-only tensors). Raises when
    a needed video tensor is missing or the depths differ.
    """
    video_state = video.state_dict()
    counts = {"copied": 0, "interpolated": 0, "kept": 0}
    for name, param in action.state_dict().items():
        if name.startswith(SKIPPED_PREFIXES):
            counts["kept"] += 1
            continue
        if name not in video_state:
            raise ValueError(
                f"The video DiT has no '{name}' to initialise the action expert from: give both streams "
                "the same number of layers, or set policy.action_init=random."
            )
        source = video_state[name]
        if source.shape == param.shape:
            param.copy_(source)
            counts["copied"] += 1
        else:
            param.copy_(resize_like(source, tuple(param.shape), alpha_scaling).to(param.dtype))
            counts["interpolated"] += 1
    return counts
