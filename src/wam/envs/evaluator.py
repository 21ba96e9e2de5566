"""Closed-loop evaluation of any `Policy` on any benchmark, simulated on every core.

Design:
- The policy lives in the main process and knows nothing of the simulator; the evaluator knows
  nothing of models. It only uses the `Policy` contract (`reset`, `select_action`, the
  `cameras` / `image_size` / `action_dim` / `name` attributes) and the env contract
  (`wam.envs.contract`: a `Benchmark` from `wam.envs.registry`); it names no benchmark.
- Env worker processes (`wam.envs.vector`) own the simulators. The episodes of a task run in
  lockstep *batches* of `batch_size` envs: element i of a batch lives in worker i % workers,
  slot i // workers. Each tick the policy receives ONE batched observation of the whole batch
  (images float32 (B, 3, H, W) in [0, 1], states (B, S), instructions list[str]) and returns
  (B, A) actions; the workers step their envs in parallel.
- `policy.reset(seeds=...)` runs at the start of each batch (the episodes' env seeds, so a
  stochastic policy such as Fast-WAM draws each episode's noise from its own generator and an
  episode's result does not depend on its batch), and the batch keeps its composition until
  every episode in it has ended: a finished env stays in the batch with its last observation
  and its actions are ignored. Action queues (`select_action`) thus stay aligned with envs.
- Episode k of every task starts as the benchmark says (`Benchmark.episode_starts`): seed
  `seed + k` (Meta-World: held out from collection by default, see `wam.envs.seeds`), and for
  LIBERO also the task's fixed init state k. Success is the benchmark's (Meta-World:
  `info['success']`; LIBERO: the env's `done`) at any step within the task's horizon.
  Batch composition does not depend on `workers`, so the same seeds and the same (fresh)
  policy give the same results for any number of workers.
- Rendering is on demand: a policy that reads no image (the scripted expert) gets no rendered
  frames; only the first `videos_per_task` episodes of each task render, for their video.
- Non-finite actions never reach a simulator: an episode whose action holds a NaN or inf (from
  the policy, or refused by a policy server) is stopped before that step, counted as a failure,
  and its error is recorded (`episode_errors` per task, `n_errors` overall) and printed as one
  `warning:` line on stderr naming the task, episode, seed and step. The other episodes go on.
- Before any episode: the policy's action dim must be the benchmark's, its state dim (when it
  says) the benchmark's, and its cameras must be ones the benchmark renders (one-line errors).
Outputs under `out`: `results.json`, `videos/<task>_ep<k>.mp4` (h264), and the finished
episodes in `episodes.jsonl` (`wam.envs.journal`), from which `resume=True` continues.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wam.envs.contract import Benchmark, EnvSpec, EpisodeStart
from wam.envs.journal import EpisodeJournal
from wam.envs.progress import EpisodeProgress
from wam.envs.registry import get_benchmark
from wam.envs.seeds import EVAL_SEED_START, evaluation_seeds
from wam.envs.vector import WorkerPool, reset_slots, step_slots
from wam.finite import nonfinite_count
from wam.policies.base import NonFiniteActionError, Policy

VIDEO_SIZE = 128  # size of the videos when the policy reads no image


@dataclass
class EvalConfig:
    """What to evaluate on; the policy is passed separately."""

    tasks: tuple[str, ...] = ()  # task ids (resolved by the benchmark from names, indices and sets)
    env: str = "metaworld"  # benchmark: one of wam.envs.registry.ENVS
    episodes: int = 20  # episodes per task
    seed: int = EVAL_SEED_START  # episode k of every task uses seed + k (held out by default)
    workers: int = 2  # env worker processes (0: simulate inline in this process)
    cameras: tuple[str, ...] | None = None  # cameras to render; None: the policy's own
    image_size: int | None = None  # render size; None: the policy's own (128 if it reads no image)
    max_steps: int | None = None  # episode horizon; None: the benchmark's (Meta-World 500, LIBERO per suite)
    videos_per_task: int = 2  # record the first this-many episodes of each task (needs out)
    batch_size: int | None = None  # envs per lockstep batch; None: a task's episodes, <= the benchmark's cap
    fast_render: bool = True  # Meta-World: shadows, reflections and multisampling off
    suites: tuple[
        str, ...
    ] = ()  # LIBERO suites whose tasks `tasks` indexes (all of them when tasks is empty)
    protocol: str | None = None  # LIBERO: authors | openvla (None: authors)
    gripper: str | None = None  # LIBERO gripper post-processing (None: the protocol's)
    resume: bool = False  # keep the finished episodes found in out and run only the others

    def __post_init__(self) -> None:
        self.tasks = tuple(self.benchmark.resolve_tasks(list(self.tasks), list(self.suites)))
        evaluation_seeds(self.seed, self.episodes)  # validates seed and episodes
        for task in self.tasks:
            self.benchmark.horizon(task, self.max_steps)  # validates max_steps
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (inline) or more, got {self.workers}.")
        if self.cameras is not None:
            self.cameras = tuple(self.benchmark.resolve_cameras(list(self.cameras)))
        if self.image_size is not None and not 32 <= self.image_size <= 512:
            raise ValueError(f"image_size {self.image_size} is out of range: use 32 to 512.")
        if self.videos_per_task < 0:
            raise ValueError(f"videos_per_task must be 0 or more, got {self.videos_per_task}.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")

    @property
    def benchmark(self) -> Benchmark:
        return get_benchmark(
            self.env, protocol=self.protocol, gripper=self.gripper, fast_render=self.fast_render
        )

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or min(self.episodes, self.benchmark.max_batch_size)


@dataclass
class EpisodeResult:
    """The outcome of one evaluation episode."""

    seed: int  # the env seed of the episode
    init_state: int | None = None  # index of the fixed initial state it started from (LIBERO)
    success: bool = False  # the benchmark's success at any step
    steps: int = 0  # steps taken (to the first success, or the horizon)
    error: str | None = None  # why the episode was stopped early (non-finite actions), if it was
    frames: list[np.ndarray] = field(default_factory=list, repr=False)  # video frames, if recorded

    def record(self, task: str, index: int, horizon: int) -> dict[str, Any]:
        """The JSON line of `episodes.jsonl`."""
        return {
            "task": task,
            "episode": index,
            "seed": self.seed,
            "init_state": self.init_state,
            "horizon": horizon,
            "success": self.success,
            "steps": self.steps,
            "error": self.error,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EpisodeResult:
        keys = ("seed", "init_state", "success", "steps", "error")
        return cls(**{k: record[k] for k in keys})


# ---------------------------------------------------------------------- observation batching
def observations_to_batch(observations: list[dict[str, Any]], image_keys: tuple[str, ...]) -> dict[str, Any]:
    """Env observations (unbatched, images uint8 HWC) -> one policy batch (images float32 BCHW)."""
    batch: dict[str, Any] = {}
    for key in image_keys:
        images = np.stack([obs[key] for obs in observations])  # (B, H, W, 3) uint8
        batch[key] = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # (B, 3, H, W)
    for key in observations[0]:  # observation.state and the benchmark's other vectors
        if key.startswith("observation.") and not key.startswith("observation.images."):
            batch[key] = np.stack([obs[key] for obs in observations]).astype(np.float32)  # (B, D)
    batch["task"] = [obs["task"] for obs in observations]
    batch["task_name"] = [obs["task_name"] for obs in observations]
    return batch


def _video_frame(obs: dict[str, Any], cameras: tuple[str, ...]) -> np.ndarray:
    """The cameras side by side, uint8 (H, W * n, 3)."""
    return np.concatenate([obs[f"observation.images.{cam}"] for cam in cameras], axis=1)


# ---------------------------------------------------------------------- one lockstep batch
def _run_batch(
    pool: WorkerPool,
    policy: Policy,
    spec: EnvSpec,
    starts: list[EpisodeStart],
    record: list[bool],
    image_keys: tuple[str, ...],
    on_episode_end: Callable[[int, EpisodeResult], None],
    action_dim: int,
    on_frames: Callable[[int], None] = lambda n: None,
) -> list[EpisodeResult]:
    """Run the episodes of `starts` together until each succeeds or hits the horizon.

    An episode whose action is not finite is stopped (see above); `on_episode_end(index, result)`,
    and `on_frames(n)` after each step of the n episodes still running (the batch's episodes end
    together, so counting frames only as episodes end would show no progress for minutes).
    """
    size = len(starts)
    seeds = [start.seed for start in starts]
    owner = [(i % pool.size, i // pool.size) for i in range(size)]  # element -> (worker, slot)
    render = [bool(image_keys) or rec for rec in record]
    results = [EpisodeResult(seed=start.seed, init_state=start.init_state) for start in starts]

    members: dict[int, list[int]] = {}  # worker -> its batch elements, in order
    for i, (worker, _) in enumerate(owner):
        members.setdefault(worker, []).append(i)
    items = {w: [(owner[i][1], spec, starts[i], render[i]) for i in idx] for w, idx in members.items()}
    calls = {w: (reset_slots, (its,)) for w, its in items.items()}
    observations: list[dict[str, Any]] = [{}] * size
    for worker, obs_list in pool.map(calls).items():
        for i, obs in zip(members[worker], obs_list, strict=True):
            observations[i] = obs
    for i in range(size):
        if record[i]:
            results[i].frames.append(_video_frame(observations[i], spec.cameras))

    policy.reset(seeds=seeds)  # a stochastic policy seeds each episode's sampling noise
    active = [True] * size
    while any(active):
        try:
            actions = np.asarray(
                policy.select_action(observations_to_batch(observations, image_keys))
            )  # (B, A)
        except NonFiniteActionError as err:  # e.g. a policy server refused to send them: the whole batch
            actions = np.full((size, action_dim), np.nan)
            reasons = [str(err)] * size
        else:
            if actions.shape != (size, action_dim):
                raise ValueError(
                    f"{policy.name} returned actions shaped {actions.shape}, expected ({size}, {action_dim})."
                )
            reasons = [
                f"{policy.name} produced non-finite actions ({nonfinite_count(row)})" for row in actions
            ]
        for i in range(size):
            if active[i] and nonfinite_count(actions[i]) is not None:
                results[i].error = (
                    f"{reasons[i]} at step {results[i].steps} of {spec.task} episode {starts[i].index} "
                    f"(seed {seeds[i]}): the episode was stopped and counted as a failure"
                )
                print(f"warning: {results[i].error}.", file=sys.stderr)
                active[i] = False
                on_episode_end(starts[i].index, results[i])
        live = {w: [i for i in idx if active[i]] for w, idx in members.items()}
        live = {w: idx for w, idx in live.items() if idx}
        calls = {
            w: (step_slots, ([(owner[i][1], actions[i], render[i]) for i in idx],)) for w, idx in live.items()
        }
        stepped = pool.map(calls)
        on_frames(sum(len(idx) for idx in live.values()))
        for worker, step_list in stepped.items():
            for i, (obs, _, success, done) in zip(live[worker], step_list, strict=True):
                observations[i] = obs
                results[i].steps += 1
                if record[i]:
                    results[i].frames.append(_video_frame(obs, spec.cameras))
                if success or done:
                    results[i].success = success
                    active[i] = False
                    on_episode_end(starts[i].index, results[i])
    return results


# ---------------------------------------------------------------------- the evaluator
def _render_plan(policy: Policy, cfg: EvalConfig) -> tuple[tuple[str, ...], int, tuple[str, ...]]:
    """(cameras to render, image size, image keys the policy receives)."""
    benchmark = cfg.benchmark
    cameras = cfg.cameras or tuple(policy.cameras)
    if not cameras:  # the policy reads no image: render only for the videos
        return benchmark.video_cameras, cfg.image_size or VIDEO_SIZE, ()
    cameras = tuple(benchmark.resolve_cameras(list(cameras)))
    size = cfg.image_size or policy.image_size
    if size is None:
        raise ValueError(f"{policy.name} reads cameras {cameras} but sets no image_size: pass image_size.")
    return cameras, int(size), tuple(f"observation.images.{cam}" for cam in cameras)


def check_policy_fits(policy: Policy, benchmark: Benchmark) -> None:
    """One-line ValueError when the policy's actions or state do not fit the benchmark."""
    if int(policy.action_dim) != benchmark.action_dim:
        raise ValueError(
            f"{policy.name} outputs {policy.action_dim}-d actions but {benchmark.name} takes "
            f"{benchmark.action_dim}-d ones: evaluate a policy trained on {benchmark.name} data."
        )
    state_dim = getattr(policy, "state_dim", None)
    if state_dim and int(state_dim) != benchmark.state_dim:
        raise ValueError(
            f"{policy.name} reads a {state_dim}-d observation.state but {benchmark.name} gives "
            f"{benchmark.state_dim}-d: evaluate a policy trained on {benchmark.name} data."
        )


def _task_summary(episodes: list[EpisodeResult], horizon: int, suite: str | None) -> dict[str, Any]:
    successes = sum(ep.success for ep in episodes)
    summary: dict[str, Any] = {
        "success_rate": successes / len(episodes),
        "episodes": len(episodes),
        "successes": successes,
        "mean_steps": float(np.mean([ep.steps for ep in episodes])),
        "seeds": [ep.seed for ep in episodes],
        "episode_success": [ep.success for ep in episodes],
        "episode_steps": [ep.steps for ep in episodes],
        "episode_errors": [ep.error for ep in episodes],  # None, or why the episode was stopped
        "horizon": horizon,  # policy steps allowed per episode
    }
    if suite is not None:
        summary["suite"] = suite
        summary["init_states"] = [ep.init_state for ep in episodes]
    return summary


def _evaluate_task(
    pool: WorkerPool,
    policy: Policy,
    spec: EnvSpec,
    cfg: EvalConfig,
    image_keys: tuple[str, ...],
    bar: EpisodeProgress,
    out: Path | None,
    journal: EpisodeJournal | None,
) -> list[EpisodeResult]:
    """All episodes of one task, batch after batch; videos are written as batches end."""
    benchmark = cfg.benchmark
    horizon = benchmark.horizon(spec.task, cfg.max_steps)
    starts = benchmark.episode_starts(spec.task, cfg.episodes, cfg.seed)
    done = {} if journal is None else journal.done
    kept = {
        s.index: EpisodeResult.from_record(done[(spec.task, s.index)])
        for s in starts
        if (spec.task, s.index) in done
    }
    todo = [s for s in starts if s.index not in kept]
    successes = [sum(ep.success for ep in kept.values())]
    bar.advance(len(kept), description=f"{spec.task} {successes[0]} ok")  # resumed: no frames simulated

    def on_end(index: int, ep: EpisodeResult) -> None:
        successes[0] += ep.success
        bar.advance(1, description=f"{spec.task} {successes[0]} ok")
        if journal is not None:
            journal.append(ep.record(spec.task, index, horizon))

    for lo in range(0, len(todo), cfg.effective_batch_size):
        batch_starts = todo[lo : lo + cfg.effective_batch_size]
        record = [s.index < cfg.videos_per_task for s in batch_starts]
        batch = _run_batch(
            pool,
            policy,
            spec,
            batch_starts,
            record,
            image_keys,
            on_end,
            benchmark.action_dim,
            on_frames=lambda n: bar.advance(0, n),
        )
        if out is not None:
            _write_videos(out, spec.task, batch, batch_starts, benchmark.control_fps)
        for start, ep in zip(batch_starts, batch, strict=True):
            ep.frames = []  # release the video frames
            kept[start.index] = ep
    return [kept[s.index] for s in starts]


def evaluate(
    policy: Policy,
    env: str = "metaworld",
    *,
    tasks: str | list[str] | tuple[str, ...] | None = None,
    episodes: int = 20,
    seed: int = EVAL_SEED_START,
    workers: int = 2,
    cameras: str | list[str] | tuple[str, ...] | None = None,
    image_size: int | None = None,
    max_steps: int | None = None,
    videos_per_task: int = 2,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    fast_render: bool = True,
    suites: str | list[str] | tuple[str, ...] | None = None,
    protocol: str | None = None,
    gripper: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Roll `policy` out on each task for `episodes` episodes; returns the results dict.

    The dict (also written to `out/results.json` when `out` is given) holds `env`, `policy`,
    per-task `success_rate`, `episodes`, `successes`, `mean_steps`, `seeds`, `horizon` (plus
    per-episode lists, `episode_errors`; with suites also `suite` and `init_states`),
    `mean_success` (mean over tasks), per-suite means under `suites` and their mean
    `mean_suite_success` (benchmarks with suites), `n_episodes`, `n_errors` (episodes stopped for
    non-finite actions), `wall_s`, the benchmark's `protocol` record and the `config`.
    Videos of the first `videos_per_task` episodes of each task go to `out/videos/`; finished
    episodes to `out/episodes.jsonl`, which `resume=True` continues from.
    Scripts that use `workers > 0` need an `if __name__ == "__main__":` guard (the worker
    processes are spawned, and spawning imports the main module).
    """

    def as_tuple(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value or ()
        return tuple(item.strip() for item in items if item.strip())

    cfg = EvalConfig(
        tasks=as_tuple(tasks),
        env=env,
        episodes=episodes,
        seed=seed,
        workers=workers,
        cameras=as_tuple(cameras) if cameras is not None else None,
        image_size=image_size,
        max_steps=max_steps,
        videos_per_task=videos_per_task if out is not None else 0,
        batch_size=batch_size,
        fast_render=fast_render,
        suites=as_tuple(suites),
        protocol=protocol,
        gripper=gripper,
        resume=resume,
    )
    benchmark = cfg.benchmark
    check_policy_fits(policy, benchmark)
    out_dir = Path(out) if out is not None else None
    render_cameras, render_size, image_keys = _render_plan(policy, cfg)
    journal = None
    if out_dir is not None:
        definition = {
            "env": cfg.env,
            "protocol": benchmark.record(),
            "policy": policy.name,
            "tasks": list(cfg.tasks),
            "episodes": cfg.episodes,
            "seed": cfg.seed,
            "max_steps": cfg.max_steps,
            "cameras": list(render_cameras),
            "image_size": render_size,
        }
        journal = EpisodeJournal(out_dir, definition, cfg.resume)
    start = time.perf_counter()
    per_task: dict[str, list[EpisodeResult]] = {}
    total = len(cfg.tasks) * cfg.episodes
    with WorkerPool(cfg.workers) as pool, EpisodeProgress(total, f"eval {policy.name}", progress) as bar:
        for task in cfg.tasks:
            spec = benchmark.spec(task, render_cameras, render_size, benchmark.horizon(task, cfg.max_steps))
            per_task[task] = _evaluate_task(pool, policy, spec, cfg, image_keys, bar, out_dir, journal)
    results = _results_dict(policy, cfg, per_task, time.perf_counter() - start, (render_cameras, render_size))
    if out_dir is not None:
        from wam.data.fsio import atomic_write_json

        atomic_write_json(out_dir / "results.json", results)
    if progress:
        print_results(results)
    return results


def _results_dict(
    policy: Policy,
    cfg: EvalConfig,
    per_task: dict[str, list[EpisodeResult]],
    wall_s: float,
    render: tuple[tuple[str, ...], int],
) -> dict[str, Any]:
    benchmark = cfg.benchmark
    tasks = {
        task: _task_summary(eps, benchmark.horizon(task, cfg.max_steps), benchmark.suite(task))
        for task, eps in per_task.items()
    }
    config = asdict(cfg)
    config.update(
        tasks=list(cfg.tasks), cameras=list(render[0]), image_size=render[1], suites=list(cfg.suites)
    )
    config["batch_size"] = cfg.effective_batch_size
    if config["max_steps"] is None and benchmark.suite(cfg.tasks[0]) is None:
        config["max_steps"] = benchmark.horizon(cfg.tasks[0], None)  # one horizon for every task
    results: dict[str, Any] = {
        "env": cfg.env,
        "policy": policy.name,
        "tasks": tasks,
        "mean_success": float(np.mean([t["success_rate"] for t in tasks.values()])),
    }
    suites: dict[str, list[float]] = {}
    for row in tasks.values():
        if "suite" in row:
            suites.setdefault(row["suite"], []).append(row["success_rate"])
    if suites:
        results["suites"] = {
            name: {"success_rate": float(np.mean(rates)), "tasks": len(rates)}
            for name, rates in suites.items()
        }
        results["mean_suite_success"] = float(
            np.mean([s["success_rate"] for s in results["suites"].values()])
        )
        results["protocol"] = benchmark.record()
    results.update(
        n_episodes=sum(t["episodes"] for t in tasks.values()),
        n_errors=sum(error is not None for t in tasks.values() for error in t["episode_errors"]),
        wall_s=wall_s,
        config=config,
    )
    return results


# ---------------------------------------------------------------------- outputs
def _write_videos(
    out: Path, task: str, batch: list[EpisodeResult], starts: list[EpisodeStart], fps: int
) -> None:
    """`videos/<task>_ep<k>.mp4`; a task id with a suite (`libero_10/...`) gets a subfolder."""
    from wam.data.video import write_mp4

    for start, ep in zip(starts, batch, strict=True):
        if not ep.frames:
            continue
        frames = np.stack(ep.frames)  # (T, H, W * cameras, 3) uint8; write_mp4 pads odd sizes
        path = out / "videos" / f"{task}_ep{start.index}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, frames, fps=fps, codec="h264")


def print_results(results: dict[str, Any]) -> None:
    """A rich table: one row per task, then the mean."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{results['policy']} on {results['env']} ({results['n_episodes']} episodes)")
    table.add_column("task")
    for name in ("success", "episodes", "mean steps"):
        table.add_column(name, justify="right")
    for task, row in results["tasks"].items():
        rate, steps = f"{100 * row['success_rate']:.1f}%", f"{row['mean_steps']:.1f}"
        table.add_row(task, rate, str(row["episodes"]), steps)
    table.add_row("[bold]mean", f"[bold]{100 * results['mean_success']:.1f}%", "", "")
    Console().print(table)
    Console().print(f"wall time {results['wall_s']:.1f} s")
    if results.get("n_errors"):
        n = results["n_errors"]
        print(  # one plain line: a rich Console would wrap it at the terminal's width
            f"warning: {n} episode{'s were' if n != 1 else ' was'} stopped for non-finite actions "
            "(counted as failures; see episode_errors in results.json)",
            file=sys.stderr,
        )
