"""The comparison engine at toy size: every entry is trained, evaluated and timed on the same data,
the reports are written, a rerun reuses the cache, and a work folder made with other settings is
refused instead of silently reusing stale runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wam.compare import (
    Entry,
    add_benchmark_arguments,
    compare,
    markdown_table,
    plot_success_latency,
    with_cameras,
)
from wam.pipeline import check_settings, checkpoint_stamp, ensure_codec, ensure_dataset, eval_cached


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cmp") / "data"
    return ensure_dataset(
        root, ["drawer-close-v3"], episodes=2, image_size=32, cameras=["corner2"], workers=0
    )


def test_compare_trains_evaluates_times_and_reports(dataset: Path, tmp_path: Path) -> None:
    entries = [
        Entry("chunk16", "baseline-tiny"),
        Entry("chunk8", "baseline-tiny", ("policy.chunk_size=8", "policy.n_action_steps=4")),
    ]
    kwargs = dict(jobs=1, workers=0, latency_rounds=2, expert=False)
    results = compare(entries, dataset, tmp_path, ["drawer-close-v3"], 1, 2, **kwargs)
    assert list(results["rows"]) == ["chunk16", "chunk8"]
    for row in results["rows"].values():
        assert 0.0 <= row["mean_success"] <= 1.0 and row["latency_ms_p50"] > 0 and row["params"] > 0
    assert (tmp_path / "results.json").is_file() and (tmp_path / "runs" / "chunk8" / "loss.png").is_file()
    table = markdown_table(results)
    assert table.count("\n") == 4 and "| chunk8 |" in table
    plot_success_latency(results, tmp_path / "plot.png", "toy")
    assert (tmp_path / "plot.png").stat().st_size > 0

    import wam.envs.evaluator as evaluator
    import wam.training.loop as loop

    def forbidden(*args: object, **kw: object) -> None:
        raise AssertionError("a cached stage ran again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluator, "evaluate", forbidden)
        mp.setattr(loop, "train", forbidden)
        again = compare(entries, dataset, tmp_path, ["drawer-close-v3"], 1, 2, **kwargs)
    assert again["rows"]["chunk8"]["mean_success"] == results["rows"]["chunk8"]["mean_success"]
    # the training time comes from the checkpoints, so a cached rerun still reports it
    assert again["rows"]["chunk8"]["train_s"] == results["rows"]["chunk8"]["train_s"] > 0
    with pytest.raises(ValueError, match="made with other steps"):
        compare(entries, dataset, tmp_path, ["drawer-close-v3"], 1, 3, **kwargs)
    with pytest.MonkeyPatch.context() as mp:  # an entry dropped: the others are still reused
        mp.setattr(evaluator, "evaluate", forbidden)
        mp.setattr(loop, "train", forbidden)
        fewer = compare(entries[:1], dataset, tmp_path, ["drawer-close-v3"], 1, 2, **kwargs)
    assert list(fewer["rows"]) == ["chunk16"]
    with pytest.raises(ValueError, match="another config"):  # an entry's name reused for another config
        compare([Entry("chunk8", "baseline-tiny")], dataset, tmp_path, ["drawer-close-v3"], 1, 2, **kwargs)


def test_every_entry_reads_the_benchmark_cameras() -> None:
    """A benchmark recorded with other cameras than a preset's default trains every policy on them
    (before, `--camera` changed only what was recorded, so training refused the data)."""
    import argparse

    parser = argparse.ArgumentParser()
    add_benchmark_arguments(parser, out="bench", steps=10)
    assert parser.parse_args([]).cameras == "corner2"
    assert parser.parse_args(["--camera", "topview"]).cameras == "topview"  # the old flag still works
    cameras = parser.parse_args(["--cameras", "corner2,corner"]).cameras.split(",")
    entries = [Entry("a", "lightwam-tiny"), Entry("b", "baseline-tiny", ("policy.chunk_size=8",))]
    for entry in with_cameras(entries, cameras):
        experiment = entry.experiment(steps=10, seed=0)
        assert experiment.policy.cameras == ("corner2", "corner")
    b = with_cameras(entries, cameras)[1].experiment(steps=10, seed=0)
    assert b.policy.chunk_size == 8  # the entry's own overrides are kept


def test_settings_guard_and_checkpoint_stamp(tmp_path: Path) -> None:
    check_settings(tmp_path / "s.json", {"a": 1, "b": [1, 2]})
    check_settings(tmp_path / "s.json", {"a": 1, "b": [1, 2]})  # same settings: fine
    with pytest.raises(ValueError, match="made with other b"):
        check_settings(tmp_path / "s.json", {"a": 1, "b": [1, 3]})
    ckpt = tmp_path / "step_000002"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"12")
    first = checkpoint_stamp(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"123")  # retrained into the same folder
    os.utime(ckpt / "model.safetensors", ns=(1, 1))
    assert checkpoint_stamp(ckpt) != first


def test_a_cached_codec_trained_with_other_settings_is_refused(tmp_path: Path) -> None:
    codec = tmp_path / "data-codec"
    codec.mkdir()
    (codec / "config.json").write_text("{}")
    (codec / "stats.json").write_text('{"train_steps": 1500, "image_size": 64}')
    assert ensure_codec(tmp_path / "data", 1500, 64) == codec
    with pytest.raises(ValueError, match="trained for 1500 steps at 64 px, not 6000 at 64"):
        ensure_codec(tmp_path / "data", 6000, 64)  # it used to be reused, and reported as 6000
    with pytest.raises(ValueError, match="--image-size 64"):
        ensure_codec(tmp_path / "data", 1500, 96)


def test_a_cached_dataset_recorded_with_another_video_encoding_is_refused(dataset: Path) -> None:
    info = json.loads((dataset / "meta" / "info.json").read_text())
    ep = ensure_dataset(dataset, ["drawer-close-v3"], 2, 32, ["corner2"], workers=0, video="av1")
    assert ep == dataset and json.loads((dataset / "meta" / "info.json").read_text()) == info
    with pytest.raises(ValueError, match="recorded with video encoding av1, not h264:crf=10,pix_fmt=yuv444p"):
        ensure_dataset(
            dataset, ["drawer-close-v3"], 2, 32, ["corner2"], workers=0, video="h264:crf=10,pix_fmt=yuv444p"
        )


def test_a_cached_evaluation_grows_with_more_episodes_and_restarts_for_another_checkpoint(
    tmp_path: Path,
) -> None:
    """More --eval-episodes used to re-run every episode of a benchmark's cached evaluation."""
    from wam.policies.scripted import ExpertPolicy

    loads = []

    def load() -> ExpertPolicy:
        loads.append(1)
        return ExpertPolicy()

    def journal() -> list[str]:
        return (tmp_path / "expert" / "episodes.jsonl").read_text().splitlines()

    args = (["drawer-close-v3"], 1, tmp_path)
    first = eval_cached("expert", load, *args, workers=0, stamp="a", progress=False)
    assert first["tasks"]["drawer-close-v3"]["episodes"] == 1 and len(journal()) == 1
    assert eval_cached("expert", load, *args, workers=0, stamp="a", progress=False) == first
    assert len(loads) == 1  # the same evaluation is read back, not run
    kept = json.dumps({**json.loads(journal()[0]), "note": "kept"})  # tells a kept line from a re-run
    (tmp_path / "expert" / "episodes.jsonl").write_text(kept + "\n")
    grown = eval_cached("expert", load, ["drawer-close-v3"], 2, tmp_path, 0, "a", progress=False)
    assert grown["tasks"]["drawer-close-v3"]["episodes"] == 2
    assert journal()[0] == kept and len(journal()) == 2  # episode 0 kept, episode 1 run
    eval_cached("expert", load, ["drawer-close-v3"], 1, tmp_path, 0, "b", progress=False)
    assert len(journal()) == 1 and "kept" not in journal()[0]  # another checkpoint: afresh
    assert len(loads) == 3


def test_latency_is_timed_after_a_seeded_evaluation() -> None:
    """An evaluation leaves a sampling policy seeded for its batch (`reset(seeds)`); the batch-1 timing
    must not inherit it (it stopped the ablation benchmark: "reset with 20 seeds but got a batch of 1")."""
    import torch

    from wam.bench.build import build_policy, prepare_inputs, resolve_target, synthetic_observation
    from wam.pipeline import round_robin_latency

    target = resolve_target("fastwam-tiny")
    policy = build_policy(target, torch.device("cpu"))
    prepare_inputs(policy, target, torch.device("cpu"), "images")
    policy.reset(seeds=list(range(20)))  # as the evaluator leaves it after a batch of 20 episodes
    latency = round_robin_latency({"fastwam": policy}, synthetic_observation(policy, 1, "images"), rounds=2)
    assert latency["fastwam"]["latency_ms_p50"] > 0


PARENT = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from wam.compare import exit_with_parent
if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=exit_with_parent, initargs=(0.1,)) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        pool.submit(time.sleep, 60)
        time.sleep(60)
"""


def test_a_training_worker_ends_when_its_benchmark_is_killed(tmp_path: Path) -> None:
    """An orphaned worker used to train on for minutes into the run folder a restart had reused."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"the worker {worker} outlived its killed parent")
