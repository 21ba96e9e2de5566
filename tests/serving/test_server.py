"""The policy server with our client: round trip, metadata, timing, bad requests, concurrency, /healthz."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serving_fakes import CHUNK, CameraPolicy, EchoPolicy, NoisyPolicy, serving

from wam.policies.scripted import ExpertPolicy
from wam.serving import msgpack_numpy
from wam.serving.client import PolicyClient, ServerError


def _state(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_round_trip_metadata_and_timing() -> None:
    with serving(EchoPolicy(), robot="sawyer") as server, PolicyClient(server.url) as client:
        meta = client.get_server_metadata()
        assert meta["policy_name"] == "echo" and meta["robot"] == "sawyer"
        assert (meta["chunk_size"], meta["n_action_steps"], meta["action_dim"], meta["state_dim"]) == (
            3,
            2,
            4,
            4,
        )
        assert (
            meta["keys"] == {"observation.state": "float32 (4,)"} and meta["protocol"] == "openpi-websocket"
        )
        reply = client.infer({"observation.state": _state(1, 2, 3, 4)})
        assert reply["actions"].shape == (CHUNK, 4) and reply["actions"].dtype == np.float32
        np.testing.assert_array_equal(reply["actions"][2], [21, 22, 23, 24])
        assert set(reply["server_timing"]) == {"infer_ms", "queue_ms"}
        assert reply["policy_timing"]["infer_ms"] <= reply["server_timing"]["infer_ms"]
        batched = client.infer({"observation.state": np.stack([_state(1, 1, 1, 1), _state(5, 5, 5, 5)])})
        assert batched["actions"].shape == (2, CHUNK, 4) and batched["actions"][1, 0, 0] == 5
        assert batched["server_timing"]["prev_total_ms"] > 0  # the previous request's full cycle


def test_images_are_converted_and_the_instruction_is_passed_on() -> None:
    policy = CameraPolicy()
    with serving(policy) as server, PolicyClient(server.url) as client:
        image = np.full((16, 16, 3), 51, np.uint8)  # a camera frame, HWC uint8: 51 / 255 = 0.2
        reply = client.infer(
            {"observation.images.corner2": image, "observation.state": _state(0, 1, 2, 3), "prompt": "go"}
        )
        np.testing.assert_allclose(reply["actions"][0], [0.2, 1.2, 2.2, 3.2], rtol=1e-6)
        batch = policy.last_batch
        assert batch is not None and batch["task"] == ["go"]
        assert batch["observation.images.corner2"].shape == (1, 3, 16, 16)
        assert batch["observation.images.corner2"].dtype == np.float32


def _bad_requests() -> list[tuple[object, str]]:
    image = np.zeros((16, 16, 3), np.uint8)
    good = {"observation.images.corner2": image, "observation.state": _state(0, 0, 0, 0), "task": "go"}
    return [
        (b"\xc1 not msgpack", "not valid msgpack"),
        ("a text frame", "text frame"),
        (msgpack_numpy.packb([1, 2]), "expected a dict"),
        (msgpack_numpy.packb({k: v for k, v in good.items() if k != "task"}), "lacks task"),
        (
            msgpack_numpy.packb({**good, "observation.state": _state(0, 0, 0)}),
            "observation.state has shape (3,)",
        ),
        (msgpack_numpy.packb({**good, "observation.images.corner2": np.zeros((8, 8, 3), np.uint8)}), "16x16"),
        (
            msgpack_numpy.packb({**good, "observation.images.corner2": np.zeros((16, 16, 3), np.int64)}),
            "dtype",
        ),
        (msgpack_numpy.packb({**good, "task": ["a", "b"]}), "batch dimension"),
        (msgpack_numpy.packb({**good, "observation.state": "zeros"}), "expected a numpy array"),
    ]


def test_bad_requests_get_a_one_line_error_and_the_connection_keeps_serving() -> None:
    good = {
        "observation.images.corner2": np.zeros((16, 16, 3), np.uint8),
        "observation.state": _state(1, 2, 3, 4),
        "task": "go",
    }
    with serving(CameraPolicy()) as server, PolicyClient(server.url) as client:
        for message, expected in _bad_requests():
            client._ws.send(message)
            reply = client._ws.recv(timeout=10)
            assert isinstance(reply, str) and reply.startswith("Bad request:"), reply
            assert expected in reply and "\n" not in reply, reply
        np.testing.assert_allclose(client.infer(good)["actions"][0], [1, 2, 3, 4])  # same connection
        with PolicyClient(server.url) as other:  # and new clients
            assert other.infer(good)["actions"].shape == (2, 4)


def test_a_policy_failure_returns_the_traceback_and_the_server_keeps_serving() -> None:
    policy = EchoPolicy()
    with serving(policy) as server, PolicyClient(server.url) as client:
        with pytest.raises(ServerError, match=r"(?s)Traceback.*negative state"):
            client.infer({"observation.state": _state(-1, 0, 0, 0)})
        assert client.infer({"observation.state": _state(7, 0, 0, 0)})["actions"][0, 0] == 7


def test_concurrent_clients_each_get_their_own_answers_one_inference_at_a_time() -> None:
    policy = EchoPolicy(delay_s=0.002)
    with serving(policy) as server:

        def run(client_id: int) -> int:
            wrong = 0
            with PolicyClient(server.url) as client:
                for i in range(15):
                    state = _state(client_id, i, 0, 0)
                    actions = client.infer({"observation.state": state})["actions"]
                    wrong += not np.array_equal(actions[0], state)
            return wrong

        with ThreadPoolExecutor(6) as pool:
            assert sum(pool.map(run, range(6))) == 0
    assert policy.calls == 6 * 15 and policy.max_active == 1


def test_health_checks_are_answered_during_a_long_inference() -> None:
    policy = EchoPolicy(delay_s=3.0)
    with serving(policy) as server, PolicyClient(server.url) as client:
        slow = threading.Thread(target=client.infer, args=({"observation.state": _state(1, 1, 1, 1)},))
        slow.start()
        deadline = time.monotonic() + 10
        while policy.active == 0 and time.monotonic() < deadline:  # the inference has started
            time.sleep(0.01)
        with urllib.request.urlopen(server.url.replace("ws://", "http://") + "/healthz", timeout=5) as r:
            assert r.status == 200 and r.read() == b"OK\n"
        assert policy.active == 1  # answered while the inference was still running
        slow.join()


def test_stopping_never_hangs_and_drops_queued_requests() -> None:
    from wam.serving.server import PolicyServer

    early = PolicyServer(EchoPolicy(), host="127.0.0.1", port=0)
    early.close()  # before it serves: serve_forever returns at once
    done = threading.Thread(target=early.serve_forever, daemon=True)
    done.start()
    done.join(5)
    assert not done.is_alive()

    def announce(port: int) -> None:
        raise BrokenPipeError("stdout closed")  # e.g. `wam serve ... | head -1`

    with pytest.raises(BrokenPipeError):  # the error surfaces; the server does not hang
        PolicyServer(EchoPolicy(), host="127.0.0.1", port=0).serve_forever(ready=announce)

    policy = EchoPolicy(delay_s=0.5)
    outcomes: list[str] = []

    def ask(client: PolicyClient) -> None:
        try:
            client.infer({"observation.state": _state(1, 1, 1, 1)})
            outcomes.append("answered")
        except Exception as err:  # refused, or the connection closed while stopping
            outcomes.append(type(err).__name__)

    with serving(policy) as server:
        clients = [PolicyClient(server.url) for _ in range(4)]
        threads = [threading.Thread(target=ask, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        time.sleep(0.2)  # one request runs, three wait for the lock
    for thread in threads:
        thread.join(10)
    assert policy.calls < 4 and len(outcomes) == 4  # the queued requests were dropped, not run


def test_the_client_retries_until_the_server_listens_and_times_out_when_none_does() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"No policy server answered at ws://127.0.0.1:\d+"):
        PolicyClient(f"127.0.0.1:{port}", connect_timeout_s=0.3, retry_interval_s=0.1)
    assert time.perf_counter() - start < 5

    from wam.serving.server import PolicyServer, ServerThread

    result: dict[str, object] = {}

    def connect() -> None:
        with PolicyClient(f"ws://127.0.0.1:{port}", connect_timeout_s=20, retry_interval_s=0.05) as client:
            result["meta"] = client.get_server_metadata()

    waiting = threading.Thread(target=connect)
    waiting.start()
    time.sleep(0.3)  # the client is retrying
    with ServerThread(PolicyServer(EchoPolicy(), host="127.0.0.1", port=port)):
        waiting.join(timeout=20)
    assert result["meta"]["policy_name"] == "echo"  # type: ignore[index]


def test_the_served_expert_requires_the_privileged_state() -> None:
    with serving(ExpertPolicy()) as server, PolicyClient(server.url) as client:
        meta = client.get_server_metadata()
        assert set(meta["keys"]) == {"observation.environment_state", "task_name"}
        with pytest.raises(ServerError, match=r"lacks observation.environment_state, task_name"):
            client.infer({"observation.state": _state(0, 0, 0, 0)})
        with pytest.raises(ServerError, match=r"environment_state has shape \(4,\), expected \(39,\)"):
            client.infer({"observation.environment_state": _state(0, 0, 0, 0), "task_name": "reach-v3"})


def test_a_seeded_reset_gives_each_connection_its_own_reproducible_noise() -> None:
    local = NoisyPolicy()
    local.reset(seeds=[7, 8])
    zeros = {"observation.state": np.zeros((2, 4), np.float32)}
    expected = [local.predict_action_chunk(zeros) for _ in range(4)]  # four chunks in process
    with serving(NoisyPolicy()) as server, PolicyClient(server.url) as a, PolicyClient(server.url) as b:
        assert a.get_server_metadata()["seeded_reset"] is True
        a.reset(seeds=[7, 8])
        b.reset(seeds=[1, 2])
        got = []
        for _ in range(3):  # the other connection's requests in between do not move a's generators
            got.append(a.infer(zeros)["actions"])
            b.infer(zeros)
        for chunk, want in zip(got, expected[:3], strict=True):
            np.testing.assert_array_equal(chunk, want)
        a.reset()  # no seeds: back to the global RNG, as in process
        assert not np.allclose(a.infer(zeros)["actions"], expected[3])
        with pytest.raises(ServerError, match="reset seeds must be a list of integers"):
            a._request(msgpack_numpy.packb({"__ctrl__": "reset", "seeds": "seven"}))
        a._metadata = {**a._metadata, "seeded_reset": False}  # what openpi's server would say
        a.reset()  # sends nothing
        with pytest.raises(ServerError, match="cannot seed its sampling noise"):
            a.reset(seeds=[1, 2])


@pytest.mark.parametrize("inference_thread", [False, True])
def test_inference_runs_on_the_connections_threads_or_on_one_inference_thread(inference_thread: bool) -> None:
    from wam.serving.server import PolicyServer, ServerThread

    threads: set[str] = set()

    class Recording(EchoPolicy):
        def predict_action_chunk(self, obs: dict) -> np.ndarray:
            threads.add(threading.current_thread().name)
            return super().predict_action_chunk(obs)

    server = PolicyServer(Recording(), host="127.0.0.1", port=0, inference_thread=inference_thread)
    with ServerThread(server) as running:
        for _ in range(2):  # two connections, one after the other
            with PolicyClient(running.url) as client:
                client.infer({"observation.state": _state(1, 2, 3, 4)})
    if inference_thread:  # CUDA's default: per-thread state (CUDA graphs) stays on one thread
        assert len(threads) == 1 and next(iter(threads)).startswith("wam-infer")
    else:  # the CPU default: each connection's own thread, no hand-off
        assert len(threads) == 2 and not any(name.startswith("wam-infer") for name in threads)
