"""Builders of the training tests: a tiny LeRobot dataset written with our writer, a tiny experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wam.configs.base import ExperimentConfig, TrainConfig
from wam.policies.baseline.configuration import BaselineConfig

TASKS = {"reach-v3": "reach the goal position", "drawer-close-v3": "close the drawer"}


def write_tiny_dataset(
    root: Path, episodes: int = 4, frames: int = 20, size: int = 32, fps: int = 10
) -> Path:
    """`episodes` episodes of `frames` frames: one camera `corner2` (size x size), 4-d state and action.

    Actions are smooth functions of time and of the task, so a policy can fit them; the image's
    brightness follows the time step.
    """
    from wam.data import LeRobotDatasetWriter, vector_feature, video_feature

    features = {
        "observation.images.corner2": video_feature(size, size),
        "observation.state": vector_feature(4),
        "action": vector_feature(4),
    }
    writer = LeRobotDatasetWriter.create(
        root, fps=fps, features=features, robot_type="sawyer", video_codec="h264"
    )
    rng = np.random.default_rng(0)
    for ep in range(episodes):
        task_name = list(TASKS)[ep % len(TASKS)]
        t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None]  # (T, 1)
        sign = 1.0 if ep % 2 == 0 else -1.0
        state = np.concatenate(
            [np.sin(3 * t + ep), np.cos(2 * t), t, np.full_like(t, ep % 2)], axis=1
        )  # (T, 4)
        action = np.concatenate([sign * t, 1 - t, np.sin(4 * t), np.full_like(t, sign)], axis=1)  # (T, 4)
        images = rng.integers(0, 40, size=(frames, size, size, 3), dtype=np.uint8)
        images += (np.arange(frames, dtype=np.uint8) * 8)[:, None, None, None]
        writer.add_episode(
            {
                "observation.images.corner2": images,
                "observation.state": state,
                "action": action.astype(np.float32),
            },
            task=TASKS[task_name],
            extra={"seed": ep, "success": True, "task_name": task_name},
        )
    writer.finalize()
    return root


def tiny_experiment(**train: object) -> ExperimentConfig:
    """A baseline small enough to train a step in milliseconds on 32x32 frames."""
    policy = BaselineConfig(
        image_size=32,
        patch_size=16,
        dim=32,
        num_layers=1,
        num_heads=2,
        ffn_dim=64,
        text_dim=16,
        chunk_size=4,
        n_action_steps=2,
        random_shift=2,
    )
    defaults: dict[str, object] = dict(
        steps=4,
        batch_size=8,
        lr=1e-3,
        warmup_steps=1,
        min_lr_ratio=0.1,
        num_workers=0,
        log_every=1,
        save_every=2,
        keep_last=2,
        plot=False,
    )
    defaults.update(train)
    return ExperimentConfig(policy=policy, train=TrainConfig(**defaults), name="tiny-test")  # type: ignore[arg-type]
