"""The quickstart end to end at toy size: every stage runs, results.json has the eval schema, and a
second run reuses every stage instead of recomputing it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from wam.quickstart import QuickstartConfig, run_quickstart


def test_quickstart_runs_every_stage_then_reuses_them(tmp_path, monkeypatch):
    cfg = QuickstartConfig(
        out=str(tmp_path / "qs"),
        tasks=("drawer-close-v3",),
        episodes=2,
        eval_episodes=1,
        steps=2,
        codec_steps=2,
        image_size=32,
        workers=1,  # the baseline trains and the evaluations run in a second process
    )
    results = run_quickstart(cfg)
    assert results["policy"] == "lightwam-tiny"
    assert set(results["policies"]) == {"lightwam-tiny", "baseline-tiny", "expert"}
    assert results["policies"]["expert"]["mean_success"] == 1.0
    assert 0.0 <= results["mean_success"] <= 1.0
    assert results["tasks"]["drawer-close-v3"]["episodes"] == 1
    assert results["profile"]["params"] > 0 and results["profile"]["latency_ms_p50"] > 0
    on_disk = json.loads((tmp_path / "qs" / "results.json").read_text())
    assert on_disk["mean_success"] == results["mean_success"]
    assert set(results["profiles"]) == {"lightwam-tiny", "baseline-tiny"}
    assert (tmp_path / "qs" / "data-codec" / "config.json").is_file()
    for preset in ("lightwam-tiny", "baseline-tiny"):
        assert (tmp_path / "qs" / "runs" / preset / "loss.png").is_file()

    # A second run must not collect, train or evaluate again.
    import wam.envs.collect as collect
    import wam.envs.evaluator as evaluator
    import wam.models.codecs.train as codec_train
    import wam.training.loop as loop

    def forbidden(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr(evaluator, "evaluate", forbidden)
    monkeypatch.setattr(loop, "train", forbidden)
    monkeypatch.setattr(codec_train, "train_codec", forbidden)
    monkeypatch.setattr(collect, "record_expert_episode", forbidden)
    again = run_quickstart(dataclasses.replace(cfg, workers=0))  # inline, so the patches apply
    assert again["policies"]["expert"]["tasks"] == results["policies"]["expert"]["tasks"]


def test_quickstart_rejects_bad_settings():
    with pytest.raises(ValueError, match="Did you mean"):
        QuickstartConfig(tasks=("drawer-clse-v3",))
    with pytest.raises(ValueError, match="at least 1"):
        QuickstartConfig(steps=0)
    with pytest.raises(ValueError, match="did you mean baseline-tiny"):
        QuickstartConfig(baseline="baseline-tny")
    with pytest.raises(ValueError, match="trained preset itself"):
        QuickstartConfig(preset="baseline-tiny", baseline="baseline-tiny")
