"""`wam info NAME [--json]`: parameter counts of a preset (policy or backbone), without allocating weights."""

from __future__ import annotations

import json

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
    ) -> None:
        """Parameter counts (total, trainable, per module) of a preset, built on the meta device."""
        from wam.training.params import preset_parameters

        result = preset_parameters(
            name, action_dim=action_dim, state_dim=state_dim, image_size=image_size, num_tasks=num_tasks
        )
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
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
