"""Latency, memory and throughput measurement of policies: what `wam bench` runs.

    build.py      a preset with random weights (or a trained run) and synthetic observations/batches
    counting.py   FLOPs and weight traffic of one call (aten-level dispatch modes; works on fake weights)
    roofline.py   the machine and its measured peak matmul FLOP/s and memory bandwidth
    measure.py    latency percentiles, peak memory (CUDA allocated / resident set), training samples/s
    entry.py      one entry (target x variant x inference path), in this or a fresh process
    runner.py     the whole run: plan, roofline, entries, the report
    schema.py     the JSON report's schema (documented) and its validator

The inference paths themselves (plain, default, fast) live in `wam.policies.fast_path`.
Importing this package is light; the modules import torch.
"""
