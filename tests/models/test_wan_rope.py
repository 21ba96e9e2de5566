"""3-D RoPE tables: axis split, grid/offset positions, rotation properties."""

from __future__ import annotations

import pytest
import torch

from wam.models.wan.rope import (
    apply_rope,
    concat_rope,
    grid_positions,
    rope_axis_pairs,
    rope_for_grid,
    rope_for_positions,
)


def test_axis_split_follows_wan():
    assert rope_axis_pairs(128) == (22, 21, 21)  # the released models: head_dim 128
    assert rope_axis_pairs(32) == (6, 5, 5)
    with pytest.raises(ValueError, match="even head_dim"):
        rope_axis_pairs(7)


def test_grid_positions_are_frame_major_with_offset():
    pos = grid_positions((2, 2, 3), frame_offset=5)
    assert pos.shape == (12, 3)
    assert pos[0].tolist() == [5, 0, 0] and pos[1].tolist() == [5, 0, 1] and pos[3].tolist() == [5, 1, 0]
    assert pos[6].tolist() == [6, 0, 0] and pos[-1].tolist() == [6, 1, 2]


def test_grid_table_equals_position_table_and_offsets_shift_frames():
    cos, sin = rope_for_grid(32, (3, 2, 2), frame_offset=4)
    pos = grid_positions((3, 2, 2)) + torch.tensor([4, 0, 0])
    cos2, sin2 = rope_for_positions(32, pos)
    assert cos.shape == (12, 16) and cos.dtype == torch.float32
    torch.testing.assert_close(cos, cos2)
    torch.testing.assert_close(sin, sin2)
    # only the 6 frame pairs depend on the frame offset
    base_cos, _ = rope_for_grid(32, (3, 2, 2))
    assert not torch.allclose(base_cos[:, :6], cos[:, :6])
    torch.testing.assert_close(base_cos[:, 6:], cos[:, 6:])


def test_rotation_preserves_norm_and_encodes_relative_positions():
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 2, 32, dtype=torch.float64).unbind(0)  # (heads=1, L=2, hd)
    positions = torch.tensor([[3, 1, 2], [0, 4, 1]])
    rope = rope_for_positions(32, positions)
    rq = apply_rope(q.float(), rope)
    torch.testing.assert_close(rq.norm(dim=-1), q.float().norm(dim=-1))
    shifted = rope_for_positions(32, positions + torch.tensor([7, 2, 5]))
    scores = apply_rope(q.float(), rope) @ apply_rope(k.float(), rope).transpose(-1, -2)
    scores_shifted = apply_rope(q.float(), shifted) @ apply_rope(k.float(), shifted).transpose(-1, -2)
    torch.testing.assert_close(scores, scores_shifted, atol=1e-5, rtol=1e-5)


def test_apply_rope_keeps_dtype_and_concat_joins_streams():
    rope = concat_rope(rope_for_grid(32, (1, 2, 2)), rope_for_positions(32, torch.tensor([[1, 0, 0]] * 3)))
    assert rope[0].shape == (7, 16)
    x = torch.randn(1, 2, 7, 32, dtype=torch.bfloat16)
    assert apply_rope(x, rope).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"\(L, 3\)"):
        rope_for_positions(32, torch.zeros(4, 2))
