"""`wam serve SOURCE`: serve a policy over openpi's websocket protocol (see `wam.serving.server`)."""

from __future__ import annotations

import errno

import typer

from wam.commands.inference_flags import InferenceOverrides, InferencePreset


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        source: str = typer.Argument(
            ...,
            help="A `wam train` run or checkpoint folder; a policy preset (untrained weights, for latency "
            "tests); or expert, random[:SEED], zero.",
        ),
        port: int = typer.Option(8000, help="TCP port (0: any free port)."),
        host: str = typer.Option(
            "0.0.0.0", help="Interface to listen on (0.0.0.0: all; 127.0.0.1: local only)."
        ),
        device: str = typer.Option("", help="Torch device (default: cuda when available, else cpu)."),
        codec: str = typer.Option("", help="Latent codec folder for a preset that reads latents."),
        seed: int = typer.Option(0, help="Seed of a preset's untrained weights."),
        max_message_mb: float = typer.Option(
            0.0,
            help="Largest request accepted, in MiB; larger ones are refused before they are read "
            "(default: 32, or twice a float32 batch of 64 observations when that is more).",
        ),
        allow_unseen_instructions: bool = typer.Option(
            False,
            "--allow-unseen-instructions",
            help="Accept instructions a learned per-task table never saw (encoded from their words, "
            "as in-process evaluation does) instead of refusing them.",
        ),
        inference: InferencePreset = "default",
        opt: InferenceOverrides = None,
    ) -> None:
        """Serve a policy to robots and simulators (openpi-client compatible); Ctrl-C stops."""
        import logging

        from wam.policies.fast_path import configure_policy
        from wam.serving.loading import load_served_policy
        from wam.serving.server import PolicyServer

        if max_message_mb < 0 or max_message_mb != max_message_mb or max_message_mb > 4096:
            raise ValueError(
                f"--max-message-mb {max_message_mb} is out of range: use 0 (the default) to 4096."
            )
        limit = int(max_message_mb * 2**20) or None
        if limit is not None and limit < 2**10:
            raise ValueError(f"--max-message-mb {max_message_mb} is too small: allow at least 0.001 (1 KiB).")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        policy, extra = load_served_policy(source, device=device or None, codec=codec or None, seed=seed)
        policy = configure_policy(policy, inference, opt or ())
        server = PolicyServer(
            policy,
            host=host,
            port=port,
            metadata=extra,
            max_message_bytes=limit,
            allow_unseen_instructions=allow_unseen_instructions,
        )
        warm_ms = server.warm_up()
        if warm_ms is not None:
            typer.echo(f"warmed up: {warm_ms:.1f} ms per chunk in process")
        if extra.get("note"):
            typer.echo(f"note: {policy.name}: {extra['note']}")

        def ready(bound: int) -> None:
            typer.echo(
                f"serving {policy.name} on ws://{host}:{bound} (health check: GET /healthz; requests up to "
                f"{server.max_message_bytes / 2**20:.1f} MiB); Ctrl-C stops"
            )

        try:
            server.serve_forever(ready)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ValueError(f"Port {port} is in use: stop the other server or pick --port.") from None
            reason = err.strerror or type(err).__name__
            raise ValueError(f"Cannot listen on {host}:{port} ({reason}): check --host and --port.") from None
        except KeyboardInterrupt:
            typer.echo("stopped")
