"""Normalisation statistics in LeRobot's layout (`compute_stats.py`).

Every feature gets min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99:
    numeric (T, D) -> each stat (D,), count (1,) = [T]
    video  (T, H, W, 3) uint8 -> each stat (3, 1, 1) per channel in [0, 1], count = [frames sampled]
Images are sampled like LeRobot (`sample_indices`: about T**0.75 frames, at least 100 or all,
frames wider than 300 px strided down to about 150 px).

Differences from LeRobot, by design: quantiles are exact (NumPy's linear interpolation for
numbers, 256-bin counts for uint8 pixels) instead of a 5000-bin running histogram. Dataset-level
stats of numeric features are computed over all frames (so q01/q99 are true dataset quantiles);
image stats are aggregated from the episodes with LeRobot's `aggregate_stats` rule (count-weighted
mean, pooled variance, min of lower / max of upper quantiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)

Stats = dict[str, np.ndarray]


def numeric_stats(values: np.ndarray) -> Stats:
    """Per-dimension stats of a (T, D) or (T,) array (a (T,) array gives (1,)-shaped stats)."""
    x = np.asarray(values, dtype=np.float64).reshape(len(values), -1)  # (T, D)
    stats: Stats = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([len(x)], dtype=np.int64),
    }
    if len(x) < 2:  # LeRobot's rule for a single sample: quantiles are the mean
        quantiles = [stats["mean"].copy() for _ in QUANTILES]
    else:
        quantiles = list(np.quantile(x, QUANTILES, axis=0))  # each (D,)
    stats.update(zip(QUANTILE_KEYS, quantiles, strict=True))
    return stats


def sample_indices(length: int) -> np.ndarray:
    """LeRobot's frame sample for image stats: about length**0.75 frames, at least min(100, length)."""
    num = max(min(100, length), min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, num)).astype(int)


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats of uint8 frames (T, H, W, C), in [0, 1], each shaped (C, 1, 1)."""
    sampled = frames[sample_indices(len(frames))]  # (S, H, W, C)
    height, width = sampled.shape[1:3]
    if max(height, width) >= 300:  # LeRobot's auto_downsample_height_width
        step = int(width / 150) if width > height else int(height / 150)
        sampled = sampled[:, ::step, ::step]
    channels = sampled.shape[-1]
    levels = np.arange(256, dtype=np.float64)
    per_channel: dict[str, list[float]] = {k: [] for k in STAT_KEYS if k != "count"}
    for c in range(channels):
        hist = np.bincount(sampled[..., c].ravel(), minlength=256).astype(np.float64)  # (256,)
        n = hist.sum()
        mean = (hist * levels).sum() / n
        var = max((hist * levels**2).sum() / n - mean**2, 0.0)
        nonzero = np.nonzero(hist)[0]
        per_channel["min"].append(float(nonzero[0]))
        per_channel["max"].append(float(nonzero[-1]))
        per_channel["mean"].append(mean)
        per_channel["std"].append(np.sqrt(var))
        for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
            per_channel[key].append(_hist_quantile(hist, q))
    stats: Stats = {k: np.asarray(v).reshape(channels, 1, 1) / 255.0 for k, v in per_channel.items()}
    stats["count"] = np.array([len(sampled)], dtype=np.int64)
    return {k: stats[k] for k in STAT_KEYS}


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    """Quantile (linear interpolation between order statistics) of integer levels given counts."""
    cumulative = np.cumsum(hist)
    position = q * (cumulative[-1] - 1)
    lower, frac = int(np.floor(position)), position - np.floor(position)
    lo = np.searchsorted(cumulative, lower, side="right")
    hi = np.searchsorted(cumulative, min(lower + 1, cumulative[-1] - 1), side="right")
    return float(lo + frac * (hi - lo))


def aggregate_stats(stats_list: list[dict[str, Stats]]) -> dict[str, Stats]:
    """LeRobot's `aggregate_stats`: combine per-episode stats into dataset stats, key by key."""
    keys: list[str] = []
    for stats in stats_list:
        keys += [k for k in stats if k not in keys]
    return {key: aggregate_feature_stats([s[key] for s in stats_list if key in s]) for key in keys}


def aggregate_feature_stats(stats_list: list[Stats]) -> Stats:
    """Count-weighted mean, pooled variance, min/max, quantile envelope (LeRobot's rule)."""
    means = np.stack([s["mean"] for s in stats_list])  # (E, *shape)
    variances = np.stack([s["std"] ** 2 for s in stats_list])  # (E, *shape)
    counts = np.array([float(np.asarray(s["count"]).sum()) for s in stats_list])  # (E,)
    weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))  # (E, 1, ...)
    mean = (means * weights).sum(axis=0) / counts.sum()
    var = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / counts.sum()
    total = np.array([int(counts.sum())], dtype=np.int64)
    out: Stats = {
        "min": np.min(np.stack([s["min"] for s in stats_list]), axis=0),
        "max": np.max(np.stack([s["max"] for s in stats_list]), axis=0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": total,
    }
    for key in QUANTILE_KEYS:
        if all(key in s for s in stats_list):
            stacked = np.stack([s[key] for s in stats_list])
            out[key] = stacked.min(axis=0) if int(key[1:]) <= 50 else stacked.max(axis=0)
    return out


# ----------------------------------------------------------------------------- (de)serialisation
def stats_to_json(stats: dict[str, Stats]) -> dict[str, dict[str, Any]]:
    """Nested lists (what meta/stats.json and episodes_stats.jsonl hold)."""
    return {key: {k: np.asarray(v).tolist() for k, v in ft.items()} for key, ft in stats.items()}


def stats_from_json(data: dict[str, dict[str, Any]]) -> dict[str, Stats]:
    """Arrays (at least 1-D), as LeRobot's `cast_stats_to_numpy`."""
    return {key: {k: np.atleast_1d(np.asarray(v)) for k, v in ft.items()} for key, ft in data.items()}


def stats_to_columns(stats: dict[str, Stats]) -> dict[str, Any]:
    """Flatten to meta/episodes columns `stats/<feature>/<stat>` (python lists)."""
    return {f"stats/{key}/{k}": np.asarray(v).tolist() for key, ft in stats.items() for k, v in ft.items()}


def stats_from_columns(row: dict[str, Any]) -> dict[str, Stats]:
    """Inverse of `stats_to_columns` for one meta/episodes row (other columns are ignored)."""
    out: dict[str, Stats] = {}
    for column, value in row.items():
        if not column.startswith("stats/") or value is None:
            continue
        key, stat = column[len("stats/") :].rsplit("/", 1)
        out.setdefault(key, {})[stat] = np.atleast_1d(np.asarray(value))
    return out
