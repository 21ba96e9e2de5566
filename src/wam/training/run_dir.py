"""What `wam train` may do with its run folder (`--out`), decided before any work starts.

    new        --out does not exist or is empty
    restart    --out is a run folder a failed start left behind (no checkpoint): started afresh,
               no --overwrite needed
    overwrite  --overwrite on a run folder wam made (see `wam.outputs.replace_output`)
    resume     --resume: continue from the newest intact checkpoint

Anything else is a one-line refusal: an existing run without --resume/--overwrite, an output that
equals, contains or lies inside the training dataset, a protected or foreign folder.
While a run trains, its folder's `.train.lock` is held (`training_lock`, an OS file lock that dies
with the process): a second training of the same folder, e.g. a `--resume` or `--overwrite` while
the first still runs, is refused before it touches anything.
Importing this module is light (no torch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from wam.outputs import RUN_LOCK, check_output, check_replaceable, is_empty_dir, kind_of, replace_output


def has_checkpoint(out: Path) -> bool:
    """True when the run folder holds a checkpoint (a `last` pointer or a step_* folder)."""
    root = out / "checkpoints"
    return (root / "last").is_file() or any(p.is_dir() for p in root.glob("step_*"))


def plan_run_dir(out: Path, data: str | Path | None, resume: bool, overwrite: bool) -> str:
    """'new', 'restart', 'overwrite' or 'resume' for `--out`; raises a one-line error otherwise."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pass one of them.")
    check_output(out, "run", (data,) if data is not None else ())
    if resume:
        if not out.is_dir():
            raise FileNotFoundError(
                f"Nothing to resume at {out}: the folder does not exist; start a run with --preset, --data."
            )
        if kind_of(out) == "run" and not has_checkpoint(out):
            raise FileNotFoundError(
                f"{out} has no checkpoint yet (its first start failed): drop --resume to start it afresh."
            )
        return "resume"
    if not out.exists() or is_empty_dir(out):
        return "new"
    inputs = (data,) if data is not None else ()
    if kind_of(out) == "run" and not has_checkpoint(out):
        check_replaceable(out, "run", inputs)
        return "restart"
    if overwrite:
        check_replaceable(out, "run", inputs)
        return "overwrite"
    if kind_of(out) == "run":
        raise FileExistsError(f"The run folder {out} exists: pass --resume to continue it or --overwrite.")
    raise FileExistsError(
        f"{out} exists and is not a `wam train` run folder: pass a new --out folder (wam does not write "
        "into or delete other folders)."
    )


def prepare_run_dir(out: Path, data: str | Path | None, resume: bool, overwrite: bool) -> str:
    """Apply `plan_run_dir`: clear a restarted or overwritten run (only what wam wrote there)."""
    action = plan_run_dir(out, data, resume, overwrite)
    if action in ("restart", "overwrite"):
        replace_output(out, "run", (data,) if data is not None else ())
    return action


@contextlib.contextmanager
def training_lock(out: Path) -> Iterator[None]:
    """Hold `out`'s training lock for the block; raises a one-line FileExistsError if another holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / RUN_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise FileExistsError(
            f"Another process is training into {out} (it holds {RUN_LOCK}): wait for it to finish or stop "
            "it; a run folder takes one training at a time."
        ) from None
    try:
        yield
    finally:
        lock.release()
