"""Cached codec latents attached to training samples: what the World Action Models train on.

Light-WAM and Fast-WAM read the latents of a video clip starting at each sample's frame, precomputed
once by `wam.data.latent_cache.LatentCache` (as the authors cache them offline). A policy config
opts in by having the clip fields both policies share:
    codec         latent codec folder or preset (None: `<dataset>-codec` next to the dataset)
    clip_frames   raw frames per clip (1 + 4k)
    frame_stride  dataset frames between clip frames (the action/video frequency ratio)
    tile_layout   how the policy's cameras (`image_keys`, resized to `image_size`) are tiled
and optionally `latent_cache_dir` (None: `<dataset>-latents`) and `latent_dtype` (storage dtype,
default float16). `attach_video_latents(dataset, policy, root)` builds or reuses the cache and
wraps the dataset; every sample then also holds
    video.latents          float32 (C, F, h, w)   normalised latents of the clip at the sample's frame
    video.latents_is_pad   bool (F,)              latent frames made only of frames past the episode end
Latent frame 0 is the current frame encoded alone (Wan's causal layout); latent frame j >= 1 covers
the clip's raw frames 4j-3 .. 4j and is padding when all of them are.

The training data pipeline hooks in with two calls (see `wam.training.data`):
    open_dataset:           if needs_video_latents(policy):
                                dataset = attach_video_latents(dataset, policy, root)
    resolve_policy_config:  policy = resolve_codec(policy, meta.root)   # the saved config names its codec
Samples are looked up by their dataset-wide `index`, so an episode subset (`train.episodes`) reads
the right clips. The cache is reopened lazily in every DataLoader worker (memory-mapped shards are
never pickled). Building a missing cache runs the codec over every episode once (on CUDA when
available); later runs with the same dataset, codec and clip parameters reuse it untouched.

Importing this module is light: torch and the cache are imported when they are used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from wam.data.latent_cache import ClipSpec, LatentCache

LATENTS_KEY = "video.latents"  # sample key of the clip latents (C, F, h, w)
LATENTS_PAD_KEY = f"{LATENTS_KEY}_is_pad"  # sample key of the latent-frame padding mask (F,)
# the config fields of a policy that reads cached latents
CLIP_FIELDS = ("codec", "clip_frames", "frame_stride", "tile_layout")


def needs_video_latents(policy: Any) -> bool:
    """True when the policy config trains on cached clip latents (it has every field of CLIP_FIELDS)."""
    return all(hasattr(policy, name) for name in CLIP_FIELDS)


def codec_source(policy: Any, dataset_root: str | Path) -> str:
    """The policy's codec (folder or preset name), defaulting to `<dataset>-codec` next to the dataset."""
    if policy.codec:
        return str(policy.codec)
    from wam.models.codecs.train import default_codec_dir

    return str(default_codec_dir(dataset_root))


def resolve_codec(policy: Any, dataset_root: str | Path) -> Any:
    """The policy config with `codec` filled in (unchanged when set or when the policy reads no latents)."""
    if not needs_video_latents(policy) or policy.codec:
        return policy
    return dataclasses.replace(policy, codec=codec_source(policy, dataset_root))


def clip_spec_for(policy: Any) -> ClipSpec:
    """The `ClipSpec` of the clips a policy config trains on (its cameras, size, clip and tiling)."""
    from wam.data.latent_cache import ClipSpec

    return ClipSpec(
        camera_keys=tuple(policy.image_keys),
        clip_frames=policy.clip_frames,
        frame_stride=policy.frame_stride,
        image_size=policy.image_size,
        tile_layout=policy.tile_layout,
        dtype=getattr(policy, "latent_dtype", "float16"),
    )


def ensure_latent_cache(
    dataset_root: str | Path,
    codec: Any,
    spec: ClipSpec,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> LatentCache:
    """Open the latent cache of (dataset, codec, clips), building whatever part of it is missing.

    `codec` is a `LatentCodec` or anything `load_codec` accepts (a codec folder, a Wan VAE folder or
    preset name); `cache_dir` defaults to `<dataset>-latents` next to the dataset.
    """
    import torch

    from wam.data.latent_cache import LatentCache
    from wam.models.codecs import LatentCodec, load_codec

    root = Path(dataset_root)
    if not (root / "meta" / "info.json").is_file():
        raise FileNotFoundError(f"No LeRobot dataset at {root}: pass the folder that holds meta/info.json.")
    if not isinstance(codec, LatentCodec):
        codec = load_codec(codec, device="cuda" if torch.cuda.is_available() else "cpu")
    return LatentCache.build(
        root,
        codec,
        camera_keys=spec.camera_keys,
        clip_frames=spec.clip_frames,
        frame_stride=spec.frame_stride,
        image_size=spec.image_size,
        cache_dir=cache_dir,
        tile_layout=spec.tile_layout,
        dtype=spec.dtype,
        batch_size=batch_size,
        progress=progress,
    )


def latent_frame_padding(clip_is_pad: torch.Tensor, temporal_stride: int = 4) -> torch.Tensor:
    """Raw-frame padding (T,) of a 1 + stride*k clip -> latent-frame padding (F,), F = 1 + k."""
    import torch

    if clip_is_pad.ndim != 1 or (clip_is_pad.shape[0] - 1) % temporal_stride:
        raise ValueError(
            f"clip_is_pad must be (1 + {temporal_stride}k,), got shape {tuple(clip_is_pad.shape)}."
        )
    tail = clip_is_pad[1:].reshape(-1, temporal_stride).all(dim=1)  # (k,)
    return torch.cat([clip_is_pad[:1], tail])  # (F,)


class LatentClipDataset:
    """A dataset whose samples also carry their clip latents and latent-frame padding (map-style)."""

    def __init__(self, base: Any, cache: LatentCache | str | Path, key: str = LATENTS_KEY) -> None:
        self.base = base
        self.key = key
        self.cache_folder = Path(cache.folder if hasattr(cache, "folder") else cache)
        self._cache: LatentCache | None = cache if hasattr(cache, "folder") else None  # type: ignore[assignment]
        cached = len(self.cache)
        frames = getattr(getattr(base, "meta", None), "total_frames", cached)
        if cached != frames:
            raise ValueError(
                f"The latent cache at {self.cache_folder} holds {cached} clips but the dataset has {frames} "
                "frames: it was built from another dataset; delete it or point latent_cache_dir elsewhere."
            )

    @property
    def cache(self) -> LatentCache:
        """The cache, (re)opened lazily in each process."""
        if self._cache is None:
            from wam.data.latent_cache import LatentCache

            self._cache = LatentCache(self.cache_folder)
        return self._cache

    @property
    def meta(self) -> Any:
        """The wrapped dataset's metadata (what the training loop reads)."""
        return self.base.meta

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = dict(self.base[idx])
        if "index" not in item:
            raise KeyError(
                "Samples need their dataset-wide 'index' to find their latents: use a LeRobotDataset."
            )
        index = int(item["index"])
        item[self.key] = self.cache.latents(index)  # (C, F, h, w)
        item[f"{self.key}_is_pad"] = latent_frame_padding(self.cache.clip_is_pad(index))  # (F,)
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None  # memory-mapped shards are reopened by each DataLoader worker
        return state

    def __repr__(self) -> str:
        return f"LatentClipDataset({self.base!r}, cache={str(self.cache_folder)!r})"


def attach_video_latents(
    dataset: Any, policy: Any, root: str | Path, *, progress: bool = True
) -> LatentClipDataset:
    """Wrap `dataset` (the LeRobot dataset at `root`) with the clip latents the policy config needs.

    Builds the cache when it is missing; a dataset that is already wrapped is returned unchanged.
    """
    if isinstance(dataset, LatentClipDataset):
        return dataset
    if not needs_video_latents(policy):
        raise ValueError(
            f"{type(policy).__name__} reads no cached latents: it lacks {', '.join(CLIP_FIELDS)}."
        )
    cache_dir = getattr(policy, "latent_cache_dir", None)
    cache_dir = Path(cache_dir).expanduser() if cache_dir else None
    cache = ensure_latent_cache(
        root, codec_source(policy, root), clip_spec_for(policy), cache_dir, progress=progress
    )
    return LatentClipDataset(dataset, cache)
