"""`--policy ws://...`: the same evaluation numbers in process and over the wire."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from serving_fakes import serving

from wam.envs.evaluator import evaluate
from wam.policies import factory
from wam.policies.base import Batch, Policy
from wam.policies.scripted import ExpertPolicy
from wam.serving.loading import build_preset_policy
from wam.serving.remote import RemotePolicy


class Recorder(Policy):
    """Wraps a policy, keeping every chunk it predicts (copies its contract attributes)."""

    def __init__(self, inner: Policy) -> None:
        super().__init__()
        self.inner = inner
        for name in ("name", "cameras", "image_size", "chunk_size", "n_action_steps", "action_dim"):
            setattr(self, name, getattr(inner, name))
        self.chunks: list[np.ndarray] = []

    def predict_action_chunk(self, obs: Batch) -> np.ndarray:
        chunk = self.inner.predict_action_chunk(obs)
        self.chunks.append(chunk)
        return chunk


def _episodes(results: dict) -> list[tuple[str, list[bool], list[int]]]:
    return [(task, row["episode_success"], row["episode_steps"]) for task, row in results["tasks"].items()]


def test_the_expert_evaluates_identically_in_process_and_over_the_wire() -> None:
    kwargs = dict(tasks="reach-v3", episodes=2, workers=0, max_steps=150, progress=False)
    local = evaluate(ExpertPolicy(), **kwargs)
    with serving(ExpertPolicy()) as server:
        remote = factory.load_policy(server.url)
        assert isinstance(remote, RemotePolicy) and remote.name == "expert"
        served = evaluate(remote, **kwargs)
        remote.close()
    assert _episodes(local) == _episodes(served)
    assert any(local["tasks"]["reach-v3"]["episode_success"])  # a comparison of real successes


def test_a_torch_policy_gives_bit_identical_chunks_over_the_wire() -> None:
    policy, extra = build_preset_policy("baseline-tiny", device="cpu")
    assert extra["assumed"] == {"action_dim": 4, "state_dim": 4, "image_size": 96, "instructions": "MT10"}
    with torch.no_grad():  # untrained weights predict a constant: randomise them so actions follow the input
        generator = torch.Generator().manual_seed(1)
        for param in policy.parameters():
            param.copy_(0.2 * torch.randn(param.shape, generator=generator))
    kwargs = dict(tasks="reach-v3", episodes=2, workers=0, max_steps=12, progress=False)
    local = Recorder(policy)
    local_results = evaluate(local, **kwargs)
    with serving(policy) as server:
        remote = Recorder(RemotePolicy(server.url))
        assert (remote.cameras, remote.image_size, remote.chunk_size) == (("corner2",), 96, 16)
        served_results = evaluate(remote, **kwargs)
        remote.inner.close()  # type: ignore[attr-defined]
    assert _episodes(local_results) == _episodes(served_results)
    assert len(local.chunks) == len(remote.chunks) == 2  # 12 steps, replanning every 8
    for mine, theirs in zip(local.chunks, remote.chunks, strict=True):
        assert mine.shape == (2, 16, 4) and np.ptp(mine[:, 0], axis=0).max() > 1e-4  # inputs matter
        np.testing.assert_array_equal(mine, theirs)


def test_an_unreachable_server_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "REMOTE_CONNECT_TIMEOUT_S", 0.2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError, match=r"No policy server answered at ws://127.0.0.1:\d+ .*wam serve"):
        factory.load_policy(f"ws://127.0.0.1:{port}")
