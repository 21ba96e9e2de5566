"""Small policies and a server fixture helper for the serving tests (no torch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from wam.policies.base import Batch, Policy
from wam.serving.server import PolicyServer, ServerThread

CHUNK = 3


class EchoPolicy(Policy):
    """Actions that identify their request: chunk step h of element b is state[b] + 10 h.

    A state whose first entry is negative makes the policy raise (an inference failure);
    `delay_s` keeps each call busy so that concurrent requests overlap.
    """

    name = "echo"
    chunk_size = CHUNK
    n_action_steps = 2
    action_dim = 4
    state_dim = 4

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.calls = 0
        self.active = 0  # calls running right now (the server must never run two at once)
        self.max_active = 0
        self._lock = threading.Lock()

    def predict_action_chunk(self, obs: Batch) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            state = np.asarray(obs["observation.state"], dtype=np.float32)  # (B, 4)
            if (state[:, 0] < 0).any():
                raise RuntimeError("echo policy: negative state, as asked")
            if self.delay_s:
                time.sleep(self.delay_s)
            steps = 10.0 * np.arange(CHUNK, dtype=np.float32)  # (H,)
            return state[:, None, :] + steps[None, :, None]  # (B, H, 4)
        finally:
            with self._lock:
                self.active -= 1


class NoisyPolicy(Policy):
    """A stochastic policy with the library's seeding contract: each element's chunk is noise drawn
    from its own generator when `reset(seeds)` set them, else from a shared global generator."""

    name = "noisy"
    chunk_size = CHUNK
    n_action_steps = 1
    action_dim = 4
    state_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.global_rng = np.random.default_rng(12345)
        self._generators: list[np.random.Generator] | None = None

    def reset(self, seeds: Sequence[int] | None = None) -> None:
        super().reset(seeds)
        self._generators = None if seeds is None else [np.random.default_rng(s) for s in seeds]

    def sampling_state(self) -> list[np.random.Generator] | None:
        return self._generators

    def load_sampling_state(self, state: list[np.random.Generator] | None) -> None:
        self._generators = state

    def predict_action_chunk(self, obs: Batch) -> np.ndarray:
        b = len(obs["observation.state"])
        gens = self._generators if self._generators is not None and len(self._generators) == b else None
        draws = [(gens[i] if gens else self.global_rng).standard_normal((CHUNK, 4)) for i in range(b)]
        return np.stack(draws).astype(np.float32)  # (B, H, 4)


class CameraPolicy(Policy):
    """Reads one 16x16 camera, the state and an instruction; the action is the image mean + state."""

    name = "camera"
    cameras = ("corner2",)
    image_size = 16
    chunk_size = 2
    n_action_steps = 1
    action_dim = 4
    state_dim = 4
    config = None  # a trainable-looking policy: the server then requires `task`

    def __init__(self) -> None:
        super().__init__()
        self.last_batch: Batch | None = None

    def predict_action_chunk(self, obs: Batch) -> np.ndarray:
        self.last_batch = obs
        image = np.asarray(obs["observation.images.corner2"])  # (B, 3, 16, 16)
        level = image.mean(axis=(1, 2, 3))[:, None]  # (B, 1)
        action = np.asarray(obs["observation.state"]) + level  # (B, 4)
        return np.repeat(action[:, None, :], self.chunk_size, axis=1).astype(np.float32)  # (B, 2, 4)


@contextmanager
def serving(policy: Policy, **metadata: object) -> Iterator[ServerThread]:
    """`policy` served on 127.0.0.1 at a free port for the duration of the block."""
    with ServerThread(PolicyServer(policy, host="127.0.0.1", port=0, metadata=metadata or None)) as thread:
        yield thread
