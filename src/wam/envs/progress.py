"""A progress bar for episode loops: episodes done, episodes/s and frames/s (rich).

Collection and evaluation both count whole episodes; the bar shows the rates that matter for
sizing a run (episodes/s and simulated frames/s). `EpisodeProgress(enabled=False)` is silent,
so library calls from tests and scripts print nothing.
"""

from __future__ import annotations

import time
from typing import Any


class EpisodeProgress:
    """Context manager around a rich progress bar counting episodes and frames."""

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.total = total
        self.description = description
        self.enabled = enabled
        self.episodes = 0
        self.frames = 0
        self._start = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> EpisodeProgress:
        self._start = time.perf_counter()
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[eps]:.2f} ep/s  {task.fields[fps]:.0f} frames/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, eps=0.0, fps=0.0)
        return self

    def advance(self, episodes: int = 1, frames: int = 0, description: str | None = None) -> None:
        """Count finished episodes and their frames; optionally change the description."""
        self.episodes += episodes
        self.frames += frames
        if self._progress is None:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(
            self._task,
            advance=episodes,
            eps=self.episodes / elapsed,
            fps=self.frames / elapsed,
            description=description or self.description,
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
