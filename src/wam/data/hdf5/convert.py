"""`convert_hdf5`: HDF5 episodes -> a LeRobot v3.0 dataset, in parallel, resumable.

    convert_hdf5("raw/libero_spatial", "data/libero_spatial", layout="libero", workers=4)

Worker processes (spawn) read and decode whole episodes (HDF5, JPEG, resizing); the main process
writes them with `LeRobotDatasetWriter` in the fixed order of `find_episodes`, holding at most
`2 * workers` decoded episodes, so the dataset's content does not depend on worker timing. Each
episode's `source` (file and group) is stored in meta/episodes: `resume=True` skips the sources
already written and continues (an interrupted run leaves only whole episodes). Statistics are the
writer's per-episode ones, aggregated once when the dataset is finalized at the end.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.format import vector_feature, video_feature
from wam.data.hdf5.layout import LAYOUTS, Layout, TaskSource, aloha_layout, libero_layout, load_mapping
from wam.data.hdf5.layout import robotwin_layout as _robotwin_layout
from wam.data.hdf5.reader import EpisodeRef, camera_names, find_episodes, find_files, load_episode
from wam.data.video import encoding_for


@dataclass(frozen=True)
class ConvertSummary:
    """What a conversion did."""

    root: Path  # the dataset folder
    layout: str  # the layout's name
    written: int  # episodes written by this call
    skipped: int  # episodes already in the dataset (resume)
    episodes: int  # episodes in the dataset now
    frames: int  # frames in the dataset now
    fps: int  # the dataset's frame rate


def build_layout(
    layout: str | None,
    mapping: str | Path | None,
    source: Path,
    fps: int | None = None,
    task: str | None = None,
) -> Layout:
    """The `Layout` of `--layout NAME` or `--mapping FILE`, with --fps and --task applied."""
    if (layout is None) == (mapping is None):
        raise ValueError(
            f"Pass exactly one of --layout ({', '.join(LAYOUTS)}) or --mapping FILE (any other robot)."
        )
    if mapping is not None:
        result = load_mapping(mapping)
    elif layout == "libero":
        result = libero_layout()
    elif layout == "robotwin":
        result = _robotwin_layout()
    elif layout == "aloha":
        result = aloha_layout(cameras=camera_names(find_files(source)[0]))
    else:
        import difflib

        close = difflib.get_close_matches(str(layout), LAYOUTS, n=1)
        hint = f"did you mean {close[0]}?" if close else "or pass --mapping FILE for another layout."
        raise ValueError(f"Unknown layout '{layout}': use one of {', '.join(LAYOUTS)}; {hint}")
    if fps is not None:
        result = replace(result, fps=fps)
    if task is not None:
        if not task.strip():
            raise ValueError("--task must be a non-empty instruction.")
        result = replace(result, task=TaskSource("text", task), fallback_task=None)
    return result


def convert_hdf5(
    source: str | Path,
    out: str | Path,
    layout: str | None = None,
    mapping: str | Path | None = None,
    *,
    fps: int | None = None,
    task: str | None = None,
    image_size: int | None = None,
    workers: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    video_codec: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ConvertSummary:
    """Convert the HDF5 episodes under `source` into the LeRobot v3.0 dataset `out` (see the module doc)."""
    from wam.data.writer import LeRobotDatasetWriter

    source, out = Path(source), Path(out)
    if resume and overwrite:
        raise ValueError("--resume continues the dataset and --overwrite replaces it: pass one of them.")
    if image_size is not None and not 8 <= image_size <= 1024:
        raise ValueError(f"--image-size {image_size} is out of range: use 8 to 1024 (pixels per side).")
    if workers < 0:
        raise ValueError(f"--workers {workers} must be 0 (read in this process) or more.")
    _check_out(out, resume, overwrite)
    spec = build_layout(layout, mapping, source, fps, task)
    refs = find_episodes(source, spec)
    if limit is not None:
        refs = refs[:limit]
    say = log or (lambda text: print(text, file=sys.stderr))
    for note in spec.notes:
        say(f"{spec.name}: {note}")
    if video_codec is not None:
        encoding_for(video_codec)  # a bad spec fails before any file is read
    if resume and (out / "meta" / "info.json").exists():
        writer = LeRobotDatasetWriter.resume(out, video_codec)
        _check_resumable(writer, spec, out)
        done = {str(extra.get("source")) for extra in writer.episode_extras}
    else:
        writer = None
        done = set()
    todo = [ref for ref in refs if ref.source not in done]
    skipped = len(refs) - len(todo)
    bar = _progress(len(todo), progress)
    with _executor(workers) as pool:
        for ref, (frames, instruction) in _loaded(pool, todo, spec, image_size, max(1, 2 * workers)):
            if not instruction:
                raise ValueError(
                    f"{ref.file} episode {ref.group}: no instruction ({spec.task.kind}): pass --task TEXT."
                )
            if writer is None:
                features = features_of(frames, spec)
                writer = LeRobotDatasetWriter.create(
                    out, fps=spec.fps, features=features, robot_type=spec.robot_type,
                    video_codec=video_codec or "av1", overwrite=overwrite,
                )  # fmt: skip
            _check_shapes(writer.features, frames, ref)
            writer.add_episode(frames, task=instruction, extra={"source": ref.source})
            bar.update(1, frames=len(frames["action"]))
    bar.close()
    if writer is None:
        if not (out / "meta" / "info.json").exists():
            raise ValueError(f"No episodes to convert under {source}.")
        writer = LeRobotDatasetWriter.resume(out)
    writer.finalize()
    return ConvertSummary(
        out, spec.name, len(todo), skipped, writer.num_episodes, writer.num_frames, writer.fps
    )


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before reading anything, an existing folder that neither flag allows to touch."""
    from wam.data.writer import check_replaceable

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: pass a folder for the dataset.")
    if not out.is_dir() or not any(out.iterdir()) or resume:
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} is not empty: pass --resume to continue it or --overwrite to replace it."
        )
    check_replaceable(out, "--overwrite")


def features_of(frames: dict[str, np.ndarray], layout: Layout) -> dict[str, dict]:
    """The writer's feature dicts from the first episode's arrays."""
    features: dict[str, dict] = {}
    for feature in layout.features:
        value = frames[feature.key]
        if feature.is_image:
            features[feature.key] = video_feature(int(value.shape[1]), int(value.shape[2]))
        else:
            features[feature.key] = vector_feature(int(value.shape[1]))
    return features


def _check_shapes(features: dict[str, dict], frames: dict[str, np.ndarray], ref: EpisodeRef) -> None:
    for key, value in frames.items():
        expected = tuple(features[key]["shape"]) if key in features else None
        if expected is not None and tuple(value.shape[1:]) != expected:
            fix = "pass --image-size S" if value.ndim == 4 else "convert such episodes separately"
            raise ValueError(
                f"{ref.file} episode {ref.group}: {key} is {tuple(value.shape[1:])}, but earlier episodes "
                f"have {expected}: {fix}."
            )


def _check_resumable(writer: Any, layout: Layout, out: Path) -> None:
    keys = sorted(f.key for f in layout.features)
    have = sorted(
        k
        for k in writer.features
        if k not in ("timestamp", "frame_index", "episode_index", "index", "task_index")
    )
    if keys != have:
        raise ValueError(
            f"{out} holds features {have}, but this layout writes {keys}: resume with the same layout."
        )
    if writer.fps != layout.fps:
        raise ValueError(
            f"{out} is at {writer.fps} fps, this layout at {layout.fps}: resume with the same --fps."
        )
    extras = writer.episode_extras
    if extras and "source" not in extras[0]:
        raise ValueError(f"{out} was not written by wam data convert: convert into a new folder.")


# ------------------------------------------------------------------------------ parallel reading
def _executor(workers: int) -> Executor:
    if workers == 0:
        return _InlineExecutor()
    import multiprocessing

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


class _InlineExecutor(Executor):
    """Runs each task at submit time, in this process (workers=0: simple to debug)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:
            future.set_exception(err)
        return future


def _loaded(pool: Executor, refs: list[EpisodeRef], layout: Layout, image_size: int | None, window: int):
    """(ref, loaded episode) in `refs` order, with at most `window` episodes read ahead."""
    pending: deque[tuple[EpisodeRef, Future]] = deque()
    queue = iter(refs)
    for ref in queue:
        pending.append((ref, pool.submit(load_episode, ref, layout, image_size)))
        if len(pending) >= window:
            break
    while pending:
        ref, future = pending.popleft()
        result = future.result()
        nxt = next(queue, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(load_episode, nxt, layout, image_size)))
        yield ref, result


class _progress:
    """A tqdm bar of episodes (with frames/s) on a terminal; silent otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        self._frames = 0
        if enabled and total and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="convert", unit="ep", file=sys.stderr)

    def update(self, episodes: int, frames: int) -> None:
        self._frames += frames
        if self._bar is not None:
            self._bar.update(episodes)
            self._bar.set_postfix(frames=self._frames)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
