"""LIBERO demonstrations from the scripted experts, written as a LeRobot v3.0 dataset.

The dataset has the keys and conventions of the public LeRobot LIBERO datasets (and of `wam eval
--env libero`), so a policy trained on either evaluates the same way:
    observation.images.image        uint8 (S, S, 3) video: agentview, rotated 180 degrees (`rot180`)
    observation.images.wrist_image  uint8 (S, S, 3) video: robot0_eye_in_hand, same orientation
    observation.state               float32 (8,)  eef position, eef axis-angle, 2 gripper joints
    action                          float32 (7,)  OSC_POSE delta EEF in [-1, 1] + gripper
and the task's language instruction; fps 20 (LIBERO's control rate), robot_type panda. Frames
are rendered at 256 and resized to S (the evaluation's own observation path). Frame t holds what
the robot saw before acting and the action taken. The gripper is stored in LIBERO's own
convention (`gripper="native"`: -1 open, +1 close, what the simulator executes; evaluate with
`--gripper binarize` or `native`), or in the authors' ([0, 1], 1 = open; `--gripper authors`).

Initial states: collection never uses the 50 fixed init states the evaluation runs on. Attempt
`seed` seeds the package's placement sampler (`env.seed(seed)` then `env.reset()`, without
`set_init_state`), so each attempt is a fresh draw from the task's BDDL regions; a draw whose
object joint positions all lie within `FIXED_STATE_TOLERANCE` (L-inf, m / rad) of one of the
task's fixed init states is dropped as a failed attempt (measured over 20 seeds of three tasks:
the nearest fixed state is 2.5 to 9 mm away at least, 5 to 14 mm in the median). The arm starts
at the package's default pose (the fixed states hold it perturbed by up to about 0.02 rad).
Seeds come from the collection range (`wam.envs.seeds`), apart from the evaluation's. Then, as
in the evaluation, the protocol's no-op wait steps let the objects settle before the first
recorded frame; an episode ends `hold_steps` frames after the first success, or at the
protocol's horizon.

Counting, ordering, parallel workers, resuming and the summary are Meta-World's
(`wam.envs.collect`): N successful episodes per task (failed ones dropped unless `keep_failed`),
written in seed order whatever the worker timing; Ctrl-C keeps whole episodes and `resume=True`
continues. Each episode's extra metadata records its seed, success, task name and gripper
convention.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wam.data.video import encoding_for
from wam.envs.collect import (
    _open_writer,
    _print_summary,
    _run_queues,
    _saved_seeds,
    _summary,
    _TaskQueue,
)
from wam.envs.contract import EpisodeStart
from wam.envs.libero.benchmark import LiberoBenchmark
from wam.envs.libero.env import LiberoSpec
from wam.envs.libero.protocol import CONTROL_FPS, ENV_HORIZON, get_protocol, postprocess_action
from wam.envs.progress import EpisodeProgress
from wam.envs.seeds import COLLECT_SEED_START, collection_seeds
from wam.envs.vector import WorkerPool, WorkerState

CAMERAS = ("image", "wrist_image")  # the LeRobot LIBERO datasets' camera keys
HOLD_STEPS = 10  # frames recorded after the first success
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 256
GRIPPER_CONVENTIONS = ("native", "authors")
FIXED_STATE_TOLERANCE = 1e-3  # a sampled start this close to a fixed init state is not used
ROBOT_TYPE = "panda"
STATE_NAMES = ["eef_x", "eef_y", "eef_z", "eef_axis_angle_x", "eef_axis_angle_y", "eef_axis_angle_z"]
STATE_NAMES += ["gripper_left", "gripper_right"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "delta_rx", "delta_ry", "delta_rz", "gripper"]


@dataclass
class LiberoCollectConfig:
    """What to collect and where; validated before any simulator starts."""

    tasks: tuple[str, ...]  # `suite/name` task ids (resolved from --suite and --tasks)
    out: str  # dataset root directory
    episodes_per_task: int = 50  # successful episodes to keep per task (every attempt if keep_failed)
    image_size: int = 256  # square image size, even, 32..256 (the public datasets: 256)
    gripper: str = "native"  # stored gripper convention: native (-1 open, +1 close) | authors
    protocol: str = "authors"  # LIBERO protocol whose wait steps and horizons the episodes follow
    keep_failed: bool = False  # also keep episodes where the expert failed
    resume: bool = False  # continue the dataset at `out` (skips the seeds already saved)
    overwrite: bool = False  # delete an existing dataset at `out` first
    workers: int = 2  # simulator processes (0: simulate inline in this process)
    seed: int = COLLECT_SEED_START  # first seed of every task's attempts
    video_codec: str | None = (
        None  # encoding spec, e.g. "h264:crf=10,pix_fmt=yuv444p"; None: av1, or on resume the dataset's
    )
    hold_steps: int = HOLD_STEPS  # frames kept after the first success

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("No LIBERO task given: pass --suite (and optionally --tasks).")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE or self.image_size % 2:
            raise ValueError(
                f"Image size {self.image_size} is not allowed: use an even size from "
                f"{MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, e.g. --image-size 256 (the public datasets')."
            )
        if self.gripper not in GRIPPER_CONVENTIONS:
            raise ValueError(
                f"Unknown gripper convention '{self.gripper}': use native (-1 open, +1 close, the "
                "LeRobot LIBERO datasets') or authors ([0, 1], 1 = open)."
            )
        get_protocol(self.protocol)  # validates the name
        collection_seeds(self.seed, self.episodes_per_task)  # validates the count and seed range
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (inline) or more, got {self.workers}.")
        if self.video_codec is not None:
            encoding_for(self.video_codec)  # a bad codec spec raises one line naming it
        if self.resume and self.overwrite:
            raise ValueError(
                "Pass either --resume (continue the dataset) or --overwrite (replace it), not both."
            )
        if not 0 <= self.hold_steps < 100:
            raise ValueError(f"hold_steps must be from 0 to 99, got {self.hold_steps}.")
        if not str(self.out):
            raise ValueError("No output directory given: pass --out DIR.")

    def spec(self, task: str) -> LiberoSpec:
        # the experts emit the authors' gripper convention, so the env runs that post-processing
        protocol = get_protocol(self.protocol, gripper="authors")
        bench = LiberoBenchmark(protocol)
        return LiberoSpec(task, CAMERAS, self.image_size, bench.horizon(task, None), protocol)


def dataset_features(image_size: int) -> dict[str, dict[str, Any]]:
    """The LeRobot feature dict of a LIBERO demonstration dataset."""
    features: dict[str, dict[str, Any]] = {
        f"observation.images.{cam}": {
            "dtype": "video",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        }
        for cam in CAMERAS
    }
    features["observation.state"] = {"dtype": "float32", "shape": (8,), "names": list(STATE_NAMES)}
    features["action"] = {"dtype": "float32", "shape": (7,), "names": list(ACTION_NAMES)}
    return features


def stored_action(action: np.ndarray, gripper: str) -> np.ndarray:
    """An expert action (gripper in the authors' convention) as the dataset stores it (7,) float32."""
    if gripper == "native":
        return postprocess_action(action, "authors").astype(np.float32)  # what LIBERO executes
    out = np.clip(np.asarray(action, dtype=np.float32).reshape(7), -1.0, 1.0)
    out[6] = float(np.clip(action[6], 0.0, 1.0))
    return out


# ---------------------------------------------------------------------- one episode (worker side)
def record_libero_episode(
    state: WorkerState, spec: LiberoSpec, seed: int, hold_steps: int, gripper: str = "native"
) -> dict[str, Any]:
    """Run the scripted expert from a sampled initial state (seeded) and return its frames."""
    from wam.envs.libero.experts import expert_for

    env = state.env(0, spec)
    expert = expert_for(spec.task)
    image_keys = [f"observation.images.{cam}" for cam in spec.cameras]
    columns: dict[str, list[Any]] = {k: [] for k in [*image_keys, "observation.state", "action"]}
    obs = env.reset(EpisodeStart(0, seed, init_state=None))
    if env.start_distance < FIXED_STATE_TOLERANCE:  # the draw repeats an evaluation start: not used
        return {
            "task": spec.task,
            "seed": seed,
            "success": False,
            "frames": None,
            "instruction": env.instruction,
        }
    first_success: int | None = None
    for t in range(spec.max_steps):
        action = expert.act(obs["observation.environment_state"])  # (7,), gripper 1 = open
        for key in [*image_keys, "observation.state"]:
            columns[key].append(obs[key])
        columns["action"].append(stored_action(action, gripper))
        obs, _, success, done, _ = env.step(action)
        if success and first_success is None:
            first_success = t + 1
        if done or (first_success is not None and t + 1 >= first_success + hold_steps):
            break
    frames = {key: np.stack(values) for key, values in columns.items()}  # each (T, ...)
    success = first_success is not None
    return {
        "task": spec.task,
        "seed": seed,
        "success": success,
        "frames": frames,
        "instruction": env.instruction,
    }


@dataclass(frozen=True)
class _Job:
    """`record_libero_episode` with the dataset's gripper convention bound (picklable)."""

    gripper: str

    def __call__(self, state: WorkerState, spec: LiberoSpec, seed: int, hold_steps: int) -> dict[str, Any]:
        return record_libero_episode(state, spec, seed, hold_steps, self.gripper)


def collect_libero(
    suites: str | list[str] | tuple[str, ...],
    out: str | os.PathLike[str],
    tasks: str | list[str] | tuple[str, ...] | None = None,
    episodes_per_task: int = 50,
    image_size: int = 256,
    gripper: str = "native",
    protocol: str = "authors",
    keep_failed: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 2,
    seed: int = COLLECT_SEED_START,
    video_codec: str | None = None,
    progress: bool = True,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
    hold_steps: int = HOLD_STEPS,
) -> dict[str, Any]:
    """Collect expert demonstrations into a LeRobot v3.0 dataset at `out`; returns a summary.

    `on_episode(info)` is called after each saved episode. Scripts that use `workers > 0` need an
    `if __name__ == "__main__":` guard (worker processes are spawned).
    """
    bench = LiberoBenchmark(get_protocol(protocol))
    cfg = LiberoCollectConfig(
        tasks=tuple(bench.resolve_tasks(tasks, suites)),
        out=str(out),
        episodes_per_task=episodes_per_task,
        image_size=image_size,
        gripper=gripper,
        protocol=protocol,
        keep_failed=keep_failed,
        resume=resume,
        overwrite=overwrite,
        workers=workers,
        seed=seed,
        video_codec=video_codec,
        hold_steps=hold_steps,
    )
    for task in cfg.tasks:  # fits the protocol's horizon before any simulator starts
        if bench.horizon(task, None) + cfg.hold_steps >= ENV_HORIZON:
            raise ValueError(f"hold_steps {cfg.hold_steps} is too long for {task}'s horizon.")
    writer = _open_writer(cfg, dataset_features(cfg.image_size), fps=CONTROL_FPS, robot_type=ROBOT_TYPE)
    saved = _saved_seeds(writer)
    queues = [_TaskQueue.plan(task, cfg, saved.get(task, [])) for task in cfg.tasks]
    total = sum(q.need for q in queues)
    start = time.perf_counter()
    with EpisodeProgress(total, "collect", progress) as bar:

        def write(queue: _TaskQueue, result: dict[str, Any]) -> None:
            extra = {
                "seed": result["seed"],
                "success": result["success"],
                "task_name": queue.task,
                "gripper": cfg.gripper,
            }
            index = writer.add_episode(result["frames"], task=result["instruction"], extra=extra)
            frames = len(result["frames"]["action"])
            saved.setdefault(queue.task, []).append(result["seed"])
            bar.advance(1, frames, description=queue.task)
            if on_episode is not None:
                on_episode({**extra, "frames": frames, "episode_index": index})

        with WorkerPool(cfg.workers) as pool:
            _run_queues(pool, queues, cfg, write, job=_Job(cfg.gripper))
        writer.finalize()
        summary = _summary(cfg, queues, saved, writer, bar, time.perf_counter() - start)
    summary["fps"] = CONTROL_FPS
    summary["gripper"] = cfg.gripper
    if progress:
        _print_summary(summary)
    return summary
