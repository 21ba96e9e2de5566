"""The memory planner against measured peaks (tiny presets, one CPU process, float32) and its arithmetic.

Measured: torch's CPU allocator over a training step, from the profiler's per-op allocations
(`planner.measure_step_peak`); predicted: weights + gradients + AdamW + traced activations.
"""

from __future__ import annotations

import pytest
import torch

from wam.training.planner import PlanRequest, experiment, measure_step_peak, plan


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("preset", ["fastwam-tiny", "lightwam-tiny"])
def test_planned_peak_within_15_percent_of_measured(preset: str, checkpointing: bool) -> None:
    request = PlanRequest(
        preset, micro_batch=8, strategy="ddp", precision="fp32", checkpointing=checkpointing
    )
    planned = plan(request)["peak_bytes"]
    measured = measure_step_peak(experiment(request), 8)["peak"]
    assert planned == pytest.approx(measured, rel=0.15)


def test_sharding_divides_states_and_checkpointing_cuts_activations() -> None:
    one = plan(PlanRequest("fastwam-tiny", micro_batch=4, precision="fp32"))
    eight = plan(PlanRequest("fastwam-tiny", gpus=8, micro_batch=4, precision="fp32"))
    for part in ("weights", "gradients", "optimizer"):
        assert eight["per_gpu_gib"][part] <= one["per_gpu_gib"][part] / 7
    ckpt = plan(PlanRequest("fastwam-tiny", micro_batch=4, precision="fp32", checkpointing=True))
    assert ckpt["per_gpu_gib"]["activations"] < one["per_gpu_gib"]["activations"]
    offload = plan(PlanRequest("fastwam-tiny", micro_batch=4, precision="fp32", offload=True))
    assert offload["per_gpu_gib"]["optimizer"] == 0 and offload["cpu_offloaded_gib"] > 0


def test_paper_presets_fit_their_targets() -> None:
    fast = plan(PlanRequest("fastwam-libero", gpus=8, gpu_mem_gib=80, checkpointing=True))
    assert fast["micro_batch"] == 16 and fast["params_total"] > 5.9e9
    assert fast["peak_gib"] <= 40 and fast["fits"]
    light = plan(
        PlanRequest("lightwam-wan2.1-1.3b", gpu_mem_gib=24, micro_batch=8, strategy="ddp", checkpointing=True)
    )
    assert light["fits"], light
    too_big = plan(PlanRequest("fastwam-libero", gpus=1, gpu_mem_gib=80, strategy="ddp"))
    assert not too_big["fits"] and any("fsdp" in tip for tip in too_big["advice"])


def test_bad_requests_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="--offload needs --strategy fsdp"):
        PlanRequest("fastwam-tiny", strategy="ddp", offload=True)
    with pytest.raises(ValueError, match="--lora applies to Fast-WAM"):
        plan(PlanRequest("lightwam-tiny", lora=True))


def test_set_overrides_change_what_is_planned() -> None:
    lora = plan(PlanRequest("lightwam-wan2.1-1.3b", gpu_mem_gib=80, micro_batch=8, strategy="ddp"))
    full = plan(
        PlanRequest(
            "lightwam-wan2.1-1.3b",
            gpu_mem_gib=80,
            micro_batch=8,
            strategy="ddp",
            overrides=("policy.train_backbone=true",),
        )
    )
    assert lora["params_total"] == full["params_total"]
    assert (
        lora["params_trainable"] < 0.3 * full["params_total"]
        and full["params_trainable"] == full["params_total"]
    )
    assert full["per_gpu_gib"]["optimizer"] > 3 * lora["per_gpu_gib"]["optimizer"]
    assert tuple(full["request"]["overrides"]) == ("policy.train_backbone=true",)
    with pytest.raises(ValueError, match=r"Unknown config key 'policy\.nope'"):
        plan(PlanRequest("lightwam-tiny", overrides=("policy.nope=1",)))
