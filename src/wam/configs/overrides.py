"""`apply_overrides(cfg, ["train.lr=1e-4", "policy.chunk_size=16"])`: the CLI's `--set`.

Each override names a leaf field by its dotted path from the experiment config; the text is
converted with that field's declared type (`parse_value`), and the whole config is rebuilt from
its dict so that every `__post_init__` check runs on the new values. An unknown key fails with
one line listing the closest valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any, TypeVar

from wam.configs.serialize import field_types, from_dict, parse_value, to_dict

C = TypeVar("C")


def leaf_keys(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of a config class and its type."""
    keys: dict[str, Any] = {}
    for name, tp in field_types(cls).items():
        path = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            keys.update(leaf_keys(tp, f"{path}."))
        else:
            keys[path] = tp
    return keys


def apply_overrides(cfg: C, overrides: Iterable[str]) -> C:
    """A new config with `key=value` overrides applied (the input is not modified)."""
    data = to_dict(cfg)
    valid = _valid_keys(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"Override {item!r} is not key=value: write e.g. --set train.lr=1e-4.")
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
            preset = getattr(cfg, "name", "") or "PRESET"
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else f"`wam info {preset} --settings` lists them."
            )
            raise ValueError(f"Unknown config key '{key}': {hint}")
        parts = key.split(".")
        value = parse_value(text, valid[key], key)
        node = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else _jsonish(value)
    return from_dict(type(cfg), data)


def _valid_keys(cfg: Any) -> dict[str, Any]:
    """Settable keys of this config instance (the concrete policy subclass's fields included)."""
    keys: dict[str, Any] = {}
    for name, tp in field_types(type(cfg)).items():
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value):
            keys.update({f"{name}.{k}": t for k, t in _valid_keys(value).items()})
        elif dataclasses.is_dataclass(tp):
            keys.update(leaf_keys(tp, f"{name}."))
        else:
            keys[name] = tp
    keys.pop("policy.type", None)  # the type tag selects the class; change the preset instead
    return keys


def _jsonish(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def describe(cfg: Any) -> list[tuple[str, Any]]:
    """(dotted key, current value) of every settable field, for `wam info` and docs."""
    out = []
    for key in _valid_keys(cfg):
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        out.append((key, node))
    return out
