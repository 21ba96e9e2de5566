"""The action-chunk broker (one action per tick, openpi semantics) and temporal ensembling (ACT)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wam.serving.broker import ActionChunkBroker, TemporalEnsembler

H = 4


class ChunkSource:
    """A fake remote policy: query q returns actions[h] = 100 q + h in every dimension."""

    def __init__(self, horizon: int = H) -> None:
        self.horizon = horizon
        self.queries: list[dict] = []
        self.resets = 0

    def infer(self, obs: dict) -> dict:
        q = len(self.queries)
        self.queries.append(obs)
        actions = (100.0 * q + np.arange(self.horizon, dtype=np.float32))[:, None].repeat(2, axis=1)  # (H, 2)
        return {
            "actions": actions,
            "ids": np.arange(self.horizon) + 10 * q,
            "server_timing": {"infer_ms": 1.0},
        }

    def reset(self) -> None:
        self.resets += 1


def test_one_action_per_tick_and_a_new_query_after_the_horizon() -> None:
    source = ChunkSource()
    broker = ActionChunkBroker(source, action_horizon=3)
    outs = [broker.infer({"tick": t}) for t in range(7)]
    assert [o["actions"][0] for o in outs] == [0, 1, 2, 100, 101, 102, 200]
    assert [o["ids"] for o in outs] == [0, 1, 2, 10, 11, 12, 20]  # every array is sliced alike
    assert outs[0]["actions"].shape == (2,) and outs[0]["server_timing"] == {"infer_ms": 1.0}
    assert [q["tick"] for q in source.queries] == [0, 3, 6]  # queried with the observation of its tick
    broker.reset()
    assert broker.infer({"tick": 7})["actions"][0] == 300 and source.resets == 1  # reset re-queries


def test_the_horizon_cannot_exceed_the_chunk() -> None:
    broker = ActionChunkBroker(ChunkSource(horizon=2), action_horizon=3)
    with pytest.raises(ValueError, match="2 steps per chunk, fewer than action_horizon=3"):
        broker.infer({})
    with pytest.raises(ValueError, match="at least 1"):
        ActionChunkBroker(ChunkSource(), action_horizon=0)


def test_ensembling_weights_match_act() -> None:
    m = 0.5
    ens = TemporalEnsembler(m)
    ens.add(0, np.array([[0.0], [1.0], [2.0]]))  # chunk made at tick 0 covers ticks 0..2
    ens.add(1, np.array([[10.0], [11.0], [12.0]]))  # tick 1 covers 1..3
    ens.add(2, np.array([[20.0], [21.0], [22.0]]))  # tick 2 covers 2..4
    w = np.exp(-m * np.arange(3))
    expected = (w[0] * 2.0 + w[1] * 11.0 + w[2] * 20.0) / w.sum()  # oldest first at tick 2
    assert ens.action(2)[0] == pytest.approx(expected)
    w2 = np.exp(-m * np.arange(2))
    assert ens.action(3)[0] == pytest.approx((w2[0] * 12.0 + w2[1] * 21.0) / w2.sum())  # chunk 0 expired
    assert ens.action(4)[0] == pytest.approx(22.0)
    with pytest.raises(ValueError, match="No chunk covers tick 5"):
        ens.action(5)
    with pytest.raises(ValueError, match="finite"):
        TemporalEnsembler(math.nan)


def test_a_zero_coefficient_is_a_plain_mean_and_a_negative_one_favours_the_newest() -> None:
    for coeff, check in (
        (0.0, lambda a: a == pytest.approx(5.0)),
        (-50.0, lambda a: a == pytest.approx(10.0)),
    ):
        ens = TemporalEnsembler(coeff)
        ens.add(0, np.array([0.0, 0.0]))
        ens.add(1, np.array([10.0, 10.0]))
        assert check(ens.action(1))


def test_broker_with_ensembling_blends_overlapping_chunks() -> None:
    source = ChunkSource()
    broker = ActionChunkBroker(source, action_horizon=1, ensemble_coeff=0.0)  # ACT: query every tick
    actions = [broker.infer({})["actions"][0] for _ in range(3)]
    # tick t averages query q's step t - q over q = 0..t: mean(100 q + t - q)
    assert actions == pytest.approx([0.0, (1 + 100) / 2, (2 + 101 + 200) / 3])
    assert len(source.queries) == 3
    assert broker.infer({})["actions"].dtype == np.float32


def test_ensembling_without_overlap_equals_the_plain_broker() -> None:
    plain = ActionChunkBroker(ChunkSource(), action_horizon=H)
    blended = ActionChunkBroker(ChunkSource(), action_horizon=H, ensemble_coeff=0.01)
    for _ in range(2 * H + 1):
        np.testing.assert_array_equal(plain.infer({})["actions"], blended.infer({})["actions"])
