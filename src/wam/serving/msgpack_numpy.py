"""msgpack with numpy arrays: the wire encoding of openpi's policy servers, never pickle.

An array travels as a msgpack map with bytes keys
    {b"__ndarray__": True, b"data": <raw bytes, C order>, b"dtype": "<f4", b"shape": [H, D]}
and a numpy scalar as {b"__npgeneric__": True, b"data": <python value>, b"dtype": "<f4"}, exactly
as `openpi_client.msgpack_numpy` encodes them, so either side can be an openpi program. Object,
void and complex dtypes are refused (they could only travel pickled). Everything else is plain
msgpack: str keys, str / int / float / bool / None / list / dict values.

Decoded arrays are read-only views of the received bytes (no copy); copy one before writing to it.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = ("V", "O", "c")  # void, object, complex: not representable without pickle


def _encode(obj: Any) -> Any:
    """msgpack `default` hook: numpy arrays and scalars -> tagged maps."""
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"Arrays of dtype {obj.dtype} cannot be sent: convert them to a numeric dtype.")
    if isinstance(obj, np.ndarray):
        return {
            b"__ndarray__": True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"Cannot send a {type(obj).__name__} over msgpack: send arrays, numbers and strings.")


def _decode(obj: dict[Any, Any]) -> Any:
    """msgpack `object_hook`: tagged maps -> numpy arrays and scalars; other maps unchanged."""
    if b"__ndarray__" in obj:
        dtype = _dtype(obj[b"dtype"])
        return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"])
    if b"__npgeneric__" in obj:
        return _dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def _dtype(text: Any) -> np.dtype:
    dtype = np.dtype(text)
    if dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"Arrays of dtype {dtype} are refused: only numeric and bool arrays travel.")
    return dtype


def packb(obj: Any) -> bytes:
    """Encode a (nested) dict of numpy arrays, numbers and strings."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode what `packb` (or openpi's packer) produced."""
    return msgpack.unpackb(data, object_hook=_decode, raw=False)


class Packer:
    """A reusable encoder (the same bytes as `packb`), as openpi's `Packer()`."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_encode, use_bin_type=True)

    def pack(self, obj: Any) -> bytes:
        return self._packer.pack(obj)
