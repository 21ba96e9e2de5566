"""openpi's own client package, unchanged, against our server (and its encoding against ours).

Skipped only where `openpi-client` is not installed (`pip install --no-deps openpi-client`: its
numpy<2 pin does not apply to the modules used here).
"""

from __future__ import annotations

import numpy as np
import pytest
from serving_fakes import CHUNK, CameraPolicy, EchoPolicy, serving

from wam.serving import msgpack_numpy

openpi_client = pytest.importorskip(
    "openpi_client", reason="openpi-client is not installed: pip install --no-deps openpi-client"
)
from openpi_client import msgpack_numpy as openpi_msgpack  # noqa: E402
from openpi_client.action_chunk_broker import ActionChunkBroker as OpenpiBroker  # noqa: E402
from openpi_client.websocket_client_policy import WebsocketClientPolicy  # noqa: E402

# openpi-client 0.1.2 opens a bare websockets connection, which websockets >= 17.1 flags; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")


def _sample() -> dict:
    return {
        "observation.images.corner2": np.arange(2 * 16 * 16 * 3, dtype=np.uint8).reshape(2, 16, 16, 3),
        "observation.state": np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4),
        "flag": np.array([True, False]),
        "scalar": np.float32(2.5),  # (np.float64 is a Python float: it travels as a plain float)
        "count": np.int16(-3),
        "task": ["open the drawer", "close it"],
        "nested": {"ms": 1.5, "none": None},
    }


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, np.ndarray | np.generic):
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape  # type: ignore[union-attr]
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_the_encodings_are_byte_identical_and_decode_across() -> None:
    sample = _sample()
    ours, theirs = msgpack_numpy.packb(sample), openpi_msgpack.packb(sample)
    assert ours == theirs
    _assert_same(sample, openpi_msgpack.unpackb(ours))
    _assert_same(sample, msgpack_numpy.unpackb(theirs))


def test_openpi_websocket_client_round_trip_errors_and_broker() -> None:
    with serving(EchoPolicy()) as server:
        client = WebsocketClientPolicy(server.url)
        try:
            assert client.get_server_metadata()["policy_name"] == "echo"
            reply = client.infer({"observation.state": np.array([1, 2, 3, 4], np.float32)})
            assert reply["actions"].shape == (CHUNK, 4) and "infer_ms" in reply["server_timing"]
            np.testing.assert_array_equal(reply["actions"][1], [11, 12, 13, 14])
            with pytest.raises(
                RuntimeError, match=r"Error in inference server:\nBad request: .*observation.state"
            ):
                client.infer({"observation.state": np.zeros(3, np.float32)})
            # openpi's own broker over the same (still open) connection: one action per tick
            broker = OpenpiBroker(client, action_horizon=2)
            for tick in range(4):
                state = np.full(4, 100 * tick, np.float32)
                action = broker.infer({"observation.state": state})["actions"]
                expected = 100 * (tick - tick % 2) + 10 * (tick % 2)  # re-queried every 2 ticks
                np.testing.assert_array_equal(action, np.full(4, expected, np.float32))
        finally:
            client._ws.close()


def test_openpi_client_sends_camera_frames_and_prompt() -> None:
    policy = CameraPolicy()
    with serving(policy) as server:
        client = WebsocketClientPolicy(server.url)
        try:
            obs = {
                "observation.images.corner2": np.full((16, 16, 3), 255, np.uint8),
                "observation.state": np.zeros(4, np.float32),
                "prompt": "press the button",
            }
            np.testing.assert_allclose(client.infer(obs)["actions"], np.ones((2, 4)))
            assert policy.last_batch is not None and policy.last_batch["task"] == ["press the button"]
        finally:
            client._ws.close()
