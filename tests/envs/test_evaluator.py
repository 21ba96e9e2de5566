"""The closed-loop evaluator: success rates, results.json, videos, batching and determinism."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wam.envs.evaluator import evaluate
from wam.envs.seeds import EVAL_SEED_START
from wam.policies.base import Policy
from wam.policies.scripted import ExpertPolicy, RandomPolicy


class WatchfulExpert(ExpertPolicy):
    """The expert, reading a camera too: records what every batch looked like."""

    cameras = ("corner2",)
    image_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []
        self.digest = hashlib.sha256()
        self.resets = 0

    def reset(self, seeds: Sequence[int] | None = None) -> None:
        super().reset(seeds)
        self.resets += 1

    def predict_action_chunk(self, obs: dict[str, Any]) -> np.ndarray:
        images = obs["observation.images.corner2"]
        assert images.dtype == np.float32 and images.shape[1:] == (3, 32, 32)
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert obs["observation.state"].shape == (len(images), 4)
        self.batch_sizes.append(len(images))
        self.digest.update(images.tobytes())
        self.digest.update(obs["observation.environment_state"].tobytes())
        return super().predict_action_chunk(obs)


def test_expert_succeeds_and_writes_results_and_videos(tmp_path: Path) -> None:
    results = evaluate(
        ExpertPolicy(),
        tasks="reach-v3",
        episodes=3,
        workers=0,
        out=tmp_path,
        videos_per_task=1,
        progress=False,
    )
    row = results["tasks"]["reach-v3"]
    assert row["success_rate"] >= 2 / 3 and row["successes"] == sum(row["episode_success"])
    assert row["episodes"] == 3 and row["seeds"] == [EVAL_SEED_START + k for k in range(3)]
    assert 0 < row["mean_steps"] < 500 and row["mean_steps"] == pytest.approx(np.mean(row["episode_steps"]))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert {"env", "policy", "tasks", "mean_success", "n_episodes", "wall_s"} <= set(on_disk)
    assert on_disk["env"] == "metaworld" and on_disk["policy"] == "expert" and on_disk["n_episodes"] == 3
    assert on_disk["mean_success"] == row["success_rate"]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["reach-v3_ep0.mp4"]
    import av

    with av.open(str(tmp_path / "videos" / "reach-v3_ep0.mp4")) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (128, 128)
    assert frames == row["episode_steps"][0] + 1  # the reset frame and one per step


def test_random_policy_fails_reach() -> None:
    results = evaluate(RandomPolicy(seed=0), tasks="reach-v3", episodes=3, workers=0, progress=False)
    row = results["tasks"]["reach-v3"]
    assert row["success_rate"] == 0.0 and row["episode_steps"] == [500, 500, 500]


def test_same_results_for_any_number_of_workers() -> None:
    """Batches keep their composition (finished envs stay) and nothing depends on `workers`."""
    runs = {}
    for workers in (0, 1, 2):
        policy = WatchfulExpert()
        results = evaluate(policy, tasks="reach-v3", episodes=3, workers=workers, progress=False)
        runs[workers] = (results["tasks"], policy.digest.hexdigest(), policy.batch_sizes, policy.resets)
    tasks, _, sizes, resets = runs[0]
    assert runs[1] == runs[0] and runs[2] == runs[0]
    steps = tasks["reach-v3"]["episode_steps"]
    assert len(set(steps)) > 1, "episodes should end at different steps for this check to mean something"
    assert sizes == [3] * max(steps) and resets == 1


def test_batches_reset_the_policy_and_cover_every_episode() -> None:
    policy = WatchfulExpert()
    results = evaluate(
        policy, tasks="reach-v3", episodes=3, batch_size=2, workers=0, max_steps=20, progress=False
    )
    assert policy.resets == 2 and set(policy.batch_sizes) == {2, 1}
    assert results["tasks"]["reach-v3"]["episode_steps"] == [20, 20, 20]
    assert results["config"]["batch_size"] == 2


def test_wrong_action_shape_is_reported() -> None:
    class ThreeDims(Policy):
        name = "three-dims"

        def predict_action_chunk(self, obs: dict[str, Any]) -> np.ndarray:
            return np.zeros((len(obs["task"]), 1, 3), dtype=np.float32)

    with pytest.raises(ValueError, match=r"three-dims returned actions shaped \(2, 3\), expected \(2, 4\)"):
        evaluate(ThreeDims(), tasks="reach-v3", episodes=2, workers=0, max_steps=5, progress=False)


def test_progress_counts_frames_while_the_batch_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's episodes end together, after up to 500 steps: frames are counted as they are
    simulated, not when episodes end (the bar read '3 frames/s' for minutes at ~50 real)."""
    import wam.envs.evaluator as evaluator_mod
    from wam.envs.progress import EpisodeProgress

    calls: list[tuple[int, int]] = []

    class Recording(EpisodeProgress):
        def advance(self, episodes: int = 1, frames: int = 0, description: str | None = None) -> None:
            calls.append((episodes, frames))
            super().advance(episodes, frames, description)

    monkeypatch.setattr(evaluator_mod, "EpisodeProgress", Recording)
    results = evaluate(
        RandomPolicy(seed=0), tasks="reach-v3", episodes=2, workers=0, max_steps=6, progress=False
    )
    steps = sum(results["tasks"]["reach-v3"]["episode_steps"])
    first_end = next(i for i, (episodes, _) in enumerate(calls) if episodes)
    assert sum(frames for _, frames in calls[:first_end]) > 0  # counted before any episode ended
    assert sum(frames for _, frames in calls) == steps  # each simulated frame once
