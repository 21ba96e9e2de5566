"""MP4 video I/O with PyAV: encode, concatenate without re-encoding, decode at timestamps.

Encoding follows LeRobot's `encode_video_frames` defaults (`lerobot/configs/video.py`):
    av1   libsvtav1, yuv420p, g=2, crf=30, preset=12, svtav1-params "fast-decode=0"
    h264  libx264,   yuv420p, g=2, crf=30
A spec can change the quality settings LeRobot's encoder also takes: "h264:crf=10,pix_fmt=yuv444p".
At small image sizes the defaults cost detail a policy needs: at 64 px, yuv420p keeps colour at
32x32 and crf 30 smears a 2-pixel goal marker into the table (benchmarks/results/video_fidelity.*).
Frame i of a file gets pts i in time base 1/fps, so its timestamp is exactly i / fps.

Concatenation (`concat_videos`) remuxes packets: episode k's packets are shifted by the summed
span of the episodes before it, so its first frame sits at the `from_timestamp` recorded in
meta/episodes and every frame keeps its exact timestamp. No pixel is re-encoded.

Reading errors: every read goes through `open_video` / `reading_video`, so a missing, truncated
or garbled file gives one line naming it (FileNotFoundError / `BadFileError`), for the dataset
reader, the frame cache, the latent cache and `wam data verify` alike.

Decoding (`decode_frames`) has LeRobot's `decode_video_frames_pyav` semantics: seek to the key
frame before the first requested timestamp, decode forward, take the nearest frame for each
query and raise `FrameTimestampError` when it is further than `tolerance_s` away.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av.container

from wam.data.fsio import BadFileError, atomic_write

DEFAULT_TOLERANCE_S = 1e-4


# ----------------------------------------------------------------------------- fork safety
# FFmpeg decoders (dav1d, frame threads) own threads that a forked child does not inherit: a
# child that frees a decoder inherited from its parent waits forever for them. PyAV containers
# sit in reference cycles, so they are freed by the garbage collector, possibly in a DataLoader
# worker. Before any fork we therefore close the decoders kept open (`register_fork_closer`) and
# collect the garbage, so that no decoder crosses a fork.
# The same holds for the colour conversion: `frame.to_ndarray` reuses a per-thread
# `VideoReformatter` whose swscale context runs slice threads (PyAV 18; 17 makes one per call), and a
# forked child that converts a frame of the same size waits forever for threads it does not have
# (a DataLoader worker forked after `wam` cached latents in the same process hung on its first
# batch). The forking thread's reformatter, the only one a child inherits, is dropped before the
# fork; the next conversion makes a new one.
_fork_closers: weakref.WeakSet = weakref.WeakSet()
_opened_any = False


def register_fork_closer(owner: object) -> None:
    """`owner.close_decoders()` is called in the parent before every fork."""
    _fork_closers.add(owner)


def _before_fork() -> None:
    _drop_reformatter()  # also after conversions that did not go through `open_video`
    if not _opened_any:
        return
    for owner in list(_fork_closers):
        owner.close_decoders()
    gc.collect()


def _drop_reformatter() -> None:
    """Free this thread's cached PyAV reformatter (and its swscale threads) here, in the parent."""
    frame_module = sys.modules.get("av.video.frame")
    local = getattr(frame_module, "_thread_local", None)  # PyAV's per-thread reformatter cache
    if local is not None and getattr(local, "reformatter", None) is not None:
        local.reformatter = None


os.register_at_fork(before=_before_fork)


def open_video(path: Path | str, mode: str = "r", **kwargs: object) -> av.container.Container:
    """`av.open`, noting that decoders exist (see the fork-safety note above).

    For reading, a missing file raises FileNotFoundError and a truncated or garbled one (or one
    without a video stream) `BadFileError`, both one line naming the file.
    """
    import av

    global _opened_any
    _opened_any = True
    if mode != "r":
        return av.open(str(path), mode, **kwargs)
    with reading_video(path):
        container = av.open(str(path), mode, **kwargs)
    if not container.streams.video:
        container.close()
        raise BadFileError(f"{path} holds no video stream: {VIDEO_FIX}.")
    return container


VIDEO_FIX = (
    "restore the dataset from its source or re-record the episode (wam data verify lists every problem)"
)


@contextlib.contextmanager
def reading_video(path: Path | str) -> Iterator[None]:
    """Turn PyAV's errors while reading `path` into one line naming the file.

    PyAV reports a truncated file as e.g. `[Errno 1094995529] Invalid data found when processing
    input: 'avcodec_send_packet()'` without the path; every reader of video files goes through here.
    """
    import av

    try:
        yield
    except av.error.FileNotFoundError:
        raise FileNotFoundError(f"Video file {path} is missing: {VIDEO_FIX}.") from None
    except av.error.FFmpegError as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise BadFileError(f"{path} is not a readable video ({reason}): {VIDEO_FIX}.") from None


class FrameTimestampError(ValueError):
    """A requested timestamp has no frame within the tolerance."""


@dataclass(frozen=True)
class VideoEncoding:
    """Encoder settings of one video stream (recorded as `video.*` entries in info.json)."""

    codec: str  # short name: "av1" or "h264"
    encoder: str  # the FFmpeg encoder: "libsvtav1" or "libx264"
    pix_fmt: str = "yuv420p"  # pixel format of the stream
    g: int = 2  # GOP size: a key frame every `g` frames (cheap random access)
    crf: int = 30  # constant rate factor: lower is better quality and larger files
    preset: int | None = None  # encoder speed preset (12 for SVT-AV1, LeRobot's default)
    fast_decode: int = 0  # SVT-AV1 fast-decode tuning (0 = off)

    def __post_init__(self) -> None:
        if self.codec not in ENCODERS:
            raise ValueError(f"Unknown video codec {self.codec!r}; use one of {sorted(ENCODERS)}.")
        if self.g < 1 or not 0 <= self.crf <= 63:
            raise ValueError("VideoEncoding needs g >= 1 and 0 <= crf <= 63; use LeRobot's g=2, crf=30.")

    def options(self) -> dict[str, str]:
        """Codec options as LeRobot's `VideoEncoderConfig.get_codec_options(as_strings=True)`."""
        opts = {"g": str(self.g), "crf": str(self.crf)}
        if self.preset is not None:
            opts["preset"] = str(self.preset)
        if self.encoder == "libsvtav1":
            opts["svtav1-params"] = f"fast-decode={max(0, min(2, self.fast_decode))}"
        return opts

    def info(self) -> dict[str, object]:
        """The encoder entries LeRobot stores under a video feature's `info`."""
        return {
            "video.g": self.g,
            "video.crf": self.crf,
            "video.preset": self.preset,
            "video.fast_decode": self.fast_decode,
            "video.video_backend": "pyav",
            "video.extra_options": {},
        }


ENCODERS = {"av1": "libsvtav1", "h264": "libx264"}
PIX_FMTS = {"av1": ("yuv420p",), "h264": ("yuv420p", "yuv444p")}  # SVT-AV1 encodes 4:2:0 only
MAX_CRF = {"av1": 63, "h264": 51}  # x264 would clamp a higher crf to 51 silently
EXAMPLE_SPEC = "h264:crf=10,pix_fmt=yuv444p"
SPEC_HELP = f"av1 (LeRobot's default), h264, or with settings e.g. {EXAMPLE_SPEC}"


def encoding_for(spec: str) -> VideoEncoding:
    """Encoder settings of a spec: a codec name ("av1" / "libsvtav1" / "h264" / "libx264") with
    LeRobot's defaults, optionally followed by `:crf=N,pix_fmt=X,g=N` (e.g. "h264:crf=10,pix_fmt=yuv444p")."""
    codec, _, settings = str(spec).strip().partition(":")
    codec = {"libsvtav1": "av1", "libx264": "h264"}.get(codec.lower(), codec.lower())
    if codec not in ENCODERS:
        raise ValueError(f"Unknown video codec {codec!r} in {spec!r}: use {SPEC_HELP}.")
    fields: dict[str, object] = {"preset": 12 if codec == "av1" else None}
    for item in (part.strip() for part in settings.split(",") if part.strip()):
        key, _, value = item.partition("=")
        number = int(value) if value.isascii() and value.isdecimal() else None
        if key in fields and key != "preset":
            ok = False  # the same setting twice
        elif key == "pix_fmt":
            ok = value in PIX_FMTS[codec]
        elif key == "crf":
            ok = number is not None and number <= MAX_CRF[codec]
        elif key == "g":
            ok = number is not None and 1 <= number <= 1000
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"Bad video setting {item!r} in {spec!r}: give each of crf=0..{MAX_CRF[codec]}, g=1..1000, "
                f"pix_fmt={'/'.join(PIX_FMTS[codec])} at most once (for {codec}), e.g. {EXAMPLE_SPEC}."
            )
        fields[key] = value if key == "pix_fmt" else number
    return VideoEncoding(codec=codec, encoder=ENCODERS[codec], **fields)  # type: ignore[arg-type]


def encoding_of_feature(info: dict[str, object]) -> VideoEncoding:
    """The encoder settings a dataset's video feature was written with (its `info` in info.json),
    so that a resumed dataset adds episodes at the quality it was started with."""
    codec = str(info.get("video.codec") or "av1")
    given = {}
    for key in ("pix_fmt", "crf", "g"):
        value = info.get(f"video.{key}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a crf written as 23.0 by another tool
        if value is not None:
            given[key] = value
    spec = f"{codec}:" + ",".join(f"{k}={v}" for k, v in given.items())
    try:
        return encoding_for(spec)
    except ValueError:
        raise ValueError(
            f"its videos are {spec.rstrip(':')}, which wam cannot encode more episodes in; wam encodes "
            f"{SPEC_HELP}"
        ) from None


def dataset_encoding(root: Path, info: dict) -> VideoEncoding:
    """The one encoding every video stream of a dataset was written with (`encoding_of_feature` of
    each camera); cameras written with different settings, or with settings wam cannot encode, are
    one line naming the dataset (more episodes could not be appended to them)."""
    streams = {
        k: ft.get("info", {}) for k, ft in info.get("features", {}).items() if ft.get("dtype") == "video"
    }
    if not streams:
        return encoding_for("av1")
    try:
        found = {key: encoding_of_feature(stream) for key, stream in streams.items()}
    except ValueError as err:
        raise ValueError(f"{root} cannot be extended: {err}; add the episodes to a new dataset.") from None
    specs = {key: encoding_spec(encoding) for key, encoding in found.items()}
    if len(set(specs.values())) > 1:
        listed = ", ".join(f"{key.removeprefix('observation.images.')} {spec}" for key, spec in specs.items())
        raise ValueError(
            f"{root} cannot be extended: its cameras were encoded differently ({listed}); "
            "add the episodes to a new dataset."
        )
    return next(iter(found.values()))


def encoding_spec(encoding: VideoEncoding) -> str:
    """The spec `encoding_for` turns back into `encoding` (the codec name alone for LeRobot's defaults)."""
    default = encoding_for(encoding.codec)
    keys = [k for k in ("crf", "pix_fmt", "g") if getattr(encoding, k) != getattr(default, k)]
    changed = [f"{k}={getattr(encoding, k)}" for k in keys]
    return encoding.codec + (":" + ",".join(changed) if changed else "")


# ----------------------------------------------------------------------------- encoding
def encode_video(path: Path, frames: np.ndarray, fps: int, encoding: VideoEncoding) -> None:
    """Encode uint8 frames (T, H, W, 3) to `path` (written in place; see `write_mp4` for atomic)."""
    import av

    frames = _check_frames(frames)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    _, height, width, _ = frames.shape
    with open_video(path, "w", format="mp4") as container:
        stream = container.add_stream(encoding.encoder, rate=fps, options=encoding.options())
        stream.pix_fmt = encoding.pix_fmt
        stream.width, stream.height = width, height
        stream.codec_context.time_base = Fraction(1, fps)
        for i, image in enumerate(frames):  # image: (H, W, 3) uint8
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, codec: str = "h264") -> None:
    """Write uint8 frames (T, H, W, 3) to an mp4 atomically; odd sizes are padded by one edge pixel."""
    frames = _check_frames(frames)
    if fps < 1:
        raise ValueError(f"fps must be a positive integer, got {fps}.")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    encoding = encoding_for(codec)
    atomic_write(Path(path), lambda tmp: encode_video(tmp, frames, int(fps), encoding))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(
            f"Video frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}."
        )
    return np.ascontiguousarray(frames)


# ----------------------------------------------------------------------------- concatenation
def concat_videos(inputs: list[Path], output: Path) -> list[float]:
    """Remux `inputs` one after another into `output` (no re-encoding).

    Returns the time (seconds) at which each input starts in the output. Input i+1 starts where
    input i ends (its last packet's pts + duration), so frame timestamps stay exact.
    """
    if not inputs:
        raise ValueError("concat_videos needs at least one input video.")
    starts: list[float] = []
    with open_video(output, "w", format="mp4", options={"movflags": "faststart"}) as out:
        out_stream = None
        offset = Fraction(0)  # seconds
        for path in inputs:
            with open_video(path) as inp:
                in_stream = inp.streams.video[0]
                if out_stream is None:
                    out_stream = out.add_stream_from_template(in_stream, opaque=True)
                    out_stream.time_base = in_stream.time_base
                    reference = _stream_signature(in_stream)
                elif _stream_signature(in_stream) != reference:
                    raise ValueError(f"Cannot concatenate {path}: its codec/size differs from {inputs[0]}.")
                with reading_video(path):
                    packets = [p for p in inp.demux(in_stream) if p.dts is not None]
                if not packets:
                    raise ValueError(f"Video {path} holds no frames; delete it and re-record the episode.")
                span = _remux_packets(packets, in_stream, out_stream, offset, out)
                starts.append(float(offset))
                offset += span
    return starts


def _stream_signature(stream) -> tuple:
    return (stream.codec_context.name, stream.width, stream.height, stream.pix_fmt)


def _remux_packets(packets: list, in_stream, out_stream, offset: Fraction, out) -> Fraction:
    """Mux `packets` shifted so their first pts lands at `offset`; return their span in seconds."""
    in_tb, out_tb = Fraction(in_stream.time_base), Fraction(out_stream.time_base)
    frame_ticks = round(1 / (Fraction(in_stream.average_rate) * in_tb)) if in_stream.average_rate else 1
    first = min(p.pts for p in packets)
    end = max(p.pts + (p.duration or frame_ticks) for p in packets)
    shift_ticks = offset / out_tb - first * in_tb / out_tb
    if shift_ticks.denominator != 1 or in_tb != out_tb:
        raise ValueError("Cannot concatenate videos whose time bases differ; re-encode them with one fps.")
    shift = int(shift_ticks)
    for packet in packets:
        packet.pts += shift
        packet.dts += shift
        packet.stream = out_stream
        out.mux(packet)
    return (end - first) * in_tb


# ----------------------------------------------------------------------------- probing
def video_stream_info(path: Path) -> dict[str, object]:
    """The stream-derived `video.*` entries LeRobot's `get_video_info` stores in info.json."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        info = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.fps": int(stream.base_rate),
            "video.channels": 1 if stream.pix_fmt.startswith("gray") else 3,
            "has_audio": len(container.streams.audio) > 0,
        }
    return info


def video_num_frames(path: Path) -> int:
    """Frames in the first video stream (from the container index; no decoding)."""
    with open_video(path) as container, reading_video(path):
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for p in container.demux(stream) if p.dts is not None)


# ----------------------------------------------------------------------------- decoding
def decode_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of a video: uint8 (N, H, W, 3) and timestamps float64 (N,) in seconds, by time."""
    with open_video(path) as container, reading_video(path):
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        # Preallocate from the container index (mp4 always has it) so large files are not copied twice.
        frames = np.empty((int(stream.frames or 0), stream.height, stream.width, 3), np.uint8)
        extra: list[np.ndarray] = []
        stamps: list[float] = []
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")  # (H, W, 3)
            if len(stamps) < len(frames):
                frames[len(stamps)] = image
            else:
                extra.append(image)
            stamps.append(frame.pts * tb)
    frames = np.concatenate([frames, np.stack(extra)]) if extra else frames[: len(stamps)]
    order = np.argsort(stamps, kind="stable")
    return frames[order], np.asarray(stamps, np.float64)[order]


def match_timestamps(
    query: np.ndarray, available: np.ndarray, tolerance_s: float, source: str = "video"
) -> np.ndarray:
    """Index of the nearest available timestamp (sorted ascending) for each query (seconds).

    Raises FrameTimestampError when a query is further than `tolerance_s` from every frame.
    """
    query = np.asarray(query, np.float64)
    if len(available) == 0:
        raise FrameTimestampError(f"{source} holds no frame; re-encode the episode.")
    right = np.clip(np.searchsorted(available, query), 0, len(available) - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(query - available[left]) <= np.abs(available[right] - query), left, right)
    dist = np.abs(available[nearest] - query)
    if np.any(dist > tolerance_s):
        raise FrameTimestampError(
            f"No frame of {source} lies within {tolerance_s}s of timestamps "
            f"{query[dist > tolerance_s].tolist()}; the video and the dataset metadata disagree: "
            "re-encode the episode or raise tolerance_s."
        )
    return nearest


def decode_frames(
    path: Path, timestamps: list[float] | np.ndarray, tolerance_s: float = DEFAULT_TOLERANCE_S, container=None
) -> np.ndarray:
    """Frames nearest to `timestamps` (seconds): uint8 (N, H, W, 3). Seeks; decodes only what it needs.

    Like LeRobot, it seeks to the key frame before a timestamp and decodes forward; unlike it,
    queries further apart than `SEEK_GAP_FRAMES` frames get their own seek instead of decoding
    every frame in between (a window t, t+8, ..., t+32 decodes ~8 frames instead of 33).
    `container` may be an already-open PyAV input container of `path` (kept open by callers that
    query the same file many times); otherwise the file is opened and closed here.
    """
    query = np.asarray(timestamps, np.float64)
    own = container is None
    if own:
        container = open_video(path)
    try:
        stream = container.streams.video[0]
        frame_s = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
        decoded: dict[float, np.ndarray] = {}
        with reading_video(path):
            for first, last in _query_runs(np.unique(query), SEEK_GAP_FRAMES * frame_s):
                _decode_range(container, stream, first - tolerance_s, last, decoded)
    finally:
        if own:
            container.close()
    if not decoded:
        raise FrameTimestampError(f"No frame of {path} could be decoded at {query.tolist()} s.")
    available = np.asarray(sorted(decoded))
    idx = match_timestamps(query, available, tolerance_s, source=str(path))
    return np.stack([decoded[float(available[i])] for i in idx])  # (N, H, W, 3)


SEEK_GAP_FRAMES = 4  # queries more than this many frames apart are reached by separate seeks


def _query_runs(stamps: np.ndarray, max_gap_s: float) -> list[tuple[float, float]]:
    """Split sorted timestamps into runs whose consecutive gaps are at most `max_gap_s`."""
    runs, start, previous = [], float(stamps[0]), float(stamps[0])
    for t in stamps[1:].tolist():
        if t - previous > max_gap_s:
            runs.append((start, previous))
            start = t
        previous = t
    runs.append((start, previous))
    return runs


def _decode_range(container, stream, first: float, last: float, out: dict[float, np.ndarray]) -> None:
    """Decode the frames with first <= timestamp (seconds), up to the first one at or past `last`."""
    tb = stream.time_base
    container.seek(max(round(first / tb) - 1, 0), backward=True, any_frame=False, stream=stream)
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        stamp = float(frame.pts * tb)
        if stamp >= first and stamp not in out:
            out[stamp] = frame.to_ndarray(format="rgb24")  # (H, W, 3)
        if stamp >= last:
            break
