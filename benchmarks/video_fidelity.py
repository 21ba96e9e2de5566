"""How much of Meta-World's small goal markers survives each dataset video encoding, at 64 px.

A policy trained on a LeRobot dataset sees the frames as the video encoder left them, but in the
simulator it sees them raw. For every encoding spec this renders the same Meta-World frames twice,
with the goal marker shown and hidden (its site made transparent), so that the marker's pixels and
the background under them are known exactly. It then encodes the shown frames, decodes them and
reports:

    marker kept   the fraction of the marker's contrast against its background that survives
                  (100% = raw, 0% = the marker is gone)
    marker err    mean abs error (0-255) on the marker's pixels
    PSNR          over the whole frame
    B/frame       file bytes per frame; encode / decode ms per frame (median of --repeats)

    python benchmarks/video_fidelity.py [--image-size 64] [--seeds 40]

With `--codecs DIR;DIR`, the same frames also go through each latent codec (raw, not encoded):

    latent response  how far the marker's latent cell moves when the marker is hidden: the RMS over
                     channels of the change of the normalised latents (unit std per channel over the
                     dataset), in the cell that changes most; median over frames. What of the marker
                     reaches a policy that reads the latents (about 0: nothing)
    recon kept       the marker's contrast kept in the codec's reconstruction

Writes benchmarks/results/video_fidelity.{json,md,png} (the png: the same crops, raw and decoded).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wam.data.fsio import atomic_write_json, atomic_write_text
from wam.data.video import decode_all, encode_video, encoding_for
from wam.envs.metaworld.env import CONTROL_FPS

RESULTS = Path(__file__).parent / "results"
SPECS = [
    "av1",
    "h264",
    "av1:crf=15",
    "h264:pix_fmt=yuv444p",
    "h264:crf=10,pix_fmt=yuv444p",
    "h264:crf=0,pix_fmt=yuv444p",
]
TASKS = ["reach-v3", "push-v3", "pick-place-v3"]  # the MT10 tasks whose goal is only a small marker


def render_pairs(task: str, seeds: int, steps: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) uint8 with the goal marker shown, and the same frames with it hidden."""
    from wam.envs.metaworld.env import MetaWorldEnv

    env = MetaWorldEnv(task, image_size=size)
    model, mujoco = env._env.model, env._mujoco  # the MuJoCo model, to make the goal site transparent
    goal = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    if goal < 0:
        raise ValueError(f"{task} has no site named 'goal': pick a task whose goal is a marker.")
    alpha = float(model.site_rgba[goal, 3])
    rng = np.random.default_rng(0)
    shown, hidden = [], []
    for seed in range(seeds):
        env.reset(10_000 + seed, render=False)
        for step in range(steps):
            if step:
                env.step(rng.uniform(-1, 1, 4), render=False)
            for keep, frames in ((alpha, shown), (0.0, hidden)):
                model.site_rgba[goal, 3] = keep
                frames.append(env.render()[env.cameras[0]])
    model.site_rgba[goal, 3] = alpha
    env.close()
    return np.stack(shown), np.stack(hidden)


def marker_mask(shown: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """(N, H, W) bool: the pixels the goal marker changes."""
    return np.abs(shown.astype(int) - hidden).max(axis=-1) > 0


def marker_kept(frames: np.ndarray, shown: np.ndarray, hidden: np.ndarray) -> float:
    """The fraction of the marker's contrast against its background that `frames` keep
    (1: the marker as rendered; 0: its whole contrast lost)."""
    mask = marker_mask(shown, hidden)
    contrast = np.abs(shown.astype(float) - hidden)[mask].sum()
    return float(1 - np.abs(frames.astype(float) - shown)[mask].sum() / contrast)


def measure(spec: str, shown: np.ndarray, hidden: np.ndarray, repeats: int) -> dict[str, Any]:
    """The measures of one encoding spec, and the decoded frames (key "decoded")."""
    encode_s, decode_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        for _ in range(repeats):
            start = time.perf_counter()
            encode_video(path, shown, fps=CONTROL_FPS, encoding=encoding_for(spec))
            encode_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            decoded, _ = decode_all(path)
            decode_s.append(time.perf_counter() - start)
        size = path.stat().st_size
    err = decoded.astype(float) - shown
    mask = marker_mask(shown, hidden)
    mse = float((err**2).mean())
    return {
        "marker_kept": marker_kept(decoded, shown, hidden),
        "marker_abs_err": float(np.abs(err)[mask].mean()),
        "psnr_db": float(10 * np.log10(255**2 / max(mse, 1e-12))),
        "bytes_per_frame": size / len(shown),
        "encode_ms_per_frame": 1e3 * statistics.median(encode_s) / len(shown),
        "decode_ms_per_frame": 1e3 * statistics.median(decode_s) / len(shown),
        "marker_pixels_per_frame": float(mask.sum() / len(shown)),
        "decoded": decoded,
    }


def measure_codec(codec_dir: str, shown: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    """The marker's effect on a codec's latents and what its reconstruction keeps of it."""
    import torch

    from wam.models.codecs.checkpoint import load_codec

    codec = load_codec(codec_dir)

    def encode(frames: np.ndarray) -> torch.Tensor:  # (N, H, W, 3) uint8 -> (N, C, 1, h, w)
        return codec.encode(torch.from_numpy(frames).float().permute(0, 3, 1, 2)[:, None] / 255.0)

    with torch.no_grad():
        z_shown, z_hidden = encode(shown), encode(hidden)
        recon = codec.decode(z_shown)  # (N, 1, 3, H, W) in [0, 1]
    cells = (z_shown - z_hidden).pow(2).mean(dim=1).flatten(1)  # (N, F*h*w) mean square over channels
    recon = recon[:, 0].permute(0, 2, 3, 1).numpy() * 255.0  # (N, H, W, 3)
    return {
        "latent_response": float(cells.amax(dim=1).sqrt().median()),
        "recon_marker_kept": marker_kept(recon, shown, hidden),
    }


def crops_png(path: Path, task_frames: dict[str, dict[str, np.ndarray]], marker_at: dict[str, tuple]) -> None:
    """One row per task: the raw frame's neighbourhood of the marker, then each encoding's, enlarged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(task_frames.values())))
    fig, axes = plt.subplots(len(task_frames), len(names), figsize=(2.2 * len(names), 2.4 * len(task_frames)))
    for row, (task, frames) in enumerate(task_frames.items()):
        index, y, x = marker_at[task]
        for col, name in enumerate(names):
            image = frames[name][index]
            ax = axes[row, col]
            ax.imshow(image[max(0, y - 12) : y + 12, max(0, x - 12) : x + 12], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(name if row == 0 else "", fontsize=7)
        axes[row, 0].set_ylabel(task, fontsize=8)
    fig.suptitle("Goal marker, raw and after each dataset encoding (24x24 px crops)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=40, help="Episodes (initial states) per task.")
    parser.add_argument("--steps", type=int, default=4, help="Frames per episode (random actions).")
    parser.add_argument("--specs", default=";".join(SPECS), help="Encoding specs, ';'-separated.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codecs", default="", help="Latent codec folders (or NAME=DIR), ';'-separated.")
    parser.add_argument("--report", default="video_fidelity")
    args = parser.parse_args()
    specs = args.specs.split(";")
    for spec in specs:
        encoding_for(spec)  # a bad spec fails before anything renders

    rows, codec_rows, pictures, marker_at = [], [], {}, {}
    for task in TASKS:
        shown, hidden = render_pairs(task, args.seeds, args.steps, args.image_size)
        mask = marker_mask(shown, hidden)
        index = int(mask.reshape(len(mask), -1).sum(1).argmax())
        ys, xs = np.nonzero(mask[index])
        marker_at[task] = (index, int(ys.mean()), int(xs.mean()))
        pictures[task] = {"raw": shown}
        for spec in specs:
            result = measure(spec, shown, hidden, args.repeats)
            pictures[task][spec] = result.pop("decoded")
            rows.append({"task": task, "spec": spec, **result})
            print(f"{task:14s} {spec:28s} marker kept {100 * result['marker_kept']:5.1f}%", flush=True)
        for entry in filter(None, args.codecs.split(";")):
            name, sep, codec_dir = entry.partition("=")
            name, codec_dir = (name, codec_dir) if sep else ("", name)
            found = measure_codec(codec_dir, shown, hidden)
            codec_rows.append({"task": task, "codec": name or codec_dir, "path": codec_dir, **found})
            response = found["latent_response"]
            print(f"{task:14s} {name or codec_dir}: latent response {response:.2f} std", flush=True)

    summary = []
    for spec in specs:
        mine = [r for r in rows if r["spec"] == spec]
        summary.append(
            {
                "spec": spec,
                **{k: float(np.mean([r[k] for r in mine])) for k in mine[0] if k not in ("task", "spec")},
            }
        )
    record = {
        "benchmark": "video_fidelity",
        "args": vars(args),
        "tasks": TASKS,
        "summary": summary,
        "rows": rows,
        "codecs": codec_rows,
    }
    stem = RESULTS / args.report
    atomic_write_json(stem.with_suffix(".json"), record, indent=2)
    header = "| encoding | marker kept | marker err | PSNR dB | B/frame | encode ms/f | decode ms/f |\n"
    header += "|---|---|---|---|---|---|---|\n"
    lines = [
        f"| `{s['spec']}` | {100 * s['marker_kept']:.1f}% | {s['marker_abs_err']:.1f} | {s['psnr_db']:.1f} | "
        f"{s['bytes_per_frame']:.0f} | {s['encode_ms_per_frame']:.2f} | {s['decode_ms_per_frame']:.2f} |"
        for s in summary
    ]
    title = f"# Meta-World goal markers through the dataset video encoding, {args.image_size} px"
    note = (
        f"{', '.join(TASKS)}; {args.seeds} initial states x {args.steps} frames each; means over the tasks."
    )
    text = f"{title}\n\n{note}\n\n{header}" + "\n".join(lines) + "\n"
    if codec_rows:
        text += "\n| codec | task | latent response (std) | recon kept |\n|---|---|---|---|\n"
        text += "".join(
            f"| `{r['codec']}` | {r['task']} | {r['latent_response']:.2f} | "
            f"{100 * r['recon_marker_kept']:.1f}% |\n"
            for r in codec_rows
        )
    atomic_write_text(stem.with_suffix(".md"), text)
    crops_png(stem.with_suffix(".png"), pictures, marker_at)
    print(text)
    print(f"wrote {stem.with_suffix('.json')}")


if __name__ == "__main__":
    main()
