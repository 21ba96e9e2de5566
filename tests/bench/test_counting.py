"""FLOP and weight-traffic counting (`wam.bench.counting`) on modules with known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wam.bench.build import fake_parameters_
from wam.bench.counting import count_call, floor_seconds, parameter_bytes


def test_linear_flops_and_bytes_are_exact() -> None:
    b, d_in, d_out = 5, 12, 7
    layer = nn.Linear(d_in, d_out)
    x = torch.randn(b, d_in)
    counted = count_call(lambda: layer(x), layer)
    assert counted.flops == 2 * d_in * d_out * b
    assert counted.weight_bytes_used == (d_in * d_out + d_out) * 4
    assert counted.weight_bytes_read == counted.weight_bytes_used
    assert parameter_bytes([layer]) == (d_in * d_out + d_out) * 4


def test_a_weight_read_twice_counts_once_as_used_and_twice_as_read() -> None:
    layer = nn.Linear(8, 8, bias=False)
    x = torch.randn(3, 8)
    counted = count_call(lambda: layer(layer(x)), layer)
    assert counted.flops == 2 * (2 * 8 * 8 * 3)
    assert counted.weight_bytes_used == 8 * 8 * 4
    assert counted.weight_bytes_read == 2 * 8 * 8 * 4
    half = layer.to(torch.bfloat16)
    assert count_call(lambda: half(x.bfloat16()), half).weight_bytes_used == 8 * 8 * 2


class _Attend(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, 2, -1)).permute(2, 0, 3, 1, 4)  # each (B, 2, L, d/2)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def test_attention_is_counted_and_fake_weights_count_the_same() -> None:
    b, length, dim = 2, 6, 8
    model = _Attend(dim)
    x = torch.randn(b, length, dim)
    real = count_call(lambda: model(x), model)
    attention = 2 * (2 * b * length * length * dim)  # Q K^T and A V over both heads
    assert real.flops == 2 * dim * 3 * dim * b * length + attention
    with torch.device("meta"):
        fake = _Attend(dim)
    fake_parameters_(fake)
    assert all(not p.is_meta for p in fake.parameters())
    counted = count_call(lambda: fake(x), fake)
    assert (counted.flops, counted.weight_bytes_used) == (real.flops, real.weight_bytes_used)


def test_requires_grad_is_restored_after_counting() -> None:
    layer = nn.Linear(4, 4)
    layer.bias.requires_grad_(False)
    with torch.inference_mode():
        count_call(lambda: layer(torch.randn(1, 4)), layer)
    assert layer.weight.requires_grad and not layer.bias.requires_grad


def test_floor_is_the_slower_of_compute_and_memory() -> None:
    compute = floor_seconds(flops=10**12, weight_bytes=10**6, peak_flops=1e12, bandwidth=1e10)
    assert compute["bound"] == "compute" and compute["floor_s"] == pytest.approx(1.0)
    memory = floor_seconds(flops=10**6, weight_bytes=10**10, peak_flops=1e12, bandwidth=1e10)
    assert memory["bound"] == "memory" and memory["floor_s"] == pytest.approx(1.0)
