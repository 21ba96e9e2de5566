"""Run the tiny experiment with `train()`; launched as several processes by test_distributed.py.

accelerate launch --cpu --num_processes 2 tests/training/ddp_worker.py DATA OUT [KEY=VALUE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from training_fixtures import tiny_experiment

from wam.configs import apply_overrides
from wam.training.loop import train

if __name__ == "__main__":
    data, out, *overrides = sys.argv[1:]
    train(apply_overrides(tiny_experiment(), overrides), data, out, progress=False)
