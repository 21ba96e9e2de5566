"""What a training run reports while it runs: `RUN/log.jsonl`, `RUN/loss.png` and a progress bar.

- `RunLog` appends one JSON object per logged step (step, loss, per-term metrics, lr, grad_norm,
  samples_per_s, data_time_frac, ...) and flushes it, so a crash loses nothing already logged.
  On resume the records after the checkpoint's step are dropped (they will be recomputed).
- `plot_losses` redraws the loss curves (every numeric metric whose name contains "loss", log
  scale) and the learning rate into a PNG, written to a temporary file and renamed.
- `Progress` is a tqdm bar (main process only) showing the loss and samples/s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunLog:
    """Append-only JSONL log of a run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        """Every record logged so far (an unfinished last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after `step` (atomically), e.g. when resuming from a checkpoint."""
        kept = [r for r in self.records() if int(r.get("step", 0)) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)


def plot_losses(records: list[dict[str, Any]], path: Path) -> None:
    """Loss curves (log scale) and the learning rate against the step, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    if not train:
        return
    steps = [r["step"] for r in train]
    keys = sorted({k for r in train for k, v in r.items() if "loss" in k and isinstance(v, (int, float))})
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(3, 1))
    for key in keys:
        xs = [s for s, r in zip(steps, train, strict=True) if key in r]
        ys = [r[key] for r in train if key in r]
        if any(y > 0 for y in ys):
            ax_loss.plot(xs, ys, label=key, linewidth=1.2)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    ax_lr.plot(steps, [r.get("lr", 0.0) for r in train], color="tab:gray")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


class Progress:
    """A tqdm progress bar over optimiser steps, shown on the main process only."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)

    def update(self, loss: float | None = None, samples_per_s: float | None = None) -> None:
        if self._bar is None:
            return
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_s or 0:.0f}", refresh=False)
        self._bar.update(1)

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
