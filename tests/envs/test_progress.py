"""EpisodeProgress: a live bar on a terminal, plain throttled lines in a log file, silence when off."""

from __future__ import annotations

import pytest

from wam.envs import progress as progress_mod
from wam.envs.progress import EpisodeProgress


def test_log_file_gets_plain_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_mod, "LOG_EVERY_S", 0.0)
    with EpisodeProgress(4, "collect") as bar:  # pytest's captured stderr is not a terminal
        for _ in range(4):
            bar.advance(1, frames=100)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("collect: 1/4 episodes")
    assert lines[-1].startswith("collect: 4/4 episodes") and "~0:00 left" in lines[-1]


def test_lines_are_throttled_but_the_last_one_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with EpisodeProgress(50, "eval expert") as bar:  # default: at most one line per 30 s
        for _ in range(50):
            bar.advance(1, frames=10, description="eval expert task 3")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("eval expert task 3: 50/50 episodes")


def test_disabled_bar_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    with EpisodeProgress(3, "collect", enabled=False) as bar:
        for _ in range(3):
            bar.advance(1, frames=5)
    assert capsys.readouterr().err == ""
    assert bar.episodes == 3 and bar.frames == 15
