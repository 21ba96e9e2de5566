"""Turn a `--policy` string into a `Policy`: the one place the CLI resolves policies.

A spec is tried against an ordered list of resolvers; the first that claims it builds the
policy. Today's resolvers cover the policies without learning:

    expert          Meta-World's scripted expert (reads the privileged environment state)
    random[:SEED]   uniform random actions in [-1, 1], seeded (default seed 0)
    zero            all-zero actions
    RUN_DIR         a trained policy: a `wam train` run folder (its last checkpoint) or one
                    checkpoint folder (`RUN/checkpoints/step_XXXXXX`)
    ws://HOST:PORT  a policy served by `wam serve` (`wam.serving.remote.RemotePolicy`); wss:// too

Extending: other sources are added by registering a resolver with `register_resolver`, ahead of
the builtin names. Resolvers import their heavy dependencies (torch, a network client) only when
they build a policy.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from wam.policies.base import Policy

Resolver = tuple[Callable[[str], bool], Callable[[str], Policy]]  # (claims(spec), build(spec))


def _expert(arg: str | None) -> Policy:
    from wam.policies.scripted import ExpertPolicy

    if arg:
        raise ValueError(f"The expert takes no argument, got 'expert:{arg}': use --policy expert.")
    return ExpertPolicy()


def _random(arg: str | None) -> Policy:
    from wam.policies.scripted import RandomPolicy

    try:
        seed = int(arg) if arg else 0
    except ValueError:
        raise ValueError(f"Bad random-policy seed '{arg}': use random or random:<integer>.") from None
    return RandomPolicy(seed=seed)


def _zero(arg: str | None) -> Policy:
    from wam.policies.scripted import RandomPolicy

    if arg:
        raise ValueError(f"The zero policy takes no argument, got 'zero:{arg}': use --policy zero.")
    return RandomPolicy(zero=True)


BUILTIN: dict[str, Callable[[str | None], Policy]] = {"expert": _expert, "random": _random, "zero": _zero}


def _is_checkpoint(spec: str) -> bool:
    path = Path(spec)
    return path.is_dir() and ((path / "config.json").is_file() or (path / "checkpoints").is_dir())


def _checkpoint(spec: str) -> Policy:
    from wam.training.checkpoint import load_policy as load_trained

    return load_trained(spec)


REMOTE_CONNECT_TIMEOUT_S = 30.0  # how long `--policy ws://...` waits for the server to answer


def _is_url(spec: str) -> bool:
    return spec.startswith(("ws://", "wss://"))


def _remote(spec: str) -> Policy:
    try:
        from wam.serving.remote import RemotePolicy
    except ImportError as err:
        missing = err.name or "a serving library"
        raise ValueError(
            f"Remote policies need the serve extra ({missing} is missing): pip install 'wam[serve]'."
        ) from None
    try:
        return RemotePolicy(spec, connect_timeout_s=REMOTE_CONNECT_TIMEOUT_S)
    except ConnectionError as err:
        raise ValueError(str(err)) from None


_RESOLVERS: list[Resolver] = [(_is_checkpoint, _checkpoint), (_is_url, _remote)]


def register_resolver(claims: Callable[[str], bool], build: Callable[[str], Policy]) -> None:
    """Add a resolver tried before the builtin names (e.g. checkpoint dirs, ws:// URLs)."""
    _RESOLVERS.append((claims, build))


def load_policy(spec: str) -> Policy:
    """The policy named by `spec` (see the module docstring for the accepted forms)."""
    spec = spec.strip()
    for claims, build in _RESOLVERS:
        if claims(spec):
            return build(spec)
    name, _, arg = spec.partition(":")
    if name in BUILTIN:
        return BUILTIN[name](arg or None)
    names = ", ".join(BUILTIN)
    if Path(spec).exists():
        raise ValueError(
            f"'{spec}' is not a `wam train` run or checkpoint folder (no config.json, no checkpoints/): "
            f"pass a run folder or one of {names}."
        )
    if "/" in spec or spec.startswith("."):
        raise ValueError(f"No run folder at '{spec}': check the path, or use one of {names}.")
    close = difflib.get_close_matches(name, list(BUILTIN), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}?" if close else f"use one of {names}."
    raise ValueError(f"Unknown policy '{spec}': {hint}")
