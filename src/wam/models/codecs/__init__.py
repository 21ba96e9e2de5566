"""Latent codecs: frames (B, T, 3, H, W) in [0, 1] <-> normalised latents (B, C, F, h, w).

    base.py        the LatentCodec contract, Wan's causal time layout, latent down/upsampling
    wan.py         the Wan2.1 / Wan2.2 VAEs (diffusers AutoencoderKLWan, local weights only)
    compact.py     a small causal conv autoencoder with the same layout, trainable on a CPU
    train.py       `train_codec`: train the compact codec on a dataset, measure its latent stats
    checkpoint.py  saving the compact codec; `load_codec` for any codec folder or preset name

Importing this package pulls in torch but not diffusers (loaded when a Wan VAE is).
"""

from wam.models.codecs.base import (
    TEMPORAL_STRIDE,
    LatentCodec,
    downsample_latents,
    latent_num_frames,
    pixel_num_frames,
    upsample_latents,
)
from wam.models.codecs.checkpoint import load_codec, save_codec
from wam.models.codecs.compact import CompactCodec, CompactCodecConfig
from wam.models.codecs.train import CodecTrainConfig, CodecTrainResult, TensorClipSource, train_codec
from wam.models.codecs.wan import WAN_VAE_PRESETS, WanVAECodec

__all__ = [
    "TEMPORAL_STRIDE",
    "WAN_VAE_PRESETS",
    "CodecTrainConfig",
    "CodecTrainResult",
    "CompactCodec",
    "CompactCodecConfig",
    "LatentCodec",
    "TensorClipSource",
    "WanVAECodec",
    "downsample_latents",
    "latent_num_frames",
    "load_codec",
    "pixel_num_frames",
    "save_codec",
    "train_codec",
    "upsample_latents",
]
