"""Which output folders wam made, and the one rule for replacing them (`--overwrite`).

Every folder a command writes its results into carries a marker, `.wam` (JSON `{"kind": KIND}`):
    run     `wam train`        checkpoints/, config.json, run.json, log.jsonl, loss.png, eval/
    codec   `wam train-codec`  config.json, codec.safetensors, stats.json
    eval    `wam eval`         results.json, videos/, episodes.jsonl, eval_run.json
Folders written before the marker existed are recognised by their layout (a run by checkpoints/ or
config.json + run.json, a codec by its type-tagged config.json, an evaluation by results.json).

`--overwrite` (`replace_output`) deletes only the entries of KIND's layout, and refuses with one line:
  - a folder of another kind, or holding anything wam did not write (a user's notes stay theirs);
  - a folder that equals, contains or lies inside a dataset the command reads (`--data D --out D`);
  - the current or home directory or a folder above one of them, and the filesystem root
    (`protected_reason`, which the dataset writer's `--overwrite` applies too).
`check_output` applies the same protected-path rule to a new or empty folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from wam.data.fsio import is_temp_path

MARKER = ".wam"
RUN_LOCK = ".train.lock"  # held while a run trains (`wam.training.run_dir.training_lock`): never deleted
KEPT = frozenset({MARKER, RUN_LOCK})  # wam's own bookkeeping, kept when a folder is replaced
KINDS = ("run", "codec", "eval")
# the entries each kind of folder may hold (anything else is user content: never deleted)
LAYOUT: dict[str, frozenset[str]] = {
    "run": frozenset({"checkpoints", "config.json", "run.json", "log.jsonl", "loss.png", "eval"}),
    "codec": frozenset({"config.json", "codec.safetensors", "stats.json"}),
    "eval": frozenset({"results.json", "videos", "episodes.jsonl", "eval_run.json", "stamp.json"}),
}
COMMANDS = {"run": "wam train", "codec": "wam train-codec", "eval": "wam eval"}


def mark(folder: str | Path, kind: str) -> None:
    """Create `folder` if needed and write its marker (idempotent)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    if not marker.is_file():
        marker.write_text(json.dumps({"kind": kind}) + "\n")


def kind_of(folder: str | Path) -> str | None:
    """The kind of wam output folder `folder` is (its marker, else its layout), or None."""
    folder = Path(folder)
    try:
        return str(json.loads((folder / MARKER).read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    run_files = (folder / "config.json").is_file() and (folder / "run.json").is_file()
    if (folder / "checkpoints").is_dir() or run_files:
        return "run"
    if (folder / "codec.safetensors").is_file():
        return "codec"
    if (folder / "results.json").is_file():
        return "eval"
    return None


def unknown_entries(folder: Path, kind: str) -> list[str]:
    """Names in `folder` that a `kind` folder does not hold (wam's own temporary files excepted)."""
    allowed = LAYOUT[kind] | KEPT
    return sorted(p.name for p in folder.iterdir() if p.name not in allowed and not is_temp_path(p))


def is_empty_dir(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def protected_reason(folder: Path, inputs: tuple[Path, ...] = ()) -> str | None:
    """Why `folder` must never be written over or emptied, or None.

    Never: the filesystem root, the current or home directory or a folder above one of them, and a
    folder that equals, contains or lies inside one of `inputs` (the dataset a command reads).
    """
    target = folder.resolve()
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no HOME and no passwd entry
        home = Path(target.anchor)
    if target == Path(target.anchor):
        return "it is the filesystem root"
    for special in (Path.cwd().resolve(), home):
        if target == special or target in special.parents:
            return "it is the current or home directory, or a folder above one of them"
    for given in inputs:
        source = Path(given).resolve()
        if target == source:
            return f"it is the dataset folder {given}"
        if target in source.parents:
            return f"it contains the dataset {given}"
        if source in target.parents:
            return f"it is inside the dataset {given}"
    return None


def check_output(folder: str | Path, kind: str, inputs: tuple[str | Path, ...] = ()) -> None:
    """Refuse an output folder that is a file, a protected path, or overlaps a dataset it reads."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"--out {folder} is a file, not a folder: pass a folder path for the {kind}.")
    above = next((p for p in folder.absolute().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise FileExistsError(f"--out {folder} lies under {above}, which is a file: pass a folder path.")
    why = protected_reason(folder, tuple(Path(p) for p in inputs))
    if why:
        raise ValueError(f"Refusing to write the {kind} into {folder}: {why}; pass another --out folder.")


def check_replaceable(folder: str | Path, kind: str, inputs: tuple[str | Path, ...] = ()) -> None:
    """Raise a one-line ValueError unless `replace_output(folder, kind)` may empty `folder`."""
    folder = Path(folder)
    check_output(folder, kind, inputs)
    if not folder.exists() or is_empty_dir(folder):
        return
    found = kind_of(folder)
    what = COMMANDS[kind]
    if found != kind:
        made = f"a {COMMANDS[found]} folder" if found else "not a folder wam made"
        raise ValueError(
            f"--overwrite refused: {folder} is {made}, and only a {what} output is replaced; pass an unused "
            "--out folder (nothing was deleted)."
        )
    extra = unknown_entries(folder, kind)
    if extra:
        shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
        raise ValueError(
            f"--overwrite refused: {folder} holds files {what} did not write ({shown}); move them out or "
            "pass an unused --out folder (nothing was deleted)."
        )


def replace_output(folder: str | Path, kind: str, inputs: tuple[str | Path, ...] = ()) -> None:
    """Empty `folder` for a new `kind` output, deleting only what a `kind` folder holds.

    Raises a one-line ValueError (and deletes nothing) for a protected folder, a folder of another
    kind or one holding anything else (`check_replaceable`).
    """
    folder = Path(folder)
    check_replaceable(folder, kind, inputs)
    if not folder.exists():
        return
    for entry in folder.iterdir():
        if entry.name in KEPT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
