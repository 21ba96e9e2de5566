"""The JSON report of `wam bench`: its schema, documented field by field, and a validator.

    {
      "schema_version": 1,
      "created": "2026-01-01T12:00:00+00:00",           ISO time the run started
      "machine": {                                        where it ran
        "device": "cpu" | "cuda", "device_name": str,     e.g. "AMD EPYC" or "NVIDIA H100 80GB HBM3"
        "torch": str, "python": str, "platform": str,
        "cpu_count": int, "threads": int,                 torch intra-op threads of the parent process
        "cuda": str | null                                CUDA version torch was built with
      },
      "roofline": {                                       measured on the spot (bench/roofline.py)
        "matmul_flops_per_s": float,                      float32 square matmul
        "bf16_matmul_flops_per_s": float | null,          bfloat16 square matmul (CUDA only)
        "bandwidth_bytes_per_s": float,                   device-to-device copy, read + write bytes
        "matmul_size": int, "copy_bytes": int
      } | null,                                           null when --no-roofline
      "settings": {"calls", "warmup", "batch_size", "train", "train_steps", "run", "input", "isolation"},
      "results": [ one object per (target, variant, inference path):
        "name": str,                                      display name, e.g. "fastwam-tiny[idm]/fast"
        "target": str, "source": "preset" | "checkpoint", "variant": str | null,
        "inference": "default" | "plain" | "fast",        the preset of the inference options
        "options": {...},                                 InferenceOptions as a dict (wam.policies.fast_path)
        "assumed": {...},                                 what a preset needed and a dataset would set
        "policy": {"type", "params", "weight_bytes", "dtype", "chunk_size", "action_dim", "state_dim",
                   "cameras", "image_size"},
        "flops": int | null,                              FLOPs of one chunk (matmul, conv, attention)
        "flops_by_op": {op: int},
        "weight_bytes_used": int | null,                  bytes of the distinct parameters one chunk reads
        "weight_bytes_read": int | null,                  parameter bytes summed over every op reading them
        "codec_in_flops": bool,                           true when the counted call includes the codec
        "floor": {"compute_s", "memory_s", "floor_s", "bound": "compute" | "memory"} | null,
        "latency": {"calls", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"} | null,
        "floor_ratio": float | null,                      p50 latency / floor
        "relative_p50": float | null,                     p50 latency / the first result's p50
        "memory": {"kind": "cuda_max_allocated" | "rss_hwm", "baseline_bytes", "inference_peak_bytes",
                   "inference_delta_bytes", "train_peak_bytes"} | null,
        "train": {"batch_size", "steps", "samples_per_s", "step_ms_p50"} | null,
        "seconds": float,                                 wall time of the whole entry
        "error": str | null                               one line when the entry failed
      ]
    }
Memory "rss_hwm" is the process's resident-set high-water mark (Linux VmHWM, reset before each phase
through /proc/self/clear_refs; resource.getrusage's peak where that is unavailable); "baseline_bytes"
is the resident set before the policy was built (Python, torch and the libraries), and
"inference_delta_bytes" the inference peak minus that baseline. Each result runs in its own
process unless `--in-process`, so peaks do not mix.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1

TOP_LEVEL = {
    "schema_version": int,
    "created": str,
    "machine": dict,
    "roofline": (dict, type(None)),
    "settings": dict,
    "results": list,
}
MACHINE = {
    "device": str,
    "device_name": str,
    "torch": str,
    "python": str,
    "platform": str,
    "cpu_count": int,
    "threads": int,
}
NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
OPTIONAL_DICT = (dict, type(None))
RESULT = {
    "name": str,
    "target": str,
    "source": str,
    "variant": (str, type(None)),
    "inference": str,
    "options": dict,
    "assumed": dict,
    "policy": OPTIONAL_DICT,
    "flops": (int, type(None)),
    "flops_by_op": dict,
    "weight_bytes_used": (int, type(None)),
    "weight_bytes_read": (int, type(None)),
    "codec_in_flops": bool,
    "floor": OPTIONAL_DICT,
    "latency": OPTIONAL_DICT,
    "floor_ratio": OPTIONAL_NUMBER,
    "relative_p50": OPTIONAL_NUMBER,
    "memory": OPTIONAL_DICT,
    "train": OPTIONAL_DICT,
    "seconds": NUMBER,
    "error": (str, type(None)),
}
LATENCY = {"calls": int, "p50_ms": NUMBER, "p90_ms": NUMBER, "p99_ms": NUMBER, "mean_ms": NUMBER}
FLOOR = {"compute_s": NUMBER, "memory_s": NUMBER, "floor_s": NUMBER, "bound": str}
MEMORY = {"kind": str, "baseline_bytes": (int, type(None)), "inference_peak_bytes": int}
TRAIN = {"batch_size": int, "steps": int, "samples_per_s": NUMBER, "step_ms_p50": NUMBER}


def _check(obj: Any, fields: dict[str, Any], where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object, got {type(obj).__name__}.")
    for key, kind in fields.items():
        if key not in obj:
            raise ValueError(f"{where} lacks '{key}': the report does not follow schema {SCHEMA_VERSION}.")
        value = obj[key]
        if isinstance(value, bool) and kind in (int, NUMBER, OPTIONAL_NUMBER):
            raise ValueError(f"{where}.{key} is a boolean, expected a number.")
        if not isinstance(value, kind):
            raise ValueError(f"{where}.{key} has type {type(value).__name__}, expected {kind}.")


def validate_report(report: Any) -> None:
    """Raise ValueError naming the first field that does not follow the schema above."""
    _check(report, TOP_LEVEL, "report")
    if report["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version is {report['schema_version']}, this reader knows {SCHEMA_VERSION}.")
    _check(report["machine"], MACHINE, "machine")
    for i, result in enumerate(report["results"]):
        where = f"results[{i}]"
        _check(result, RESULT, where)
        for key, fields in (("latency", LATENCY), ("floor", FLOOR), ("memory", MEMORY), ("train", TRAIN)):
            if result[key] is not None:
                _check(result[key], fields, f"{where}.{key}")
        if result["error"] is None and result["flops"] is None:
            raise ValueError(f"{where} has neither FLOPs nor an error.")
