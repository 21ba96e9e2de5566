"""The Light-WAM policy: a frozen, LoRA-adapted Wan DiT read by a one-pass state-fusion action expert.

Training step on a batch (B samples, cached clip latents z (B, C, F, h, w), chunk H, K adapter blocks):
    context   instruction tokens + a projected state token              (B, Lt + 1, D)   conditioning.py
    action    the current latent frame z[:, :, :1] at full resolution, t = 0, through blocks
              0..max(K) with LoRA and the adapters; the adapted states of the K adapter blocks
              -> StateFusionActionExpert                                 (B, H, A)          state_fusion.py
    video     z downsampled x2 (average pooling) -> (B, C, F, h/2, w/2); the current frame stays
              clean at t = 0, the future frames are noised at one shifted level s per sample
              (x_s = (1 - s) z + s eps) at t = 1000 s; the whole backbone (LoRA, adapters, video
              head) under the first-frame-causal mask (the current frame's tokens attend to the
              current frame only) predicts the velocity eps - z            (B, C, F, h/2, w/2)
    loss      action: MSE on normalised actions, per step weight 1 for steps < prefix_steps and
              `tail_weight` after, padded steps (`action_is_pad`) 0, a weighted mean per sample,
              then the batch mean; video: flow MSE on the future latent frames that are not
              padding, bell-weighted per sample; total = action + lambda_video * video.
              With `video_loss=False` (or lambda_video = 0) the video pass is not run at all.
Inference: the current frame of every camera, tiled and encoded by the codec (loaded from
`policy.codec` on first use, frozen, not part of the weights) -> the action pass -> the expert ->
unnormalised actions (B, H, A). One backbone pass for the whole batch; no sampling loop.

Entry points on latents (no codec, no images), for checking against the authors' code:
`predict_normalized(latents (B, C, 1, h, w), context)` -> the normalised chunk (B, H, A), and
`video_velocity(x_t (B, C, F, h', w'), timestep (B, F), context)` -> the video-flow prediction on
latents already downsampled; `context(texts, state, device)` builds the context both read.

Trainable: LoRA, adapters, the video head, the action expert, the state projection and a learned
instruction table; everything else is frozen. Without the video loss, LoRA of the blocks after
the last adapter and the video head are frozen too (no gradient can reach them). Checkpoints keep
every weight except the frozen pretrained backbone when `backbone_weights` is set (it is reloaded
from there when the policy is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from wam.models.codecs.base import downsample_latents
from wam.models.flow_matching import add_noise, flow_loss, velocity_target
from wam.models.wan.masks import first_frame_causal_mask
from wam.policies.base import Batch
from wam.policies.lightwam.backbone import adapted_states, build_adapters, build_backbone, set_trainable
from wam.policies.lightwam.conditioning import InstructionContext
from wam.policies.lightwam.configuration import LightWAMConfig
from wam.policies.lightwam.lora import is_lora_parameter
from wam.policies.lightwam.state_fusion import StateFusionActionExpert
from wam.policies.torch_policy import TorchPolicy
from wam.training.latent_data import LATENTS_KEY, LATENTS_PAD_KEY


def step_weights(horizon: int, prefix_steps: int | None, tail_weight: float) -> torch.Tensor:
    """(H,) loss weight of each chunk step: 1 for the first `prefix_steps`, `tail_weight` after."""
    weights = torch.ones(horizon)
    if prefix_steps is not None:
        weights[prefix_steps:] = tail_weight
    return weights


class LightWAMPolicy(TorchPolicy):
    """Light-WAM: LoRA + residual adapters on a frozen Wan DiT, a state-fusion action expert."""

    name = "lightwam"

    def __init__(self, config: LightWAMConfig, stats: Mapping[str, Mapping] | None = None) -> None:
        super().__init__(config, stats)
        cfg = config

        self.layers = cfg.resolved_adapter_layers()  # the K adapter blocks the expert reads
        self.backbone = build_backbone(cfg)
        self.adapters = build_adapters(cfg)
        self.context = InstructionContext(cfg, self.state_dim)
        head = cfg.head
        self.action_expert = StateFusionActionExpert(
            cfg.backbone_config().dim,
            len(self.layers),
            self.action_dim,
            num_queries=head.num_queries,
            num_heads=head.num_heads,
            per_layer_dim=head.per_layer_dim,
            trunk_dim=head.trunk_dim,
            trunk_blocks=head.trunk_blocks,
            step_dim=head.step_dim,
        )
        weights = step_weights(cfg.chunk_size, cfg.prefix_steps, cfg.tail_weight)
        self.register_buffer("step_weights", weights, persistent=False)  # (H,)
        # the frozen latent codec, loaded on first inference; a plain dict keeps it out of the submodules
        self._codec: dict[str, Any] = {}
        self.configure_trainable()

    def configure_trainable(self) -> None:
        """Freeze everything but LoRA, adapters, video head, action expert, state projection, learned text
        (and, with policy.train_backbone, the backbone's own weights)."""
        video = self.config.uses_video_loss
        last_block = None if video else max(self.layers)
        set_trainable(self.backbone, video, last_block, train_base=self.config.train_backbone)
        for module in (self.adapters, self.action_expert, self.context):
            module.requires_grad_(True)

    @property
    def device(self) -> torch.device:
        return self.step_weights.device

    def sharding_units(self) -> list[torch.nn.Module]:
        """The backbone's blocks and the action expert: one FSDP unit each."""
        return [*self.backbone.blocks, self.action_expert]

    # ------------------------------------------------------------------ the two backbone passes
    def predict_normalized(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The action pass: current-frame latents (B, C, 1, h, w), context (B, Lt, D) -> (B, H, A)."""
        states = adapted_states(self.backbone, latents, context, self.adapters, self.layers)  # {k: (B, L, d)}
        return self.action_expert([states[k] for k in self.layers], self.chunk_size)  # (B, H, A)

    def video_velocity(
        self, x_t: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        """The future-video pass on latents: velocity (B, C, F, h', w') of noisy latents x_t (same shape).

        timestep: (B, F) per latent frame (t = 1000 s; 0 for the clean current frame) or (B,); context:
        the text context (B, Lt + 1, D). Every block runs with LoRA and the adapters under the
        first-frame-causal mask (frame-0 tokens attend to frame 0 only, later frames to every frame),
        as the authors' video pass; no downsampling here (give the latents already pooled).
        """
        grid = self.backbone.token_grid(tuple(x_t.shape[2:]))  # (F, h'/2, w'/2) tokens
        mask = first_frame_causal_mask(grid[0], grid[1] * grid[2], x_t.device)  # (L, L)
        return self.backbone(x_t, timestep, context, adapters=self.adapters, attn_mask=mask).sample

    def video_flow_loss(
        self, latents: torch.Tensor, latents_is_pad: torch.Tensor | None, context: torch.Tensor
    ) -> torch.Tensor:
        """The future-video pass: flow-matching loss on the downsampled future latent frames."""
        flow = self.config.video_flow
        z = downsample_latents(latents, self.config.video_downsample)  # (B, C, F, h/2, w/2)
        b, _, f = z.shape[:3]
        s = flow.sample_sigmas((b,), device=z.device)  # (B,) one noise level per sample
        s_frames = torch.cat([torch.zeros_like(s[:, None]), s[:, None].expand(b, f - 1)], dim=1)  # (B, F)
        eps = torch.randn_like(z)  # (B, C, F, h/2, w/2)
        x_t = add_noise(z, eps, s_frames[:, None, :, None, None])  # (B, C, F, h/2, w/2), frame 0 clean
        pred = self.video_velocity(x_t, flow.timesteps(s_frames), context)  # (B, C, F, h/2, w/2)
        future = torch.ones(b, f, dtype=torch.bool, device=z.device)  # (B, F)
        future[:, 0] = False
        if latents_is_pad is not None:
            future &= ~latents_is_pad.to(z.device).bool()
        mask = future[:, None, :, None, None]  # (B, 1, F, 1, 1)
        return flow_loss(pred, velocity_target(z, eps), mask=mask, weight=flow.loss_weight(s))

    def action_loss(
        self, pred: torch.Tensor, target: torch.Tensor, is_pad: torch.Tensor | None
    ) -> torch.Tensor:
        """Prefix-weighted, padding-masked MSE: a weighted mean over steps per sample, then the batch mean."""
        err = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, H)
        weights = self.step_weights[None].expand_as(err)  # (B, H)
        if is_pad is not None:
            weights = weights * (~is_pad.bool()).float()
        return ((err * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-6)).mean()

    # ------------------------------------------------------------------ the policy contract
    def _state(self, batch: Batch) -> torch.Tensor | None:
        if not self.state_dim:
            return None
        state = batch["observation.state"].float()
        return state[:, -1] if state.ndim == 3 else state  # (B, S)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a dataset batch carrying cached clip latents (`video.latents`)."""
        if LATENTS_KEY not in batch:
            raise ValueError(
                f"The batch has no '{LATENTS_KEY}': train through `wam train`, whose data pipeline attaches "
                "the latent cache (wam.training.latent_data)."
            )
        batch = self.normalize_targets(self.normalize_inputs(batch))
        latents = batch[LATENTS_KEY].float()  # (B, C, F, h, w)
        context = self.context(batch["task"], self._state(batch), latents.device)  # (B, Lt + 1, D)
        pred = self.predict_normalized(latents[:, :, :1], context)  # (B, H, A)
        target = batch["action"].float()  # (B, H, A)
        loss = self.action_loss(pred, target, batch.get("action_is_pad"))
        metrics = {"action_loss": float(loss.detach())}
        if self.config.uses_video_loss:
            video = self.video_flow_loss(latents, batch.get(LATENTS_PAD_KEY), context)
            loss = loss + self.config.lambda_video * video
            metrics["video_loss"] = float(video.detach())
        return loss, metrics

    def _codec_model(self) -> Any:
        """The frozen latent codec named by `policy.codec`, loaded on first use onto the policy's device."""
        codec = self._codec.get("model")
        if codec is None:
            if not self.config.codec:
                raise ValueError(
                    "policy.codec is unset: set it to the codec folder the training latents came from."
                )
            from wam.models.codecs import load_codec

            codec = load_codec(self.config.codec, device=self.device).eval().requires_grad_(False)
            channels = self.backbone.cfg.in_channels
            if codec.z_dim != channels:
                raise ValueError(
                    f"The codec {self.config.codec} has {codec.z_dim} latent channels but the backbone reads "
                    f"{channels}: use the codec the policy was trained with."
                )
            self._codec["model"] = codec
        return codec.to(self.device)

    def encode_observation(self, batch: Batch) -> torch.Tensor:
        """Camera images (B, 3, S, S) in [0, 1] -> tiled -> the current frame's latents (B, C, 1, h, w).

        An observation may carry the latents directly as `video.latents` (B, C, F, h, w) instead
        (frame 0 is used), as Fast-WAM accepts them: the model without the codec.
        """
        if LATENTS_KEY in batch:
            return batch[LATENTS_KEY][:, :, :1].float().to(self.device)  # (B, C, 1, h, w)
        from wam.data.latent_cache import tile_cameras

        views = []
        for key in self.config.image_keys:
            img = batch[key]
            img = img[:, -1] if img.ndim == 5 else img  # (B, 3, S, S): a window's current frame is its last
            if img.shape[-2:] != (self.image_size, self.image_size):
                raise ValueError(
                    f"'{key}' images are {tuple(img.shape[-2:])}, the policy expects "
                    f"{self.image_size}x{self.image_size}: render or resize to the policy's image_size."
                )
            views.append(img.float())
        frames = tile_cameras(views, self.config.tile_layout)  # (B, 3, H, W)
        return self._codec_model().encode(frames[:, None])  # (B, C, 1, h, w)

    def infer_normalized(self, batch: Batch) -> torch.Tensor:
        """Inference on a normalised batch, in one backbone pass: (B, H, A)."""
        latents = self.encode_observation(batch)  # (B, C, 1, h, w)
        context = self.context(batch["task"], self._state(batch), self.device)  # (B, Lt + 1, D)
        return self.predict_normalized(latents, context)  # (B, H, A) normalised

    # ------------------------------------------------------------------ checkpoints
    def _reloaded_keys(self) -> set[str]:
        """State-dict keys rebuilt from `backbone_weights` (the frozen pretrained backbone), else none."""
        if not self.config.backbone_weights:
            return set()
        return {
            f"backbone.{name}"
            for name, param in self.backbone.named_parameters()
            if not param.requires_grad and not is_lora_parameter(name)
        }

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight and buffer except the frozen pretrained backbone (reloaded from its folder)."""
        skip = self._reloaded_keys()
        return {k: v for k, v in self.state_dict().items() if k not in skip}

    def load_checkpoint_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a `checkpoint_state_dict`; anything else missing or unexpected is an error."""
        missing, unexpected = self.load_state_dict(dict(state), strict=False)
        missing = [k for k in missing if k not in self._reloaded_keys()]
        if missing or unexpected:
            bad = (missing or unexpected)[0]
            raise ValueError(
                f"The checkpoint does not fit this Light-WAM config "
                f"({'missing' if missing else 'unexpected'} '{bad}'): load it with its own config.json."
            )
