"""FSDP2 with bf16 parameters and activation checkpointing: the recompute sees what the forward saw.

On an H200 (torch 2.11), one FSDP training step of either paper preset with per-block
checkpointing failed with "CheckpointError: Recomputed values ... have different metadata": FSDP
cast each unit's float32 inputs (the Wan modulation `t_mod`, the RoPE tables) to bf16 in the forward,
but torch 2.11 and older skip that cast while a unit recomputes in backward. `fsdp_ckpt_worker.py` replays
that torch behaviour on a CPU; with FSDP's input cast (the old setting) the step fails as on the GPU,
with `wam.training.fsdp.mixed_precision_policy` (inputs left to autocast) it passes.
Each run is a subprocess, so no process group leaks into the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fsdp_ckpt_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fastwam-tiny", "lightwam-tiny"])
def test_bf16_fsdp_step_with_activation_checkpointing(preset: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, str(WORKER), preset], capture_output=True, text=True, env=env, timeout=300
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == 2, result.stdout + result.stderr[-2000:]
    assert lines[0].startswith("old CheckpointError: torch.utils.checkpoint: Recomputed values"), lines[0]
    assert lines[1].startswith("new ok loss="), lines[1]
