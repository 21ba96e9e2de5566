"""A compact causal conv autoencoder with the Wan VAE's time layout, small enough to train on a CPU.

Design (encoder, read top-down):
    1. a per-frame 2-D conv tower: a space-to-depth stem (2x2 pixels -> 12 channels, then a conv),
       log2(stride) - 1 stride-2 convs, residual blocks at the bottleneck;
       (B*T, 3, H, W) -> (B*T, c, h, w). No conv runs at full resolution (3x faster on a CPU).
    2. causal temporal packing: the first frame is repeated 3 times in front, so the sequence
       has 4F frames; each group of 4 consecutive frames is stacked on channels and mixed by
       two convs to C latent channels. The first latent frame therefore sees the first frame
       alone and latent frame i (i >= 1) sees raw frames 1 + 4(i-1) .. 4i: Wan's layout.
The decoder mirrors it: latents -> 4 frames of features per latent frame, the 3 padding frames
dropped, then a per-frame upsampling tower back to pixels.

The codec is deterministic (a plain autoencoder: no KL term). After training, the per-channel
mean/std of its latents on the training data become its normalisation table, so `encode`
returns roughly zero-mean unit-std latents, like the Wan VAEs with their published tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from wam.models.codecs.base import TEMPORAL_STRIDE, LatentCodec, latent_num_frames, pixel_num_frames


@dataclass
class CompactCodecConfig:
    """Architecture of the compact codec."""

    z_dim: int = 16  # latent channels C
    spatial_stride: int = 8  # pixels per latent cell (a power of two, 2..32)
    channels: tuple[int, ...] = (32, 48, 64)  # widths after the stem (H/2) and each stride-2 conv
    num_res_blocks: int = 2  # residual blocks at the bottleneck, in encoder and decoder each
    groups: int = 8  # GroupNorm groups in the residual blocks (must divide the bottleneck width)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        stages = round(math.log2(self.spatial_stride)) if self.spatial_stride > 0 else -1
        if not 1 <= stages <= 5 or 2**stages != self.spatial_stride:
            raise ValueError(
                f"spatial_stride must be a power of two from 2 to 32, got {self.spatial_stride}."
            )
        if len(self.channels) != stages:
            raise ValueError(
                f"channels needs log2(stride) widths: {stages} for stride {self.spatial_stride}, "
                f"got {len(self.channels)}."
            )
        if self.z_dim < 1 or any(c < 1 for c in self.channels):
            raise ValueError("z_dim and every channel width must be positive integers.")
        if self.num_res_blocks < 0:
            raise ValueError(f"num_res_blocks must be >= 0, got {self.num_res_blocks}.")
        if self.groups < 1 or self.channels[-1] % self.groups:
            raise ValueError(
                f"groups ({self.groups}) must divide the bottleneck width {self.channels[-1]}: "
                "change groups or the last entry of channels."
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, plus the identity."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, dim),
            nn.SiLU(),
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.GroupNorm(groups, dim),
            nn.SiLU(),
            nn.Conv2d(dim, dim, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)  # (N, dim, h, w)


def _encoder_tower(cfg: CompactCodecConfig) -> nn.Sequential:
    # Space-to-depth stem: no conv ever runs at full resolution (the costly part on a CPU).
    layers: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(12, cfg.channels[0], 3, padding=1), nn.SiLU()]
    for c_in, c_out in zip(cfg.channels[:-1], cfg.channels[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
    layers += [ResBlock(cfg.channels[-1], cfg.groups) for _ in range(cfg.num_res_blocks)]
    return nn.Sequential(*layers)


def _decoder_tower(cfg: CompactCodecConfig) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock(cfg.channels[-1], cfg.groups) for _ in range(cfg.num_res_blocks)]
    for c_in, c_out in zip(cfg.channels[:0:-1], cfg.channels[-2::-1], strict=True):
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.SiLU(),
        ]
    layers += [nn.Conv2d(cfg.channels[0], 12, 3, padding=1), nn.PixelShuffle(2)]  # depth-to-space head
    return nn.Sequential(*layers)


class CompactCodec(LatentCodec):
    """Small causal conv autoencoder; same (B, C, F, h, w) latent layout as the Wan VAEs."""

    codec_type = "compact"

    def __init__(
        self,
        config: CompactCodecConfig | None = None,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        cfg = config or CompactCodecConfig()
        mean = torch.zeros(cfg.z_dim) if mean is None else mean
        std = torch.ones(cfg.z_dim) if std is None else std
        super().__init__(cfg.z_dim, cfg.spatial_stride, mean, std)
        self.config = cfg
        c = cfg.channels[-1]
        group = TEMPORAL_STRIDE * c
        self.enc_frames = _encoder_tower(cfg)
        self.enc_time = nn.Sequential(
            nn.Conv2d(group, c, 1), nn.SiLU(), nn.Conv2d(c, cfg.z_dim, 3, padding=1)
        )
        self.dec_time = nn.Sequential(
            nn.Conv2d(cfg.z_dim, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, group, 1)
        )
        self.dec_frames = _decoder_tower(cfg)

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> raw latents (B, C, F, h, w); T = 1 + 4k."""
        b, _, t, h, w = x.shape
        f = latent_num_frames(t)
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)  # (B*T, 3, H, W)
        feats = self.enc_frames(frames)  # (B*T, c, h', w')
        c, hh, ww = feats.shape[1:]
        feats = feats.reshape(b, t, c, hh, ww)  # (B, T, c, h', w')
        pad = feats[:, :1].expand(b, TEMPORAL_STRIDE - 1, c, hh, ww)  # (B, 3, c, h', w'): causal padding
        feats = torch.cat([pad, feats], dim=1)  # (B, 4F, c, h', w')
        groups = feats.reshape(b * f, TEMPORAL_STRIDE * c, hh, ww)  # (B*F, 4c, h', w')
        z = self.enc_time(groups)  # (B*F, C, h', w')
        return z.reshape(b, f, self.z_dim, hh, ww).permute(0, 2, 1, 3, 4).contiguous()  # (B, C, F, h', w')

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents (B, C, F, h, w) -> (B, 3, T, H, W), T = 1 + 4(F - 1); unclamped."""
        b, _, f, hh, ww = z.shape
        t = pixel_num_frames(f)
        planes = z.permute(0, 2, 1, 3, 4).reshape(b * f, self.z_dim, hh, ww)  # (B*F, C, h, w)
        groups = self.dec_time(planes)  # (B*F, 4c, h, w)
        c = groups.shape[1] // TEMPORAL_STRIDE
        feats = groups.reshape(b, f * TEMPORAL_STRIDE, c, hh, ww)[:, TEMPORAL_STRIDE - 1 :]  # (B, T, c, h, w)
        frames = self.dec_frames(feats.reshape(b * t, c, hh, ww))  # (B*T, 3, H, W)
        h, w = frames.shape[-2:]
        return frames.reshape(b, t, 3, h, w).permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: (B, 3, T, H, W) in [-1, 1] -> (reconstruction (B, 3, T, H, W), raw latents)."""
        z = self.encode_raw(x)  # (B, C, F, h, w)
        return self.decode_raw(z), z
