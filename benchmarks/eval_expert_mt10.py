"""The scripted expert on MT10 (20 held-out episodes per task) and random actions on a few tasks.

The expert's success rate is the upper bound a learned policy is compared against; random
actions give the floor. Writes benchmarks/results/eval_expert_mt10.json and prints both tables.

    PYTHONPATH=src python benchmarks/eval_expert_mt10.py --episodes 20 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path

from wam.data.fsio import atomic_write_json
from wam.envs.evaluator import evaluate
from wam.envs.metaworld_tasks import MT10
from wam.policies.scripted import ExpertPolicy, RandomPolicy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--random-tasks", default="reach-v3,drawer-close-v3,button-press-topdown-v3")
    parser.add_argument("--random-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    expert = evaluate(ExpertPolicy(), tasks=MT10, episodes=args.episodes, workers=args.workers)
    random = evaluate(
        RandomPolicy(seed=0), tasks=args.random_tasks, episodes=args.random_episodes, workers=args.workers
    )
    below = {t: r["success_rate"] for t, r in expert["tasks"].items() if r["success_rate"] < 0.9}
    record = {
        "benchmark": "eval_expert_mt10",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "expert": expert,
        "random": random,
        "expert_tasks_below_90": below,
    }
    path = args.out / "eval_expert_mt10.json"
    atomic_write_json(path, record, indent=2)
    print(f"expert mean {100 * expert['mean_success']:.1f}%, below 90%: {below or 'none'} -> {path}")


if __name__ == "__main__":
    main()
