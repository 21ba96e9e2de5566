"""Codec latents of a dataset, precomputed once and cached on disk (as Light-WAM does offline).

What is cached: for every dataset frame index i (the `index` column, which is the item position of
a dataset read whole), the normalised latents (C, F, h, w) of the clip that starts at i:
`clip_frames` frames (T = 1 + 4k) taken `frame_stride` dataset frames apart (the action/video
frequency ratio: 33 action steps with ratio 4 give 9 video frames, hence 3 latent frames).
Frames past the episode end repeat its last frame, as lerobot's `delta_timestamps` padding does;
`clip_is_pad` says which ones were padding.

Cameras: like FastWAM and Light-WAM, several cameras are tiled into one image before encoding
(`tile_cameras`: side by side, stacked, or RoboTwin's head-on-top layout), so one clip gives one
latent tensor whatever the number of cameras. Each camera is first resized to `image_size`.

Layout on disk (`cache_root/<key[:16]>/`):
    manifest.json          parameters, fingerprints, episode spans, latent shape, `complete`
    episode_000000.npy     (L, C, F, h, w) latents of the L clips of one episode (float16 default)
Every file is written to a temporary name then renamed, so an interrupted build keeps its
finished episodes and a second `build` resumes from there; a build over a complete cache with the
same inputs is a no-op. The key hashes the dataset's fingerprint (meta files by content, data and
video files by size and mtime), the codec's fingerprint (type, config, table, weights) and the clip
parameters: changing any of them selects a new folder. Shards are read memory-mapped.

Several processes may build the same cache at once (two trainings started on one dataset): a
build holds an inter-process lock on `<key[:16]>/.build.lock` (filelock), so the second one waits,
then finds the cache complete and reuses it, and never deletes the first one's temporary files.

The default cache root is `<dataset>-latents` next to the dataset folder: nothing is written
inside the dataset. A build writes only inside its own `<key[:16]>/` folder and deletes only its
own temporary files there; a cache root that holds anything else (a user's folder that happens to
be named `<dataset>-latents`, the dataset itself) is refused with one line (`check_cache_root`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from wam.data.fsio import BadFileError, atomic_write, atomic_write_text, iter_temp_files, read_json

CACHE_FORMAT = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".build.lock"
TILE_LAYOUTS = ("horizontal", "vertical", "robotwin")
STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}


# ----------------------------------------------------------------------------- camera tiling
def resize_images(images: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> (..., 3, h, w) with antialiased bilinear resizing (None: unchanged)."""
    if size is None:
        return images
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])  # (N, 3, H, W)
    out = F.interpolate(flat.float(), size=hw, mode="bilinear", antialias=True, align_corners=False)
    return out.clamp(0.0, 1.0).reshape(*lead, 3, *hw)


def tile_cameras(
    images: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], layout: str = "horizontal"
) -> torch.Tensor:
    """Tile several camera images (..., 3, H, W) into one image, in the given (or dict) order.

    horizontal: side by side (same H) -> (..., 3, H, sum W)        FastWAM/Light-WAM on LIBERO
    vertical:   stacked (same W)      -> (..., 3, sum H, W)
    robotwin:   3 cameras; the first on top at its size (H, W), the other two resized to
                (H/2, W/2) side by side below it -> (..., 3, 3H/2, W)   FastWAM on RoboTwin
    """
    views = list(images.values()) if isinstance(images, Mapping) else list(images)
    if not views:
        raise ValueError("tile_cameras needs at least one camera image.")
    if layout not in TILE_LAYOUTS:
        raise ValueError(f"Unknown tile layout {layout!r}: use one of {', '.join(TILE_LAYOUTS)}.")
    if len(views) == 1:
        return views[0]
    if layout == "robotwin":
        if len(views) != 3:
            raise ValueError(
                f"The robotwin layout tiles exactly 3 cameras (head, left, right), got {len(views)}."
            )
        top, left, right = views
        h, w = top.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"The robotwin layout needs an even top image size, got {h}x{w}.")
        half = (h // 2, w // 2)
        bottom = torch.cat(
            [resize_images(left, half), resize_images(right, half)], dim=-1
        )  # (..., 3, H/2, W)
        return torch.cat([top, bottom], dim=-2)  # (..., 3, 3H/2, W)
    dim, other = (-1, -2) if layout == "horizontal" else (-2, -1)
    if len({v.shape[other] for v in views}) != 1:
        raise ValueError(
            f"Cameras tiled {layout}ly must share their {'height' if dim == -1 else 'width'}: resize them."
        )
    return torch.cat(views, dim=dim)


# ----------------------------------------------------------------------------- episode sources
@dataclass(frozen=True)
class EpisodeSpan:
    """One episode: its index and the dataset indices [start, start + length) of its frames."""

    episode_index: int  # the dataset's episode_index
    start: int  # dataset index of its first frame
    length: int  # number of frames


class EpisodeSource(Protocol):
    """What the cache reads: episode spans, an episode's frames per camera, a fingerprint."""

    camera_keys: tuple[str, ...]

    def episodes(self) -> list[EpisodeSpan]: ...

    def episode_frames(self, episode: EpisodeSpan, camera_key: str) -> torch.Tensor:
        """float32 (L, 3, H, W) in [0, 1]: every frame of the episode for one camera."""
        ...

    def fingerprint(self) -> str: ...


def dataset_fingerprint(root: str | Path) -> str:
    """sha256 of a dataset folder: meta/ files by content, data/ and videos/ files by size and mtime."""
    root = Path(root)
    hasher = hashlib.sha256()
    for sub in ("meta", "data", "videos"):
        base = root / sub
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        for path in files:
            rel = path.relative_to(root).as_posix()
            if sub == "meta":
                hasher.update(f"{rel}|".encode() + hashlib.sha256(path.read_bytes()).digest())
            else:
                st = path.stat()
                hasher.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}|".encode())
    return hasher.hexdigest()


class LeRobotEpisodeSource:
    """Episodes of a LeRobot dataset folder (v3.0 / v2.x), read with `wam.data`'s reader.

    Spans come from meta/episodes; a video camera's episode is decoded in one forward pass over
    its timestamps (`decode_frames`); image cameras are read item by item.
    """

    def __init__(self, root: str | Path, camera_keys: Sequence[str] | None = None) -> None:
        from wam.data import LeRobotDataset

        self.root = Path(root)
        self.dataset = LeRobotDataset(self.root)
        self.meta = self.dataset.meta
        available = list(self.meta.camera_keys)
        keys = list(camera_keys) if camera_keys else available
        missing = [k for k in keys if k not in available]
        if not keys or missing:
            raise ValueError(f"Camera(s) {missing or keys} not in {self.root}: choose from {available}.")
        self.camera_keys = tuple(keys)
        self._timestamps: dict[int, np.ndarray] = {}

    def episodes(self) -> list[EpisodeSpan]:
        spans = [
            EpisodeSpan(
                int(ep["episode_index"]),
                int(ep["dataset_from_index"]),
                int(ep["dataset_to_index"]) - int(ep["dataset_from_index"]),
            )
            for ep in self.meta.episodes
        ]
        return sorted(spans, key=lambda span: span.start)

    def _episode_timestamps(self, episode: EpisodeSpan) -> np.ndarray:
        """float64 (L,) timestamps of the episode's frames, from its data file (read once per file)."""
        if episode.episode_index not in self._timestamps:
            import pyarrow.parquet as pq

            table = pq.read_table(
                self.meta.data_file(episode.episode_index), columns=["episode_index", "index", "timestamp"]
            )
            episodes = table.column("episode_index").to_numpy()
            order = np.argsort(table.column("index").to_numpy(), kind="stable")
            stamps = table.column("timestamp").to_numpy().astype(np.float64)
            for ep in np.unique(episodes):
                rows = order[episodes[order] == ep]
                self._timestamps[int(ep)] = stamps[rows]
        return self._timestamps[episode.episode_index]

    def episode_frames(self, episode: EpisodeSpan, camera_key: str) -> torch.Tensor:
        if camera_key not in self.meta.video_keys:
            frames = [
                self.dataset[i][camera_key] for i in range(episode.start, episode.start + episode.length)
            ]
            return torch.stack(frames).float()  # (L, 3, H, W)
        from wam.data.video import decode_frames

        stamps = self.meta.video_from_timestamp(episode.episode_index, camera_key) + self._episode_timestamps(
            episode
        )
        path = self.meta.video_file(episode.episode_index, camera_key)
        images = decode_frames(path, stamps, self.dataset.tolerance_s)  # (L, H, W, 3) uint8
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)  # (L, 3, H, W)

    def fingerprint(self) -> str:
        return dataset_fingerprint(self.root)


# ----------------------------------------------------------------------------- the cache
@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a dataset and turned into codec input."""

    camera_keys: tuple[str, ...]  # cameras, tiled in this order
    clip_frames: int = 9  # raw frames per clip (1 + 4k)
    frame_stride: int = 4  # dataset frames between consecutive clip frames (action/video frequency ratio)
    image_size: int | None = None  # each camera resized to this square first (None: as stored)
    tile_layout: str = "horizontal"  # how several cameras are tiled (see `tile_cameras`)
    dtype: str = "float16"  # storage dtype of the latents on disk

    def __post_init__(self) -> None:
        from wam.models.codecs.base import latent_num_frames

        if not self.camera_keys:
            raise ValueError("At least one camera key is needed to cache latents.")
        latent_num_frames(self.clip_frames)  # raises for T != 1 + 4k
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be a positive integer, got {self.frame_stride}.")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels, got {self.image_size}.")
        if self.tile_layout not in TILE_LAYOUTS:
            raise ValueError(
                f"Unknown tile layout {self.tile_layout!r}: use one of {', '.join(TILE_LAYOUTS)}."
            )
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"Unknown storage dtype {self.dtype!r}: use one of {', '.join(STORAGE_DTYPES)}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera_keys": list(self.camera_keys),
            "clip_frames": self.clip_frames,
            "frame_stride": self.frame_stride,
            "image_size": self.image_size,
            "tile_layout": self.tile_layout,
            "dtype": self.dtype,
        }


def clip_frame_indices(length: int, spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Episode-relative frame indices (L, T) of every clip of an episode, clamped, and the pad mask (L, T)."""
    raw = np.arange(length)[:, None] + spec.frame_stride * np.arange(spec.clip_frames)[None, :]  # (L, T)
    return np.minimum(raw, length - 1), raw >= length


def cache_key(dataset_fp: str, codec_fp: str, spec: ClipSpec) -> str:
    """sha256 naming a cache: dataset, codec and clip parameters."""
    payload = {"format": CACHE_FORMAT, "dataset": dataset_fp, "codec": codec_fp, "clips": spec.to_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def default_cache_root(dataset_root: str | Path) -> Path:
    """`<dataset>-latents` next to the dataset folder (never inside it)."""
    root = Path(dataset_root).resolve()
    return root.parent / f"{root.name}-latents"


def check_cache_root(root: Path, dataset_root: Path | None = None) -> None:
    """Refuse a cache root that is not the cache's own: it may only hold `<key[:16]>/` folders.

    A cache writes (and on a rebuild overwrites) only files inside its key folders, so a folder
    of the user's that happens to be called `<dataset>-latents`, or the dataset itself, is never
    written into: that is a one-line FileExistsError instead.
    """
    root = Path(root)
    if dataset_root is not None:
        ds = dataset_root.resolve()
        where = root.resolve()
        if where == ds or ds in where.parents or where in ds.parents:
            raise FileExistsError(
                f"The latent cache folder {root} is, contains or lies inside the dataset {dataset_root}; "
                "pass a cache folder outside the dataset."
            )
    if not root.exists():
        return
    if not root.is_dir():
        raise FileExistsError(f"{root} is a file, not a latent cache folder; pass another cache folder.")
    for entry in sorted(root.iterdir()):
        is_key = entry.is_dir() and len(entry.name) == 16 and all(c in "0123456789abcdef" for c in entry.name)
        if is_key and _cache_or_starting(entry):
            continue
        raise FileExistsError(
            f"{root} is not a wam latent cache (it holds {entry.name}; a cache holds only "
            f"<key>/{MANIFEST_NAME} folders), so it is left alone: move it away or pass another cache folder."
        )


def _cache_or_starting(folder: Path) -> bool:
    """A key folder with a manifest, or one a build has only locked (or just made) so far."""
    return (folder / MANIFEST_NAME).is_file() or all(e.name == LOCK_NAME for e in folder.iterdir())


def _shard_name(episode_index: int) -> str:
    return f"episode_{episode_index:06d}.npy"


def _tiled_episode(source: EpisodeSource, span: EpisodeSpan, spec: ClipSpec) -> torch.Tensor:
    """Every frame of an episode, each camera resized then all tiled: (L, 3, H, W)."""
    views = {
        key: resize_images(source.episode_frames(span, key), spec.image_size) for key in spec.camera_keys
    }
    frames = tile_cameras(views, spec.tile_layout)  # (L, 3, H, W)
    if frames.shape[0] != span.length:
        raise ValueError(
            f"Episode {span.episode_index} has {frames.shape[0]} frames but its span says {span.length}: "
            "the dataset is inconsistent, re-record or repair it."
        )
    return frames


def _encode_episode(codec: Any, frames: torch.Tensor, spec: ClipSpec, batch_size: int) -> np.ndarray:
    """Latents of every clip of one episode: (L, C, F, h, w) in the storage dtype."""
    length, _, height, width = frames.shape
    shape = codec.latent_shape(spec.clip_frames, height, width)  # (C, F, h, w); raises for bad sizes
    index, _ = clip_frame_indices(length, spec)  # (L, T)
    out = np.empty((length, *shape), dtype=STORAGE_DTYPES[spec.dtype])
    for start in range(0, length, batch_size):
        clips = frames[torch.from_numpy(index[start : start + batch_size])]  # (b, T, 3, H, W)
        z = codec.encode(clips)  # (b, C, F, h, w)
        out[start : start + clips.shape[0]] = z.float().cpu().numpy()
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def _shard_ok(path: Path, length: int, dtype: str) -> bool:
    """A finished shard of the right length and dtype (atomic writes leave no torn files)."""
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError):
        return False
    return arr.ndim == 5 and arr.shape[0] == length and arr.dtype == STORAGE_DTYPES[dtype]


class LatentCache:
    """A built cache folder: `latents(index)` is the (C, F, h, w) latents of the clip at a dataset index."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(f"No latent cache at {self.folder}: build it with LatentCache.build.")
        self.manifest: dict[str, Any] = read_json(
            manifest_path, fix=f"delete {self.folder} and build the cache again"
        )
        if (
            not isinstance(self.manifest, dict)
            or self.manifest.get("format") != CACHE_FORMAT
            or not self.manifest.get("complete")
        ):
            raise ValueError(
                f"The latent cache at {self.folder} is incomplete or outdated: run LatentCache.build again."
            )
        clips = dict(self.manifest["clips"])
        clips["camera_keys"] = tuple(clips["camera_keys"])
        self.spec = ClipSpec(**clips)
        self.spans = [EpisodeSpan(*span) for span in self.manifest["episodes"]]  # sorted by start
        self._starts = np.array([span.start for span in self.spans], dtype=np.int64)
        self._shards: dict[int, np.ndarray] = {}

    @property
    def key(self) -> str:
        """The cache key (sha256 of dataset, codec and clip parameters)."""
        return str(self.manifest["key"])

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(C, F, h, w) of one clip's latents."""
        c, f, h, w = self.manifest["latent_shape"]
        return int(c), int(f), int(h), int(w)

    def __len__(self) -> int:
        """Number of cached clips (one per dataset frame)."""
        return int(sum(span.length for span in self.spans))

    def _locate(self, index: int) -> tuple[EpisodeSpan, int]:
        pos = int(np.searchsorted(self._starts, index, side="right")) - 1
        if pos >= 0:
            span = self.spans[pos]
            if index - span.start < span.length:
                return span, index - span.start
        raise IndexError(f"Dataset index {index} is not a frame of the cached dataset (0..{len(self) - 1}).")

    def _shard(self, episode_index: int) -> np.ndarray:
        if episode_index not in self._shards:
            path = self.folder / _shard_name(episode_index)
            try:
                self._shards[episode_index] = np.load(path, mmap_mode="r")
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"Latent shard {path} is missing: delete {self.folder} and build the cache again."
                ) from None
            except (ValueError, OSError, EOFError):
                raise BadFileError(
                    f"{path} is not a readable latent shard: delete {self.folder} and build the cache again."
                ) from None
        return self._shards[episode_index]

    def latents(self, index: int) -> torch.Tensor:
        """float32 (C, F, h, w): normalised latents of the clip starting at dataset frame `index`."""
        span, local = self._locate(int(index))
        return torch.from_numpy(np.asarray(self._shard(span.episode_index)[local], dtype=np.float32))

    def latents_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """float32 (B, C, F, h, w) for several dataset indices."""
        return torch.stack([self.latents(i) for i in indices])

    def clip_is_pad(self, index: int) -> torch.Tensor:
        """bool (T,): which frames of the clip at `index` were past the episode end (repeated last frame)."""
        span, local = self._locate(int(index))
        raw = local + self.spec.frame_stride * np.arange(self.spec.clip_frames)
        return torch.from_numpy(raw >= span.length)

    @classmethod
    def build(
        cls,
        data: str | Path | EpisodeSource,
        codec: Any,
        camera_keys: Sequence[str] | None = None,
        clip_frames: int = 9,
        frame_stride: int = 4,
        image_size: int | None = None,
        cache_dir: str | Path | None = None,
        *,
        tile_layout: str = "horizontal",
        dtype: str = "float16",
        batch_size: int = 16,
        progress: bool = True,
    ) -> LatentCache:
        """Encode every clip of a dataset with `codec` (a LatentCodec) into `cache_dir/<key[:16]>`.

        A complete cache with the same key is reused untouched; a partial one is resumed.
        `data` is a LeRobot dataset folder or any `EpisodeSource`; `cache_dir` defaults to
        `<dataset>-latents` next to a dataset folder (required for other sources).
        """
        if batch_size < 1:
            raise ValueError(f"--batch-size {batch_size} must be at least 1 (clips per codec call).")
        if isinstance(data, (str, Path)):
            source: EpisodeSource = LeRobotEpisodeSource(data, camera_keys)
            root = Path(cache_dir) if cache_dir is not None else default_cache_root(data)
        else:
            if cache_dir is None:
                raise ValueError(
                    "cache_dir is required when the data is not a dataset folder: pass where to cache."
                )
            source, root = data, Path(cache_dir)
        cameras = tuple(camera_keys) if camera_keys else tuple(source.camera_keys)
        spec = ClipSpec(cameras, clip_frames, frame_stride, image_size, tile_layout, dtype)
        dataset_fp, codec_fp = source.fingerprint(), codec.fingerprint
        key = cache_key(dataset_fp, codec_fp, spec)
        folder = root / key[:16]
        if isinstance(data, (str, Path)):
            check_cache_root(root, dataset_root=Path(data))
        else:
            check_cache_root(root)
        if _complete(folder, key):
            return cls(folder)
        spans = source.episodes()
        if not spans:
            raise ValueError("The dataset has no episodes to encode: record some first.")
        folder.mkdir(parents=True, exist_ok=True)
        with _build_lock(folder, progress):
            if _complete(folder, key):  # another process built it while this one waited
                return cls(folder)
            _build(source, codec, spec, spans, folder, key, (dataset_fp, codec_fp), batch_size, progress)
        return cls(folder)


def _complete(folder: Path, key: str) -> bool:
    """True when `folder` holds a finished cache of `key`."""
    if not (folder / MANIFEST_NAME).is_file():
        return False
    try:
        done = read_json(folder / MANIFEST_NAME)
    except BadFileError:  # the cache's own manifest, torn: rebuilt by the caller
        return False
    return isinstance(done, dict) and bool(done.get("complete")) and done.get("key") == key


@contextlib.contextmanager
def _build_lock(folder: Path, progress: bool) -> Iterator[None]:
    """Hold the folder's build lock, saying so when another process has it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"waiting for another process that is building the latent cache {folder}", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _build(
    source: EpisodeSource,
    codec: Any,
    spec: ClipSpec,
    spans: list[EpisodeSpan],
    folder: Path,
    key: str,
    fingerprints: tuple[str, str],
    batch_size: int,
    progress: bool,
) -> None:
    """Encode what is missing and mark the cache complete (the caller holds the build lock)."""
    dataset_fp, codec_fp = fingerprints
    for leftover in iter_temp_files(folder):
        leftover.unlink(missing_ok=True)
    manifest = {
        "format": CACHE_FORMAT,
        "key": key,
        "complete": False,
        "dataset_fingerprint": dataset_fp,
        "codec_fingerprint": codec_fp,
        "codec_type": getattr(codec, "codec_type", type(codec).__name__),
        "clips": spec.to_dict(),
        "episodes": [[s.episode_index, s.start, s.length] for s in spans],
    }
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2))
    _encode_missing(source, codec, spec, spans, folder, batch_size, progress)
    manifest["latent_shape"] = list(
        np.load(folder / _shard_name(spans[0].episode_index), mmap_mode="r").shape[1:]
    )
    manifest["complete"] = True
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2))


def _encode_missing(
    source: EpisodeSource,
    codec: Any,
    spec: ClipSpec,
    spans: list[EpisodeSpan],
    folder: Path,
    batch_size: int,
    progress: bool,
) -> None:
    """Encode and save every episode whose shard is missing (the resumable part of a build)."""
    from tqdm import tqdm

    todo = [s for s in spans if not _shard_ok(folder / _shard_name(s.episode_index), s.length, spec.dtype)]
    bar = tqdm(todo, desc="cache latents", unit="episode", disable=not progress, dynamic_ncols=True)
    for span in bar:
        frames = _tiled_episode(source, span, spec)  # (L, 3, H, W)
        latents = _encode_episode(codec, frames, spec, batch_size)  # (L, C, F, h, w)
        _save_npy(folder / _shard_name(span.episode_index), latents)
