"""The wire encoding, the request checks and conversion, and the light client's imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wam.envs.evaluator import observations_to_batch
from wam.serving import msgpack_numpy
from wam.serving.observation import ObservationSpec, RequestError

SRC = Path(__file__).parents[2] / "src"
SPEC = ObservationSpec(cameras=("corner2", "topview"), image_size=16, state_dim=4, needs_task=True)


def test_arrays_round_trip_and_unsafe_dtypes_are_refused() -> None:
    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::2], "b": np.bool_(True), "c": "text"}
    back = msgpack_numpy.unpackb(msgpack_numpy.packb(value))
    np.testing.assert_array_equal(back["a"], value["a"])  # a strided view travels as C order
    assert back["b"] is np.True_ and back["c"] == "text"
    for bad in (np.array([object()]), np.array([1 + 2j])):
        with pytest.raises(ValueError, match="cannot be sent"):
            msgpack_numpy.packb({"x": bad})
    forged = msgpack_numpy.packb({"x": {"__ndarray__": True}}).replace(
        b"\xab__ndarray__", b"\xc4\x0b__ndarray__"
    )
    with pytest.raises(KeyError):  # a tagged map without its fields is malformed, never executed
        msgpack_numpy.unpackb(forged)
    with pytest.raises(ValueError, match="refused"):
        msgpack_numpy.unpackb(msgpack_numpy.packb({"x": np.zeros(2)}).replace(b"<f8", b"|O8"))


def test_unbatched_uint8_frames_convert_exactly_as_the_evaluator_does() -> None:
    rng = np.random.default_rng(0)
    frames = {
        f"observation.images.{c}": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for c in SPEC.cameras
    }
    obs = {**frames, "observation.state": np.arange(4, dtype=np.float64), "task": "go", "extra": np.zeros(3)}
    batch, batched = SPEC.prepare(obs)
    assert not batched and batch["task"] == ["go"] and "extra" not in batch
    reference = observations_to_batch(
        [{**obs, "observation.environment_state": np.zeros(39), "task_name": "reach-v3"}],
        tuple(frames),
    )
    for key in frames:
        assert batch[key].dtype == np.float32 and batch[key].shape == (1, 3, 16, 16)
        np.testing.assert_array_equal(batch[key], reference[key])
    np.testing.assert_array_equal(batch["observation.state"], reference["observation.state"])
    assert batch["observation.state"].flags.writeable


def test_batched_chw_floats_pass_through_unchanged() -> None:
    images = np.random.default_rng(1).random((3, 3, 16, 16), dtype=np.float32)
    obs = {
        "observation.images.corner2": images,
        "observation.images.topview": images,
        "observation.state": np.zeros((3, 4), np.float32),
        "prompt": ["a", "b", "c"],
    }
    batch, batched = SPEC.prepare(obs)
    assert batched and batch["task"] == ["a", "b", "c"]
    np.testing.assert_array_equal(batch["observation.images.corner2"], images)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"observation.images.topview": None}, "lacks observation.images.topview"),
        ({"observation.state": np.zeros((2, 4))}, "Some keys have a batch dimension"),
        ({"observation.images.corner2": np.zeros((16, 16), np.uint8)}, "send an image"),
        ({"observation.images.corner2": np.zeros((3, 32, 32), np.float32)}, "expects 16x16 RGB"),
        ({"task": 3}, "task is a int"),
    ],
)
def test_request_mistakes_name_the_key(change: dict, message: str) -> None:
    obs = {
        "observation.images.corner2": np.zeros((16, 16, 3), np.uint8),
        "observation.images.topview": np.zeros((16, 16, 3), np.uint8),
        "observation.state": np.zeros(4, np.float32),
        "task": "go",
    }
    obs.update(change)
    obs = {k: v for k, v in obs.items() if v is not None}
    with pytest.raises(RequestError, match=message):
        SPEC.prepare(obs)


def test_batch_sizes_must_agree() -> None:
    obs = {
        "observation.images.corner2": np.zeros((2, 16, 16, 3), np.uint8),
        "observation.images.topview": np.zeros((2, 16, 16, 3), np.uint8),
        "observation.state": np.zeros((3, 4), np.float32),
        "task": ["a", "b"],
    }
    with pytest.raises(RequestError, match="batch sizes disagree"):
        SPEC.prepare(obs)
    assert SPEC.prepare(SPEC.example("go"))[0]["observation.state"].shape == (1, 4)


def test_the_light_client_imports_without_torch() -> None:
    code = (
        "import sys; import wam.serving.client, wam.serving.remote, wam.serving.broker; "
        "heavy = [m for m in ('torch', 'mujoco', 'metaworld', 'diffusers') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
