"""The `--inference PRESET` and `--opt name=value` flags that `wam eval` and `wam serve` share.

Both feed `wam.policies.fast_path.configure_policy(policy, inference, opt or ())`.
"""

from __future__ import annotations

from typing import Annotated

import typer

InferencePreset = Annotated[
    str,
    typer.Option(
        help="Inference path of a trained (torch) policy: default, plain or fast (wam.policies.fast_path)."
    ),
]
InferenceOverrides = Annotated[
    list[str] | None,
    typer.Option(help="Inference option name=value (repeatable), e.g. --opt compile=false."),
]
