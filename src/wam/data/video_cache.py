"""Per-process random access to video frames for training.

Two modes, chosen per video file:
  * decoded: the whole file is decoded once into uint8 (N, H, W, 3) and kept in memory while the
    process's byte budget allows (least recently used files are dropped first); a query is then
    a nearest-timestamp lookup and an index.
  * seek: files larger than the whole budget are read per query (seek to the key frame before
    the first timestamp, decode forward, as LeRobot's PyAV path); containers stay open (LRU).

The budget is per process: with a DataLoader each worker holds its own cache. Open containers are
closed before any fork (`video.register_fork_closer`) and a child starts with an empty cache
(pid check), since FFmpeg decoders must not cross a fork.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from wam.data.video import decode_all, decode_frames, match_timestamps, open_video, register_fork_closer

DEFAULT_CACHE_BYTES = 2 * 1024**3  # 2 GiB of decoded frames per process
MAX_OPEN_CONTAINERS = 16  # open files kept for the seek mode


class VideoFrameCache:
    """Frames of video files at timestamps, from memory when the budget allows, else by seeking."""

    def __init__(self, budget_bytes: int = DEFAULT_CACHE_BYTES, tolerance_s: float = 1e-4) -> None:
        if budget_bytes < 0:
            raise ValueError(f"The video cache budget must be >= 0 bytes, got {budget_bytes}.")
        self.budget_bytes = int(budget_bytes)
        self.tolerance_s = tolerance_s
        self._reset()
        register_fork_closer(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._decoded: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._too_big: set[str] = set()
        self._containers: OrderedDict[str, object] = OrderedDict()
        self.used_bytes = 0
        self.decoded_files = 0  # how many whole-file decodes happened (for benchmarks and tests)

    def frames(self, path: Path, timestamps: np.ndarray | list[float]) -> np.ndarray:
        """uint8 (N, H, W, 3) frames nearest to `timestamps` (seconds) in the file at `path`."""
        if os.getpid() != self._pid:  # forked: the parent's decoders are not ours
            self._reset()
        key = str(path)
        entry = self._decoded.get(key)
        if entry is None and key not in self._too_big and self.budget_bytes > 0:
            entry = self._decode_into_cache(Path(path))
        if entry is not None:
            self._decoded.move_to_end(key)
            images, stamps = entry
            return images[match_timestamps(np.asarray(timestamps), stamps, self.tolerance_s, key)]
        return decode_frames(Path(path), timestamps, self.tolerance_s, container=self._container(key))

    def _decode_into_cache(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        key = str(path)
        with open_video(key) as container:
            stream = container.streams.video[0]
            size = int(stream.frames or 0) * stream.height * stream.width * 3
        if size == 0 or size > self.budget_bytes:
            self._too_big.add(key)
            return None
        while self._decoded and self.used_bytes + size > self.budget_bytes:
            _, (old, _) = self._decoded.popitem(last=False)
            self.used_bytes -= old.nbytes
        images, stamps = decode_all(path)
        self._decoded[key] = (images, stamps)
        self.used_bytes += images.nbytes
        self.decoded_files += 1
        return images, stamps

    def _container(self, key: str):
        container = self._containers.get(key)
        if container is None:
            container = open_video(key)
            self._containers[key] = container
            if len(self._containers) > MAX_OPEN_CONTAINERS:
                _, oldest = self._containers.popitem(last=False)
                oldest.close()
        else:
            self._containers.move_to_end(key)
        return container

    def close_decoders(self) -> None:
        """Close the containers kept open for seeking (they reopen on demand)."""
        if os.getpid() == self._pid:
            for container in self._containers.values():
                container.close()
        self._containers = OrderedDict()

    def close(self) -> None:
        self.close_decoders()
        self._reset()
