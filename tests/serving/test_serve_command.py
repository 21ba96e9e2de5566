"""`wam serve`: what it can serve (runs, presets, builtins) and the command end to end."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from wam.configs import get_preset
from wam.policies.scripted import RandomPolicy
from wam.serving.client import PolicyClient
from wam.serving.loading import build_preset_policy, load_served_policy
from wam.serving.observation import ObservationSpec
from wam.serving.server import PolicyServer
from wam.training.checkpoint import save_checkpoint

SRC = Path(__file__).parents[2] / "src"
SERVE_APP = (
    "import typer; from wam.commands import serve; app = typer.Typer(); serve.register(app); "
    "app.command('noop')(lambda: None); app()"
)


def test_a_trained_run_is_served_with_its_weights(tmp_path: Path) -> None:
    policy, _ = build_preset_policy("baseline-tiny", device="cpu", seed=3)
    cfg = dataclasses.replace(get_preset("baseline-tiny"), policy=policy.config)
    optimizer = torch.optim.AdamW(policy.parameters())
    save_checkpoint(tmp_path / "run", 5, policy, cfg, {}, optimizer, None, {}, keep_last=1)
    loaded, extra = load_served_policy(str(tmp_path / "run"), device="cpu")
    assert extra["trained"] and extra["source"].endswith("step_000005")
    spec = ObservationSpec.from_policy(loaded)
    batch, _ = spec.prepare(spec.example("reach the goal position"))
    np.testing.assert_array_equal(loaded.predict_action_chunk(batch), policy.predict_action_chunk(batch))
    server = PolicyServer(loaded, port=0, metadata=extra)
    assert server.metadata["instructions"][0] and server.metadata["trained"] is True
    assert server.warm_up() is not None


def test_presets_are_seeded_and_their_mistakes_are_one_line() -> None:
    a, extra = load_served_policy("baseline-tiny", device="cpu", seed=1)
    b, _ = load_served_policy("baseline-tiny", device="cpu", seed=1)
    assert not extra["trained"] and "latency" in extra["note"]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="lightwam-tiny reads latents of a codec: pass --codec"):
        load_served_policy("lightwam-tiny", device="cpu")
    with pytest.raises(ValueError, match="did you mean baseline-tiny"):
        load_served_policy("baseline-tin")
    with pytest.raises(ValueError, match="--codec applies to presets only"):
        load_served_policy("random", codec="some/folder")
    with pytest.raises(ValueError, match="is a policy server already"):
        load_served_policy("ws://127.0.0.1:8000")
    expert, extra = load_served_policy("expert")
    assert expert.name == "expert" and "privileged" in extra["note"]


def test_wam_serve_end_to_end() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", SERVE_APP, "serve", "random:3", "--port", "0", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # the test ends the server with SIGINT: a shell's background job (`pytest &`) starts with
        # SIGINT ignored, and a child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving random on ws://127.0.0.1:"), line + proc.stderr.read()  # type: ignore[union-attr]
        url = line.split()[3]
        with PolicyClient(url) as client:
            assert client.get_server_metadata()["source"] == "random:3"
            got = [client.infer({"observation.state": np.zeros(4, np.float32)})["actions"] for _ in range(3)]
        local = RandomPolicy(seed=3)
        want = [local.predict_action_chunk({"observation.state": np.zeros((1, 4))})[0] for _ in range(3)]
        np.testing.assert_array_equal(np.stack(got), np.stack(want))  # no warm-up call ate the sequence
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=5) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "stopped" in out, err
        assert "ERROR" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_wam_serve_refuses_a_fast_path_for_a_scripted_policy() -> None:
    command = [sys.executable, "-c", SERVE_APP, "serve", "random", "--port", "0", "--inference", "fast"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "apply to trained policies" in proc.stderr + proc.stdout
