"""The fast inference path (`wam.policies.fast_path`): options, same actions as the plain path, plumbing."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch

from wam.bench import build
from wam.bench.counting import count_call
from wam.policies.fast_path import TEXT_METHODS, InferenceOptions, parse_inference_options
from wam.policies.fastwam.fast_loop import FastActionLoop

PRESETS = ("baseline-tiny", "lightwam-tiny", "fastwam-tiny")
EAGER = {"compile_backend": "eager"}  # dynamo traces the compiled functions, no C++ code generation


@cache
def _policy(name: str) -> tuple[Any, dict[str, Any]]:
    """A preset at 32 px with random weights (and codec), 2 Euler steps, and an observation batch of 2."""
    steps = ("policy.action_flow.num_inference_steps=2",) if name.startswith("fastwam") else ()
    target = build.resolve_target(name, overrides=("policy.image_size=32", *steps))
    policy = build.build_policy(target, torch.device("cpu"))
    build.prepare_inputs(policy, target, torch.device("cpu"), "images")
    return policy, build.synthetic_observation(policy, 2, "images")


def fresh(name: str, options: InferenceOptions | None = None) -> tuple[Any, dict[str, Any]]:
    policy, obs = _policy(name)
    return copy.deepcopy(policy).configure_inference(options), obs


def chunk(policy: Any, obs: dict[str, Any]) -> np.ndarray:
    torch.manual_seed(0)  # Fast-WAM's noise
    return policy.predict_action_chunk(obs)


def tensors(policy: Any) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer (persistent or not), by name."""
    named = itertools.chain(policy.named_parameters(), policy.named_buffers())
    return {name: t.detach().clone() for name, t in named}


def perturbed(policy: Any) -> Any:
    """A copy of `policy` with every parameter moved by seeded noise: other weights, same shapes."""
    other = copy.deepcopy(policy)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=gen))
    return other


def memo_of(policy: Any) -> Any:
    module_name, method = TEXT_METHODS[policy.name]
    return getattr(getattr(policy, module_name), method)


def test_presets_and_validation() -> None:
    plain, fast = InferenceOptions.plain(), InferenceOptions.fast("cpu")
    assert not plain.inference_mode and plain.attention == "math" and not plain.kv_cache
    assert fast.text_cache and fast.threads == 1 and not fast.bf16 and not fast.cuda_graphs
    cuda = InferenceOptions.fast("cuda")
    assert cuda.bf16 and cuda.cuda_graphs and cuda.threads is None
    parsed = parse_inference_options("fast", ["threads=2", "compile=off", "bf16=true"])
    assert (parsed.threads, parsed.compile, parsed.bf16) == (2, False, True)
    assert parse_inference_options("default", ["threads=none"]).threads is None
    with pytest.raises(ValueError, match="did you mean threads"):
        parse_inference_options("default", ["thread=2"])
    with pytest.raises(ValueError, match="not a boolean"):
        parse_inference_options("default", ["compile=maybe"])
    with pytest.raises(ValueError, match="attention"):
        InferenceOptions(attention="flash")
    with pytest.raises(ValueError, match="Unknown inference preset"):
        InferenceOptions.preset("fastest")


@pytest.mark.parametrize("name", PRESETS)
def test_every_path_gives_the_plain_actions(name: str) -> None:
    plain, obs = fresh(name, InferenceOptions.plain())
    reference = chunk(plain, obs)
    assert reference.shape == (2, plain.chunk_size, 4) and np.abs(reference).mean() > 0.05
    # compile is traced (eager backend) for Fast-WAM's own loop only: tracing Light-WAM's pass costs ~10 s
    # (benchmarks/fast_path.py checks every compiled path against plain with inductor)
    everything = InferenceOptions(text_cache=True, compile=name == "fastwam-tiny", threads=1, **EAGER)
    for options in (InferenceOptions(), everything, dataclasses.replace(everything, cuda_graphs=True)):
        policy, _ = fresh(name, options)
        np.testing.assert_allclose(chunk(policy, obs), reference, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(chunk(policy, obs), reference, rtol=1e-4, atol=1e-5)  # memo hits


def test_fastwam_loop_is_used_and_kv_cache_saves_flops() -> None:
    policy, obs = fresh("fastwam-tiny", InferenceOptions(text_cache=True))
    assert isinstance(policy.action_loop, FastActionLoop)
    calls = []
    original = policy.action_loop.step
    policy.action_loop.step = lambda *a: calls.append(1) or original(*a)
    chunk(policy, obs)
    assert len(calls) == policy.config.action_flow.num_inference_steps
    plain, _ = fresh("fastwam-tiny", InferenceOptions(kv_cache=False))
    assert getattr(plain, "action_loop", None) is None

    def flops(p: Any) -> int:
        return count_call(lambda: chunk(p, obs), p).flops

    assert flops(plain) > flops(policy)  # the video stream runs at every step


def test_configure_undoes_the_previous_options() -> None:
    from wam.models.wan.blocks import RMSNorm, WanBlock

    baseline, _ = fresh("baseline-tiny", InferenceOptions(compile=True, **EAGER))
    assert baseline.blocks and all(b._compiled_call_impl is not None for b in baseline.blocks)
    baseline.configure_inference(None)
    assert all(b._compiled_call_impl is None for b in baseline.blocks)
    policy, obs = fresh("lightwam-tiny", InferenceOptions(text_cache=True, compile=True, **EAGER))
    assert "predict_normalized" in vars(policy)  # the compiled action pass shadows the method
    assert "instruction_tokens" in vars(policy.context)  # the memo shadows the method
    policy.configure_inference(InferenceOptions(bf16=True))
    assert "predict_normalized" not in vars(policy)
    blocks = [m for m in policy.modules() if isinstance(m, WanBlock)]
    linear = blocks[0].ffn[0].base_layer if hasattr(blocks[0].ffn[0], "base_layer") else blocks[0].ffn[0]
    assert linear.weight.dtype == torch.bfloat16
    norms = [m for m in policy.modules() if isinstance(m, RMSNorm)]
    assert norms[0].weight.dtype == torch.float32  # norms stay float32
    bf16 = chunk(policy, obs)
    policy.configure_inference(None)
    assert "instruction_tokens" not in vars(policy.context)
    assert not policy.context._load_state_dict_post_hooks  # the memo's hook went with it
    assert linear.weight.dtype == torch.float32
    assert policy.normalize_inputs.features["observation__state"].offset.dtype == torch.float32
    reference = chunk(fresh("lightwam-tiny")[0], obs)
    np.testing.assert_allclose(bf16, reference, atol=0.1 * np.abs(reference).max())


def test_bf16_switch_off_restores_the_exact_weights() -> None:
    policy, obs = fresh("lightwam-tiny")
    before, reference = tensors(policy), chunk(policy, obs)
    for off in (None, InferenceOptions.plain(), InferenceOptions(text_cache=True)):
        policy.configure_inference(InferenceOptions(bf16=True, text_cache=True))
        assert any(p.dtype == torch.bfloat16 for p in policy.parameters())
        chunk(policy, obs)
        policy.configure_inference(off)
        after = tensors(policy)
        assert after.keys() == before.keys()
        for name, value in before.items():  # bit for bit: a bf16 -> float32 cast would fail here
            assert after[name].dtype == value.dtype and torch.equal(after[name], value), name
    policy.configure_inference(None)
    np.testing.assert_array_equal(chunk(policy, obs), reference)
    with torch.no_grad():  # versions move (same values): a deep copy's parameters start again at 0
        for param in policy.parameters():
            param.mul_(1.0)
    copied = copy.deepcopy(policy.configure_inference(InferenceOptions(bf16=True))).configure_inference(None)
    after = tensors(copied)
    assert all(torch.equal(after[name], value) for name, value in before.items())
    # weights loaded while in bf16 are kept (at bf16 precision), not replaced by the stale copies
    donor = tensors(perturbed(policy))
    policy.configure_inference(InferenceOptions(bf16=True))
    policy.load_state_dict({k: v for k, v in donor.items() if k in policy.state_dict()})
    policy.configure_inference(None)
    for name, param in policy.named_parameters():
        rounded = donor[name].to(torch.bfloat16).to(param.dtype)  # norm weights were loaded exactly
        assert param.dtype == before[name].dtype, name
        assert torch.equal(param, rounded) or torch.equal(param, donor[name]), name


def test_a_one_shot_bf16_configuration_keeps_no_float32_copies() -> None:
    from wam.policies.fast_path import configure_policy

    policy, obs = fresh("lightwam-tiny")
    before = tensors(policy)
    configure_policy(policy, "default", ["bf16=true"])  # what `wam serve/eval --opt bf16=true` do
    masters = policy._fast_path_state["masters"]
    assert masters and all(m.copy is None for m in masters)  # no host copy of the model
    chunk(policy, obs)
    policy.configure_inference(None)  # switching off still gives float32, at bf16 precision
    for name, value in tensors(policy).items():
        assert value.dtype == before[name].dtype, name
        torch.testing.assert_close(value, before[name], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", PRESETS)
def test_text_cache_follows_new_weights(name: str) -> None:
    policy, obs = fresh(name, InferenceOptions(text_cache=True))
    chunk(policy, obs)
    assert memo_of(policy).memo  # filled
    donor = perturbed(_policy(name)[0])
    policy.load_state_dict(donor.state_dict())
    assert not memo_of(policy).memo  # emptied by the load_state_dict hook
    expected = chunk(donor.configure_inference(None), obs)
    np.testing.assert_allclose(chunk(policy, obs), expected, rtol=1e-4, atol=1e-5)


def test_text_cache_follows_in_place_changes() -> None:
    policy, obs = fresh("baseline-tiny", InferenceOptions(text_cache=True))
    chunk(policy, obs)
    with torch.no_grad():  # what an optimiser step does: no load_state_dict, the versions move
        for param in policy.task.parameters():
            param.mul_(-2.0)
    cached = chunk(policy, obs)
    np.testing.assert_allclose(cached, chunk(policy.configure_inference(None), obs), rtol=1e-5, atol=1e-6)


def test_text_cache_skips_the_encoder_and_is_off_while_training() -> None:
    policy, obs = fresh("baseline-tiny", InferenceOptions(text_cache=True))
    memo = policy.task.forward
    seen = []
    inner = memo.fn
    memo.fn = lambda texts, device: seen.append(tuple(texts)) or inner(texts, device)
    chunk(policy, obs)
    chunk(policy, obs)
    assert len(seen) == 1
    policy.train()
    with torch.no_grad():
        memo(obs["task"], torch.device("cpu"))
    assert len(seen) == 2


def test_threads_and_attention_kernel_are_set_per_call() -> None:
    policy, obs = fresh("baseline-tiny", InferenceOptions(threads=1, attention="math"))
    seen = []
    original = policy.infer_normalized
    policy.infer_normalized = lambda batch: (
        seen.append((torch.get_num_threads(), torch.backends.cuda.flash_sdp_enabled())) or original(batch)
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chunk(policy, obs)
        assert seen[-1] == (1, False)
        assert torch.get_num_threads() == 2
        policy.configure_inference(InferenceOptions())
        policy.infer_normalized = lambda batch: (
            seen.append((torch.get_num_threads(), None)) or original(batch)
        )
        chunk(policy, obs)
        assert seen[-1][0] == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_loop_matches_the_eager_loop() -> None:
    policy, obs = fresh("fastwam-tiny", InferenceOptions(text_cache=True))
    policy.to("cuda")
    eager = chunk(policy, obs)
    policy.configure_inference(InferenceOptions(text_cache=True, cuda_graphs=True))
    np.testing.assert_allclose(chunk(policy, obs), eager, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(chunk(policy, obs), eager, rtol=1e-4, atol=1e-5)  # a replay
    assert len(policy.action_loop._graphs) == 1


def test_cli_configuration_of_any_policy() -> None:
    from wam.policies.fast_path import configure_policy
    from wam.policies.scripted import RandomPolicy

    scripted = RandomPolicy(seed=0)
    assert configure_policy(scripted) is scripted
    with pytest.raises(ValueError, match="apply to trained policies"):
        configure_policy(scripted, "fast")
    policy, _ = fresh("baseline-tiny")
    configure_policy(policy, "fast", ["compile=false"])
    assert policy.inference_options == dataclasses.replace(InferenceOptions.fast("cpu"), compile=False)
