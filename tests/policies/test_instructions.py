"""The instruction tokens Light-WAM and Fast-WAM share: frozen encoders on first use, padding, errors."""

from __future__ import annotations

import pytest
import torch

from wam.policies.instructions import FrozenInstructions, learned_instructions


def test_frozen_tokens_are_memoised_cut_and_padded_to_the_length() -> None:
    frozen = FrozenInstructions("minilm", width=384, length=6)
    assert frozen.encoder is None  # nothing is loaded until the first instruction
    short, long = "open the drawer", "push the red button on the left side of the table all the way down"
    with pytest.warns(UserWarning, match="may have been truncated"):
        out = frozen([short, long, short])  # (B, length, width)
    assert out.shape == (3, 6, 384) and out.dtype == torch.float32
    assert frozen.memo[long].shape[0] == 6 and frozen.memo[short].shape[0] < 6
    n = frozen.memo[short].shape[0]
    assert out[0, n:].abs().sum() == 0 and out[0, :n].abs().sum() > 0  # zeros after the valid tokens
    torch.testing.assert_close(out[0], out[2])
    torch.testing.assert_close(frozen([short])[0], out[0])  # the rest of the batch does not matter


def test_misconfigured_encoders_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match=r"policy\.text_path is unset"):
        FrozenInstructions("umt5", width=4096, length=8)(["open the drawer"])
    with pytest.raises(ValueError, match="gives 384-wide tokens, the policy expects 100"):
        FrozenInstructions("minilm", width=100, length=8)(["open the drawer"])
    with pytest.raises(ValueError, match=r"policy\.tasks is empty"):
        learned_instructions((), dim=8, tokens=1)
