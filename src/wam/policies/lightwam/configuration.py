"""Configuration and presets of Light-WAM (state-fusion action decoding on a frozen Wan DiT); torch-free.

Light-WAM keeps a pretrained Wan video DiT frozen and adapts it with LoRA on every block's
attention and FFN linears plus residual adapters after K blocks; the video head stays trainable.
A training step runs the backbone twice: a future-video pass (flow matching on the clip's latents
downsampled x2, the current latent frame clean at timestep 0) and an action pass on the current
latent frame alone at full resolution, whose adapted states at the K adapter blocks feed the
StateFusionActionExpert. Inference is the action pass and the expert: no sampling loop.

Data: the training clip is `clip_frames` raw frames `frame_stride` dataset frames apart, the cameras
tiled into one image (`tile_layout`) and encoded by the latent codec `codec`, read from the latent
cache as `video.latents` (see `wam.training.latent_data`; these four field names are the ones
Fast-WAM uses too). The action chunk spans the clip: chunk_size = (clip_frames - 1) * frame_stride.
Proprioception enters as one extra token appended to the text context (a Linear from the state to
the text width), as in the authors' code.

Layer placement: `adapter_layers` empty means Light-WAM's blocks [8, 16, 24] of 30, scaled to the
backbone's depth L as floor(i * L / 30 + 1/2), clamped to [0, L - 1] and de-duplicated (L = 4 gives
[1, 2, 3]; L = 2 gives [1]). `lora.layers` empty means every block.

Presets:
    lightwam-wan2.1-1.3b   the published model: Wan2.1-T2V-1.3B, LoRA rank 64 / alpha 128 on the 10
                           linears of all 30 blocks, adapters (width 256) after blocks 8/16/24, expert
                           4608/6144, umT5 text zero-padded to 128 tokens (the authors'
                           context_len; cross-attention sees the padding), 2 cameras of 224
                           tiled (224 x 448),
                           Wan2.1 VAE (z 16, stride 8), a 9-frame clip at stride 4 (3 latent frames,
                           16x3x14x28 after the x2 downsampling), chunk 32, loss on the first 8 steps
    lightwam-tiny          CPU-sized: a 4-block, 64-wide Wan DiT on compact-codec latents (z 16,
                           stride 8) of the dataset's frames (a multiple of 32 px), LoRA rank 8,
                           adapters after blocks 1/2/3, a small expert, learned instruction
                           embeddings, chunk 16 (5 frames at stride 4). No pretrained tiny Wan
                           exists, so the backbone trains too (`train_backbone`): frozen, it is
                           random features (measured: LIBERO 30% -> 73%, MT10 69% -> 79%)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from wam.configs.base import ExperimentConfig, NormalizationConfig, PolicyConfig, TrainConfig
from wam.configs.registry import register_policy_config, register_preset
from wam.models.flow_matching import FlowMatchingConfig
from wam.models.wan.config import WanConfig, get_wan_config

# every linear of a Wan block, by its original name
LORA_TARGETS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.k",
    "cross_attn.v",
    "cross_attn.o",
    "ffn.0",
    "ffn.2",
)
REFERENCE_ADAPTER_LAYERS = (8, 16, 24)  # Light-WAM's adapter blocks ...
REFERENCE_DEPTH = 30  # ... of the 30-block Wan2.1-1.3B
# as `wam.data.latent_cache.TILE_LAYOUTS` (a torch-free copy)
TILE_LAYOUTS = ("horizontal", "vertical", "robotwin")
FROZEN_TEXT_WIDTHS = {"minilm": 384, "umt5": 4096}  # embedding widths of the frozen text encoders


def scale_layers(
    reference: tuple[int, ...], num_layers: int, reference_depth: int = REFERENCE_DEPTH
) -> tuple[int, ...]:
    """Block indices of a `reference_depth`-block model placed proportionally in `num_layers` blocks.

    i -> floor(i * num_layers / reference_depth + 1/2), clamped to [0, num_layers - 1]; duplicates
    (shallow models) are dropped, order kept.
    """
    scaled = (
        min(num_layers - 1, max(0, math.floor(i * num_layers / reference_depth + 0.5))) for i in reference
    )
    return tuple(dict.fromkeys(scaled))


@dataclass
class LoRASettings:
    """LoRA on the frozen backbone (peft): which linears, rank and scale."""

    rank: int = 64  # LoRA rank r (Light-WAM: 64)
    alpha: float = 128.0  # LoRA alpha; the update is scaled by alpha / r (Light-WAM: 128)
    dropout: float = 0.0  # dropout on the LoRA input (Light-WAM: 0)
    targets: tuple[str, ...] = LORA_TARGETS  # linears inside each block, by original Wan name
    layers: tuple[int, ...] = ()  # blocks that get LoRA (empty = every block)

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0:
            raise ValueError(
                f"policy.lora.rank={self.rank} must be >= 1 and policy.lora.alpha={self.alpha} > 0."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"policy.lora.dropout={self.dropout} must be in [0, 1), e.g. 0.")
        unknown = [t for t in self.targets if t not in LORA_TARGETS]
        if unknown or not self.targets:
            raise ValueError(
                f"policy.lora.targets has {unknown or 'nothing'}: choose from {', '.join(LORA_TARGETS)}."
            )


@dataclass
class StateFusionSettings:
    """Widths of the StateFusionActionExpert (see `state_fusion.py`)."""

    num_queries: int = 16  # learned queries of each layer's pooler
    num_heads: int = 8  # heads of the pooler's cross-attention (must divide the backbone width)
    per_layer_dim: int = 4608  # width of each layer's compressor output
    trunk_dim: int = 6144  # width after fusing the K compressed layers
    trunk_blocks: int = 1  # residual MLP blocks on the fused vector
    step_dim: int = 256  # width of the sinusoidal chunk-step embedding (even)

    def __post_init__(self) -> None:
        for name in ("num_queries", "num_heads", "per_layer_dim", "trunk_dim", "step_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"policy.head.{name}={getattr(self, name)} must be at least 1.")
        if self.trunk_blocks < 0:
            raise ValueError(f"policy.head.trunk_blocks={self.trunk_blocks} must be >= 0.")
        if self.step_dim % 2:
            raise ValueError(f"policy.head.step_dim={self.step_dim} must be even (cosine and sine halves).")


def _video_flow() -> FlowMatchingConfig:
    """Light-WAM's video flow matching: shift 5, the bell-weighted loss of its scheduler."""
    return FlowMatchingConfig(shift=5.0, loss_weighting="bell")


@register_policy_config
@dataclass
class LightWAMConfig(PolicyConfig):
    """Light-WAM: LoRA + adapters on a frozen Wan DiT, a one-pass state-fusion action expert."""

    policy_class = "wam.policies.lightwam.modeling:LightWAMPolicy"

    type: str = "lightwam"  # type tag
    backbone: str = "wan2.1-tiny"  # Wan DiT preset (Light-WAM: wan2.1-1.3b)
    backbone_layers: int | None = None  # blocks of the backbone (None: the preset's)
    backbone_weights: str | None = None  # pretrained DiT weights, original or diffusers (None: random init)
    latent_channels: int | None = None  # codec latent channels (None: the preset's)
    codec: str | None = None  # latent codec folder or preset, e.g. wan2.1-vae (None: <dataset>-codec)
    clip_frames: int = 5  # raw frames of a training clip (1 + 4k), the first being the current frame
    frame_stride: int = 4  # dataset frames between clip frames (the action/video frequency ratio)
    tile_layout: str = "horizontal"  # how several cameras are tiled into one image before encoding
    latent_cache_dir: str | None = None  # latent cache root (None: <dataset>-latents beside the dataset)
    video_downsample: int = 2  # spatial average pooling of the latents in the future-video pass
    lora: LoRASettings = field(default_factory=LoRASettings)  # LoRA on the frozen backbone
    adapter_layers: tuple[int, ...] = ()  # blocks followed by an adapter (empty: [8, 16, 24] of 30, scaled)
    adapter_width: int = 256  # bottleneck width of each residual adapter
    head: StateFusionSettings = field(default_factory=StateFusionSettings)  # the action expert's widths
    text_dim: int = 32  # width of the learned instruction embedding (minilm gives 384, umt5 4096)
    text_tokens: int = 1  # tokens per instruction of the learned encoder
    text_length: int = 32  # frozen encoders: tokens kept and zero-padded per instruction (Light-WAM: 128)
    text_path: str | None = None  # umt5: folder of Wan's umT5-XXL (diffusers, HF or Wan .pth layout)
    text_cache_dir: str | None = None  # frozen encoders: on-disk embedding cache folder (None: memory only)
    text_width: int | None = (
        None  # converted runs: width of precomputed instruction tokens (None: the encoder's)
    )
    video_flow: FlowMatchingConfig = field(default_factory=_video_flow)  # flow matching of the video pass
    video_loss: bool = True  # run the future-video pass and add its loss (False: the no-video ablation)
    lambda_video: float = 1.0  # weight of the video flow loss
    prefix_steps: int | None = 8  # chunk steps whose action error counts fully (None: all H steps)
    tail_weight: float = 0.0  # loss weight of the steps after prefix_steps (Light-WAM: 0)
    gradient_checkpointing: bool = False  # recompute each backbone block in backward (large models)
    # every backbone weight learns beside LoRA (full fine-tuning; for tiny backbones that have no
    # pretrained weights, which frozen stay random features). The published model keeps it frozen.
    train_backbone: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_obs_steps != 1:
            raise ValueError("Light-WAM conditions on the current frame only: set policy.n_obs_steps=1.")
        if self.tile_layout not in TILE_LAYOUTS:
            raise ValueError(
                f"policy.tile_layout={self.tile_layout!r} is not valid: use one of {', '.join(TILE_LAYOUTS)}."
            )
        for name in (
            "text_dim",
            "text_tokens",
            "text_length",
            "frame_stride",
            "video_downsample",
            "adapter_width",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"policy.{name}={getattr(self, name)} must be at least 1.")
        if self.clip_frames < 5 or (self.clip_frames - 1) % 4:
            raise ValueError(
                f"policy.clip_frames={self.clip_frames} must be 1 + 4k with k >= 1 (5, 9, 13, ...): "
                "the video pass needs at least one future latent frame."
            )
        span = (self.clip_frames - 1) * self.frame_stride
        if self.chunk_size != span:
            raise ValueError(
                f"policy.chunk_size={self.chunk_size} must equal the clip span (clip_frames - 1) * "
                f"frame_stride = {span}: change chunk_size, clip_frames or frame_stride together."
            )
        if self.text_width is not None and self.text_width < 1:
            raise ValueError(
                f"policy.text_width={self.text_width} must be at least 1, or none (the encoder's)."
            )
        self._check_loss()
        self._check_backbone()

    def _check_loss(self) -> None:
        if self.prefix_steps is not None and not 1 <= self.prefix_steps <= self.chunk_size:
            raise ValueError(
                f"policy.prefix_steps={self.prefix_steps} must be in [1, {self.chunk_size}], or none."
            )
        if self.tail_weight < 0 or self.lambda_video < 0:
            raise ValueError("policy.tail_weight and policy.lambda_video must be >= 0.")
        if (
            self.prefix_steps is not None
            and self.tail_weight == 0
            and self.n_action_steps > self.prefix_steps
        ):
            # Allowed: the authors' LIBERO evaluation executes 10 steps of each chunk with the loss on 8.
            warnings.warn(
                f"policy.n_action_steps={self.n_action_steps} executes chunk steps after "
                f"prefix_steps={self.prefix_steps}, which the loss ignores (tail_weight=0).",
                UserWarning,
                stacklevel=3,
            )

    def _check_backbone(self) -> None:
        if self.backbone_layers is not None and self.backbone_layers < 1:
            raise ValueError("policy.backbone_layers must be at least 1, or none to use the preset's depth.")
        if self.latent_channels is not None and self.latent_channels < 1:
            raise ValueError("policy.latent_channels must be at least 1, or none to use the preset's.")
        wan = self.backbone_config()  # raises for an unknown preset
        for what, layers in (("adapter_layers", self.adapter_layers), ("lora.layers", self.lora.layers)):
            bad = [i for i in layers if not 0 <= i < wan.num_layers]
            if bad or len(set(layers)) != len(layers):
                raise ValueError(
                    f"policy.{what}={list(layers)} must be distinct blocks in [0, {wan.num_layers - 1}]."
                )
        if wan.dim % self.head.num_heads:
            raise ValueError(
                f"policy.head.num_heads={self.head.num_heads} must divide the backbone width {wan.dim}."
            )

    # ------------------------------------------------------------------ derived
    @property
    def latent_frames(self) -> int:
        """Latent frames of a training clip: 1 + (clip_frames - 1) / 4."""
        return 1 + (self.clip_frames - 1) // 4

    @property
    def uses_video_loss(self) -> bool:
        """True when the future-video pass runs (video_loss on and lambda_video > 0)."""
        return self.video_loss and self.lambda_video > 0

    @property
    def context_dim(self) -> int:
        """Width of the instruction embeddings the backbone's text embedding reads."""
        if self.text_width is not None:  # a converted run whose text width no wam encoder makes
            return self.text_width
        return FROZEN_TEXT_WIDTHS.get(self.text_encoder, self.text_dim)

    def backbone_config(self) -> WanConfig:
        """The Wan DiT architecture: the preset, with depth, latent channels and text width overridden."""
        wan = get_wan_config(self.backbone)
        changes: dict[str, int] = {"text_dim": self.context_dim}
        if self.backbone_layers is not None:
            changes["num_layers"] = self.backbone_layers
        if self.latent_channels is not None:
            changes.update(in_channels=self.latent_channels, out_channels=self.latent_channels)
        return wan.replace(**changes)

    def resolved_adapter_layers(self) -> tuple[int, ...]:
        """Blocks followed by a residual adapter, in increasing order (K of them)."""
        depth = self.backbone_config().num_layers
        layers = self.adapter_layers or scale_layers(REFERENCE_ADAPTER_LAYERS, depth)
        return tuple(sorted(layers))

    def image_size_rule(self, codec_stride: int) -> tuple[int, str]:
        """Latent cells of `codec_stride` px, pooled by `video_downsample` in the video pass, then
        cut into the DiT's (h, w) patches."""
        patch = math.lcm(*self.backbone_config().patch_size[1:])
        pool = self.video_downsample if self.uses_video_loss else 1
        why = f"codec stride {codec_stride} x " + (f"video downsample {pool} x " if pool > 1 else "")
        return codec_stride * pool * patch, why + f"DiT patch {patch}"

    def resolved_lora_layers(self) -> tuple[int, ...]:
        """Blocks whose linears get LoRA."""
        return tuple(sorted(self.lora.layers)) or tuple(range(self.backbone_config().num_layers))


def lightwam_wan21_13b() -> ExperimentConfig:
    return ExperimentConfig(
        policy=LightWAMConfig(
            backbone="wan2.1-1.3b",
            cameras=("corner2", "gripperPOV"),
            image_size=224,
            chunk_size=32,
            n_action_steps=8,
            clip_frames=9,
            frame_stride=4,
            codec="wan2.1-vae",
            text_encoder="umt5",
            text_length=128,
            text_cache_dir="~/.cache/wam/text",
            normalization=NormalizationConfig(state="min_max", action="min_max"),
        ),
        train=TrainConfig(
            steps=150000, batch_size=64, lr=1e-4, warmup_steps=1000, weight_decay=0.01, mixed_precision="bf16"
        ),
        name="lightwam-wan2.1-1.3b",
    )


def lightwam_tiny() -> ExperimentConfig:
    return ExperimentConfig(
        policy=LightWAMConfig(
            backbone="wan2.1-tiny",
            backbone_layers=4,
            image_size=None,
            chunk_size=16,
            n_action_steps=8,
            clip_frames=5,
            frame_stride=4,
            lora=LoRASettings(rank=8, alpha=16.0),
            adapter_width=32,
            head=StateFusionSettings(
                num_queries=16, num_heads=4, per_layer_dim=64, trunk_dim=128, step_dim=32
            ),
            text_dim=32,
            train_backbone=True,  # no pretrained tiny backbone: frozen it would stay random features
        ),
        train=TrainConfig(
            steps=3000, batch_size=32, lr=1e-3, warmup_steps=100, min_lr_ratio=0.05, num_workers=1
        ),
        name="lightwam-tiny",
    )


register_preset(
    "lightwam-wan2.1-1.3b",
    lightwam_wan21_13b,
    help="Light-WAM as published: frozen Wan2.1-1.3B + LoRA, 0.44B trained",
)
register_preset("lightwam-tiny", lightwam_tiny, help="Light-WAM, CPU-sized (compact-codec latents)")
