"""Flow matching against closed-form cases: the shift, the straight path, a Gaussian data law."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from wam.models.flow_matching import (
    FlowMatchingConfig,
    add_noise,
    bell_loss_weight,
    euler_sample,
    flow_loss,
    sample_sigmas,
    sampling_sigmas,
    shift_sigmas,
    timesteps_from_sigmas,
    velocity_target,
    x0_from_velocity,
)


def gaussian_optimal_velocity(x: torch.Tensor, s: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """E[eps - x0 | x_s = x] for x0 ~ N(mean, std^2): the exact minimiser of the flow loss.

    x_s and v = eps - x0 are jointly Gaussian with Var(x_s) = (1-s)^2 std^2 + s^2 and
    Cov(v, x_s) = s - (1-s) std^2, so v* = -mean + Cov / Var * (x - (1-s) mean).
    """
    s = s.reshape(-1, *([1] * (x.ndim - 1)))
    var = (1.0 - s) ** 2 * std**2 + s**2
    return -mean + (s - (1.0 - s) * std**2) / var * (x - (1.0 - s) * mean)


# ----------------------------------------------------------------------------- config
def test_config_defaults_follow_wan_and_validate() -> None:
    cfg = FlowMatchingConfig()
    assert cfg.shift == 5.0 and cfg.num_train_timesteps == 1000 and cfg.inference_shift == 5.0
    assert FlowMatchingConfig(sample_shift=3.0).inference_shift == 3.0
    for bad in (
        {"shift": 0.0},
        {"sample_shift": -1.0},
        {"num_train_timesteps": 0},
        {"num_inference_steps": 0},
        {"timestep_distribution": "beta"},
        {"logit_std": 0.0},
        {"loss_weighting": "snr"},
    ):
        with pytest.raises(ValueError):
            FlowMatchingConfig(**bad)


def test_config_import_does_not_import_torch() -> None:
    code = (
        "import sys; import wam.models.flow_matching as f; f.FlowMatchingConfig();"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- training levels
def test_shift_one_gives_uniform_u_exactly() -> None:
    s = sample_sigmas((64,), torch.Generator().manual_seed(3), shift=1.0)
    u = torch.rand((64,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s, u)


def test_shift_formula_at_known_points() -> None:
    u = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    expected = torch.tensor([0.0, 1.25 / 2.0, 2.5 / 3.0, 1.0], dtype=torch.float64)  # 5u / (1 + 4u)
    torch.testing.assert_close(shift_sigmas(u, 5.0), expected)
    # shift > 1 pushes the mass to high noise: the median level is shift(0.5) = 5/6
    s = sample_sigmas(20000, torch.Generator().manual_seed(0), shift=5.0)
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert abs(float(s.median()) - 5.0 / 6.0) < 0.01
    # the empirical CDF at shift(q) is q
    for q in (0.1, 0.3, 0.7, 0.9):
        assert abs(float((s <= 5 * q / (1 + 4 * q)).float().mean()) - q) < 0.015


def test_logit_normal_levels() -> None:
    cfg = FlowMatchingConfig(shift=1.0, timestep_distribution="logit_normal", logit_mean=0.0, logit_std=1.0)
    s = cfg.sample_sigmas((4, 5000), torch.Generator().manual_seed(1))
    assert s.shape == (4, 5000) and s.min() > 0.0 and s.max() < 1.0
    assert abs(float(s.median()) - 0.5) < 0.02  # sigmoid of a centred normal has median 1/2
    assert float(((s > 0.25) & (s < 0.75)).float().mean()) > 0.7  # concentrated in the middle


def test_timesteps_scale() -> None:
    s = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(timesteps_from_sigmas(s), torch.tensor([0.0, 500.0, 1000.0]))
    torch.testing.assert_close(FlowMatchingConfig(num_train_timesteps=10).timesteps(s), s * 10)


def test_bell_weight_peaks_in_the_middle_and_averages_to_one_on_the_grid() -> None:
    grid = shift_sigmas(torch.linspace(1.0, 0.0, 1001, dtype=torch.float64)[:-1], 5.0)
    w_grid = bell_loss_weight(grid, 5.0, 1000)
    assert abs(float(w_grid.mean()) - 1.0) < 1e-6
    w = bell_loss_weight(torch.tensor([0.1, 0.5, 0.9]), 5.0)
    assert w[1] > w[0] and w[1] > w[2]
    assert FlowMatchingConfig().loss_weight(torch.rand(3)) is None
    assert FlowMatchingConfig(loss_weighting="bell").loss_weight(torch.rand(3)).shape == (3,)


# ----------------------------------------------------------------------------- path
def test_add_noise_endpoints_and_per_token_levels() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    torch.testing.assert_close(add_noise(x0, eps, torch.zeros(2)), x0)
    torch.testing.assert_close(add_noise(x0, eps, torch.ones(2)), eps)
    s_tok = torch.rand(2, 5, generator=g)  # per token
    x_t = add_noise(x0, eps, s_tok)
    torch.testing.assert_close(x_t[1, 3], (1 - s_tok[1, 3]) * x0[1, 3] + s_tok[1, 3] * eps[1, 3])
    # a per-frame level for a video latent (B, C, F, H, W) is passed with singleton dims
    v0, ve = torch.randn(2, 4, 3, 2, 2, generator=g), torch.randn(2, 4, 3, 2, 2, generator=g)
    s_frame = torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 0.0]])
    xv = add_noise(v0, ve, s_frame[:, None, :, None, None])
    torch.testing.assert_close(xv[0, :, 0], v0[0, :, 0])
    torch.testing.assert_close(xv[0, :, 2], ve[0, :, 2])
    torch.testing.assert_close(xv[1, :, 2], v0[1, :, 2])
    with pytest.raises(ValueError, match="does not broadcast"):
        add_noise(v0, ve, s_frame)  # (B, F) is not a prefix of (B, C, F, H, W)


def test_velocity_and_x0_estimate_are_consistent() -> None:
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    s = torch.tensor([0.2, 0.5, 0.9])
    x_t = add_noise(x0, eps, s)
    v = velocity_target(x0, eps)
    torch.testing.assert_close(v, eps - x0)
    torch.testing.assert_close(x0_from_velocity(x_t, v, s), x0)


# ----------------------------------------------------------------------------- loss
def test_flow_loss_masks_and_reductions() -> None:
    pred = torch.zeros(2, 4, 1)
    target = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]]).unsqueeze(-1)
    assert float(flow_loss(pred, target)) == pytest.approx(((1 + 4 + 9 + 16) / 4 + 4) / 2)
    mask = torch.tensor([[False, True, True, False], [True, True, True, True]])  # (B, N) prefix-aligned
    per_sample = flow_loss(pred, target, mask=mask, reduction="per_sample")
    torch.testing.assert_close(per_sample, torch.tensor([(4 + 9) / 2, 4.0]))
    assert float(flow_loss(pred, target, mask=mask)) == pytest.approx((6.5 + 4.0) / 2)
    # a masked entry does not change the loss whatever its value
    noisy = target.clone()
    noisy[0, 0] = 1e6
    assert float(flow_loss(pred, noisy, mask=mask)) == pytest.approx((6.5 + 4.0) / 2)
    # a sample with no counted entry is left out of the mean, not counted as zero
    none_in_first = torch.tensor([[False] * 4, [True] * 4])
    assert float(flow_loss(pred, target, mask=none_in_first)) == pytest.approx(4.0)
    weighted = flow_loss(pred, target, mask=mask, weight=torch.tensor([2.0, 0.0]), reduction="per_sample")
    torch.testing.assert_close(weighted, torch.tensor([13.0, 0.0]))
    elementwise = flow_loss(pred, target, mask=mask, reduction="none")
    assert elementwise.shape == (2, 4, 1) and float(elementwise[0, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="reduction"):
        flow_loss(pred, target, reduction="sum")


def test_flow_loss_gradient_vanishes_at_the_target_and_not_elsewhere() -> None:
    target = torch.randn(2, 3)
    pred = target.clone().requires_grad_(True)
    flow_loss(pred, target).backward()
    assert float(pred.grad.abs().max()) == 0.0
    pred2 = torch.zeros(2, 3, requires_grad=True)
    flow_loss(pred2, target).backward()
    assert float(pred2.grad.abs().max()) > 0.0


# ----------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("num_steps,shift", [(1, 5.0), (10, 5.0), (50, 1.0), (7, 3.0)])
def test_sampling_grid_is_monotone_from_one_to_zero(num_steps: int, shift: float) -> None:
    s = sampling_sigmas(num_steps, shift)
    assert s.shape == (num_steps + 1,)
    assert float(s[0]) == 1.0 and float(s[-1]) == 0.0
    assert bool((s[1:] < s[:-1]).all())
    u = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    torch.testing.assert_close(s.double(), shift * u / (1 + (shift - 1) * u), atol=1e-6, rtol=0)


def test_sampling_grid_with_wan_sigma_max() -> None:
    s = sampling_sigmas(4, 5.0, sigma_max=0.999)
    assert float(s[0]) == pytest.approx(5 * 0.999 / (1 + 4 * 0.999)) and float(s[-1]) == 0.0
    assert FlowMatchingConfig(num_inference_steps=6).sampling_sigmas().shape == (7,)


@pytest.mark.parametrize("num_steps", [1, 3, 10])
def test_euler_with_the_true_straight_velocity_recovers_x0_in_any_number_of_steps(num_steps: int) -> None:
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    calls = []

    def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        calls.append(s.clone())
        return eps - x0

    out = euler_sample(velocity, eps, num_steps=num_steps, shift=5.0)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    assert len(calls) == num_steps
    assert calls[0].shape == (4,) and bool((calls[0] == 1.0).all())


def test_euler_recovers_a_gaussian_data_law_with_the_optimal_field() -> None:
    mean, std = 1.5, 0.4
    x_T = torch.randn(20000, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return gaussian_optimal_velocity(x, s, mean, std)

    exact = mean + std * x_T  # the exact ODE flow is affine: x_0 = mean + std * x_T
    out = euler_sample(velocity, x_T, num_steps=200, shift=1.0)
    assert float(out.mean()) == pytest.approx(mean, abs=0.01)
    assert float(out.std()) == pytest.approx(std, abs=0.01)
    torch.testing.assert_close(out, exact, atol=0.02, rtol=0)
    # Euler is first order: doubling the steps halves the error, also on the shifted grid
    err = [
        float((euler_sample(velocity, x_T, num_steps=n, shift=5.0) - exact).abs().max()) for n in (100, 200)
    ]
    assert 0.4 < err[1] / err[0] < 0.6
    # with very few steps Euler is visibly off (the test can fail when the integrator is wrong)
    coarse = euler_sample(velocity, x_T, num_steps=2, shift=5.0)
    assert float((coarse - exact).abs().max()) > 0.5


def test_euler_keeps_clean_entries_and_reports_zero_level_there() -> None:
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(3, 2, 4, 5, generator=g)  # (B, C, F, D): frame 0 is the clean condition
    eps = torch.randn_like(x0)
    clean_mask = torch.zeros(1, 1, 4, 1, dtype=torch.bool)
    clean_mask[:, :, 0] = True
    seen = []

    def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), s.clone()))
        return eps - x0

    out = euler_sample(velocity, eps, num_steps=4, shift=5.0, clean=x0, clean_mask=clean_mask)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    for x, s in seen:
        assert s.shape == (3, 1, 4, 1)
        assert bool((s[:, :, 0] == 0).all())
        torch.testing.assert_close(x[:, :, 0], x0[:, :, 0])  # held clean before every call
    assert bool((seen[0][1][:, :, 1:] == 1.0).all())
    with pytest.raises(ValueError, match="together"):
        euler_sample(velocity, eps, clean_mask=clean_mask)


def test_euler_trajectory_and_explicit_grid() -> None:
    x0, eps = torch.zeros(2, 3), torch.ones(2, 3)
    grid = torch.tensor([1.0, 0.5, 0.0])
    out, traj = euler_sample(lambda x, s: eps - x0, eps, sigmas=grid, return_trajectory=True)
    assert len(traj) == 3
    torch.testing.assert_close(traj[1], torch.full((2, 3), 0.5))
    torch.testing.assert_close(out, x0)


def test_euler_is_vectorised_over_the_batch() -> None:
    batch_sizes = []

    def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        batch_sizes.append(x.shape[0])
        return -x

    euler_sample(velocity, torch.randn(16, 3), num_steps=5)
    assert batch_sizes == [16] * 5
