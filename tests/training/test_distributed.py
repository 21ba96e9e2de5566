"""Data parallelism: 2 CPU processes (gloo, launched with torchrun) train like 1 process.

On CPUs `accelerate launch --cpu --num_processes 2` starts ONE process (its CPU path needs MPI);
torchrun sets RANK/WORLD_SIZE and `Accelerator(cpu=True)` then runs multi-CPU DDP over gloo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from training_fixtures import tiny_experiment

from wam.configs import apply_overrides
from wam.training.loop import train

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(tiny_dataset: Path, tmp_path: Path) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [*launch, str(WORKER), str(tiny_dataset), str(tmp_path / "ddp"), "policy.random_shift=0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single_cfg = apply_overrides(tiny_experiment(), ["policy.random_shift=0"])  # no per-rank random draws
    train(single_cfg, tiny_dataset, tmp_path / "single", progress=False)
    ddp, single = _records(tmp_path / "ddp"), _records(tmp_path / "single")
    assert [r["step"] for r in ddp] == [1, 2, 3, 4]
    for a, b in zip(ddp, single, strict=True):
        # the same global batches: each process computes half, DDP averages the gradients
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    state = json.loads((tmp_path / "ddp/checkpoints/step_000004/training_state/state.json").read_text())
    assert state["world_size"] == 2
