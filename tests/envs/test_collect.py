"""Demonstration collection: dataset content, ordering, interruption and resume, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wam.envs.collect import CollectConfig, _TaskQueue, collect_metaworld
from wam.envs.metaworld.tasks import INSTRUCTIONS

TASKS = "reach-v3,drawer-close-v3"


def _episodes(root: Path) -> list[dict[str, Any]]:
    from wam.data import LeRobotDatasetWriter

    return LeRobotDatasetWriter.resume(root).episode_extras


def _columns(root: Path) -> dict[str, np.ndarray]:
    from wam.data import LeRobotDataset

    ds = LeRobotDataset(root)
    keys = ("action", "observation.state", "observation.environment_state", "episode_index", "next.success")
    return {k: np.stack([ds[i][k].numpy() for i in range(0, len(ds), 7)]) for k in keys}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """2 tasks x 2 episodes with 2 worker processes (AV1 video, LeRobot's default)."""
    root = tmp_path_factory.mktemp("collect") / "reference"
    summary = collect_metaworld(TASKS, 2, 32, "corner2", root, workers=2, progress=False)
    return root, summary


def test_collected_dataset_reads_back(reference: tuple[Path, dict[str, Any]]) -> None:
    from wam.data import LeRobotDataset

    root, summary = reference
    assert summary["complete"] and summary["episodes"] == summary["new_episodes"] == 4
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 4 and ds.fps == 80 and len(ds) == summary["new_frames"]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["robot_type"] == "sawyer"
    assert info["features"]["observation.images.corner2"]["shape"] == [32, 32, 3]
    assert info["features"]["observation.environment_state"]["shape"] == [39]
    extras = _episodes(root)
    assert [(e["task_name"], e["seed"], e["success"]) for e in extras] == [
        ("reach-v3", 0, True),
        ("reach-v3", 1, True),
        ("drawer-close-v3", 0, True),
        ("drawer-close-v3", 1, True),
    ]
    first = ds[0]
    assert first["task"] == INSTRUCTIONS["reach-v3"]
    assert first["observation.images.corner2"].shape == (3, 32, 32)
    assert np.allclose(first["observation.state"].numpy(), first["observation.environment_state"].numpy()[:4])
    actions = np.stack([ds[i]["action"].numpy() for i in range(len(ds))])
    assert np.abs(actions).max() <= 1.0
    # each episode ends 10 frames after its first success (the expert holds the goal)
    success = np.array([bool(ds[i]["next.success"]) for i in range(len(ds))])
    episode = np.array([int(ds[i]["episode_index"]) for i in range(len(ds))])
    for ep in range(4):
        flags = success[episode == ep]
        assert flags[-1] and len(flags) - int(np.argmax(flags)) == 11


def test_interrupted_collection_resumes_to_the_same_dataset(
    reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Stop after 3 episodes (1 worker), resume inline: the same episodes as the 2-worker run."""
    root = tmp_path / "interrupted"

    def stop_at_3(info: dict[str, Any]) -> None:
        if info["episode_index"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect_metaworld(TASKS, 2, 32, "corner2", root, workers=1, progress=False, on_episode=stop_at_3)
    assert len(_episodes(root)) == 3
    with pytest.raises(FileExistsError):
        collect_metaworld(TASKS, 2, 32, "corner2", root, workers=0, progress=False)
    with pytest.raises(ValueError, match="resume with the same --cameras and --image-size"):
        collect_metaworld(TASKS, 2, 64, "corner2", root, workers=0, progress=False, resume=True)
    summary = collect_metaworld(TASKS, 2, 32, "corner2", root, workers=0, progress=False, resume=True)
    assert summary["new_episodes"] == 1 and summary["episodes"] == 4 and summary["complete"]
    assert _episodes(root) == _episodes(reference[0])
    got, expected = _columns(root), _columns(reference[0])
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    again = collect_metaworld(TASKS, 2, 32, "corner2", root, workers=0, progress=False, resume=True)
    assert again["new_episodes"] == 0 and again["episodes"] == 4  # nothing left to do


def test_ctrl_c_leaves_whole_episodes(tmp_path: Path) -> None:
    """A real SIGINT to the whole process group (as a terminal sends it), then --resume."""
    root = tmp_path / "sigint"
    script = textwrap.dedent(f"""
        from wam.envs.collect import collect_metaworld
        if __name__ == "__main__":
            collect_metaworld("reach-v3", 4, 32, "corner2", {str(root)!r}, workers=2, progress=False,
                              video_codec="h264", on_episode=lambda info: print("saved", flush=True))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # a shell's background job (`pytest &`) starts with SIGINT ignored, and a child inherits it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "saved"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    saved = [e["seed"] for e in _episodes(root)]
    assert 1 <= len(saved) < 4 and saved == list(range(len(saved)))
    summary = collect_metaworld("reach-v3", 4, 32, "corner2", root, workers=0, progress=False, resume=True)
    assert [e["seed"] for e in _episodes(root)] == [0, 1, 2, 3] and summary["complete"]


def _result(seed: int, success: bool) -> dict[str, Any]:
    return {"task": "reach-v3", "seed": seed, "success": success, "frames": {"action": np.zeros((1, 4))}}


def test_task_queue_writes_in_seed_order_and_bounds_attempts() -> None:
    cfg = CollectConfig(tasks=("reach-v3",), out="unused", episodes_per_task=2)
    queue = _TaskQueue.plan("reach-v3", cfg, saved_seeds=[])
    assert queue.seeds == [0, 1, 2, 3, 4, 5] and queue.need == 2

    def submit() -> None:
        assert queue.wants_more()
        queue.next, queue.inflight = queue.next + 1, queue.inflight + 1

    def drain() -> list[tuple[int, bool]]:
        order = []
        while (result := queue.pop_ready()) is not None:
            order.append((result["seed"], result["frames"] is not None))
        return order

    submit()
    submit()
    assert not queue.wants_more()  # two successes may already be on their way
    queue.receive(_result(1, True))  # arrives first, must wait for seed 0
    assert drain() == []
    queue.receive(_result(0, False))
    submit()  # seed 0 failed: one more attempt is needed
    assert drain() == [(0, False), (1, True)]  # a failure keeps its place, without frames
    queue.receive(_result(2, True))
    assert drain() == [(2, True)]
    assert queue.failures == 1
    queue.written = 2
    queue.update_finished()
    assert queue.finished
    shortfall = _TaskQueue.plan("reach-v3", cfg, saved_seeds=[1])
    assert shortfall.seeds == [0, 2, 3, 4, 5] and shortfall.need == 1
    for seed in shortfall.seeds:  # the expert fails every remaining attempt
        shortfall.next, shortfall.inflight = shortfall.next + 1, shortfall.inflight + 1
        shortfall.receive(_result(seed, False))
        shortfall.pop_ready()
    shortfall.update_finished()
    assert shortfall.finished and shortfall.written == 0 and not shortfall.wants_more()
    keep_all = _TaskQueue.plan("reach-v3", CollectConfig(tasks=("reach-v3",), out="u", keep_failed=True), [])
    keep_all.next, keep_all.inflight = 1, 1
    keep_all.receive(_result(0, False))
    popped = keep_all.pop_ready()
    assert popped is not None and popped["frames"] is not None  # kept although it failed


def test_cli_collect_and_eval(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from wam.commands import collect, evaluate

    app = typer.Typer()
    collect.register(app)
    evaluate.register(app)
    runner = CliRunner()
    data = tmp_path / "data"
    args = ["collect", "metaworld", "--tasks", "reach-v3", "--episodes", "1", "--image-size", "32"]
    args += ["--out", str(data), "--workers", "0", "--codec", "h264"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [e["seed"] for e in _episodes(data)] == [0]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, FileExistsError)
    result = runner.invoke(app, [*args, "--overwrite", "--slow-render"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["collect", "metaworld", "--tasks", "reech-v3", "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, ValueError) and "Did you mean reach-v3" in str(bad.exception)
    bad = runner.invoke(app, [*args[:-6], "--image-size", "300", "--out", str(tmp_path / "y")])
    assert isinstance(bad.exception, ValueError) and "Image size 300" in str(bad.exception)
    out = tmp_path / "eval"
    eval_args = ["eval", "--policy", "expert", "--tasks", "reach-v3", "--episodes", "2", "--workers", "0"]
    result = runner.invoke(app, [*eval_args, "--out", str(out), "--videos", "1"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["policy"] == "expert" and results["tasks"]["reach-v3"]["episodes"] == 2
    assert (out / "videos" / "reach-v3_ep0.mp4").exists() and "expert on metaworld" in result.output
