"""The one step-based training loop every policy uses (built on `accelerate`).

`train(cfg, data, out)` runs `cfg.train.steps` optimiser steps of `policy.forward(batch) ->
(loss, metrics)` for any registered policy. One process by default; N processes give data
parallelism: `torchrun --nproc_per_node N -m wam train ...` on CPUs (gloo; note that
`accelerate launch --cpu` starts a single process) or `accelerate launch --multi_gpu
--num_processes N -m wam train ...` on GPUs (NCCL). `train.strategy` picks how (`strategy.py`):
replicated weights (ddp) or FSDP2 shards per transformer block (fsdp); the loop is the same.

One optimiser step (`train_step`):
    lr <- lr_at(step)                 warmup + cosine, a function of the step only
    for each of grad_accum micro-batches:
        seed <- f(seed, step, j)      noise, dropout...: j = the micro-batch's index in the global
                                      batch, so any split over processes and accumulation draws the
                                      same noise for the same samples, and a resume is exact
        loss, metrics = model(batch); backward(loss / accum)
                                      (gradients are all-reduced on the last micro-batch only)
    clip the global grad norm; AdamW step; EMA update
Batches: every process reads its own micro-batches of the step's global batch (see
`wam.training.data.StepBatchSampler`), so `batch_size` is the total per step. At the start
`TrainConfig.batch_plan` splits it over the processes (with `micro_batch_size` set, the
accumulation is derived, so a recipe keeps its global batch on fewer devices), prints the split
in one line and refuses a global batch that does not divide.
Precision: bf16 autocast (float32 weights) when `mixed_precision="bf16"` and CUDA is present;
with fsdp, bf16 parameters and float32 reductions besides (`fsdp.py`). A policy with frozen weights
it can keep in bf16 (Fast-WAM's `video_lora`: `cast_frozen`) has them cast then, before wrapping.
Around the steps: log.jsonl / loss.png / progress bar every `log_every` steps (and the
`train.tracker`, `tracking.py`), checkpoints every `save_every` steps and at the end, closed-loop
evaluation every `eval_every` steps (Meta-World).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wam.configs.base import ExperimentConfig, TrainConfig
from wam.configs.registry import policy_class
from wam.configs.serialize import to_dict
from wam.data.fsio import read_json
from wam.policies.normalize import select_stats
from wam.training import checkpoint as ckpt_io
from wam.training import tracking
from wam.training.data import (
    StepBatchSampler,
    check_finite,
    inspect_dataset,
    make_loader,
    open_dataset,
    to_device,
)
from wam.training.monitor import Progress, RunLog, plot_losses
from wam.training.optim import EMA, build_optimizer, lr_at, set_lr
from wam.training.strategy import Strategy, make_strategy, with_activation_checkpointing


@dataclass
class TrainState:
    """Everything one optimiser step reads and updates."""

    policy: nn.Module  # the unwrapped policy (its weights, buffers and config)
    model: nn.Module  # the module called: the policy DDP-wrapped (several processes) or FSDP-sharded
    optimizer: torch.optim.Optimizer  # AdamW over the policy's trainable parameters
    ema: EMA | None  # EMA of the trainable weights, or None
    step: int = 0  # optimiser steps completed
    train_s: float = 0.0  # wall seconds in data + steps (not logs, plots, saves, evals), over resumes


def make_accelerator(cfg: TrainConfig, out: Path | None = None) -> Any:
    """An Accelerator: CPU (with `cpu_threads` torch threads) or CUDA, bf16 autocast only on CUDA;
    with `train.tracker` (and a run folder `out`), its tracker."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from wam.training.tracking import accelerator_kwargs

    cuda = torch.cuda.is_available()
    if not cuda and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    precision = cfg.mixed_precision if cuda else "no"  # CPU bf16 autocast is slow and unvalidated here
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    tracking = accelerator_kwargs(cfg.tracker, out) if out is not None else {}
    return Accelerator(cpu=not cuda, mixed_precision=precision, kwargs_handlers=[ddp], **tracking)


def resolve_batch(tc: TrainConfig, processes: int, announce: bool = True) -> TrainConfig:
    """`tc` with `grad_accum` set to the accumulation that gives the global batch on `processes`.

    Prints the split (`global batch 128 = 16 per device x 2 processes x 4 accumulation steps`) on
    stderr when `announce`; a global batch that does not divide raises a one-line ValueError. The
    saved config keeps the user's settings, so a resume on another process count re-derives it.
    """
    plan = tc.batch_plan(processes)
    if announce:
        print(plan.describe(), file=sys.stderr)
    return dataclasses.replace(tc, grad_accum=plan.accumulation, micro_batch_size=None)


def _step_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step * 9_176 + micro * 7_919) % (2**63 - 1)


def train_step(
    state: TrainState,
    micro_batches: list[dict[str, Any]],
    cfg: TrainConfig,
    accelerator: Any,
    strategy: Strategy | None = None,
) -> dict:
    """One optimiser step over `micro_batches` (this process's share); returns float metrics."""
    strategy = strategy or Strategy(cfg, accelerator)
    state.model.train()
    set_lr(state.optimizer, lr_at(state.step, cfg))
    totals: dict[str, float] = {}
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        index = i * accelerator.num_processes + accelerator.process_index  # as StepBatchSampler splits
        torch.manual_seed(_step_seed(cfg.seed, state.step, index))
        with nullcontext() if last else strategy.no_sync(state.model), accelerator.autocast():
            loss, metrics = state.model(batch)
            if not torch.isfinite(loss):
                raise ValueError(
                    f"The loss is {loss.item()} at step {state.step + 1}: lower train.lr or check the data."
                )
            accelerator.backward(loss / len(micro_batches))
        for key, value in {"loss": loss.item(), **metrics}.items():
            totals[key] = totals.get(key, 0.0) + float(value) / len(micro_batches)
    grad_norm = strategy.clip_grad_norm([p for p in state.policy.parameters() if p.requires_grad])
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    if state.ema is not None:
        state.ema.update(state.policy)
    state.step += 1
    return {**totals, "lr": state.optimizer.param_groups[0]["lr"], "grad_norm": float(grad_norm)}


def _prepare_run_dir(
    out: Path, data: str | Path, resume: bool, overwrite: bool, accelerator: Any, held: ExitStack
) -> None:
    """Check `out` (see `wam.training.run_dir`) on every process; the main one takes its training lock
    (held in `held` until training ends), then clears and marks it."""
    from wam.outputs import mark
    from wam.training.run_dir import plan_run_dir, prepare_run_dir, training_lock

    action = plan_run_dir(out, data, resume, overwrite)  # one-line errors on every process alike
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if action == "new":
            mark(out, "run")  # the lock lives inside the folder
        held.enter_context(training_lock(out))  # before anything in `out` is cleared
        prepare_run_dir(out, data, resume, overwrite)
        if action == "restart":
            print(
                f"warning: {out} holds no checkpoint (a failed start): starting it afresh.", file=sys.stderr
            )
        mark(out, "run")
    accelerator.wait_for_everyone()


def _build(cfg: ExperimentConfig, dataset: Any, strategy: Strategy) -> tuple[TrainState, dict]:
    """Policy (with the dataset's statistics), wrapped by the strategy, then optimiser and EMA;
    seeded, so identical on all ranks."""
    stats = select_stats(dataset.meta.stats, list(dataset.meta.stats))
    torch.manual_seed(cfg.train.seed)
    policy = policy_class(cfg.policy)(cfg.policy, stats=stats)
    cast_frozen = getattr(policy, "cast_frozen", None)  # Fast-WAM video_lora: its frozen video stream
    if callable(cast_frozen) and torch.cuda.is_available() and cfg.train.mixed_precision == "bf16":
        cast_frozen(torch.bfloat16)  # half the frozen weights' memory; bf16 autocast computes in bf16 anyway
    model = strategy.wrap(policy)
    policy = strategy.accelerator.unwrap_model(model)
    optimizer = build_optimizer(policy, cfg.train)
    ema = EMA(policy, cfg.train.ema_decay) if cfg.train.ema_decay else None
    return TrainState(policy=policy, model=model, optimizer=optimizer, ema=ema), stats


def _reduce_means(sums: dict[str, float], count: int, accelerator: Any) -> dict[str, float]:
    keys = sorted(sums)
    local = torch.tensor(
        [sums[k] / max(count, 1) for k in keys], dtype=torch.float64, device=accelerator.device
    )
    return dict(zip(keys, accelerator.reduce(local, reduction="mean").tolist(), strict=True))


class _Window:
    """Metric sums and timing of the steps since the last log line (eval and save time excluded)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps, self.data_s, self.paused_s = 0, 0.0, 0.0
        self.t0 = time.perf_counter()

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1

    def record(self, step: int, batch_size: int, num_samples: int, accelerator: Any) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.t0 - self.paused_s, 1e-9)
        return {
            "step": step,
            **_reduce_means(self.sums, self.steps, accelerator),
            "samples_per_s": batch_size * self.steps / elapsed,
            "data_time_frac": min(1.0, self.data_s / elapsed),
            "epoch": step * batch_size / num_samples,
            "time": time.time(),
        }


def _start_run(
    cfg: ExperimentConfig,
    data: str | Path,
    out: Path,
    resume: bool,
    overwrite: bool,
    strategy: Strategy,
    held: ExitStack,
) -> tuple[ExperimentConfig, TrainState, dict, Any, RunLog]:
    """Run folder, dataset, policy and optimiser, restored from the last checkpoint when resuming."""
    accelerator = strategy.accelerator
    inspect_dataset(cfg.policy, data, cfg.name)  # a dataset the policy cannot read fails before any work
    _prepare_run_dir(out, data, resume, overwrite, accelerator, held)
    with accelerator.main_process_first():  # a missing latent cache is built once, by the main process
        dataset, policy_cfg = open_dataset(cfg.policy, data, cfg.train.episodes)
    cfg = with_activation_checkpointing(ExperimentConfig(policy=policy_cfg, train=cfg.train, name=cfg.name))
    state, stats = _build(cfg, dataset, strategy)
    log = RunLog(out / "log.jsonl")
    if resume:
        ckpt = ckpt_io.resume_checkpoint(out)
        restored = strategy.load(ckpt, state)
        state.step, state.train_s = int(restored["step"]), float(restored.get("train_s", 0.0))
        stats = read_json(ckpt / "stats.json")
    if accelerator.is_main_process:
        if resume:
            log.truncate_after(state.step)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        (out / "run.json").write_text(json.dumps({"data": str(Path(data).resolve())}, indent=2) + "\n")
    return cfg, state, stats, dataset, log


def train(
    cfg: ExperimentConfig,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `cfg` on the dataset at `data` into the run folder `out`; returns a summary dict.

    `resume` continues from `out`'s last checkpoint (exactly: same batches, same random state).
    `stop_after` ends the run early at that step with a checkpoint, as an interruption would; the
    schedule still spans `cfg.train.steps`.
    """
    with ExitStack() as held:  # the run folder's training lock, released when training ends
        return _train(cfg, data, Path(out), resume, overwrite, stop_after, progress, held)


def _train(
    cfg: ExperimentConfig,
    data: str | Path,
    out: Path,
    resume: bool,
    overwrite: bool,
    stop_after: int | None,
    progress: bool,
    held: ExitStack,
) -> dict[str, Any]:
    from wam.training.evaluation import PeriodicEval

    accelerator = make_accelerator(cfg.train, out)
    tc = resolve_batch(cfg.train, accelerator.num_processes, accelerator.is_main_process)
    strategy = make_strategy(tc, accelerator)
    cfg, state, stats, dataset, log = _start_run(cfg, data, out, resume, overwrite, strategy, held)
    main = accelerator.is_main_process
    tracking.start(accelerator, tc.tracker, cfg.name, to_dict(cfg), out)
    end = min(tc.steps, stop_after or tc.steps)
    sampler = StepBatchSampler(
        len(dataset), tc, accelerator.process_index, accelerator.num_processes, state.step
    )
    batches = iter(make_loader(dataset, sampler, tc.num_workers))
    evaluator = PeriodicEval(cfg, dataset.meta, out) if main and tc.eval_every else None
    bar = Progress(total=tc.steps, initial=state.step, enabled=main and progress)
    window, last = _Window(), next((r for r in reversed(log.records()) if "loss" in r), {})
    while state.step < end:
        t_data = t_step = time.perf_counter()
        micro = [next(batches) for _ in range(tc.grad_accum)]
        window.data_s += time.perf_counter() - t_data
        for batch in micro:
            check_finite(batch, state.step + 1)  # on the CPU copy: no device sync
        micro = [to_device(batch, accelerator.device) for batch in micro]
        window.add(train_step(state, micro, tc, accelerator, strategy))
        state.train_s += time.perf_counter() - t_step  # data + step; logging, plots, saves excluded
        step = state.step
        if step % tc.log_every == 0 or step == end:
            last = window.record(step, tc.batch_size, len(dataset), accelerator)
            tracking.log(accelerator, tc.tracker, last)
            if main:
                log.append(last)
                if tc.plot:
                    plot_losses(log.records(), out / "loss.png")
            bar.update(last["loss"], last["samples_per_s"])
            window = _Window()
        else:
            bar.update()
        t_pause = time.perf_counter()
        if step % tc.save_every == 0 or step == end:
            extra = {
                "samples_seen": step * tc.batch_size,
                "world_size": accelerator.num_processes,
                "train_s": round(state.train_s, 3),
            }
            strategy.save(out, step, state, cfg, stats, extra, final=step == tc.steps)
        if tc.eval_every and (step % tc.eval_every == 0 or step == tc.steps):
            results = evaluator.run(state.policy, state.ema, step) if evaluator is not None else {}
            if results:
                log.append({"step": step, **results})
                bar.write(f"step {step}: closed-loop success {results['eval/success']:.3f}")
            accelerator.wait_for_everyone()
        window.paused_s += time.perf_counter() - t_pause
    bar.close()
    tracking.finish(accelerator, tc.tracker)
    accelerator.wait_for_everyone()
    return {"run": str(out), "step": state.step, "loss": last.get("loss", math.nan), "config": to_dict(cfg)}
