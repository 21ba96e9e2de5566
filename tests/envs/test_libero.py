"""LIBERO behind the env contract: the protocol logic on a fake package env, and one real smoke test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import wam.envs.libero.benchmark as libero_benchmark
import wam.envs.libero.env as libero_env
import wam.envs.libero.protocol as libero_protocol
from wam.envs.contract import Benchmark, EpisodeStart, SimEnv
from wam.envs.evaluator import evaluate
from wam.envs.libero.protocol import get_protocol, orient, postprocess_action, quat_to_axis_angle
from wam.envs.registry import get_benchmark
from wam.policies.base import Policy

TASKS = ("open_the_drawer", "close_the_drawer", "push_the_plate")
CALLS: list[tuple] = []  # what the fake package env was asked to do


class FakePackageEnv:
    """The package's OffScreenRenderEnv without a simulator: init state i succeeds after i + 2 policy
    steps when i is even, never when odd; frames encode the step count."""

    def __init__(self) -> None:
        self.t = 0
        self.init = -1

    def _obs(self) -> dict[str, np.ndarray]:
        img = np.zeros((256, 256, 3), np.uint8)
        img[0, 0] = (self.t % 256, self.init % 256, 1)  # raw top-left pixel (OpenGL order: bottom-left)
        img[255, 255, 0] = 200
        return {
            "agentview_image": img,
            "robot0_eye_in_hand_image": img[:, ::-1].copy(),
            "robot0_eef_pos": np.array([0.1, 0.2, float(self.t)]),
            "robot0_eef_quat": np.array([0.0, 0.0, 0.0, 1.0]),
            "robot0_gripper_qpos": np.array([0.04, -0.04]),
        }

    def seed(self, seed: int) -> None:
        CALLS.append(("seed", seed))

    def reset(self) -> None:
        self.t = 0

    def set_init_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        self.init = int(state[0])
        CALLS.append(("init", self.init))
        return self._obs()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, dict]:
        CALLS.append(("step", tuple(np.round(action, 3))))
        self.t += 1
        noop = np.array_equal(action, [0, 0, 0, 0, 0, 0, -1])
        self.policy_steps = getattr(self, "policy_steps", 0) + (0 if noop else 1)
        done = self.init % 2 == 0 and self.t >= self.wait + self.init + 2
        return self._obs(), float(done), done, {}

    def close(self) -> None:
        pass


@pytest.fixture
def fake_libero(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()

    def make(suite: str, index: int) -> tuple[FakePackageEnv, np.ndarray, str]:
        env = FakePackageEnv()
        env.wait = 30
        return env, np.arange(50)[:, None].astype(np.float64), f"do task {index} of {suite}"

    tasks = lambda suite: TASKS  # noqa: E731
    monkeypatch.setattr(libero_env, "make_package_env", make)
    monkeypatch.setattr(libero_protocol, "suite_tasks", tasks)
    monkeypatch.setattr(libero_benchmark, "suite_tasks", tasks)


class Scripted(Policy):
    """Reads both LIBERO cameras under the LeRobot dataset names; gripper output 1.0 (open in [0, 1])."""

    name = "scripted"
    cameras = ("image", "wrist_image")
    image_size = 64
    action_dim = 7
    state_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def predict_action_chunk(self, obs: dict) -> np.ndarray:
        self.seen.append(obs)
        action = np.full((len(obs["task"]), 1, 7), 0.5, np.float32)
        action[..., 6] = 1.0
        return action


def test_benchmarks_implement_the_contract(fake_libero: None) -> None:
    for name in ("metaworld", "libero"):
        assert isinstance(get_benchmark(name), Benchmark)
    spec = get_benchmark("libero").spec("libero_goal/open_the_drawer", ("image",), 64, 10)
    assert isinstance(spec.make(), SimEnv)


def test_tasks_resolve_by_suite_index_and_name(fake_libero: None) -> None:
    bench = get_benchmark("libero")
    assert bench.resolve_tasks("1,push_the_plate", "goal") == [
        "libero_goal/close_the_drawer",
        "libero_goal/push_the_plate",
    ]
    assert len(bench.resolve_tasks(None, "libero_spatial,libero_10")) == 6
    with pytest.raises(ValueError, match="Did you mean close_the_drawer"):
        bench.resolve_tasks("close_the_drawr", "libero_goal")
    with pytest.raises(ValueError, match="out of range"):
        bench.resolve_tasks("3", "libero_goal")
    with pytest.raises(ValueError, match="Pass --suite"):
        bench.resolve_tasks("0", None)
    with pytest.raises(ValueError, match="50 or fewer"):
        bench.episode_starts("libero_goal/push_the_plate", 51, 0)


def test_protocols_set_horizon_and_wait_steps(fake_libero: None) -> None:
    authors, openvla = get_benchmark("libero"), get_benchmark("libero", protocol="openvla")
    assert [authors.horizon(f"{s}/x", None) for s in ("libero_spatial", "libero_10")] == [400, 700]
    assert [
        openvla.horizon(f"{s}/x", None)
        for s in ("libero_spatial", "libero_object", "libero_goal", "libero_10")
    ] == [
        220,
        280,
        300,
        520,
    ]
    assert (authors.protocol.wait_steps, openvla.protocol.wait_steps) == (30, 10)
    with pytest.raises(ValueError, match="Unknown LIBERO protocol"):
        get_benchmark("libero", protocol="openpi")
    with pytest.raises(ValueError, match="LIBERO option"):
        get_benchmark("metaworld", protocol="authors")


def test_gripper_post_processing_and_orientation() -> None:
    open_, close = np.r_[np.zeros(6), 1.0], np.r_[np.zeros(6), 0.0]
    assert postprocess_action(open_, "authors")[6] == -1.0  # [0, 1] with 1 = open -> LIBERO's -1
    assert postprocess_action(close, "authors")[6] == 1.0
    assert postprocess_action(np.r_[np.zeros(6), -0.3], "binarize")[6] == -1.0
    assert postprocess_action(np.r_[np.full(6, 2.0), 0.3], "native").tolist() == [1.0] * 6 + [0.3]
    raw = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    np.testing.assert_array_equal(orient(raw, "rot180"), raw[::-1, ::-1])
    np.testing.assert_array_equal(orient(raw, "upright"), raw[::-1])
    np.testing.assert_allclose(quat_to_axis_angle(np.array([0, 0, np.sin(0.5), np.cos(0.5)])), [0, 0, 1.0])
    with pytest.raises(ValueError, match="Unknown gripper mode"):
        get_protocol("authors", gripper="flip")


def test_episodes_follow_the_protocol(fake_libero: None, tmp_path: Path) -> None:
    policy = Scripted()
    results = evaluate(
        policy,
        "libero",
        suites="libero_goal",
        tasks="0",
        episodes=3,
        max_steps=6,
        workers=0,
        out=tmp_path,
        progress=False,
    )
    row = results["tasks"]["libero_goal/open_the_drawer"]
    # init state 0 succeeds after 2 policy steps, 1 never (horizon 6), 2 after 4
    assert row["init_states"] == [0, 1, 2] and row["episode_steps"] == [2, 6, 4]
    assert row["episode_success"] == [True, False, True] and row["horizon"] == 6
    assert results["suites"]["libero_goal"]["success_rate"] == pytest.approx(2 / 3)
    assert results["protocol"]["wait_steps"] == 30 and results["protocol"]["gripper"] == "authors"
    # every episode: seed, reset, its init state in order, 30 no-op wait steps, then policy actions
    inits = [c[1] for c in CALLS if c[0] == "init"]
    assert inits == [0, 1, 2]
    first = CALLS[: CALLS.index(("init", 1))]  # the batch resets its episodes one after the other
    assert first[0] == ("seed", results["tasks"]["libero_goal/open_the_drawer"]["seeds"][0])
    noop, acted = (0.0,) * 6 + (-1.0,), (0.5,) * 6 + (-1.0,)  # gripper 1.0 (open in [0, 1]) -> -1
    assert [c[1] for c in first if c[0] == "step"] == [noop] * 30
    steps = [c[1] for c in CALLS if c[0] == "step"]
    assert steps.count(noop) == 90 and steps.count(acted) == 2 + 6 + 4
    # the policy sees the frame after the wait steps, oriented (rot180) and resized, and the 8-d state
    obs = policy.seen[0]
    assert obs["observation.images.image"].shape == (3, 3, 64, 64)
    assert obs["observation.state"].shape == (3, 8) and obs["observation.state"][0, 2] == 30.0
    assert obs["task"] == ["do task 0 of libero_goal"] * 3
    assert sorted(p.name for p in (tmp_path / "videos" / "libero_goal").iterdir()) == [
        "open_the_drawer_ep0.mp4",
        "open_the_drawer_ep1.mp4",
    ]


def test_frames_are_rotated_like_the_datasets(fake_libero: None) -> None:
    env = get_benchmark("libero").spec("libero_goal/push_the_plate", ("image", "wrist_image"), 256, 5).make()
    obs = env.reset(EpisodeStart(0, 7, init_state=4))
    raw = env._env._obs()
    np.testing.assert_array_equal(obs["observation.images.image"], raw["agentview_image"][::-1, ::-1])
    np.testing.assert_array_equal(
        obs["observation.images.wrist_image"], raw["robot0_eye_in_hand_image"][::-1, ::-1]
    )


def test_resume_runs_only_the_missing_episodes(fake_libero: None, tmp_path: Path) -> None:
    args = dict(
        suites="libero_goal", tasks="0,1", episodes=3, max_steps=6, workers=0, out=tmp_path, progress=False
    )
    full = evaluate(Scripted(), "libero", **args)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 6
    (tmp_path / "episodes.jsonl").write_text("\n".join(lines[:4]) + '\n{"task": "cut sh')  # interrupted
    CALLS.clear()
    resumed = evaluate(Scripted(), "libero", resume=True, **args)
    assert [c[1] for c in CALLS if c[0] == "init"] == [1, 2]  # only task 1's episodes 1 and 2 ran
    assert resumed["tasks"] == full["tasks"]
    with pytest.raises(ValueError, match="other max_steps"):
        evaluate(Scripted(), "libero", resume=True, **{**args, "max_steps": 7})


def test_resume_with_more_episodes_runs_only_the_new_ones(fake_libero: None, tmp_path: Path) -> None:
    args = dict(suites="libero_goal", tasks="0,1", max_steps=6, workers=0, progress=False)
    full = evaluate(Scripted(), "libero", episodes=4, out=tmp_path / "full", **args)
    evaluate(Scripted(), "libero", episodes=2, out=tmp_path / "grown", **args)
    CALLS.clear()
    grown = evaluate(Scripted(), "libero", episodes=4, out=tmp_path / "grown", resume=True, **args)
    assert [c[1] for c in CALLS if c[0] == "init"] == [2, 3, 2, 3]  # episodes 2 and 3 of each task
    assert grown["tasks"] == full["tasks"]
    CALLS.clear()
    shrunk = evaluate(Scripted(), "libero", episodes=3, out=tmp_path / "grown", resume=True, **args)
    assert not [c for c in CALLS if c[0] == "init"]  # all on disk
    for task, res in shrunk["tasks"].items():
        assert res["episodes"] == 3
        assert res["episode_success"] == full["tasks"][task]["episode_success"][:3]
    assert len((tmp_path / "grown" / "episodes.jsonl").read_text().splitlines()) == 8  # none dropped


def test_policy_mismatch_is_one_line_before_any_episode(fake_libero: None) -> None:
    class Four(Scripted):
        action_dim = 4

    class NoWrist(Scripted):
        cameras = ("image", "wrist")

    class Corner(Scripted):
        cameras = ("corner2",)

    run = dict(suites="libero_goal", tasks="0", episodes=1, workers=0, progress=False)
    with pytest.raises(ValueError, match="outputs 4-d actions but libero takes 7-d"):
        evaluate(Four(), "libero", **run)
    with pytest.raises(ValueError, match="LIBERO has no camera 'corner2'"):
        evaluate(Corner(), "libero", **run)
    policy = NoWrist()  # `wrist` is an alias of the wrist camera: runs
    evaluate(policy, "libero", max_steps=1, **run)
    assert ("init", 0) in CALLS


@pytest.mark.skipif(
    importlib.util.find_spec("libero") is None, reason="LIBERO is not installed (extra 'libero')"
)
def test_real_simulator_smoke(tmp_path: Path) -> None:
    """One real task, one episode of 20 steps; the first frame is deterministic and is the package's
    own rendering of the init state (after the wait steps) rotated 180 degrees."""
    bench = get_benchmark("libero", protocol="openvla")  # 10 wait steps
    (task,) = bench.resolve_tasks("0", "libero_spatial")
    env = bench.spec(task, ("image", "wrist_image"), 256, 20).make()
    try:
        start = EpisodeStart(0, 0, init_state=0)
        first = env.reset(start)
        package = env._env  # the package's own env, driven by hand with the same protocol
        package.seed(0)
        package.reset()
        raw = package.set_init_state(env.init_states[0])
        for _ in range(10):
            raw, _, _, _ = package.step([0, 0, 0, 0, 0, 0, -1])
        np.testing.assert_array_equal(first["observation.images.image"], raw["agentview_image"][::-1, ::-1])
        np.testing.assert_array_equal(
            first["observation.images.wrist_image"], raw["robot0_eye_in_hand_image"][::-1, ::-1]
        )
        again = env.reset(start)
        np.testing.assert_array_equal(again["observation.images.image"], first["observation.images.image"])
        assert first["observation.state"].shape == (8,) and first["task"].startswith("pick up the black bowl")
        for _ in range(20):
            obs, _, success, done, _ = env.step(np.r_[np.zeros(6), 1.0])
        assert done and not success and obs["observation.images.image"].shape == (256, 256, 3)
    finally:
        env.close()
    results = json.loads(json.dumps(bench.record()))
    assert results["max_steps"]["libero_spatial"] == 220
