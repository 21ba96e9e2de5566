"""Meta-World demonstrations from the scripted expert, written as a LeRobot v3.0 dataset.

One frame t of an episode holds what the robot saw before acting and what happened next:
    observation.images.<cam>       uint8 (H, W, 3) per camera (stored as video)
    observation.state              float32 (4,)   hand xyz + gripper opening
    observation.environment_state  float32 (39,)  the full Meta-World observation: PRIVILEGED
                                   (object poses, goal); for experts and analysis, not for
                                   policies meant to act from pixels
    action                         float32 (4,)   the expert's action, clipped to [-1, 1]
    next.reward, next.success      float32 / bool (1,): the env's reply to that action
and the task instruction; timestamps and indices come from the writer. fps = 80, Meta-World's
control rate (1 / env.dt = 1 / (frame_skip 5 x 2.5 ms)).

Episode boundaries: an episode ends `hold_steps` (10) frames after the first success, or at the
500-step horizon. The evaluator stops at the first success, so those extra frames are never
needed to score; they show the policy that the goal state is where to stay (no drift at the
end of a chunk) while keeping the episodes short.

Seeds and counts: the attempts of a task use seeds `seed, seed + 1, ...`, at most
`ATTEMPTS_PER_EPISODE * N` of them (see `wam.envs.seeds`; evaluation's held-out seeds never
overlap). `episodes_per_task = N` means N successful episodes per task, the first N successes in
seed order; failed ones are dropped unless `keep_failed`, which keeps every attempt (then N
episodes per task, some failed). A task whose expert cannot reach N within the attempts is
reported in the summary (`shortfall`). Each episode's extra metadata records its seed, success
and task name.

Parallelism and determinism: env worker processes (spawn) simulate and render whole episodes;
the main process writes them in a fixed order (task by task, seed by seed), buffering episodes
that finish early. The dataset content depends only on the arguments, never on worker timing.
Interruptions: the writer saves whole episodes atomically, so Ctrl-C leaves whole episodes;
`resume=True` skips the seeds already saved and finishes the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.video import encoding_for
from wam.envs.metaworld.env import CONTROL_FPS, MAX_STEPS, MetaWorldSpec
from wam.envs.metaworld.tasks import INSTRUCTIONS, resolve_cameras, resolve_tasks
from wam.envs.progress import EpisodeProgress
from wam.envs.seeds import COLLECT_SEED_START, collection_seeds
from wam.envs.vector import WorkerPool, WorkerState

HOLD_STEPS = 10  # frames recorded after the first success
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 256
ROBOT_TYPE = "sawyer"

STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper"]
_OBJ = [f"obj1_{n}" for n in ("x", "y", "z", "qw", "qx", "qy", "qz")] + [
    f"obj2_{n}" for n in ("x", "y", "z", "qw", "qx", "qy", "qz")
]
# Meta-World's 39-d observation: current frame (18), previous frame (18), goal (3).
ENV_STATE_NAMES = [
    *STATE_NAMES,
    *_OBJ,
    *(f"prev_{n}" for n in STATE_NAMES + _OBJ),
    "goal_x",
    "goal_y",
    "goal_z",
]


@dataclass
class CollectConfig:
    """What to collect and where; validated before any simulator starts."""

    tasks: tuple[str, ...]  # Meta-World task names (resolved from names and MT10 / MT50)
    out: str  # dataset root directory
    episodes_per_task: int = 50  # successful episodes to keep per task (every attempt if keep_failed)
    image_size: int = 96  # square image size, even, 32..256
    cameras: tuple[str, ...] = ("corner2",)  # cameras recorded, one video stream each
    keep_failed: bool = False  # also keep episodes where the expert failed
    resume: bool = False  # continue the dataset at `out` (skips the seeds already saved)
    overwrite: bool = False  # delete an existing dataset at `out` first
    workers: int = 2  # simulator processes (0: simulate inline in this process)
    seed: int = COLLECT_SEED_START  # first seed of every task's attempts
    video_codec: str | None = (
        None  # encoding spec, e.g. "h264:crf=10,pix_fmt=yuv444p"; None: av1, or on resume the dataset's
    )
    fast_render: bool = True  # shadows, reflections and multisampling off (about 7x faster)
    hold_steps: int = HOLD_STEPS  # frames kept after the first success

    def __post_init__(self) -> None:
        self.tasks = tuple(resolve_tasks(list(self.tasks)))
        self.cameras = tuple(resolve_cameras(list(self.cameras)))
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE or self.image_size % 2:
            raise ValueError(
                f"Image size {self.image_size} is not allowed: use an even size from "
                f"{MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, e.g. --image-size 96."
            )
        collection_seeds(self.seed, self.episodes_per_task)  # validates the count and seed range
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (inline) or more, got {self.workers}.")
        if self.video_codec is not None:
            encoding_for(self.video_codec)  # a bad codec spec raises one line naming it
        if self.resume and self.overwrite:
            raise ValueError(
                "Pass either --resume (continue the dataset) or --overwrite (replace it), not both."
            )
        if not 0 <= self.hold_steps < MAX_STEPS:
            raise ValueError(f"hold_steps must be from 0 to {MAX_STEPS - 1}, got {self.hold_steps}.")
        if not str(self.out):
            raise ValueError("No output directory given: pass --out DIR.")

    def spec(self, task: str) -> MetaWorldSpec:
        return MetaWorldSpec(task, self.cameras, self.image_size, self.fast_render, MAX_STEPS)


def dataset_features(cameras: tuple[str, ...], image_size: int) -> dict[str, dict[str, Any]]:
    """The LeRobot feature dict of a Meta-World demonstration dataset."""
    features: dict[str, dict[str, Any]] = {
        f"observation.images.{cam}": {
            "dtype": "video",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        }
        for cam in cameras
    }
    features["observation.state"] = {"dtype": "float32", "shape": (4,), "names": list(STATE_NAMES)}
    features["observation.environment_state"] = {"dtype": "float32", "shape": (39,), "names": ENV_STATE_NAMES}
    features["action"] = {"dtype": "float32", "shape": (4,), "names": list(ACTION_NAMES)}
    features["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
    features["next.success"] = {"dtype": "bool", "shape": (1,), "names": None}
    return features


# ---------------------------------------------------------------------- one episode (worker side)
def record_expert_episode(
    state: WorkerState, spec: MetaWorldSpec, seed: int, hold_steps: int
) -> dict[str, Any]:
    """Run the scripted expert for one seeded episode and return its frames (runs in a worker)."""
    from wam.policies.scripted import ExpertPolicy

    env = state.env(0, spec)
    expert = ExpertPolicy()
    image_keys = [f"observation.images.{cam}" for cam in spec.cameras]
    obs_keys = [*image_keys, "observation.state", "observation.environment_state"]
    columns: dict[str, list[Any]] = {k: [] for k in [*obs_keys, "action", "next.reward", "next.success"]}
    first_success: int | None = None
    obs = env.reset(seed)
    for t in range(spec.max_steps):
        env_state = obs["observation.environment_state"][None]  # (1, 39)
        batch = {"observation.environment_state": env_state, "task_name": [spec.task]}
        action = expert.predict_action_chunk(batch)[0, 0]  # (4,) float32 in [-1, 1]
        for key in obs_keys:
            columns[key].append(obs[key])
        columns["action"].append(action)
        obs, reward, success, done, _ = env.step(action)
        columns["next.reward"].append([reward])
        columns["next.success"].append([success])
        if success and first_success is None:
            first_success = t + 1
        if done or (first_success is not None and t + 1 >= first_success + hold_steps):
            break
    frames = {key: np.stack(values) for key, values in columns.items()}  # each (T, ...)
    frames["next.reward"] = frames["next.reward"].astype(np.float32)  # (T, 1)
    frames["next.success"] = frames["next.success"].astype(bool)  # (T, 1)
    return {"task": spec.task, "seed": seed, "success": first_success is not None, "frames": frames}


# ---------------------------------------------------------------------- ordering of attempts
@dataclass
class _TaskQueue:
    """The attempts of one task: submitted in seed order, written in seed order."""

    task: str
    seeds: list[int]  # seeds still allowed, in order (already-saved seeds removed)
    need: int  # episodes still to write
    keep_failed: bool
    next: int = 0  # index of the next seed to submit
    consumed: int = 0  # index of the next seed to write (or drop)
    inflight: int = 0  # submitted, result not back yet
    buffered_keep: int = 0  # results back and keepable, not yet consumed
    written: int = 0  # episodes written in this run
    failures: int = 0  # consumed attempts where the expert failed
    finished: bool = False
    buffer: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def plan(cls, task: str, cfg: CollectConfig, saved_seeds: list[int]) -> _TaskQueue:
        """The attempts still to make for `task`, given the seeds the dataset already holds."""
        done = set(saved_seeds)
        seeds = [s for s in collection_seeds(cfg.seed, cfg.episodes_per_task) if s not in done]
        need = max(cfg.episodes_per_task - len(saved_seeds), 0)
        return cls(task=task, seeds=seeds, need=need, keep_failed=cfg.keep_failed)

    def wants_more(self) -> bool:
        enough = self.written + self.buffered_keep + self.inflight >= self.need
        return not self.finished and not enough and self.next < len(self.seeds)

    def receive(self, result: dict[str, Any]) -> None:
        self.inflight -= 1
        if self.finished:
            return  # a speculative attempt past the N-th success: dropped
        keep = result["success"] or self.keep_failed
        if not keep:
            result = {**result, "frames": None}  # only its place in the order matters
        self.buffered_keep += keep
        self.buffer[result["seed"]] = result

    def pop_ready(self) -> dict[str, Any] | None:
        """The next result in seed order, if it is back."""
        if self.finished or self.consumed >= len(self.seeds) or self.seeds[self.consumed] not in self.buffer:
            return None
        result = self.buffer.pop(self.seeds[self.consumed])
        self.consumed += 1
        keep = result["success"] or self.keep_failed
        self.buffered_keep -= keep
        self.failures += not result["success"]
        return result

    def update_finished(self) -> None:
        exhausted = self.consumed >= len(self.seeds) and self.inflight == 0
        if self.written >= self.need or exhausted:
            self.finished = True
            self.buffer.clear()


Writer = Callable[[_TaskQueue, dict[str, Any]], None]  # writes one kept episode


def _next_unfinished(queues: list[_TaskQueue], current: int, write: Writer) -> int:
    """Write every result that is next in order; returns the index of the first unfinished task."""
    while current < len(queues):
        queue = queues[current]
        while queue.written < queue.need and (result := queue.pop_ready()) is not None:
            if result["frames"] is not None:
                write(queue, result)
                queue.written += 1
        queue.update_finished()
        if not queue.finished:
            return current
        current += 1
    return current


def _run_queues(
    pool: WorkerPool, queues: list[_TaskQueue], cfg: Any, write: Writer, job: Callable[..., Any] | None = None
) -> None:
    """Keep every worker busy with the earliest attempts still needed; write results in order.

    `job(state, cfg.spec(task), seed, cfg.hold_steps)` records one episode in a worker (default:
    Meta-World's `record_expert_episode`; LIBERO passes its own).
    """
    job = job or record_expert_episode
    assignment: dict[int, _TaskQueue] = {}  # worker -> the task of its running attempt
    current = 0
    while (current := _next_unfinished(queues, current, write)) < len(queues):
        for worker in pool.idle():
            queue = next((q for q in queues[current:] if q.wants_more()), None)
            if queue is None:
                break
            seed = queue.seeds[queue.next]
            queue.next += 1
            queue.inflight += 1
            pool.submit(worker, job, cfg.spec(queue.task), seed, cfg.hold_steps)
            assignment[worker] = queue
        if not assignment:
            raise RuntimeError(f"Collection stalled on {queues[current].task}; please report this bug.")
        for worker in pool.ready():
            assignment.pop(worker).receive(pool.result(worker))


# ---------------------------------------------------------------------- the dataset
def _open_writer(
    cfg: Any, features: dict[str, dict[str, Any]], fps: int = CONTROL_FPS, robot_type: str = ROBOT_TYPE
) -> Any:
    """A new writer, or the existing dataset's on `resume`; refuses to clobber silently."""
    from wam.data import LeRobotDatasetWriter
    from wam.data.format import INFO_PATH, STAGING_DIR
    from wam.data.writer import check_replaceable

    root = Path(cfg.out)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file: pass a directory to --out.")
    exists = root.is_dir() and any(root.iterdir())
    is_dataset = exists and ((root / INFO_PATH).is_file() or (root / STAGING_DIR).is_dir())
    if exists and not is_dataset:
        raise FileExistsError(
            f"{root} already exists and is not a dataset (no {INFO_PATH}); --resume and --overwrite "
            "only work on a dataset wam wrote: choose another --out."
        )
    if exists and not (cfg.resume or cfg.overwrite):
        raise FileExistsError(
            f"{root} already exists: pass --resume to continue it or --overwrite to replace it."
        )
    if cfg.overwrite and exists:
        check_replaceable(root, flag="--overwrite")
    if cfg.resume and exists:
        writer = LeRobotDatasetWriter.resume(root, cfg.video_codec)
        _check_same_features(writer, features)
        return writer
    return LeRobotDatasetWriter.create(
        root,
        fps=fps,
        features=features,
        robot_type=robot_type,
        video_codec=cfg.video_codec or "av1",
        overwrite=cfg.overwrite,
    )


def _check_same_features(writer: Any, features: dict[str, dict[str, Any]]) -> None:
    """On resume, the cameras and image size must be those the dataset was started with."""
    prefix = "observation.images."
    saved = {k: tuple(v["shape"]) for k, v in writer.features.items() if k.startswith(prefix)}
    wanted = {k: tuple(v["shape"]) for k, v in features.items() if k.startswith(prefix)}
    if saved != wanted:
        cams = ",".join(k.removeprefix(prefix) for k in saved)
        sizes = sorted({shape[0] for shape in saved.values()})
        raise ValueError(
            f"{writer.root} holds cameras {cams} at image size {sizes}: resume with the same --cameras and "
            "--image-size, or pass --overwrite to start again."
        )


def _saved_seeds(writer: Any) -> dict[str, list[int]]:
    """Seeds of the episodes already in the dataset, per task name."""
    saved: dict[str, list[int]] = {}
    for extra in writer.episode_extras:
        if extra and "task_name" in extra and "seed" in extra:
            saved.setdefault(extra["task_name"], []).append(int(extra["seed"]))
    return saved


def collect_metaworld(
    tasks: str | list[str] | tuple[str, ...],
    episodes_per_task: int,
    image_size: int,
    cameras: str | list[str] | tuple[str, ...],
    out: str | os.PathLike[str],
    keep_failed: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 2,
    seed: int = COLLECT_SEED_START,
    video_codec: str | None = None,
    fast_render: bool = True,
    progress: bool = True,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
    hold_steps: int = HOLD_STEPS,
) -> dict[str, Any]:
    """Collect expert demonstrations into a LeRobot v3.0 dataset at `out`; returns a summary.

    `on_episode(info)` is called after each saved episode with its task, seed, success, frames
    and episode index. Scripts that use `workers > 0` need an `if __name__ == "__main__":` guard
    (worker processes are spawned and import the main module).
    """
    cfg = CollectConfig(
        tasks=tuple(resolve_tasks(tasks)),
        out=str(out),
        episodes_per_task=episodes_per_task,
        image_size=image_size,
        cameras=tuple(resolve_cameras(cameras)),
        keep_failed=keep_failed,
        resume=resume,
        overwrite=overwrite,
        workers=workers,
        seed=seed,
        video_codec=video_codec,
        fast_render=fast_render,
        hold_steps=hold_steps,
    )
    writer = _open_writer(cfg, dataset_features(cfg.cameras, cfg.image_size))
    saved = _saved_seeds(writer)
    queues = [_TaskQueue.plan(task, cfg, saved.get(task, [])) for task in cfg.tasks]
    total = sum(q.need for q in queues)
    start = time.perf_counter()
    with EpisodeProgress(total, "collect", progress) as bar:

        def write(queue: _TaskQueue, result: dict[str, Any]) -> None:
            extra = {"seed": result["seed"], "success": result["success"], "task_name": queue.task}
            index = writer.add_episode(result["frames"], task=INSTRUCTIONS[queue.task], extra=extra)
            frames = len(result["frames"]["action"])
            saved.setdefault(queue.task, []).append(result["seed"])
            bar.advance(1, frames, description=queue.task)
            if on_episode is not None:
                on_episode({**extra, "frames": frames, "episode_index": index})

        with WorkerPool(cfg.workers) as pool:
            _run_queues(pool, queues, cfg, write)
        writer.finalize()
        summary = _summary(cfg, queues, saved, writer, bar, time.perf_counter() - start)
    if progress:
        _print_summary(summary)
    return summary


def _summary(
    cfg: CollectConfig,
    queues: list[_TaskQueue],
    saved: dict[str, list[int]],
    writer: Any,
    bar: EpisodeProgress,
    wall_s: float,
) -> dict[str, Any]:
    tasks: dict[str, dict[str, Any]] = {}
    shortfall: dict[str, int] = {}
    for queue in queues:
        seeds = saved.get(queue.task, [])
        tasks[queue.task] = {
            "episodes": len(seeds),  # in the dataset, this run and earlier ones
            "new": queue.written,  # written by this run
            "attempts": queue.consumed,  # seeds tried by this run (in order; speculative extras excluded)
            "failures": queue.failures,  # of those, episodes where the expert failed
            "seeds": seeds,  # dataset order
        }
        if len(seeds) < cfg.episodes_per_task:
            shortfall[queue.task] = cfg.episodes_per_task - len(seeds)
    return {
        "out": cfg.out,
        "fps": CONTROL_FPS,
        "tasks": tasks,
        "episodes": writer.num_episodes,
        "new_episodes": bar.episodes,
        "new_frames": bar.frames,
        "wall_s": wall_s,
        "episodes_per_s": bar.episodes / max(wall_s, 1e-9),
        "frames_per_s": bar.frames / max(wall_s, 1e-9),
        "shortfall": shortfall,
        "complete": not shortfall,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    console.print(
        f"saved {summary['new_episodes']} episodes ({summary['new_frames']} frames) "
        f"in {summary['wall_s']:.1f} s: "
        f"{summary['episodes_per_s']:.2f} episodes/s, {summary['frames_per_s']:.0f} frames/s; "
        f"{summary['episodes']} episodes in {summary['out']}"
    )
    for task, missing in summary["shortfall"].items():
        row = summary["tasks"][task]
        console.print(
            f"[yellow]warning: the expert reached only {row['episodes']} of {row['episodes'] + missing} "
            f"episodes on {task} ({row['attempts']} attempts, {row['failures']} failed)"
        )
