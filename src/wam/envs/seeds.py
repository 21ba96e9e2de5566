"""Where episode seeds come from: demonstrations and evaluation never share an initial state.

Every Meta-World episode is defined by (task, seed): `MetaWorldEnv.reset(seed)` samples the
object and goal positions from that seed. Collection draws its seeds from the range
[COLLECT_SEED_START, EVAL_SEED_START): the attempts of a task are `seed, seed + 1, ...`
(at most `ATTEMPTS_PER_EPISODE * episodes_per_task` of them). Evaluation uses the held-out
seeds EVAL_SEED_START, EVAL_SEED_START + 1, ... by default, so a policy is always evaluated
on initial states that its demonstrations never showed (unless a user asks otherwise).
"""

from __future__ import annotations

COLLECT_SEED_START = 0  # default first seed of demonstration collection
EVAL_SEED_START = 100_000  # default first seed of evaluation; collection seeds stay below it
ATTEMPTS_PER_EPISODE = 3  # collection tries at most this many seeds per requested episode


def collection_seeds(start: int, episodes: int) -> range:
    """The seeds collection may try for one task: `ATTEMPTS_PER_EPISODE * episodes` from `start`."""
    if episodes < 1:
        raise ValueError(f"episodes per task must be at least 1, got {episodes}.")
    attempts = ATTEMPTS_PER_EPISODE * episodes
    if start < 0 or start + attempts > EVAL_SEED_START:
        raise ValueError(
            f"Collection seeds {start}..{start + attempts - 1} leave the collection range "
            f"[0, {EVAL_SEED_START}): pick --seed between 0 and {EVAL_SEED_START - attempts} so the "
            "held-out evaluation seeds stay unseen."
        )
    return range(start, start + attempts)


def evaluation_seeds(start: int, episodes: int) -> list[int]:
    """The seeds of one task's evaluation episodes: `start, start + 1, ...`."""
    if episodes < 1:
        raise ValueError(f"episodes per task must be at least 1, got {episodes}.")
    if start < 0:
        raise ValueError(f"The evaluation seed must be non-negative, got {start}.")
    return list(range(start, start + episodes))
