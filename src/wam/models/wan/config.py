"""Configuration and named size presets of the Wan video DiT; importing this module is torch-free.

`WanConfig` holds the architecture hyperparameters with the names and defaults of the original
Wan code (`wan/modules/model.py`, class `WanModel`); `WAN_PRESETS` is the one registry of named
sizes: the two released backbones the World Action Models use and tiny stand-ins of each for
tests. `count_parameters(cfg)` counts weights from the config alone (no tensor is allocated), per
top-level module of the original checkpoint layout.

Released checkpoints and their presets:
    wan2.1-1.3b   Wan-AI/Wan2.1-T2V-1.3B   (Light-WAM's backbone), latents of the 16-channel VAE
    wan2.2-5b     Wan-AI/Wan2.2-TI2V-5B    (Fast-WAM's video stream), latents of the 48-channel VAE
The TI2V-5B DiT has exactly the Wan2.1 architecture; what differs is its use: it was trained with
per-token timesteps (the clean first frame gets t=0), which `WanDiT.forward` accepts for every preset.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class WanConfig:
    """Architecture of one Wan DiT (field names follow the original `WanModel` arguments)."""

    dim: int  # hidden width of every token (original `dim`)
    num_layers: int  # number of transformer blocks
    num_heads: int  # attention heads; head_dim = attn_head_dim, else dim // num_heads
    ffn_dim: int  # inner width of each block's GELU(tanh) feed-forward
    in_channels: int = 16  # latent channels in (original `in_dim`): 16 for Wan2.1's VAE, 48 for Wan2.2's
    out_channels: int = 16  # latent channels predicted (original `out_dim`)
    text_dim: int = 4096  # width of the text-encoder embeddings (umT5-XXL: 4096)
    freq_dim: int = 256  # width of the sinusoidal timestep embedding
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (frames, height, width) of one latent patch
    eps: float = 1e-6  # epsilon of every LayerNorm and RMSNorm
    qk_norm: bool = True  # RMSNorm on queries and keys (across heads) in both attentions
    cross_attn_norm: bool = True  # affine LayerNorm (`norm3`) before the cross-attention
    rope_theta: float = 10000.0  # base of the 3-D rotary position embedding
    # width of one attention head when heads x head_dim differs from dim (the authors' WanVideoDiT
    # `attn_head_dim`; the released backbones have heads x head_dim = dim, so None there)
    attn_head_dim: int | None = None

    def __post_init__(self) -> None:
        for name in ("dim", "num_layers", "num_heads", "ffn_dim", "in_channels", "out_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WanConfig.{name} is {getattr(self, name)}: set it to a positive integer.")
        for name in ("text_dim", "freq_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WanConfig.{name} is {getattr(self, name)}: set it to a positive integer.")
        if self.attn_head_dim is None and self.dim % self.num_heads:
            raise ValueError(
                f"WanConfig.dim ({self.dim}) is not divisible by num_heads ({self.num_heads}): "
                "choose dim = num_heads * head_dim, or set attn_head_dim."
            )
        head_dim = self.head_dim
        if head_dim % 2 or head_dim < 6:
            source = "attn_head_dim" if self.attn_head_dim is not None else "dim // num_heads"
            raise ValueError(
                f"WanConfig head_dim = {source} = {head_dim}: the 3-D RoPE needs an even head_dim "
                "of at least 6; change dim, num_heads or attn_head_dim."
            )
        if self.freq_dim % 2:
            raise ValueError(f"WanConfig.freq_dim ({self.freq_dim}) must be even (cos and sin halves).")
        if len(self.patch_size) != 3 or any(int(p) <= 0 for p in self.patch_size):
            raise ValueError(
                f"WanConfig.patch_size {self.patch_size} is invalid: give three positive ints (frames, h, w)."
            )
        if self.eps <= 0:
            raise ValueError(f"WanConfig.eps is {self.eps}: set a small positive value such as 1e-6.")
        if self.rope_theta <= 1:
            raise ValueError(f"WanConfig.rope_theta is {self.rope_theta}: use a base above 1 (Wan: 10000).")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.attn_head_dim if self.attn_head_dim is not None else self.dim // self.num_heads

    @property
    def attn_dim(self) -> int:
        """Width of the attention (heads x head_dim): the q/k/v outputs and the o input."""
        return self.num_heads * self.head_dim

    @property
    def patch_volume(self) -> int:
        """Latent elements per token per channel (1*2*2 = 4 for the released models)."""
        return math.prod(self.patch_size)

    def replace(self, **changes: object) -> WanConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(
                f"Unknown WanConfig field(s) {sorted(unknown)}: see wam.models.wan.config.WanConfig."
            )
        return replace(self, **changes)  # type: ignore[arg-type]


WAN_PRESETS: dict[str, WanConfig] = {
    # Wan-AI/Wan2.1-T2V-1.3B (Light-WAM's backbone)
    "wan2.1-1.3b": WanConfig(
        dim=1536, num_layers=30, num_heads=12, ffn_dim=8960, in_channels=16, out_channels=16
    ),
    # Wan-AI/Wan2.2-TI2V-5B (Fast-WAM's video stream; trained with per-token timesteps)
    "wan2.2-5b": WanConfig(
        dim=3072, num_layers=30, num_heads=24, ffn_dim=14336, in_channels=48, out_channels=48
    ),
    # tiny stand-ins for tests and smoke runs: the latent channels of each released VAE
    "wan2.1-tiny": WanConfig(
        dim=64,
        num_layers=2,
        num_heads=2,
        ffn_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=32,
    ),
    "wan2.2-tiny": WanConfig(
        dim=64,
        num_layers=2,
        num_heads=2,
        ffn_dim=128,
        in_channels=48,
        out_channels=48,
        text_dim=32,
        freq_dim=32,
    ),
    "wan-tiny": WanConfig(
        dim=64,
        num_layers=2,
        num_heads=2,
        ffn_dim=128,
        in_channels=4,
        out_channels=4,
        text_dim=32,
        freq_dim=32,
    ),
}


def list_wan_presets() -> list[str]:
    """Names of every registered preset."""
    return sorted(WAN_PRESETS)


# An inline architecture: "wan:" + comma-separated field=value pairs (patch as FxHxW), e.g.
# "wan:dim=64,num_layers=2,num_heads=2,ffn_dim=128,in_channels=16,out_channels=16,freq_dim=32".
# `wam convert` writes one for a checkpoint whose sizes match no preset, so config.json stays loadable.
INLINE_PREFIX = "wan:"


def inline_spec(cfg: WanConfig) -> str:
    """The inline name of an architecture (every field but text_dim, which the policies set, and
    attn_head_dim when unset)."""
    parts = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "text_dim" or value is None:
            continue
        text = "x".join(str(p) for p in value) if f.name == "patch_size" else str(value)
        parts.append(f"{f.name}={text}")
    return INLINE_PREFIX + ",".join(parts)


def parse_inline_spec(name: str) -> WanConfig:
    """The WanConfig of an inline name (see `INLINE_PREFIX`); one-line ValueError on a bad one."""
    kinds = {f.name: f.type for f in fields(WanConfig)}
    values: dict[str, object] = {}
    for item in filter(None, name[len(INLINE_PREFIX) :].split(",")):
        key, sep, text = item.partition("=")
        if not sep or key not in kinds:
            raise ValueError(
                f"Bad inline Wan architecture item {item!r}: use field=value with WanConfig fields."
            )
        kind = str(kinds[key])
        try:
            if key == "patch_size":
                values[key] = tuple(int(p) for p in text.split("x"))
            elif kind == "bool":
                values[key] = text == "True"
            elif kind == "float":
                values[key] = float(text)
            else:
                values[key] = int(text)
        except ValueError:
            raise ValueError(f"Bad value in inline Wan architecture item {item!r}.") from None
    try:
        return WanConfig(**values)  # type: ignore[arg-type]
    except TypeError as err:
        raise ValueError(f"Incomplete inline Wan architecture {name!r} ({err}).") from None


def get_wan_config(name: str) -> WanConfig:
    """The preset called `name` (or an inline "wan:..." architecture); a typo gets a did-you-mean."""
    if name in WAN_PRESETS:
        return WAN_PRESETS[name]
    if name.startswith(INLINE_PREFIX):
        return parse_inline_spec(name)
    close = difflib.get_close_matches(name, WAN_PRESETS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(list_wan_presets())}."
    raise ValueError(f"Unknown Wan preset '{name}': {hint}")


def _linear(n_in: int, n_out: int) -> int:
    """Parameters of nn.Linear(n_in, n_out): weight + bias."""
    return n_in * n_out + n_out


def count_parameters(cfg: WanConfig) -> dict[str, int]:
    """Parameters per top-level module of the original layout, plus 'total'; allocates nothing.

    Mirrors `WanDiT.__init__` line by line (a test checks the two agree on the meta device).
    """
    d, f, a = cfg.dim, cfg.ffn_dim, cfg.attn_dim
    attention = 3 * _linear(d, a) + _linear(a, d) + (2 * a if cfg.qk_norm else 0)  # q, k, v, o (+ norms)
    block = (
        2 * attention  # self_attn, cross_attn
        + (2 * d if cfg.cross_attn_norm else 0)  # norm3 (affine LayerNorm); norm1/norm2 have no weights
        + _linear(d, f)
        + _linear(f, d)  # ffn.0, ffn.2
        + 6 * d  # modulation (1, 6, dim)
    )
    counts = {
        "patch_embedding": cfg.in_channels * cfg.patch_volume * d + d,
        "text_embedding": _linear(cfg.text_dim, d) + _linear(d, d),
        "time_embedding": _linear(cfg.freq_dim, d) + _linear(d, d),
        "time_projection": _linear(d, 6 * d),
        "blocks": cfg.num_layers * block,
        "head": _linear(d, cfg.out_channels * cfg.patch_volume) + 2 * d,  # head.head + head.modulation
    }
    counts["total"] = sum(counts.values())
    return counts
