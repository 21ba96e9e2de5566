"""`wam train-codec` and `wam cache-latents`: a compact latent codec for a dataset, and its latent cache."""

from __future__ import annotations

from pathlib import Path

import typer


def _cameras(text: str | None) -> tuple[str, ...] | None:
    """'a,b' -> ('a', 'b'); short names get the `observation.images.` prefix."""
    if not text:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    return tuple(c if c.startswith("observation.") else f"observation.images.{c}" for c in names)


def check_codec_dir(target: Path, data: str, overwrite: bool) -> None:
    """Refuse a codec folder that overlaps the dataset, holds a codec (without --overwrite) or holds
    anything else; nothing is deleted here."""
    from wam.outputs import check_output, check_replaceable, is_empty_dir, kind_of

    check_output(target, "codec", (data,))
    if not target.exists() or is_empty_dir(target):
        return
    if overwrite:
        check_replaceable(target, "codec", (data,))
    elif kind_of(target) == "codec":
        raise FileExistsError(f"A codec already exists in {target}: pass --overwrite to replace it or --out.")
    else:
        raise FileExistsError(
            f"{target} exists and is not a codec folder: pass a new --out folder (wam does not write into "
            "other folders)."
        )


def register(app: typer.Typer) -> None:
    @app.command("train-codec")
    def train_codec_cmd(
        data: str = typer.Option(
            ..., help="LeRobot dataset folder (or hub repo id ORG/NAME) whose camera frames the codec learns."
        ),
        out: str = typer.Option(None, help="Codec folder (default: <data>-codec next to the dataset)."),
        steps: int = typer.Option(1500, help="Optimisation steps."),
        batch_size: int = typer.Option(8, help="Clips per step."),
        image_size: int = typer.Option(None, help="Square size frames are resized to (default: as stored)."),
        clip_frames: int = typer.Option(5, help="Frames per training clip (1 + 4k)."),
        frame_stride: int = typer.Option(1, help="Dataset frames between clip frames."),
        z_dim: int = typer.Option(16, help="Latent channels."),
        stride: int = typer.Option(8, help="Spatial stride (pixels per latent cell: 4, 8 or 16)."),
        lr: float = typer.Option(2e-3, help="Peak learning rate."),
        seed: int = typer.Option(0, help="Seed of weights and clip sampling."),
        cameras: str = typer.Option(None, help="Cameras to train on, comma list (default: all)."),
        workers: int = typer.Option(0, help="DataLoader worker processes decoding video."),
        threads: int = typer.Option(
            0, help="Torch CPU threads (0: torch's default; 1 is best on a busy CPU)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing codec in --out."),
    ) -> None:
        """Train the compact CPU codec (Wan's causal 4x time layout) on a dataset; prints its PSNR."""
        from wam.hub import resolve_path
        from wam.models.codecs.compact import CompactCodecConfig
        from wam.models.codecs.train import CodecTrainConfig, default_codec_dir, train_codec
        from wam.outputs import mark, replace_output

        data = str(resolve_path(data, "dataset"))  # a folder, or a hub repo id ORG/NAME[@REV]
        target = Path(out) if out is not None else default_codec_dir(data)
        check_codec_dir(target, data, overwrite)
        channels = {4: (32, 64), 8: (32, 48, 64), 16: (32, 48, 64, 64)}.get(stride)
        if channels is None:
            raise ValueError(f"--stride {stride} is not offered: use 4, 8 or 16.")
        cfg = CodecTrainConfig(
            steps=steps,
            batch_size=batch_size,
            clip_frames=clip_frames,
            frame_stride=frame_stride,
            image_size=image_size,
            lr=lr,
            seed=seed,
            num_workers=workers,
            camera_keys=_cameras(cameras),
            codec=CompactCodecConfig(z_dim=z_dim, spatial_stride=stride, channels=channels),
        )
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        if overwrite:
            replace_output(target, "codec", (data,))
        result = train_codec(data, target, cfg)
        mark(target, "codec")
        typer.echo(
            f"codec: {result.num_parameters / 1e3:.0f}K parameters, {result.steps} steps in "
            f"{result.seconds:.0f} s, final loss {result.losses[-1]:.4f}, "
            f"reconstruction PSNR {result.psnr_db:.2f} dB"
        )
        typer.echo(f"saved {result.out_dir} (fingerprint {result.fingerprint[:16]})")
        typer.echo(f"cache its latents: wam cache-latents --data {data} --codec {result.out_dir}")

    @app.command("cache-latents")
    def cache_latents_cmd(
        data: str = typer.Option(
            ..., help="LeRobot dataset folder or hub repo id ORG/NAME, or ORG/NAME@REV."
        ),
        codec: str = typer.Option(
            None,
            help="Codec folder, Wan vae/ folder or preset: wan2.1-vae, wan2.2-vae (default: <data>-codec).",
        ),
        cache_dir: str = typer.Option(None, help="Cache root (default: <data>-latents next to the dataset)."),
        clip_frames: int = typer.Option(9, help="Video frames per clip (1 + 4k)."),
        frame_stride: int = typer.Option(4, help="Dataset frames between clip frames (action/video ratio)."),
        image_size: int = typer.Option(None, help="Square size each camera is resized to before tiling."),
        cameras: str = typer.Option(None, help="Cameras to tile, comma list, in order (default: all)."),
        layout: str = typer.Option("horizontal", help="Camera tiling: horizontal, vertical or robotwin."),
        batch_size: int = typer.Option(16, help="Clips per codec call."),
        device: str = typer.Option("cpu", help="Torch device for the codec."),
        dtype: str = typer.Option("float16", help="Storage dtype of the latents: float16 or float32."),
    ) -> None:
        """Encode every clip of a dataset once; a second run with the same inputs does nothing."""
        from wam.data import DatasetMeta
        from wam.data.latent_cache import LatentCache
        from wam.hub import resolve_path
        from wam.models.codecs.checkpoint import load_codec
        from wam.models.codecs.train import default_codec_dir

        data = str(resolve_path(data, "dataset"))  # a folder, or a hub repo id ORG/NAME[@REV]
        DatasetMeta(data)  # a missing or broken dataset is reported before the codec is looked for
        source = codec if codec is not None else default_codec_dir(data)
        if codec is None and not Path(source).exists():
            raise FileNotFoundError(
                f"No codec at {source}: train one with `wam train-codec --data {data}` or pass --codec."
            )
        from wam.serving.loading import check_device

        model = load_codec(source, device=check_device(device))
        cache = LatentCache.build(
            data,
            model,
            camera_keys=_cameras(cameras),
            clip_frames=clip_frames,
            frame_stride=frame_stride,
            image_size=image_size,
            cache_dir=cache_dir,
            tile_layout=layout,
            dtype=dtype,
            batch_size=batch_size,
        )
        c, f, h, w = cache.latent_shape
        typer.echo(
            f"{len(cache)} clips cached as {c}x{f}x{h}x{w} {cache.spec.dtype} latents in {cache.folder}"
        )
