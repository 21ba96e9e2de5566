"""Finished evaluation episodes kept on disk, so that an interrupted evaluation resumes.

`out/episodes.jsonl` gets one JSON line per finished episode (appended and flushed as it ends);
`out/eval_run.json` holds what defines the results (benchmark, protocol, policy, tasks, seed,
episodes, horizon, cameras, image size). `--resume` reads both, refuses a different definition
in one line, and runs only the episodes not on disk. Each episode's result depends only on its
start (seed, init state) and the policy, never on its batch, so a resumed evaluation gives the
same results as an uninterrupted one.

The number of episodes is the one setting a resume may change: episode k starts the same way
whatever the count (seed `seed + k`, init state k), so `--episodes 10 --resume` on a finished
5-episode evaluation runs only episodes 5-9 of each task, and a smaller count reports the first
episodes on disk. The lines of episodes beyond the count are kept for a later, larger resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EPISODES_FILE = "episodes.jsonl"
RUN_FILE = "eval_run.json"
EXTENSIBLE = ("episodes",)  # definition keys a resume may change (episode k never depends on them)


class EpisodeJournal:
    """Appends finished episodes to `out/episodes.jsonl`; reads them back for a resume."""

    def __init__(self, out: Path, definition: dict[str, Any], resume: bool) -> None:
        from wam.data.fsio import atomic_write_json, read_json

        self.path = out / EPISODES_FILE
        self.done: dict[tuple[str, int], dict[str, Any]] = {}
        run_file = out / RUN_FILE
        if resume and run_file.is_file():
            before = read_json(run_file)
            changed = sorted(k for k in definition if k not in EXTENSIBLE and before.get(k) != definition[k])
            if changed:
                raise ValueError(
                    f"--resume: {out} holds an evaluation with other {', '.join(changed)} "
                    f"(was {', '.join(repr(before.get(k)) for k in changed)}): rerun with the same "
                    "arguments, or pass --overwrite to start again."
                )
            self.done = {(r["task"], r["episode"]): r for r in _read_lines(self.path)}
        elif self.path.exists():
            self.path.unlink()  # a fresh run (--overwrite already cleared the folder)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_file, definition)

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[(record["task"], record["episode"])] = record


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The records of `path`; a line cut short by an interruption (the last one) is dropped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
