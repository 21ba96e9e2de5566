"""Forward latency of one Wan DiT preset at a given latent size; writes a JSON record.

The weights are random (built on the meta device, then materialised with N(0, 0.02^2) values):
latency does not depend on their values. The default shape is Light-WAM's action pass on LIBERO:
one latent frame of two tiled 224x224 cameras (16 x 1 x 28 x 56 latents = 392 tokens) and
512 umT5 text tokens.

    PYTHONPATH=src python benchmarks/wan_forward.py --preset wan2.1-1.3b --device cpu --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from wam.data.fsio import atomic_write_json
from wam.models.wan import WanDiT, count_parameters, get_wan_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="wan2.1-1.3b")
    parser.add_argument("--frames", type=int, default=1, help="latent frames")
    parser.add_argument("--height", type=int, default=28, help="latent height")
    parser.add_argument("--width", type=int, default=56, help="latent width")
    parser.add_argument("--text-len", type=int, default=512, help="text tokens")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def build(preset: str, device: str, dtype: torch.dtype) -> WanDiT:
    """A model with random weights, without running the (slow) original initialisation."""
    model = WanDiT.from_config(preset, device="meta", dtype=dtype).to_empty(device=device)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model.eval()


def measure(model: WanDiT, args: argparse.Namespace) -> list[float]:
    """Seconds per forward pass (after one warm-up pass)."""
    cfg, device = model.cfg, args.device
    x = torch.randn(args.batch, cfg.in_channels, args.frames, args.height, args.width, device=device)
    context = torch.randn(args.batch, args.text_len, cfg.text_dim, device=device)
    timestep = torch.full((args.batch,), 500.0, device=device)
    times = []
    with torch.no_grad():
        for i in range(args.repeats + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x, timestep, context)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i > 0:
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    args = parse_args()
    cfg = get_wan_config(args.preset)
    on_cuda = args.device.startswith("cuda")
    model = build(args.preset, args.device, DTYPES[args.dtype])
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    times = measure(model, args)
    p = cfg.patch_size
    record = {
        "preset": args.preset,
        "parameters": count_parameters(cfg)["total"],
        "latents": [args.batch, cfg.in_channels, args.frames, args.height, args.width],
        "tokens": args.frames // p[0] * (args.height // p[1]) * (args.width // p[2]),
        "text_tokens": args.text_len,
        "dtype": args.dtype,
        "device": torch.cuda.get_device_name() if on_cuda else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "latency_s": {"median": statistics.median(times), "min": min(times), "all": times},
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None,
        "torch": torch.__version__,
    }
    path = args.out / f"wan_forward_{args.preset}_{args.device.split(':')[0]}_{args.dtype}.json"
    atomic_write_json(path, record, indent=2)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
