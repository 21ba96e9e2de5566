"""The cached stages of an end-to-end job: collect -> codec -> train -> evaluate -> profile.

`wam quickstart` and the comparison benchmarks (`benchmarks/metaworld_mt10.py`,
`benchmarks/ablation_metaworld.py`) chain the same stages. Each stage leaves its result on disk
and a rerun skips what is done:

    ensure_dataset   scripted-expert demonstrations (LeRobot v3.0); an interrupted collection resumes
    ensure_codec     the compact latent codec next to the dataset (`<dataset>-codec`), trained once
    train_cached     a training run; finished runs are reused, interrupted ones resume, a run made
                     with another config is refused (the caller picks a new folder)
    eval_cached      closed-loop evaluation on held-out seeds; reused when tasks, episodes and the
                     evaluated weights (`checkpoint_stamp`) match
    round_robin_latency  median / p90 ms of `predict_action_chunk` of several policies, interleaved

`check_settings` guards a work folder: a rerun with other data or training settings is refused
instead of silently reusing the cached stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wam.configs.base import ExperimentConfig
from wam.data.fsio import atomic_write_json, read_json
from wam.outputs import mark


def check_settings(path: Path, wanted: dict[str, Any]) -> None:
    """Refuse to reuse a work folder made with other settings (its cached stages would lie).

    The first call writes `wanted` to `path`; later calls compare against it.
    """
    if path.exists():
        before = read_json(path, fix="delete it or pass a new output folder")
        changed = sorted(k for k in wanted if before.get(k) != wanted[k])
        if changed:
            raise ValueError(
                f"{path.parent} was made with other {', '.join(changed)}: pass a new output folder "
                "(or delete this one) to run with these settings."
            )
    else:
        atomic_write_json(path, wanted, indent=2)


def checkpoint_stamp(ckpt: Path) -> str:
    """Identifies a checkpoint's weights: its path plus the weight file's size and modification time
    (a run retrained into the same folder gets a new stamp, so its old evaluation is not reused)."""
    weights = Path(ckpt) / "model.safetensors"
    stat = weights.stat()
    return f"{Path(ckpt).resolve()}@{stat.st_size}:{stat.st_mtime_ns}"


def ensure_dataset(
    out: Path,
    tasks: Sequence[str],
    episodes: int,
    image_size: int,
    cameras: Sequence[str],
    workers: int,
    video: str = "av1",
) -> Path:
    """Collect `episodes` expert demonstrations per task into `out` (resuming a partial collection),
    its videos encoded as `video` (a `wam.data.video.encoding_for` spec). A dataset recorded with
    another encoding raises ValueError (`LeRobotDatasetWriter.resume`): its frames are not the
    ones asked for."""
    from wam.envs.collect import collect_metaworld

    collect_metaworld(
        tasks=list(tasks),
        episodes_per_task=episodes,
        image_size=image_size,
        cameras=list(cameras),
        out=str(out),
        resume=out.exists(),
        workers=workers,
        video_codec=video,
    )
    return out


def ensure_codec(data_dir: Path, steps: int, image_size: int, progress: bool = True) -> Path:
    """The compact codec of the dataset (`<dataset>-codec`), trained now unless it exists.

    An existing codec trained for other steps or another image size raises ValueError (it used to
    be reused silently, so a benchmark could report settings it did not run).
    """
    from wam.models.codecs.train import default_codec_dir, train_codec

    out = default_codec_dir(data_dir)
    if (out / "config.json").is_file():
        _check_codec_settings(out, steps, image_size)
        return out
    result = train_codec(data_dir, out, steps=steps, image_size=image_size, progress=progress)
    mark(out, "codec")
    print(f"codec: {result.out_dir} ({result.psnr_db:.1f} dB PSNR, {result.seconds:.0f} s)")
    return out


def _check_codec_settings(codec_dir: Path, steps: int, image_size: int) -> None:
    stats_path = codec_dir / "stats.json"
    if not stats_path.is_file():
        return  # a codec without a training record (e.g. copied in by hand) is taken as it is
    stats = read_json(stats_path, fix="delete the codec folder to train it again")
    have = (stats.get("train_steps"), stats.get("image_size"))
    if None not in have and have != (steps, image_size):
        raise ValueError(
            f"{codec_dir} holds a codec trained for {have[0]} steps at {have[1]} px, not {steps} at "
            f"{image_size}: pass --codec-steps {have[0]} --image-size {have[1]}, or a new output folder."
        )


def train_cached(experiment: ExperimentConfig, data_dir: Path, run_dir: Path, progress: bool = True) -> Path:
    """Train `experiment` into `run_dir`: reuse a finished run, resume an interrupted one.

    Returns the last checkpoint. A run folder made with another config raises ValueError.
    """
    from wam.configs.serialize import to_dict
    from wam.training import checkpoint as ckpt_io
    from wam.training.loop import train

    try:
        ckpt = ckpt_io.resolve_checkpoint(run_dir)
    except FileNotFoundError:
        ckpt = None
    if ckpt is None:
        train(experiment, data_dir, run_dir, progress=progress)  # a run folder without checkpoint restarts
        return ckpt_io.resolve_checkpoint(run_dir)
    wanted = to_dict(experiment)
    stored = ckpt_io.config_of(ckpt)  # parsed: fields added since it was written get their defaults
    if _comparable(to_dict(stored), wanted) != wanted:
        raise ValueError(
            f"{run_dir} holds a run with another config: pass a new output folder (or delete this one)."
        )
    if ckpt.name != ckpt_io.step_name(experiment.train.steps):
        train(stored, data_dir, run_dir, resume=True, progress=progress)
    return ckpt_io.resolve_checkpoint(run_dir)


DATASET_FIELDS = ("action_dim", "state_dim", "image_size", "tasks", "codec")  # filled in by `wam train`


def _comparable(config: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """`config` with the dataset-derived policy fields that `wanted` leaves unset taken from `wanted`."""
    policy, asked = dict(config.get("policy", {})), wanted.get("policy", {})
    for key in DATASET_FIELDS:
        if key in asked and asked[key] in (None, [], ()):
            policy[key] = asked[key]
    return {**config, "policy": policy}


STAMP_FILE = "stamp.json"  # which checkpoint (and tasks) an evaluation folder's episodes come from


def eval_cached(
    name: str,
    load: Callable[[], Any],
    tasks: Sequence[str],
    episodes: int,
    out_dir: Path,
    workers: int = 2,
    stamp: str = "",
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate `load()` into `out_dir/name`, unless the same evaluation is on disk.

    Episode k starts the same way whatever the count (seed `seed + k`, init state k), so the same
    checkpoint (`stamp`) on the same tasks with another `episodes` resumes: the episodes on disk
    are kept and only the others run. Another checkpoint or other tasks start afresh. `options` go
    to `evaluate` (`env` defaults to metaworld; suites, protocol, gripper, videos_per_task).
    """
    from wam.envs.evaluator import evaluate

    eval_dir = out_dir / name
    result_file = eval_dir / "results.json"
    same = _same_evaluation(eval_dir, stamp, list(tasks))
    if same and result_file.exists():
        cached = read_json(result_file, fix="delete it to evaluate again")
        if all(t["episodes"] == episodes for t in cached["tasks"].values()):
            return cached
    policy = load()
    atomic_write_json(eval_dir / STAMP_FILE, {"stamp": stamp, "tasks": list(tasks)})
    results = evaluate(
        policy,
        **{"env": "metaworld", **options},
        tasks=list(tasks),
        episodes=episodes,
        workers=workers,
        out=str(eval_dir),
        progress=progress,
        resume=same and (eval_dir / "eval_run.json").is_file(),
    )
    results["stamp"] = stamp
    atomic_write_json(result_file, results, indent=2)
    mark(eval_dir, "eval")
    return results


def _same_evaluation(eval_dir: Path, stamp: str, tasks: list[str]) -> bool:
    """True when `eval_dir` holds episodes of checkpoint `stamp` on `tasks` (folders written before the
    stamp file: their results.json, whose task names are compared)."""
    if (eval_dir / STAMP_FILE).is_file():
        before = read_json(eval_dir / STAMP_FILE, fix="delete it to evaluate again")
        return before.get("stamp") == stamp and before.get("tasks", tasks) == tasks
    if (eval_dir / "results.json").is_file():
        before = read_json(eval_dir / "results.json", fix="delete it to evaluate again")
        return before.get("stamp", "") == stamp and sorted(before.get("tasks", {})) == sorted(tasks)
    return False


def example_observation(data_dir: Path) -> dict[str, Any]:
    """A batch of one real observation from the dataset (images, state, instruction)."""
    from wam.data import LeRobotDataset

    sample = LeRobotDataset(data_dir)[0]
    obs: dict[str, Any] = {k: v.numpy()[None] for k, v in sample.items() if k.startswith("observation.")}
    obs["task"] = [sample["task"]]
    return obs


def round_robin_latency(
    policies: dict[str, Any], obs: dict[str, Any], rounds: int = 30, threads: int | None = 1
) -> dict[str, dict[str, float]]:
    """Per policy: median / p90 ms of one `predict_action_chunk` on `obs` after a warm-up call, the
    calls interleaved across policies so that machine load hits all of them alike.

    `threads` torch threads during the measurement (None: leave the current setting). Each policy is
    reset first: an evaluation leaves it seeded for its batch of episodes (`reset(seeds)`), and the
    timed calls are batch 1 on the global RNG.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)  # one thread: stable on a shared CPU (`wam bench` for more)
    try:
        for policy in policies.values():
            policy.reset()
            policy.predict_action_chunk(obs)  # warm-up
        times: dict[str, list[float]] = {name: [] for name in policies}
        for _ in range(rounds):
            for name, policy in policies.items():
                start = time.perf_counter()
                policy.predict_action_chunk(obs)
                times[name].append(1e3 * (time.perf_counter() - start))
    finally:
        torch.set_num_threads(before)
    return {
        name: {"latency_ms_p50": float(np.median(t)), "latency_ms_p90": float(np.percentile(t, 90))}
        for name, t in times.items()
    }


def parameter_count(policy: Any) -> int:
    """Parameters of a torch policy (0 for the scripted ones)."""
    return int(sum(p.numel() for p in policy.parameters())) if hasattr(policy, "parameters") else 0
