"""`wam bench`: several targets x variants x inference paths measured in one run, one report.

The parent process validates the plan, measures the device roofline once (`roofline.py`), then runs
every entry (`entry.py`) in a fresh Python process by default, one after the other, so that each
memory peak is that entry's alone and entries cannot warm each other's caches; `isolate=False`
runs them in this process (faster; CPU peaks then include what earlier entries left resident).
Entries run in the order given, so ratios (`relative_p50`, against the first entry) come from the
same run on the same machine state. The report follows `schema.py`; `print_report` prints a table.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wam.bench.entry import INPUTS, EntrySpec, run_entry
from wam.bench.schema import SCHEMA_VERSION, validate_report
from wam.policies.fast_path import PRESETS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class BenchConfig:
    """A `wam bench` run: what to measure and how."""

    targets: tuple[str, ...]  # presets or run/checkpoint folders
    variants: tuple[str, ...] = ()  # Fast-WAM variants, each benched per Fast-WAM target (empty: its own)
    inference: tuple[str, ...] = ("default",)  # inference option presets, each benched per target
    options: tuple[str, ...] = ()  # name=value overrides of the inference options (all entries)
    overrides: tuple[str, ...] = ()  # --set key=value on the presets' experiment configs
    device: str = "auto"  # cpu, cuda, or auto (cuda when available)
    batch_size: int = 1  # observations per call
    calls: int = 50  # timed calls per entry
    warmup: int = 5  # untimed calls first
    input: str = "images"  # "images" (codec included) or "latents" (the model alone)
    run: bool = True  # False: FLOPs, weight bytes and floor only (fake, memory-free weights)
    train: bool = False  # also measure training samples/s
    train_steps: int = 5  # timed training steps per entry
    train_batch_size: int | None = None  # None: each preset's train.batch_size
    roofline: bool = True  # measure the device roofline (needed for the floor)
    isolate: bool = True  # one process per entry
    entry_timeout_s: float = 3600.0  # wall-clock limit of one isolated entry (then it is killed, reported)
    seed: int = 0  # weights and synthetic inputs

    def __post_init__(self) -> None:
        self.targets, self.variants = tuple(self.targets), tuple(self.variants)
        self.inference, self.options, self.overrides = (
            tuple(self.inference),
            tuple(self.options),
            tuple(self.overrides),
        )
        if not self.targets:
            raise ValueError("Give at least one preset or run folder, e.g. `wam bench baseline-tiny`.")
        bad = [p for p in self.inference if p not in PRESETS]
        if bad or not self.inference:
            raise ValueError(
                f"--inference {bad[0] if bad else '(none)'} is not valid: use {', '.join(PRESETS)}."
            )
        if self.device not in DEVICES:
            raise ValueError(f"--device {self.device} is not valid: use one of {', '.join(DEVICES)}.")
        if self.input not in INPUTS:
            raise ValueError(f"--input {self.input} is not valid: use one of {', '.join(INPUTS)}.")
        if min(self.batch_size, self.calls, self.train_steps) < 1 or self.warmup < 0:
            raise ValueError("--batch-size, --calls and --train-steps must be >= 1, --warmup >= 0.")
        if not self.entry_timeout_s > 0:
            raise ValueError(f"--timeout must be > 0 seconds, got {self.entry_timeout_s}.")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def plan(cfg: BenchConfig) -> list[EntrySpec]:
    """One EntrySpec per (target, variant, inference preset), checked before anything is measured."""
    from wam.bench.build import resolve_target
    from wam.policies.fast_path import parse_inference_options

    device = cfg.resolved_device()
    for preset in cfg.inference:
        parse_inference_options(preset, cfg.options, device)  # bad option names fail here, once
    common = dict(
        options=cfg.options,
        device=device,
        batch_size=cfg.batch_size,
        calls=cfg.calls,
        warmup=cfg.warmup,
        input=cfg.input,
        run=cfg.run,
        train=cfg.train,
        train_steps=cfg.train_steps,
        train_batch_size=cfg.train_batch_size,
        seed=cfg.seed,
    )
    specs = []
    for target in cfg.targets:
        base = resolve_target(target, None, cfg.overrides)  # a typo or a bad --set fails here
        variants: list[str | None] = [None]
        if cfg.variants and hasattr(base.config.policy, "variant"):
            variants = list(cfg.variants)
            for variant in variants:
                resolve_target(target, variant, cfg.overrides)  # an unknown variant fails here
        for variant in variants:
            for preset in cfg.inference:
                spec = EntrySpec(target, variant, preset, overrides=cfg.overrides, **common)  # type: ignore[arg-type]
                specs.append(spec)
    return specs


def _run_isolated(spec: EntrySpec, timeout_s: float) -> dict[str, Any]:
    """Run one entry in a fresh Python process (killed after `timeout_s`) and read back its result."""
    with tempfile.TemporaryDirectory(prefix="wam-bench-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(dataclasses.asdict(spec)))
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])  # the folder holding the `wam` package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "wam.bench.entry", str(spec_file), str(out_file)]
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:  # subprocess.run kills the child before raising
            error = f"the entry process ran past {timeout_s:g} s and was killed: raise --timeout"
        else:
            if out_file.is_file():
                return json.loads(out_file.read_text())
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()] or ["(no output)"]
            error = f"the entry process exited with code {proc.returncode}: {lines[-1].strip()}"
    from wam.bench.entry import empty_result

    result = empty_result(spec)
    result["error"] = error
    return result


def run_bench(cfg: BenchConfig, progress: Any = None) -> dict[str, Any]:
    """Measure every planned entry; returns the report (see `schema.py`)."""
    import torch

    from wam.bench.roofline import machine_info, measure_roofline

    specs = plan(cfg)
    device = torch.device(specs[0].device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked but torch sees no CUDA device: use --device cpu.")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    roofline = measure_roofline(device) if cfg.roofline else None
    results = []
    for spec in specs:
        spec.roofline = roofline
        if progress is not None:
            progress(spec)
        results.append(_run_isolated(spec, cfg.entry_timeout_s) if cfg.isolate else run_entry(spec))
    first = results[0]["latency"]
    for result in results:
        if first and result["latency"]:
            result["relative_p50"] = result["latency"]["p50_ms"] / first["p50_ms"]
    settings = {
        "calls": cfg.calls,
        "warmup": cfg.warmup,
        "batch_size": cfg.batch_size,
        "train": cfg.train,
        "train_steps": cfg.train_steps,
        "run": cfg.run,
        "input": cfg.input,
        "isolation": "subprocess" if cfg.isolate else "in-process",
    }
    report = {
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "machine": machine_info(device),
        "roofline": roofline,
        "settings": settings,
        "results": results,
    }
    validate_report(report)
    return report


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON atomically (a temporary file renamed)."""
    from wam.data.fsio import atomic_write_json

    path = Path(path)
    atomic_write_json(path, report, indent=2)
    return path
