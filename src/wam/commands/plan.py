"""`wam plan PRESET`: will this preset train on these GPUs? Per-GPU memory before anything is allocated.

    wam plan fastwam-libero --gpus 8 --gpu-mem 80 --strategy fsdp --checkpointing
prints weights, gradients, AdamW states, FSDP's gathered buffers and activations per GPU (GiB), the
peak, whether it fits, and what to change if it does not (`wam.training.planner`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_command(
        preset: Annotated[str, typer.Argument(help="A policy preset, e.g. fastwam-libero (see `wam info`).")],
        gpus: Annotated[int, typer.Option(help="Data-parallel GPUs.")] = 1,
        gpu_mem: Annotated[float, typer.Option(help="Memory of one GPU in GB (GiB).")] = 80.0,
        batch_size: Annotated[
            int | None,
            typer.Option(help="Micro-batch per GPU (default: the recipe's, else the global batch / GPUs)."),
        ] = None,
        strategy: Annotated[str, typer.Option(help="ddp or fsdp.")] = "fsdp",
        checkpointing: Annotated[
            bool, typer.Option("--checkpointing", help="Activation checkpointing per block.")
        ] = False,
        offload: Annotated[
            bool, typer.Option("--offload", help="fsdp: CPU offload of sharded states.")
        ] = False,
        lora: Annotated[
            bool, typer.Option("--lora", help="Fast-WAM: frozen bf16 video stream + LoRA, trainable expert.")
        ] = False,
        overrides: Annotated[
            list[str] | None,
            typer.Option("--set", help="Change the preset as `wam train` does (repeatable)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Per-GPU memory of training PRESET (weights, gradients, optimizer, activations) and the verdict."""
        from wam.training.planner import PlanRequest, plan

        request = PlanRequest(
            preset,
            gpus,
            gpu_mem,
            batch_size,
            strategy,
            checkpointing,
            offload,
            lora,
            precision="bf16",
            overrides=tuple(overrides or ()),
        )
        result = plan(request)
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        typer.echo(describe(result))


def describe(result: dict) -> str:
    """The plan as a few lines of text."""
    req = result["request"]
    flags = [req["strategy"]] + [k for k in ("checkpointing", "offload") if req[k]]
    flags += ["lora"] if result.get("lora") else []  # --lora, or a preset with policy.video_lora
    lines = [
        f"{result['preset']}: {result['params_total'] / 1e9:.2f}B parameters "
        f"({result['params_trainable'] / 1e9:.2f}B trainable), {req['gpus']} x {req['gpu_mem_gib']:g} GB, "
        f"micro-batch {result['micro_batch']} per GPU x {result['accumulation']} accumulated, "
        f"{' + '.join(flags)}",
    ]
    for part, gib in result["per_gpu_gib"].items():
        lines.append(f"  {part:<12} {gib:8.2f} GB")
    lines.append(f"  {'peak':<12} {result['peak_gib']:8.2f} GB per GPU")
    if result["cpu_offloaded_gib"]:
        lines.append(f"  {'CPU memory':<12} {result['cpu_offloaded_gib']:8.2f} GB per GPU (offloaded)")
    lines.append("fits" if result["fits"] else "does NOT fit; change:")
    lines += [f"  - {tip}" for tip in result["advice"]]
    return "\n".join(lines)
