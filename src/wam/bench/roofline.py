"""The machine a benchmark ran on, and its roofline measured on the spot.

    matmul_flops_per_s       best of a few square float32 matmuls (n = 1024 on a CPU, 8192 on CUDA):
                             2 n^3 / seconds
    bf16_matmul_flops_per_s  the same in bfloat16 (CUDA only: CPU bf16 kernels vary too much by CPU)
    bandwidth_bytes_per_s    best of a few device-to-device copies of a large buffer (256 MiB on a
                             CPU, 2 GiB on CUDA): 2 x bytes (read + write) / seconds
Measured with the process's current torch thread count: on a CPU shared with other jobs the
numbers are what this process could get at that moment, which is what a floor should use.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """Device, library versions and threads: the `machine` object of a bench report."""
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 1,
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }


def _best_seconds(fn: Any, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), device, repeats)


def copy_bandwidth(device: torch.device, nbytes: int, repeats: int = 5) -> float:
    src = torch.empty(nbytes // 4, device=device, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * nbytes / _best_seconds(lambda: dst.copy_(src), device, repeats)


def measure_roofline(device: torch.device) -> dict[str, Any]:
    """Peak matmul FLOP/s (float32, and bf16 on CUDA) and copy bandwidth of `device`, measured now."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else 1024
    nbytes = (2 << 30) if cuda else (256 << 20)
    with torch.inference_mode():
        result = {
            "matmul_flops_per_s": matmul_flops_per_s(device, torch.float32, n),
            "bf16_matmul_flops_per_s": matmul_flops_per_s(device, torch.bfloat16, n) if cuda else None,
            "bandwidth_bytes_per_s": copy_bandwidth(device, nbytes),
            "matmul_size": n,
            "copy_bytes": nbytes,
        }
    if cuda:
        torch.cuda.empty_cache()
    return result
