"""Fast-WAM's training losses, one per variant (flow matching on the video latents and on the actions).

For a normalised batch with clip latents x_v (B, C, F, h, w) and actions x_a (B, H, A):
    s_v, s_a ~ shifted U(0, 1) per sample (shift 5), eps ~ N(0, I)
    video:   frame 0 kept clean at s = 0 (TI2V conditioning), frames 1.. noised at s_v;
             target eps - x_v, masked MSE over the future frames that are not padding
    actions: noised at s_a; target eps - x_a, masked MSE over the chunk steps that are not padding
    loss = lambda_video * L_video + lambda_action * L_action, each a mean over samples of per-sample
           masked means times Fast-WAM's bell weight of that sample's noise level
Variants:
    fastwam, joint  one joint pass over [video | actions]; the mask decides what the actions read
    no-video        the action loss only; the video stream then sees the current frame alone, which
                    gives the same action prediction as the full clip under the Fast-WAM mask
    idm             teacher forcing: [noisy video | conditioning video | actions], the conditioning
                    copy clean (s = 0) or, with probability `idm_noise_prob`, noised at its own level;
                    the actions read the whole conditioning copy, the video loss is on the noisy copy
"""

from __future__ import annotations

import torch

from wam.models.flow_matching import add_noise, flow_loss, velocity_target
from wam.models.wan.rope import concat_rope
from wam.policies.base import Batch
from wam.policies.fastwam.mask import mot_mask, teacher_forcing_mask
from wam.policies.fastwam.modeling import FastWAMPolicy, frame_sigmas
from wam.policies.fastwam.mot import Stream
from wam.training.latent_data import LATENTS_KEY, LATENTS_PAD_KEY


def future_frame_mask(batch: Batch, num_frames: int, device: torch.device) -> torch.Tensor:
    """(B, 1, F, 1, 1) bool: the latent frames that count in the video loss (future, not padding)."""
    latents = batch[LATENTS_KEY]
    valid = torch.ones(latents.shape[0], num_frames, dtype=torch.bool, device=device)  # (B, F)
    valid[:, 0] = False  # the current frame is conditioning, not a target
    pad = batch.get(LATENTS_PAD_KEY)  # (B, F): latent frames made only of frames past the episode end
    if pad is not None:
        valid &= ~pad.to(device=device, dtype=torch.bool)
    return valid[:, None, :, None, None]


def _noisy_clip(latents: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip latents noised at sigma (B,) with frame 0 kept clean, and the velocity target."""
    eps = torch.randn_like(latents)  # (B, C, F, h, w)
    noisy = add_noise(latents, eps, sigma)  # (B, C, F, h, w)
    noisy[:, :, 0] = latents[:, :, 0]  # the current frame stays clean
    return noisy, velocity_target(latents, eps)


def _video_loss(
    policy: FastWAMPolicy, batch: Batch, v_pred: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    mask = future_frame_mask(batch, target.shape[2], target.device)  # (B, 1, F, 1, 1)
    return flow_loss(v_pred, target, mask=mask, weight=policy.config.video_flow.loss_weight(sigma))


def _idm_pass(
    policy: FastWAMPolicy,
    latents: torch.Tensor,
    sigma_v: torch.Tensor,
    noisy: torch.Tensor,
    action: Stream,
    contexts: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced joint pass; returns the video velocity of the noisy copy and the action tokens."""
    cfg = policy.config
    b, _, f = latents.shape[:3]
    noised = torch.rand(b, device=latents.device) < cfg.idm_noise_prob  # (B,)
    sigma_c = torch.where(noised, cfg.video_flow.sample_sigmas((b,), device=latents.device), 0.0)  # (B,)
    cond, _ = _noisy_clip(latents, sigma_c)  # exactly the clean clip where sigma_c = 0
    noisy_stream, t_emb, grid = policy.video_stream(noisy, frame_sigmas(sigma_v, f), contexts[0])
    cond_stream, _, _ = policy.video_stream(cond, frame_sigmas(sigma_c, f), contexts[0])
    lv = noisy_stream.tokens.shape[1]
    t_mod = [s.t_mod.expand(-1, lv, -1, -1) for s in (noisy_stream, cond_stream)]  # each (B, Lv, 6, Dv)
    merged = Stream(
        torch.cat([noisy_stream.tokens, cond_stream.tokens], dim=1),  # (B, 2 Lv, Dv)
        torch.cat(t_mod, dim=1),  # (B, 2 Lv, 6, Dv)
        contexts[0],
        concat_rope(noisy_stream.rope, cond_stream.rope),  # the same positions twice
    )
    mask = teacher_forcing_mask(f, grid[1] * grid[2], action.tokens.shape[1], latents.device)
    xv, xa = policy.run_joint([merged, action], mask)  # (B, 2 Lv, Dv), (B, H, Da)
    return policy.video.apply_head(xv[:, :lv], t_emb, grid), xa


def training_loss(policy: FastWAMPolicy, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss and metrics of a normalised batch (see the module docstring)."""
    cfg = policy.config
    if LATENTS_KEY not in batch:
        raise ValueError(
            f"The batch has no '{LATENTS_KEY}': Fast-WAM trains on cached clip latents, train it through "
            "`wam train`, which caches them with policy.codec."
        )
    device = policy.device
    latents = batch[LATENTS_KEY].to(device).float()  # (B, C, F, h, w)
    actions = batch["action"].to(device).float()  # (B, H, A)
    valid_steps = ~batch["action_is_pad"].to(device) if "action_is_pad" in batch else None  # (B, H)
    b, f = latents.shape[0], latents.shape[2]
    if f != cfg.latent_frames:
        raise ValueError(
            f"The cached clips have {f} latent frames, the policy expects {cfg.latent_frames} "
            f"(clip_frames={cfg.clip_frames}): rebuild the latent cache with the policy's clip."
        )
    contexts = policy.embed_context(policy.context(batch))  # (B, Lc, Dv), (B, Lc, Da)
    sigma_a = cfg.action_flow.sample_sigmas((b,), device=device)  # (B,)
    eps_a = torch.randn_like(actions)  # (B, H, A)
    action = policy.action_stream(add_noise(actions, eps_a, sigma_a), sigma_a, contexts[1])
    metrics: dict[str, float] = {}
    loss = actions.new_zeros(())
    if not cfg.uses_video_loss and cfg.action_view == "first_frame":
        # the current frame alone: under this mask the future frames could not reach the actions anyway
        video, _, grid = policy.video_stream(latents[:, :, :1], torch.zeros(b, 1, device=device), contexts[0])
        mask = mot_mask(1, grid[1] * grid[2], actions.shape[1], cfg.action_view, device)
        xa = policy.run_joint([video, action], mask)[1]  # (B, H, Da)
    else:
        sigma_v = cfg.video_flow.sample_sigmas((b,), device=device)  # (B,)
        noisy, target_v = _noisy_clip(latents, sigma_v)  # (B, C, F, h, w) each
        if cfg.variant == "idm":
            v_video, xa = _idm_pass(policy, latents, sigma_v, noisy, action, contexts)
        else:
            video, t_emb, grid = policy.video_stream(noisy, frame_sigmas(sigma_v, f), contexts[0])
            mask = mot_mask(f, grid[1] * grid[2], actions.shape[1], cfg.action_view, device)
            xv, xa = policy.run_joint([video, action], mask)  # (B, Lv, Dv), (B, H, Da)
            v_video = policy.video.apply_head(xv, t_emb, grid)  # (B, C, F, h, w)
        if cfg.uses_video_loss:  # (joint/idm with lambda_video = 0 still read the noisy clip)
            loss_video = _video_loss(policy, batch, v_video, target_v, sigma_v)
            loss = loss + cfg.lambda_video * loss_video
            metrics["loss_video"] = float(loss_video.detach())
    v_action = policy.action.apply_head(xa)  # (B, H, A)
    loss_action = flow_loss(
        v_action,
        velocity_target(actions, eps_a),
        mask=valid_steps,
        weight=cfg.action_flow.loss_weight(sigma_a),
    )
    metrics["loss_action"] = float(loss_action.detach())
    return loss + cfg.lambda_action * loss_action, metrics
