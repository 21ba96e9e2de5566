"""A progress bar for episode loops: episodes done, episodes/s and frames/s (rich).

Collection and evaluation both count whole episodes; the bar shows the rates that matter for
sizing a run (episodes/s and simulated frames/s). `EpisodeProgress(enabled=False)` is silent,
so library calls from tests and scripts print nothing. Where rich cannot draw a live bar (neither a
terminal nor a notebook: a run in the background writing to a log file, where rich would print
nothing until the end), the bar prints one plain line to stderr at most every `LOG_EVERY_S` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

LOG_EVERY_S = 30.0


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
        self._plain = False  # no live display (a log file): plain lines instead of a bar
        self._last_line = 0.0

    def __enter__(self) -> EpisodeProgress:
        self._start = time.perf_counter()
        self._last_line = self._start
        self._plain = self.enabled and not _live_display()
        if self.enabled and not self._plain:
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
        """Count finished episodes and simulated frames; optionally change the description (kept
        for later calls)."""
        if description is not None:
            self.description = description
        self.episodes += episodes
        self.frames += frames
        now = time.perf_counter()
        elapsed = max(now - self._start, 1e-9)
        if self._plain and (now - self._last_line >= LOG_EVERY_S or self.episodes >= self.total):
            self._last_line = now
            print(self.line(elapsed), file=sys.stderr, flush=True)
        if self._progress is None:
            return
        self._progress.update(
            self._task,
            advance=episodes,
            eps=self.episodes / elapsed,
            fps=self.frames / elapsed,
            description=self.description,
        )

    def line(self, elapsed: float) -> str:
        """`collect: 12/90 episodes, 0.05 ep/s, 9 frames/s, 4:00 elapsed, ~26:00 left`."""
        rate = self.episodes / elapsed
        left = (self.total - self.episodes) / rate if rate > 0 else float("nan")
        left_text = _clock(left) if left == left else "?"
        return (
            f"{self.description}: {self.episodes}/{self.total} episodes, {rate:.2f} ep/s, "
            f"{self.frames / elapsed:.0f} frames/s, {_clock(elapsed)} elapsed, ~{left_text} left"
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)


def _live_display() -> bool:
    """True where rich draws a live bar: a terminal or a Jupyter notebook."""
    from rich import get_console

    console = get_console()
    return console.is_terminal or console.is_jupyter


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
