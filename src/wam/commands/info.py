"""`wam info NAME [--json]`: parameter counts of a preset (policy or backbone), without allocating weights.

For a recipe preset (the authors' training runs, `wam.configs.recipes`) it first shows the recipe:
its source files and commit, global batch, steps, schedule, optimiser, normalisation, cameras and
tiling, chunk and replanning; `--json` adds it under "recipe".
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        name: str = typer.Argument(
            ..., help="A preset: a policy (e.g. baseline-tiny) or a backbone (e.g. wan2.1-1.3b)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        settings: bool = typer.Option(False, "--settings", help="Also list every `--set` key and its value."),
        action_dim: int = typer.Option(
            4, help="Action dimension assumed for a policy (the dataset sets it)."
        ),
        state_dim: int = typer.Option(4, help="State dimension assumed for a policy (the dataset sets it)."),
        image_size: int = typer.Option(96, help="Image size assumed when the preset takes the dataset's."),
        num_tasks: int = typer.Option(10, help="Instructions assumed for a learned text encoder."),
        overrides: Annotated[
            list[str] | None, typer.Option("--set", help="Change the policy preset as `wam train` does.")
        ] = None,
    ) -> None:
        """Parameter counts (total, trainable, per module) of a preset, built on the meta device;
        for a recipe preset, the authors' recipe it reproduces (source, batch, schedule, ...)."""
        from wam.configs.recipes import describe_recipe
        from wam.configs.registry import get_entry
        from wam.training.params import preset_parameters

        recipe = describe_recipe(name) if get_entry(name).recipe is not None else None
        result = preset_parameters(
            name,
            action_dim=action_dim,
            state_dim=state_dim,
            image_size=image_size,
            num_tasks=num_tasks,
            overrides=tuple(overrides or ()),
        )
        if recipe is not None:
            result["recipe"] = recipe
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            if recipe is not None:
                print_recipe(recipe)
            print_table(result)
            if settings and result["kind"] == "policy":
                print_settings(name)


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def print_table(result: dict) -> None:
    """A rich table: one row per top-level module, then the totals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['name']} ({result['kind']})")
    for column in ("module", "parameters", "trainable"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for module, row in result["modules"].items():
        table.add_row(module, f"{row['total']:,}", f"{row['trainable']:,}")
    table.add_row(
        "[bold]total",
        f"[bold]{result['params_total']:,} ({_human(result['params_total'])})",
        f"[bold]{result['params_trainable']:,} ({_human(result['params_trainable'])})",
    )
    console = Console()
    console.print(table)
    if result["assumed"]:
        assumed = ", ".join(f"{k}={v}" for k, v in result["assumed"].items())
        console.print(f"assumed (set by the dataset when training): {assumed}")
    if result["kind"] == "policy":
        console.print(f"settings: wam info {result['name']} --settings")


def recipe_rows(recipe: dict) -> list[tuple[str, str]]:
    """(field, text) rows of a recipe, as `describe_recipe` gives it."""
    sched, opt = recipe["schedule"], recipe["optimizer"]
    micro, batch = recipe["micro_batch"], recipe["global_batch"]
    if micro:
        split = f"{batch} = {micro} per device x processes x accumulation (1 process: {batch // micro} steps)"
    else:
        split = f"{batch} (train.grad_accum as set)"
    ratio = f" ({sched['warmup_ratio']:.0%} of the steps)" if sched["warmup_ratio"] is not None else ""
    floor = "0" if sched["min_lr_ratio"] == 0 else f"{sched['min_lr_ratio']:g} x lr"
    decayed = "every parameter" if opt["decay_all_params"] else "matrices"
    tiled = recipe["tiled_size"]
    cams = ", ".join(recipe["cameras"])
    each = recipe["image_size"]
    if tiled and len(recipe["cameras"]) > 1:
        cams += f" -> {recipe['tile_layout']} tiling {tiled[0]}x{tiled[1]} ({each} px per camera)"
    elif each:
        cams += f" at {each}x{each}"
    prefix = recipe["loss_prefix_steps"]
    loss = f", loss on the first {prefix}" if prefix else ""
    norm = recipe["normalization"]
    rows = [
        ("source", recipe["source"]),
        ("authors' run", recipe["authors_run"]),
        ("data", recipe["data"]),
        ("released checkpoint", recipe["checkpoint"]),
        ("global batch", split),
        ("steps", str(recipe["steps"])),
        ("schedule", f"linear warmup {sched['warmup_steps']} steps{ratio}, cosine to {floor}"),
        (
            "optimiser",
            f"AdamW lr {opt['lr']:g}, betas ({opt['betas'][0]:g}, {opt['betas'][1]:g}), weight decay "
            f"{opt['weight_decay']:g} on {decayed}, grad clip {opt['grad_clip']:g}, "
            f"{opt['mixed_precision']}, seed {opt['seed']}",
        ),
        ("normalisation", f"state {norm['state']}, action {norm['action']}"),
        ("cameras", cams),
        ("action / state", f"{recipe['action_dim']} / {recipe['state_dim']}"),
        (
            "chunk / replan",
            f"chunk {recipe['chunk_size']}, execute {recipe['n_action_steps']} per chunk{loss}",
        ),
        ("evaluation", recipe["evaluation"]),
    ]
    rows += [("note", note) for note in recipe["notes"]]
    return rows


def print_recipe(recipe: dict) -> None:
    """A rich table of a recipe preset: where it comes from and what it sets."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{recipe['preset']}: the authors' recipe (on {recipe['base']})", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for field, text in recipe_rows(recipe):
        table.add_row(field, text)
    Console().print(table)


def print_settings(name: str) -> None:
    """Every key `wam train --set` accepts for this preset, with its current value."""
    from wam.configs import get_preset
    from wam.configs.overrides import describe

    for key, value in describe(get_preset(name)):
        if isinstance(value, tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        typer.echo(f"{key}={text}")
