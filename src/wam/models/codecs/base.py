"""The latent-codec contract shared by the Wan VAEs and the compact CPU codec.

Layouts (one convention across the library):
    frames   float32 (B, T, 3, H, W) in [0, 1]   the dataset's (T, 3, H, W) clips, batched
    latents  float32 (B, C, F, h, w)              Wan's latent layout, what the video DiT reads

Time is causal as in Wan: the first frame is encoded alone, then every group of 4 frames gives one
latent frame, so T raw frames give F = 1 + (T - 1) / 4 latent frames and T must be 1 + 4k.
Space is divided by `spatial_stride` (h = H / s, w = W / s).

Latents are returned normalised per channel, (z - mean) / std, with the codec's table (the published
Wan tables for the Wan VAEs, statistics measured on the training data for the compact codec);
`decode` undoes it. `encode`/`decode` are inference calls (no autograd); subclasses implement the
raw maps `encode_raw`/`decode_raw` on Wan's own pixel layout (B, 3, T, H, W) in [-1, 1].

`downsample` is the spatial latent pooling Light-WAM applies before its video-supervision pass
(average pooling with kernel (1, f, f)); `upsample` is its bilinear inverse.
`fingerprint` hashes the codec type, configuration, normalisation table and weights: latent caches
use it to notice that a codec changed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TEMPORAL_STRIDE = 4  # raw frames per latent frame after the first (both Wan VAEs)


def latent_num_frames(num_frames: int, temporal_stride: int = TEMPORAL_STRIDE) -> int:
    """F = 1 + (T - 1) / stride; raises ValueError unless T = 1 + stride * k."""
    if num_frames < 1 or (num_frames - 1) % temporal_stride != 0:
        valid = ", ".join(str(1 + temporal_stride * k) for k in range(4))
        raise ValueError(
            f"A clip of {num_frames} frames cannot be encoded: use 1 + {temporal_stride}k frames "
            f"({valid}, ...)."
        )
    return 1 + (num_frames - 1) // temporal_stride


def pixel_num_frames(num_latent_frames: int, temporal_stride: int = TEMPORAL_STRIDE) -> int:
    """T = 1 + stride * (F - 1): the raw frames that F latent frames decode to."""
    if num_latent_frames < 1:
        raise ValueError(f"Latents need at least one frame, got {num_latent_frames}.")
    return 1 + temporal_stride * (num_latent_frames - 1)


def downsample_latents(latents: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool latents spatially by an integer factor (Light-WAM's video-supervision latents).

    latents: (B, C, F, h, w) or (C, F, h, w) -> same rank with (h / factor, w / factor).
    """
    if factor < 1:
        raise ValueError(f"Downsampling factor must be a positive integer, got {factor}.")
    if factor == 1:
        return latents
    squeeze = latents.ndim == 4
    x = latents.unsqueeze(0) if squeeze else latents  # (B, C, F, h, w)
    if x.ndim != 5:
        raise ValueError(
            f"Latents must be (B, C, F, h, w) or (C, F, h, w), got shape {tuple(latents.shape)}."
        )
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"Latent grid {h}x{w} is not divisible by {factor}: pick an image size whose latent grid is."
        )
    out = F.avg_pool3d(x, kernel_size=(1, factor, factor), stride=(1, factor, factor))  # (B, C, F, h/f, w/f)
    return out.squeeze(0) if squeeze else out


def upsample_latents(latents: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear spatial upsampling of latents by an integer factor (inverse shape of `downsample`).

    latents: (B, C, F, h, w) or (C, F, h, w) -> same rank with (h * factor, w * factor).
    """
    if factor < 1:
        raise ValueError(f"Upsampling factor must be a positive integer, got {factor}.")
    if factor == 1:
        return latents
    squeeze = latents.ndim == 4
    x = latents.unsqueeze(0) if squeeze else latents  # (B, C, F, h, w)
    if x.ndim != 5:
        raise ValueError(
            f"Latents must be (B, C, F, h, w) or (C, F, h, w), got shape {tuple(latents.shape)}."
        )
    b, c, f, h, w = x.shape
    planes = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (B*F, C, h, w)
    planes = F.interpolate(planes, scale_factor=factor, mode="bilinear", align_corners=False)
    out = planes.reshape(b, f, c, h * factor, w * factor).permute(0, 2, 1, 3, 4)  # (B, C, F, h*f, w*f)
    out = out.contiguous()
    return out.squeeze(0) if squeeze else out


def hash_tensors(hasher: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Feed names, dtypes, shapes and bytes of tensors (sorted by name) into a hashlib object."""
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        hasher.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        hasher.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


class LatentCodec(nn.Module):
    """Base class: validation, layout changes and per-channel normalisation live here."""

    #: type tag written to config.json and mixed into the fingerprint
    codec_type: str = "codec"

    def __init__(self, z_dim: int, spatial_stride: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        if mean.shape != (z_dim,) or std.shape != (z_dim,):
            raise ValueError(
                f"Normalisation tables need {z_dim} entries, got {tuple(mean.shape)} and {tuple(std.shape)}."
            )
        if bool((std <= 0).any()):
            raise ValueError("Every latent std must be positive: recompute the codec's statistics.")
        self._z_dim = int(z_dim)
        self._spatial_stride = int(spatial_stride)
        # Non-persistent: tables travel in config/stats files, not in the weights file.
        self.register_buffer("latents_mean", mean.detach().float().clone(), persistent=False)
        self.register_buffer("latents_std", std.detach().float().clone(), persistent=False)

    # ------------------------------------------------------------------ properties
    @property
    def z_dim(self) -> int:
        """Latent channels C."""
        return self._z_dim

    @property
    def spatial_stride(self) -> int:
        """Pixels per latent cell along H and W."""
        return self._spatial_stride

    @property
    def temporal_stride(self) -> int:
        """Raw frames per latent frame after the first (4)."""
        return TEMPORAL_STRIDE

    @property
    def device(self) -> torch.device:
        return self.latents_mean.device

    def config_dict(self) -> dict[str, Any]:
        """JSON-able architecture description (subclasses extend it); part of the fingerprint."""
        return {"z_dim": self.z_dim, "spatial_stride": self.spatial_stride}

    @property
    def fingerprint(self) -> str:
        """sha256 over type, config, normalisation table and weights: changes when any of them does."""
        hasher = hashlib.sha256()
        header = {"type": self.codec_type, "config": self.config_dict()}
        hasher.update(json.dumps(header, sort_keys=True).encode())
        hash_tensors(hasher, {"__mean__": self.latents_mean, "__std__": self.latents_std})
        hash_tensors(hasher, self.state_dict())
        return hasher.hexdigest()

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, F, h, w) of the latents of a (T, 3, H, W) clip; raises ValueError for invalid sizes."""
        f = latent_num_frames(num_frames, self.temporal_stride)
        s = self.spatial_stride
        if height % s or width % s:
            raise ValueError(
                f"Frames of {height}x{width} cannot be encoded: height and width must be multiples of {s}."
            )
        return self.z_dim, f, height // s, width // s

    # ------------------------------------------------------------------ normalisation
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents (B, C, F, h, w) -> (z - mean) / std."""
        mean = self.latents_mean.to(z)[None, :, None, None, None]  # (1, C, 1, 1, 1)
        std = self.latents_std.to(z)[None, :, None, None, None]
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) -> raw latents."""
        mean = self.latents_mean.to(z)[None, :, None, None, None]  # (1, C, 1, 1, 1)
        std = self.latents_std.to(z)[None, :, None, None, None]
        return z * std + mean

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Replace the per-channel table (the compact codec measures it after training)."""
        if mean.shape != (self.z_dim,) or std.shape != (self.z_dim,):
            raise ValueError(f"Normalisation tables must have {self.z_dim} entries.")
        if bool((std <= 0).any()):
            raise ValueError("Every latent std must be positive: recompute the codec's statistics.")
        self.latents_mean.copy_(mean.to(self.latents_mean))
        self.latents_std.copy_(std.to(self.latents_std))

    # ------------------------------------------------------------------ raw maps (subclasses)
    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> unnormalised latents (B, C, F, h, w)."""
        raise NotImplementedError

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalised latents (B, C, F, h, w) -> (B, 3, T, H, W) roughly in [-1, 1]."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames float32 (B, T, 3, H, W) in [0, 1] -> normalised latents float32 (B, C, F, h, w)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"Frames must be (B, T, 3, H, W) in [0, 1], got shape {tuple(frames.shape)}.")
        _, t, _, h, w = frames.shape
        self.latent_shape(t, h, w)  # validates T = 1 + 4k and H, W multiples of the stride
        x = frames.to(self.device, torch.float32).permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)
        z = self.encode_raw(x * 2.0 - 1.0)  # (B, C, F, h, w)
        return self.normalize(z.float())

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) -> frames float32 (B, T, 3, H, W) in [0, 1], T = 1 + 4(F-1)."""
        if latents.ndim != 5 or latents.shape[1] != self.z_dim:
            raise ValueError(
                f"Latents must be (B, {self.z_dim}, F, h, w) for this codec, got {tuple(latents.shape)}."
            )
        z = self.denormalize(latents.to(self.device, torch.float32))  # (B, C, F, h, w)
        x = self.decode_raw(z).float()  # (B, 3, T, H, W)
        return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0).permute(0, 2, 1, 3, 4).contiguous()  # (B, T, 3, H, W)

    def downsample(self, latents: torch.Tensor, factor: int) -> torch.Tensor:
        """Spatial average pooling of latents by `factor` (see `downsample_latents`)."""
        return downsample_latents(latents, factor)

    def upsample(self, latents: torch.Tensor, factor: int) -> torch.Tensor:
        """Bilinear spatial upsampling of latents by `factor` (see `upsample_latents`)."""
        return upsample_latents(latents, factor)
