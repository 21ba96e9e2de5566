"""Checkpoints of a training run, and `load_policy(path)` for evaluation and serving.

Layout of a run folder:
    RUN/config.json                  the experiment config the run started with
    RUN/run.json                     the dataset path (so `--resume` needs no `--data`)
    RUN/checkpoints/step_000123/
        model.safetensors            the policy's weights and buffers (EMA weights when EMA is on)
        config.json                  the type-tagged experiment config, dataset dims resolved
        stats.json                   the normalisation statistics the policy was built with
        training_state/
            state.json               step, samples seen, world size, training seconds (over resumes)
            optimizer.pt             AdamW state: a dict of tensors and numbers (torch.load weights_only)
            model_raw.safetensors    the raw (non-EMA) trainable weights, only when EMA is on
            ema.safetensors          the EMA shadow, only when EMA is on
    RUN/checkpoints/last             text file naming the newest complete checkpoint

Nothing is pickled. The learning rate is a function of the step and the random state of every
step is reseeded from (seed, step, rank) by the loop, so the step number restores both.
A checkpoint is written into a temporary folder and renamed when complete; `last` is replaced
atomically, and only the newest `keep_last` checkpoints are kept. Re-saving a step first sets the old
copy aside (`.old_step_*`); should a crash strike between the two renames, `resolve_checkpoint` finds
the set-aside copy, and the next save clears such leftovers.

A policy may define `checkpoint_state_dict()` / `load_checkpoint_state_dict(sd)` to save only what
cannot be rebuilt (e.g. LoRA and heads, not a frozen pretrained backbone); the defaults are the
full `state_dict()` and a strict `load_state_dict`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wam.configs.base import ExperimentConfig
from wam.configs.registry import policy_class
from wam.configs.serialize import experiment_from_dict, to_dict
from wam.training.optim import EMA

CHECKPOINTS = "checkpoints"
LAST = "last"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def policy_state_dict(policy: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the policy (its hook, else the full state dict)."""
    hook = getattr(policy, "checkpoint_state_dict", None)
    return dict(hook() if callable(hook) else policy.state_dict())


def load_policy_state_dict(policy: nn.Module, state: dict[str, torch.Tensor]) -> None:
    hook = getattr(policy, "load_checkpoint_state_dict", None)
    if callable(hook):
        hook(state)
    else:
        policy.load_state_dict(state, strict=True)


def save_checkpoint(
    run_dir: Path,
    step: int,
    policy: nn.Module,
    cfg: ExperimentConfig,
    stats: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    extra_state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write RUN/checkpoints/step_XXXXXX atomically, point `last` at it, prune old ones."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".tmp_{step_name(step)}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "training_state").mkdir(parents=True)
    raw = _tensors(policy_state_dict(policy))  # copies: state_dict tensors share the parameters' storage
    if ema is not None:
        with ema.applied(policy):
            weights = _tensors(policy_state_dict(policy))
        save_file(
            {k: v for k, v in raw.items() if k in ema.shadow}, tmp / "training_state/model_raw.safetensors"
        )
        save_file(_tensors(ema.state_dict()), tmp / "training_state/ema.safetensors")
    else:
        weights = raw
    save_file(weights, tmp / "model.safetensors", metadata={"format": "pt", "step": str(step)})
    (tmp / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    torch.save(optimizer.state_dict(), tmp / "training_state/optimizer.pt")
    (tmp / "training_state/state.json").write_text(json.dumps({"step": step, **extra_state}, indent=2) + "\n")
    old = root / f".old_{step_name(step)}_{os.getpid()}"
    if final.exists():  # the same step again (e.g. a re-run): move the old copy aside, never delete first
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _write_text(root / LAST, final.name + "\n")
    shutil.rmtree(old, ignore_errors=True)
    prune_checkpoints(root, keep_last)
    return final


def _step_of(folder: Path) -> int:
    return int(folder.name[5:])  # step_000123 -> 123 (numeric: names grow past six digits)


def prune_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` step folders (never the one `last` names), and the
    half-written or set-aside copies other (crashed) processes left behind."""
    last = (root / LAST).read_text().strip() if (root / LAST).exists() else ""
    for stale in [*root.glob(".tmp_step_*"), *root.glob(".old_step_*")]:
        if stale.is_dir() and not stale.name.endswith(f"_{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)
    steps = sorted((p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()), key=_step_of)
    for old in steps[: max(0, len(steps) - keep_last)]:
        if old.name != last:
            shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder of a run folder (via checkpoints/last) or a checkpoint folder itself."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    for root in (path / CHECKPOINTS, path):
        pointer = root / LAST
        if pointer.is_file():
            ckpt = root / pointer.read_text().strip()
            if (ckpt / "model.safetensors").is_file():
                return ckpt
            # a crash while re-saving that step left the previous copy set aside: use it
            aside = sorted(root.glob(f".old_{ckpt.name}_*"), key=lambda p: p.stat().st_mtime)
            aside = [p for p in aside if (p / "model.safetensors").is_file()]
            if aside:
                return aside[-1]
            raise FileNotFoundError(
                f"{pointer} names {ckpt.name}, which is missing: point it at an existing step_*."
            )
    raise FileNotFoundError(
        f"No checkpoint at {path}: give a run folder (with checkpoints/last) or a checkpoint folder "
        "(with model.safetensors)."
    )


def load_config(path: str | Path) -> ExperimentConfig:
    """The experiment config of a checkpoint (or of a run's last checkpoint)."""
    ckpt = resolve_checkpoint(path)
    return experiment_from_dict(json.loads((ckpt / "config.json").read_text()))


def load_training_state(
    ckpt: Path, policy: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA | None
) -> dict[str, Any]:
    """Restore weights, optimiser and EMA from a checkpoint; returns its state.json (with `step`)."""
    state_dir = ckpt / "training_state"
    if not (state_dir / "state.json").is_file():
        raise FileNotFoundError(
            f"{ckpt} holds no training_state: it cannot be resumed (it can be evaluated)."
        )
    device = next(policy.parameters()).device
    load_policy_state_dict(policy, load_file(ckpt / "model.safetensors", device=str(device)))
    raw_file, ema_file = state_dir / "model_raw.safetensors", state_dir / "ema.safetensors"
    if (ema is None) != (not ema_file.is_file()):
        raise ValueError(
            "The checkpoint and the config disagree on EMA: resume with the run's train.ema_decay."
        )
    if ema is not None:
        raw = load_file(raw_file, device=str(device))
        params = dict(policy.named_parameters())
        with torch.no_grad():
            for name, value in raw.items():
                params[name].copy_(value)
        ema.load_state_dict(load_file(ema_file, device=str(device)))
    optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", map_location=device, weights_only=True))
    return json.loads((state_dir / "state.json").read_text())


def is_checkpoint(path: str | Path) -> bool:
    """True for a run folder with a checkpoint or a checkpoint folder (cheap: looks at files only)."""
    path = Path(path)
    return (path / "model.safetensors").is_file() or (path / CHECKPOINTS / LAST).is_file()


def load_policy(path: str | Path, device: str | torch.device | None = None) -> Any:
    """A trained policy in eval mode, ready for `predict_action_chunk`, from a run or checkpoint folder.

    `device` defaults to CUDA when available, else the CPU.
    """
    ckpt = resolve_checkpoint(path)
    cfg = load_config(ckpt)
    policy = policy_class(cfg.policy)(cfg.policy, stats=None)
    load_policy_state_dict(policy, load_file(ckpt / "model.safetensors"))
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return policy.to(device).eval()
