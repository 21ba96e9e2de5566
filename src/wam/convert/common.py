"""What both converters share: reading sizes off tensors, the wam config, the conversion pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wam.configs.base import ExperimentConfig, NormalizationConfig
from wam.convert.authors_yaml import Unresolved
from wam.convert.mapping import ConversionError, KeyMap, apply_mapping

TEXT_WIDTHS = {4096: "umt5", 384: "minilm"}  # instruction-token widths wam can encode -> encoder


@dataclass
class Converted:
    """A converted checkpoint: the wam policy and what was decided on the way."""

    policy: nn.Module  # the wam policy holding the authors' weights (CPU, float32, eval mode)
    config: ExperimentConfig  # its experiment config (what the run's config.json holds)
    stats: dict[str, Any]  # the normalisation statistics it was built with
    notes: list[str] = field(default_factory=list)  # what was inferred or where values came from
    source: dict[str, Any] = field(default_factory=dict)  # checkpoint, config, stats (run.json)


def read_sources(
    ckpt: Path,
    config: Path,
    sets: dict[str, Any] | None,
    task_config: str | Path | None,
    infer_sizes: Callable[[dict[str, torch.Tensor], dict[str, Any]], dict[str, Any]],
) -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]:
    """The model YAML, the checkpoint payload, the sizes its tensors give, and the task config's
    policy changes, whose action/state dims must agree with the tensors (else one line)."""
    from wam.convert.authors_yaml import read_yaml
    from wam.convert.payload import load_payload
    from wam.convert.task_config import policy_changes

    doc = read_yaml(config, sets)
    payload = load_payload(ckpt)
    sizes = infer_sizes(payload.tensors, doc)
    task = policy_changes(task_config) if task_config else {}
    for name in ("action_dim", "state_dim"):
        if name in task and task[name] != sizes[name]:
            raise ConversionError(
                f"The task config gives {name}={task[name]} but the checkpoint's tensors have {sizes[name]}."
            )
    return doc, payload, sizes, task


def need(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """A tensor the sizes are read from; one-line error naming it when absent."""
    if key not in tensors:
        raise ConversionError(
            f"The checkpoint lacks '{key}', which determines the model's sizes: is it the authors' "
            "save_checkpoint payload of this model (groups mot, proprio_encoder, ...)?"
        )
    return tensors[key]


def count_indexed(tensors: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Sorted indices i of keys `prefix + "<i>." + ...`."""
    found = set()
    for key in tensors:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def setting(doc: dict[str, Any], dotted: str, default: Any = None, *, required: bool = False) -> Any:
    """A value of the authors' config; `required` ones that are missing or unresolved raise one line."""
    from wam.convert.authors_yaml import lookup

    value = lookup(doc, dotted, default)
    if isinstance(value, Unresolved) or (required and value is None):
        name = value.name if isinstance(value, Unresolved) else dotted
        raise ConversionError(
            f"The config leaves {dotted} unset ({name}) and the tensors do not determine it: "
            f"pass --set {dotted}=VALUE."
        )
    return value


def video_heads(
    tensors: dict[str, torch.Tensor], doc: dict[str, Any], prefix: str, forced: int | None
) -> tuple[int, int | None]:
    """The video DiT's heads (YAML `video_dit_config.num_heads`, or `forced` by a backbone preset) and
    its `attn_head_dim` when the attention is not as wide as the tokens (else None), checked against
    the tensors' attention width (heads x head_dim)."""
    dim = need(tensors, prefix + "patch_embedding.weight").shape[0]
    width = need(tensors, prefix + "blocks.0.self_attn.q.weight").shape[0]  # (heads * head_dim, dim)
    heads = forced or int(setting(doc, "video_dit_config.num_heads", required=True))
    head_dim = (
        width // heads if forced else int(setting(doc, "video_dit_config.attn_head_dim", width // heads))
    )
    if heads * head_dim != width:
        raise ConversionError(
            f"The video DiT's attention is {width} wide, the config says {heads} heads x {head_dim}: "
            "check --config (video_dit_config.num_heads, attn_head_dim)."
        )
    if head_dim % 2 or head_dim < 6:
        raise ConversionError(f"The video DiT's head_dim is {head_dim}: the 3-D RoPE needs an even one >= 6.")
    return heads, (head_dim if width != dim else None)


def mask_note(doc: dict[str, Any]) -> str:
    """wam's video attention is first-frame-causal (their configs' `video_attention_mask_mode`); one line
    when the YAML says otherwise (refused) or nothing (their WanVideoDiT's default is bidirectional)."""
    mode = setting(doc, "video_dit_config.video_attention_mask_mode", None)
    if mode is None:
        return "video_attention_mask_mode unset in the YAML: first_frame_causal assumed, as their configs"
    if mode != "first_frame_causal":
        raise ConversionError(
            f"The config's video_attention_mask_mode is {mode!r}; wam's video attention is "
            "first_frame_causal (the authors' released configs): convert a checkpoint trained with it."
        )
    return "first-frame-causal video attention"


def text_settings(text_dim: int, text_length: int) -> dict[str, Any]:
    """The wam instruction encoder for the checkpoint's text width (any width converts).

    4096 is umT5-XXL's (the authors'), 384 MiniLM's; any other width (e.g. a tiny test configuration
    trained on precomputed context) becomes `text_width`: the run then has no instruction encoder
    and takes its context precomputed (`wam.convert.check`), which `text_note` says in one line.
    """
    if text_dim in TEXT_WIDTHS:
        return {"text_encoder": TEXT_WIDTHS[text_dim], "text_length": int(text_length), "text_width": None}
    return {"text_encoder": "umt5", "text_length": int(text_length), "text_width": int(text_dim)}


def text_note(cfg: ExperimentConfig) -> str:
    """One line on how the converted run gets its instruction tokens."""
    policy: Any = cfg.policy
    if policy.text_width is not None:
        return (
            f"this run reads {policy.text_width}-wide instruction tokens, which no wam text encoder makes: "
            "it needs precomputed context (wam.convert.check); wam eval/serve cannot encode its instructions"
        )
    if policy.text_encoder == "umt5" and not policy.text_path:
        return (
            "this run encodes instructions with Wan's umT5-XXL, which it cannot find: convert again with "
            "--set policy.text_path=DIR (Wan's umT5 folder) for wam eval/serve"
        )
    return f"instructions encoded by {policy.text_encoder}, {policy.text_length} tokens"


def scheduler_flows(doc: dict[str, Any], preset: str, fields: dict[str, str]) -> dict[str, Any]:
    """The preset's flow configs with the shifts of the authors' schedulers ({wam field: their key}).

    Their `action_scheduler` / `video_scheduler` give `train_shift`, `infer_shift` (the sampling grid's)
    and `num_train_timesteps`; what a YAML leaves out keeps the preset's value.
    """
    from wam.configs.registry import get_preset

    policy = get_preset(preset).policy
    out: dict[str, Any] = {}
    for name, key in fields.items():
        sched = setting(doc, key, None)
        if not isinstance(sched, dict) or not hasattr(policy, name):
            continue
        flow = getattr(policy, name)
        train = float(sched.get("train_shift", flow.shift))
        infer = float(sched.get("infer_shift", flow.inference_shift))
        out[name] = dataclasses.replace(
            flow,
            shift=train,
            sample_shift=None if infer == train else infer,
            num_train_timesteps=int(sched.get("num_train_timesteps", flow.num_train_timesteps)),
        )
    return out


def experiment(
    preset: str, changes: dict[str, Any], task: dict[str, Any], wam_sets: list[str]
) -> ExperimentConfig:
    """The preset's experiment config with the inferred fields, the task config's and `--set policy.*`."""
    from wam.configs.overrides import apply_overrides
    from wam.configs.registry import get_preset

    cfg = get_preset(preset)
    policy_changes = {**task, **changes}
    norm = policy_changes.pop("normalization", None)
    if norm is not None:
        policy_changes["normalization"] = NormalizationConfig(state=norm, action=norm)
    if "chunk_size" in policy_changes:
        steps = min(cfg.policy.n_action_steps, policy_changes["chunk_size"])
        policy_changes.setdefault("n_action_steps", steps)
    try:
        policy = dataclasses.replace(cfg.policy, **policy_changes)
    except ValueError as err:
        raise ConversionError(f"The checkpoint does not fit the preset {preset}: {err}") from None
    cfg = dataclasses.replace(cfg, policy=policy, name=f"{preset}-converted")
    cfg = apply_overrides(cfg, wam_sets) if wam_sets else cfg
    if cfg.policy.image_size is None:
        raise ConversionError(
            f"The preset {preset} takes its image size from a dataset: pass --task-config (the authors' "
            "data config) or --set policy.image_size=N."
        )
    return cfg


def convert_with(
    cfg: ExperimentConfig,
    tensors: dict[str, torch.Tensor],
    stats: dict[str, Any],
    build_map: Callable[[ExperimentConfig, dict[str, tuple[int, ...]]], KeyMap],
    what: str,
) -> nn.Module:
    """Map `tensors` onto the policy of `cfg` (strictly) and return it materialised."""
    from wam.convert.build import materialize, meta_policy, normalizer_state

    skip = set(normalizer_state(cfg, stats))
    shapes = {k: tuple(v.shape) for k, v in meta_policy(cfg).state_dict().items() if k not in skip}
    weights = apply_mapping(tensors, build_map(cfg, shapes), shapes, what)
    return materialize(cfg, stats, weights)


def source_record(
    ckpt: Path, config: Path, stats_from: str, step: int | None, dataset: str | None
) -> dict[str, Any]:
    """What run.json records about the conversion."""
    out: dict[str, Any] = {
        "checkpoint": str(ckpt.resolve()),
        "config": str(config.resolve()),
        "stats": stats_from,
    }
    if step is not None:
        out["step"] = step
    if dataset:
        out["dataset"] = str(Path(dataset).resolve())
    return out
