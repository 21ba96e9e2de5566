"""The fast inference path: every speed-up of `predict_action_chunk` as a switch of `InferenceOptions`.

Each field names one optimisation and the plain behaviour it replaces:
    inference_mode  torch.inference_mode() around a call (plain: torch.no_grad())
    attention       "sdpa": scaled_dot_product_attention picks its fused kernel (flash, memory-efficient
                    or cuDNN on CUDA; the flash kernel on a CPU); "math": SDPA's reference math kernel
    bf16            the weights cast to bfloat16 and the call run under bf16 autocast; normalisation
                    buffers, RoPE tables and norm weights stay float32, as do the returned actions
                    (plain: float32); switching it off gives back the exact weights (CPU copies)
    kv_cache        Fast-WAM: the video stream runs once per chunk and its keys/values are cached for
                    the N Euler steps (plain: the video re-runs jointly with the actions at every step)
    text_cache      instruction embeddings memoised per batch of instructions across calls (eval mode
                    only; emptied when the encoder's weights change, `InstructionMemo`); Fast-WAM's
                    action loop computes each layer's cross-attention keys/values once per chunk
                    instead of once per Euler step (plain: recomputed every time)
    compile         torch.compile of the tensor-only inner functions (plain: eager): Light-WAM's
                    whole action pass (`predict_normalized`: backbone blocks, adapters, expert) as one
                    graph; Fast-WAM's video prefill and its action step; the baseline's Wan blocks
    cuda_graphs     CUDA only: Fast-WAM's whole action loop (N Euler steps over the cached video) is
                    captured once as a CUDA graph per input shape and replayed; the compiled functions
                    of the other policies use torch.compile's mode "reduce-overhead" (CUDA graphs)
    threads         CPU only: torch intra-op threads during a call, set and restored around it
                    (plain: whatever the process uses, by default one per core)

Presets: `InferenceOptions()` is the library default, what every policy uses unless told otherwise
(inference mode, SDPA, the KV cache); `InferenceOptions.plain()` turns every switch off;
`InferenceOptions.fast(device)` turns on what measured faster on that kind of device
(`benchmarks/fast_path.py`, results in `benchmarks/results/`). `parse_inference_options("fast",
["threads=2"])` is the CLI form (`wam bench --inference fast --opt threads=2`), and
`configure_policy(policy, "fast", ["threads=2"])` applies it to any policy a CLI resolved.

Applying: `TorchPolicy.configure_inference(options)` calls `apply_inference_options`, which first
undoes whatever a previous call installed (compiled functions, memoised methods, Fast-WAM's loop, the
bf16 cast: the parameters get back their pre-cast copies, bit for bit), then installs the new
switches. The per-call switches (grad mode, attention kernel, autocast, threads) are entered by
`inference_context` inside `predict_action_chunk`. Fast-WAM's own action loop (compiled step,
cross-attention keys/values hoisted, CUDA graph) lives with that policy, in
`wam.policies.fastwam.fast_loop`, and is imported only when a Fast-WAM policy needs it.

This module imports torch only inside functions: reading `InferenceOptions` stays light.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch
    from torch import nn

ATTENTION = ("sdpa", "math")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRESETS = ("default", "plain", "fast")
# Per policy name: (submodule, method) turning a list of instructions and a device into their embedding
TEXT_METHODS = {
    "baseline": ("task", "forward"),
    "lightwam": ("context", "instruction_tokens"),
    "fastwam": ("conditioning", "text"),
}
MEMO_SIZE = 256  # distinct instruction batches kept by the text cache
# Per policy name: a method of tensors only, compiled as one graph (one guard check per call instead of
# one per block: measured 1.2x faster than per-block compilation for lightwam-tiny on a CPU)
COMPILE_METHODS = {"lightwam": "predict_normalized"}


@dataclass(frozen=True)
class InferenceOptions:
    """Switches of the inference path (see the module docstring for what each replaces)."""

    inference_mode: bool = True  # torch.inference_mode() (False: torch.no_grad())
    attention: str = "sdpa"  # "sdpa" (fused kernels) or "math" (SDPA's reference kernel)
    bf16: bool = False  # bfloat16 weights + bf16 autocast (actions and normalisation stay float32)
    kv_cache: bool = True  # Fast-WAM: prefill the video once per chunk (False: re-run it every step)
    text_cache: bool = False  # memoise instruction embeddings; hoist cross-attention K/V out of the loop
    compile: bool = False  # torch.compile the per-step functions (blocks, expert, Fast-WAM's step)
    compile_backend: str = "inductor"  # torch.compile backend ("eager" traces only: for tests)
    compile_mode: str = "default"  # torch.compile mode (cuda_graphs selects reduce-overhead on CUDA)
    cuda_graphs: bool = False  # CUDA: capture Fast-WAM's action loop as one graph (ignored on a CPU)
    threads: int | None = None  # CPU: torch threads during a call (None: leave the process setting)

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION:
            raise ValueError(f"attention={self.attention!r} is not valid: use one of {', '.join(ATTENTION)}.")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"compile_mode={self.compile_mode!r} is not valid: use one of {', '.join(COMPILE_MODES)}."
            )
        if not self.compile_backend:
            raise ValueError("compile_backend is empty: use inductor (or eager to check tracing only).")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads} must be at least 1, or none to leave torch's setting.")

    @classmethod
    def plain(cls) -> InferenceOptions:
        """Every switch off: the reference path the fast path is measured against."""
        return cls(inference_mode=False, attention="math", kv_cache=False)

    @classmethod
    def fast(cls, device: str = "cpu") -> InferenceOptions:
        """The switches that measured faster on this kind of device ("cpu" or "cuda").

        compile needs a C++ compiler on a CPU and Triton on CUDA (torch inductor); it is left off
        where neither is found. On a CPU one thread per call measured faster for the tiny presets on
        a shared 2-core machine (benchmarks/results/fast_path_cpu.json); bf16 is GPU-only here.
        """
        kind = str(device).split(":")[0]
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"Unknown device {device!r} for the fast preset: use cpu or cuda.")
        if kind == "cuda":
            return cls(text_cache=True, compile=_can_compile("cuda"), bf16=True, cuda_graphs=True)
        return cls(text_cache=True, compile=_can_compile("cpu"), threads=1)

    @classmethod
    def preset(cls, name: str, device: str = "cpu") -> InferenceOptions:
        """The preset named default, plain or fast (for `device`)."""
        if name == "default":
            return cls()
        if name == "plain":
            return cls.plain()
        if name == "fast":
            return cls.fast(device)
        raise ValueError(f"Unknown inference preset {name!r}: use one of {', '.join(PRESETS)}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _can_compile(kind: str) -> bool:
    """True when torch inductor can generate code here: a C++ compiler (CPU) or Triton (CUDA)."""
    if kind == "cuda":
        import importlib.util

        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def parse_inference_options(
    preset: str = "default", overrides: Sequence[str] = (), device: str = "cpu"
) -> InferenceOptions:
    """A preset ("default", "plain", "fast") with `name=value` overrides, e.g. ["compile=false"]."""
    from wam.configs.serialize import field_types, parse_value

    options = InferenceOptions.preset(preset, device)
    fields = field_types(InferenceOptions)
    changes: dict[str, Any] = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            import difflib

            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(fields)}."
            raise ValueError(f"Unknown inference option {item!r} (write name=value): {hint}")
        changes[name] = parse_value(text, fields[name], f"--opt {name}")  # as `--set` parses
    return dataclasses.replace(options, **changes)


def configure_policy(policy: Any, preset: str = "default", overrides: Sequence[str] = ()) -> Any:
    """What a CLI's `--inference PRESET --opt name=value` does to any policy; returns the policy.

    Trainable (torch) policies get `configure_inference(options)` for their device; the others
    (scripted, remote) have no inference path to switch: asking for a non-default one is an error.
    """
    configure = getattr(policy, "configure_inference", None)
    if configure is None:
        if preset != "default" or overrides:
            raise ValueError(
                f"--inference/--opt apply to trained policies; {getattr(policy, 'name', 'this policy')} "
                "has no inference path to switch: drop them."
            )
        return policy
    device = next(policy.parameters()).device.type
    # a CLI configures once: no float32 copies are kept for a bf16 switch-off that never comes
    return configure(parse_inference_options(preset, overrides, device), restorable=False)


# ---------------------------------------------------------------------- per call
@contextmanager
def inference_context(options: InferenceOptions, device: torch.device) -> Iterator[None]:
    """Grad mode, attention kernel, autocast and CPU threads of one call, as `options` say."""
    import torch

    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode() if options.inference_mode else torch.no_grad())
        if options.attention == "math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        if options.bf16:
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        if options.threads is not None and device.type == "cpu":
            previous = torch.get_num_threads()
            if previous != options.threads:
                torch.set_num_threads(options.threads)
                stack.callback(torch.set_num_threads, previous)
        yield


# ---------------------------------------------------------------------- installing the switches
def apply_inference_options(policy: nn.Module, options: InferenceOptions, restorable: bool = True) -> None:
    """Install `options` on a TorchPolicy, after undoing what previous options installed.

    `restorable`: keep CPU copies of the weights bf16 casts, so that switching bf16 off gives them
    back exactly (False saves that host memory, a full float32 model; switching off then casts back).
    """
    _uninstall(policy)
    state: dict[str, Any] = {"compiled": [], "memo": [], "methods": [], "masters": []}
    object.__setattr__(policy, "_fast_path_state", state)  # plain attribute, outside nn.Module's registries
    policy.inference_options = options
    if options.bf16:
        state["masters"] = cast_to_bf16(policy, keep_copies=restorable)
    if options.text_cache and policy.name in TEXT_METHODS:
        module_name, method = TEXT_METHODS[policy.name]
        module = getattr(policy, module_name)
        memo = InstructionMemo(getattr(module, method), module)
        setattr(module, method, memo)  # an instance attribute shadows the class's method
        state["memo"].append((module, method, memo))
    if policy.name == "fastwam":
        if options.compile or options.cuda_graphs or options.text_cache:
            from wam.policies.fastwam.fast_loop import FastActionLoop  # torch-heavy: only for Fast-WAM

            policy.action_loop = FastActionLoop(policy, options)
    elif options.compile and policy.name in COMPILE_METHODS:
        import torch

        method = COMPILE_METHODS[policy.name]
        kwargs = {"backend": options.compile_backend, "mode": _compile_mode(options, policy)}
        setattr(policy, method, torch.compile(getattr(policy, method), dynamic=False, **kwargs))
        state["methods"].append((policy, method))
    elif options.compile:
        mode = _compile_mode(options, policy)
        for module in compile_targets(policy):
            module.compile(backend=options.compile_backend, mode=mode, dynamic=False)
            state["compiled"].append(module)


def _uninstall(policy: nn.Module) -> None:
    state = getattr(policy, "_fast_path_state", None)
    if not state:
        return
    for module in state["compiled"]:
        module._compiled_call_impl = None  # what nn.Module.compile sets
    for module, method, memo in state["memo"]:
        memo.close()
        delattr(module, method)  # the instance attribute: the class's method shows again
    for module, method in state["methods"]:
        delattr(module, method)
    if getattr(policy, "action_loop", None) is not None:
        policy.action_loop = None
    restore_weights(state["masters"])
    state.clear()


def _version(tensor: torch.Tensor) -> int:
    """The in-place version counter of a tensor (bumped by copy_, optimiser steps...); inference
    tensors (made under torch.inference_mode) have none: 0."""
    return 0 if tensor.is_inference() else tensor._version


class Master(NamedTuple):
    """A parameter cast to bfloat16 by `cast_to_bf16`, and what `restore_weights` needs to undo it."""

    param: nn.Parameter  # the parameter, now bfloat16
    dtype: torch.dtype  # its dtype before the cast
    copy: torch.Tensor | None  # its values before the cast, on the CPU (None: not kept)
    version: int  # the parameter's version right after the cast (an in-place change moves it)


def cast_to_bf16(policy: nn.Module, keep_copies: bool = True) -> list[Master]:
    """Cast the floating parameters to bfloat16 in place; returns what `restore_weights` needs.

    Norm layers keep their weights, as in mixed precision (CPU kernels refuse a float32 input with
    bf16 norm weights); buffers (normalisation, RoPE) are left alone. With `keep_copies` the exact
    pre-cast values are kept on the CPU, so `restore_weights` gives them back bit for bit (casting
    bfloat16 back would not); without, no host memory is spent and restoring casts back.
    """
    import torch
    from torch import nn

    from wam.models.wan.blocks import RMSNorm

    norms = (nn.LayerNorm, nn.GroupNorm, RMSNorm)
    masters: list[Master] = []
    with torch.no_grad():
        for module in policy.modules():
            if isinstance(module, norms):
                continue
            for param in module.parameters(recurse=False):
                if param.is_floating_point() and param.dtype != torch.bfloat16:
                    dtype = param.dtype
                    copy = param.detach().to("cpu", copy=True) if keep_copies else None  # even on a CPU
                    param.data = param.data.to(torch.bfloat16)  # set_data keeps the version
                    masters.append(Master(param, dtype, copy, _version(param)))
    return masters


def restore_weights(masters: Sequence[Master]) -> None:
    """Undo `cast_to_bf16`: each parameter gets its copy back, bit for bit, on the device it is on now.

    A parameter changed while in bfloat16 (`load_state_dict`, an optimiser step) keeps its new
    values, cast back to its dtype: its copy is stale.
    """
    import torch

    with torch.no_grad():
        for master in masters:
            param = master.param
            if master.copy is not None and _holds_cast_of(master):
                param.data = master.copy.to(param.device)
            else:
                param.data = param.data.to(master.dtype)


def _holds_cast_of(master: Master) -> bool:
    """True when the parameter still holds the bfloat16 cast of its copy: its version has not moved
    since the cast, or (a deep copy starts a new version counter; a reload of the same weights moves
    it) its values are still those of the cast."""
    param, copy = master.param, master.copy
    assert copy is not None
    if _version(param) == master.version:
        return True
    return bool(param.detach().equal(copy.to(param.device, param.dtype)))


def _compile_mode(options: InferenceOptions, policy: nn.Module) -> str | None:
    on_cuda = next(policy.parameters()).device.type == "cuda"
    if options.cuda_graphs and on_cuda and options.compile_mode == "default":
        return "reduce-overhead"
    return None if options.compile_backend != "inductor" else options.compile_mode


def compile_targets(policy: nn.Module) -> list[nn.Module]:
    """Modules whose forward is compiled for a policy without a `COMPILE_METHODS` entry: its Wan blocks."""
    from wam.models.wan.blocks import WanBlock

    return [m for m in policy.modules() if isinstance(m, WanBlock)]


class InstructionMemo:
    """A `(texts, device) -> tensor` method of `module` memoised per batch of instructions, in eval mode only.

    The embeddings depend on `module`'s weights (a learned instruction table), so the memo is emptied
    whenever they may have changed: a `load_state_dict` reaching `module` (a post-hook), and any
    in-place change or re-allocation of its parameters or buffers (their versions and addresses are
    compared with those of the last fill on every call).
    """

    def __init__(self, fn: Callable[..., Any], module: nn.Module) -> None:
        self.fn, self.module = fn, module
        self.memo: dict[tuple, Any] = {}
        self.stamp: tuple[tuple[int, int], ...] = ()  # the weights' (address, version) at the last fill
        # a bound method, so that a deep copy of the module clears the copy's memo
        self._hook = module.register_load_state_dict_post_hook(self._loaded)

    def weights_stamp(self) -> tuple[tuple[int, int], ...]:
        """(address, version) of every parameter and buffer of the module: changes with the weights."""
        tensors = itertools.chain(self.module.parameters(), self.module.buffers())
        return tuple((t.data_ptr(), _version(t)) for t in tensors)

    def _loaded(self, module: nn.Module, incompatible_keys: Any) -> None:
        self.memo.clear()

    def close(self) -> None:
        """Remove the load_state_dict hook (when the text cache is switched off)."""
        self._hook.remove()

    def __call__(self, texts: Sequence[str], device: Any) -> Any:
        import torch

        if self.module.training or torch.is_grad_enabled():
            return self.fn(texts, device)  # learned embeddings change while training
        stamp = self.weights_stamp()
        if stamp != self.stamp:
            self.memo.clear()
            self.stamp = stamp
        autocast = torch.is_autocast_enabled(torch.device(device).type)  # CPU autocast counts too
        key = (tuple(texts), str(device), autocast)
        hit = self.memo.get(key)
        if hit is None:
            if len(self.memo) >= MEMO_SIZE:
                self.memo.pop(next(iter(self.memo)))
            hit = self.memo[key] = self.fn(list(texts), device)
        return hit
