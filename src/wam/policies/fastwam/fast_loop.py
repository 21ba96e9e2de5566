"""Fast-WAM's action loop on the fast inference path: a compilable, capturable prefill + Euler loop.

`FastActionLoop` computes exactly what `mot.prefill` + `mot.cached_forward` + `euler_sample` compute
in `sampling.cached_actions`, reorganised so that one Euler step is a function of tensors only:
    prefill     the video stream at timestep 0, once per chunk -> per layer (k, v) (B, heads, Lv, hd)
    velocity    one action-stream pass over that cache: noisy actions (B, H, A) -> velocity (B, H, A)
    run         N Euler steps of `velocity` from noise at s = 1 to actions at s = 0
With `text_cache` each action layer's cross-attention keys/values are computed once per chunk and
passed to every step instead of being recomputed per step; with `compile` `prefill` and `velocity`
are torch.compile'd; with `cuda_graphs` (CUDA only) `CapturedLoop` captures the whole `run` once per
input shape as a CUDA graph and replays it.

`wam.policies.fast_path.apply_inference_options` installs the loop as `policy.action_loop` when one
of compile, cuda_graphs or text_cache is on; `sampling.cached_actions` calls it in place of its own
prefill + Euler loop. With kv_cache off the plain uncached path runs and the loop is not called.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import torch

from wam.models.wan.blocks import attention
from wam.policies.fastwam.mot import KVCache, prefill

if TYPE_CHECKING:
    from wam.policies.fast_path import InferenceOptions
    from wam.policies.fastwam.modeling import FastWAMPolicy


def _or_none(mask: torch.Tensor) -> torch.Tensor | None:
    """None for a mask that allows everything (SDPA's unmasked kernels), as in `fastwam.sampling`."""
    return None if bool(mask.all()) else mask


class FastActionLoop:
    """Fast-WAM's video prefill and N Euler steps of the action stream, with the fast-path switches.

    Called as `loop(video_stream, mask, context_a, noise)` by `fastwam.sampling.cached_actions`:
    video_stream at timestep 0 (tokens (B, Lv, Dv)), the joint mask (Lv + H, Lv + H), the action
    stream's embedded context (B, Lc, Da) and the initial noise (B, H, A) -> actions (B, H, A).
    """

    def __init__(self, policy: FastWAMPolicy, options: InferenceOptions) -> None:
        self.policy, self.options = policy, options
        self._graphs: dict[tuple, CapturedLoop] = {}
        kwargs: dict[str, Any] = {"backend": options.compile_backend, "dynamic": False}
        if options.compile_backend == "inductor":
            kwargs["mode"] = options.compile_mode
        self.prefill = torch.compile(prefill, **kwargs) if options.compile else prefill
        self.step = torch.compile(self.velocity, **kwargs) if options.compile else self.velocity

    def __call__(
        self, stream: Any, mask: torch.Tensor, context_a: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        lv = stream.tokens.shape[1]
        cache = self.prefill(self.policy.video.blocks, stream, _or_none(mask[:lv, :lv]))  # L x (k, v)
        rows = _or_none(mask[lv:])  # (H, Lv + H) or None
        if self.options.cuda_graphs and noise.is_cuda:
            key = (
                tuple(noise.shape),
                tuple(cache[0][0].shape),
                tuple(context_a.shape),
                rows is None,
                noise.dtype,
                cache[0][0].dtype,
                noise.device,
            )
            if key not in self._graphs:
                self._graphs[key] = CapturedLoop(self, cache, rows, context_a, noise)
            return self._graphs[key](cache, rows, context_a, noise)
        return self.run(cache, rows, context_a, noise)

    def run(
        self, cache: KVCache, rows: torch.Tensor | None, context_a: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """The Euler loop from noise (B, H, A) at s = 1 to actions at s = 0 (as `euler_sample`)."""
        flow = self.policy.config.action_flow
        levels = flow.sampling_sigmas(flow.num_inference_steps).tolist()  # (N + 1,) from 1 to 0
        cross = None
        if self.options.text_cache:  # per layer (k, v) of the context, (B, heads, Lc, hd): once per chunk
            cross = [block.cross_attn.context_kv(context_a) for block in self.policy.action.blocks]
        x = noise
        for s_now, s_next in itertools.pairwise(levels):
            s = x.new_full((x.shape[0],), s_now)  # (B,)
            x = x + (s_next - s_now) * self.step(x, s, cache, rows, context_a, cross)  # (B, H, A)
        return x

    def velocity(
        self,
        x: torch.Tensor,
        s: torch.Tensor,
        cache: KVCache,
        rows: torch.Tensor | None,
        context_a: torch.Tensor,
        cross: list | None,
    ) -> torch.Tensor:
        """One action-stream pass over the cached video (as `mot.cached_forward`): x (B, H, A) -> velocity."""
        policy = self.policy
        stream = policy.action_stream(x, s, context_a)  # tokens (B, H, Da)
        h = stream.tokens
        for i, block in enumerate(policy.action.blocks):
            mod = block.modulation_params(stream.t_mod)  # 6 x (B, 1, Da)
            q, k, v = block.self_attn_qkv(h, mod, stream.rope)  # each (B, heads, H, hd)
            k_all = torch.cat([cache[i][0], k], dim=2)  # (B, heads, Lv + H, hd)
            v_all = torch.cat([cache[i][1], v], dim=2)  # (B, heads, Lv + H, hd)
            h = block.self_attn_out(h, attention(q, k_all, v_all, rows), mod)  # (B, H, Da)
            h = block.cross_attn_ffn(h, context_a, mod, None if cross is None else cross[i])  # (B, H, Da)
        return policy.action.apply_head(h)  # (B, H, A)


class CapturedLoop:
    """`FastActionLoop.run` captured once as a CUDA graph over static input buffers, replayed per call.

    The inputs are copied into the static buffers, the graph replays every Euler step (no Python,
    no kernel-launch overhead), and a copy of the static output is returned. The graph reads the
    weights at their captured addresses: in-place updates (`load_state_dict`) are seen; after the
    weights move (`.to()`) call `configure_inference` again to capture a new graph.
    """

    def __init__(
        self,
        loop: FastActionLoop,
        cache: KVCache,
        rows: torch.Tensor | None,
        context_a: torch.Tensor,
        noise: torch.Tensor,
    ) -> None:
        self.cache = [(k.clone(), v.clone()) for k, v in cache]
        self.rows = None if rows is None else rows.clone()
        self.context, self.noise = context_a.clone(), noise.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: lazy allocations, library workspaces, compilation
            for _ in range(2):
                loop.run(self.cache, self.rows, self.context, self.noise)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = loop.run(self.cache, self.rows, self.context, self.noise)  # (B, H, A)

    def __call__(
        self, cache: KVCache, rows: torch.Tensor | None, context_a: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        for (k_s, v_s), (k, v) in zip(self.cache, cache, strict=True):
            k_s.copy_(k)
            v_s.copy_(v)
        if self.rows is not None and rows is not None:
            self.rows.copy_(rows)
        self.context.copy_(context_a)
        self.noise.copy_(noise)
        self.graph.replay()
        return self.out.clone()  # (B, H, A)
