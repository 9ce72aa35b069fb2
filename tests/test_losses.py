"""Losses against independent numpy references and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops
from scipy import stats

from wae_tf import losses


def _official_mmd(qz: np.ndarray, pz: np.ndarray, kernel: str, pz_scale: float) -> float:
    """A loop-based numpy port of the official code's mmd_penalty (wae.py), float64.

    Written independently of wae_tf.losses: explicit pair loops, no norm/dot-product trick.
    """
    n, d = qz.shape
    d_qq = ((qz[:, None, :] - qz[None, :, :]) ** 2).sum(-1)
    d_pp = ((pz[:, None, :] - pz[None, :, :]) ** 2).sum(-1)
    d_qp = ((qz[:, None, :] - pz[None, :, :]) ** 2).sum(-1)
    off = ~np.eye(n, dtype=bool)
    if kernel == "rbf":
        half = (n * n - n) // 2
        sigma2 = np.sort(d_qp.ravel())[::-1][half - 1] + np.sort(d_qq.ravel())[::-1][half - 1]
        kernels = [lambda d: np.exp(-d / 2.0 / sigma2)]
    else:
        base = 2.0 * d * pz_scale**2
        kernels = [lambda d, c=base * s: c / (c + d) for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)]
    total = 0.0
    for k in kernels:
        within = (k(d_qq)[off].sum() + k(d_pp)[off].sum()) / (n * n - n)
        total += within - 2.0 * k(d_qp).sum() / (n * n)
    return total


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("z_dim", [8, 64])
@pytest.mark.parametrize("pz_scale", [1.0, math.sqrt(2.0)])
def test_mmd_matches_the_official_formula_in_float64(kernel, z_dim, pz_scale):
    rng = np.random.default_rng(z_dim)
    qz = rng.normal(0.3, 1.2, size=(100, z_dim))
    pz = rng.normal(0.0, pz_scale, size=(100, z_dim))
    ours = ops.convert_to_numpy(
        losses.mmd_penalty(ops.convert_to_tensor(qz), ops.convert_to_tensor(pz), kernel, pz_scale)
    )
    assert ours.shape == ()
    expected = _official_mmd(qz, pz, kernel, pz_scale)
    np.testing.assert_allclose(float(ours), expected, rtol=1e-5)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_unbiased_for_equal_distributions_and_positive_for_shifted(kernel):
    rng = np.random.default_rng(0)

    def estimate(shift):
        qz = rng.normal(shift, 1.0, size=(100, 8)).astype("float32")
        pz = rng.normal(0.0, 1.0, size=(100, 8)).astype("float32")
        return float(losses.mmd_penalty(qz, pz, kernel))

    same = np.array([estimate(0.0) for _ in range(40)])
    shifted = np.array([estimate(1.0) for _ in range(5)])
    # Unbiased: the mean of 40 estimates is within 3 standard errors of 0 (and some
    # single estimates are negative), while a unit shift is many standard errors above.
    standard_error = same.std(ddof=1) / np.sqrt(len(same))
    assert abs(same.mean()) < 3 * standard_error
    assert (same < 0).any()
    assert shifted.min() > same.mean() + 10 * same.std(ddof=1)


def test_reconstruction_cost_is_005_times_summed_squares_averaged_over_batch():
    x = np.zeros((2, 2, 2, 1), "float32")
    y = np.ones((2, 2, 2, 1), "float32")
    y[1] *= 2.0  # per-image sums of squares: 4 and 16
    assert float(losses.reconstruction_cost(x, y)) == pytest.approx(0.05 * (4 + 16) / 2)


def test_adversary_and_encoder_gan_losses_on_hand_computed_logits():
    logits_prior = np.array([[0.0], [2.0]], "float32")
    logits_encoded = np.array([[-1.0], [3.0]], "float32")
    # BCE(l, 1) = log(1 + e^-l); BCE(l, 0) = log(1 + e^l)
    bce_prior = (math.log(2.0) + math.log1p(math.exp(-2.0))) / 2
    bce_encoded = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(3.0))) / 2
    assert float(losses.adversary_loss(logits_prior, logits_encoded, 10.0)) == pytest.approx(
        10.0 * (bce_prior + bce_encoded), rel=1e-6
    )
    # Non-saturating: -log D(z~) = log(1 + e^-l)
    expected = (math.log1p(math.exp(1.0)) + math.log1p(math.exp(-3.0))) / 2
    assert float(losses.gan_penalty(logits_encoded)) == pytest.approx(expected, rel=1e-6)
    # Stable for huge logits.
    assert np.isfinite(float(losses.gan_penalty(np.array([[-200.0]], "float32"))))


def test_log_prior_term_is_the_normal_log_density():
    z = np.random.default_rng(1).normal(size=(5, 4))
    scale = math.sqrt(2.0)
    ours = ops.convert_to_numpy(losses.log_normal_density(ops.convert_to_tensor(z), scale))[:, 0]
    expected = stats.multivariate_normal(np.zeros(4), scale**2 * np.eye(4)).logpdf(z)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    # The official code's normalisation differs by (d - 1)/2 log(2 pi) only.
    code = losses.log_normal_density(ops.convert_to_tensor(z), scale, "official_code")
    np.testing.assert_allclose(
        ops.convert_to_numpy(code)[:, 0] - expected, 1.5 * math.log(2 * math.pi), rtol=1e-6
    )


def test_bernoulli_and_gaussian_nll_on_hand_computed_cases():
    x = np.array([[[[1.0], [0.0]]]], "float32")  # one image, two pixels
    p = np.array([[[[0.8], [0.3]]]], "float32")
    assert float(losses.bernoulli_nll(x, p)) == pytest.approx(
        -math.log(0.8) - math.log(0.7), rel=1e-6
    )
    mean = np.array([[[[0.5], [0.0]]]], "float32")
    var = 0.3
    expected = 0.25 / (2 * var) + 2 * 0.5 * math.log(2 * math.pi * var)
    assert float(losses.gaussian_nll(x, mean, var)) == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_against_the_closed_form():
    mean = np.array([[1.0, 0.0]], "float32")
    log_var = np.array([[0.0, math.log(4.0)]], "float32")
    # KL(N(m, v) || N(0, s2)) = 0.5 (v/s2 + m^2/s2 - 1 - log v + log s2) per dimension
    s2 = 2.0
    expected = 0.5 * ((1 + 1) / s2 - 1 - 0 + math.log(s2)) + 0.5 * (
        4 / s2 - 1 - math.log(4) + math.log(s2)
    )
    assert float(losses.gaussian_kl(mean, log_var, math.sqrt(s2))) == pytest.approx(
        expected, rel=1e-6
    )
    assert (
        float(losses.gaussian_kl(np.zeros((3, 4), "float32"), np.zeros((3, 4), "float32"))) == 0.0
    )


def test_moment_matching_loss_is_zero_for_equal_moments_and_matches_numpy():
    rng = np.random.default_rng(2)
    pz = rng.normal(size=(50, 3))
    assert float(losses.moment_matching_loss(pz, pz)) == pytest.approx(0.0, abs=1e-12)
    qz = rng.normal(1.0, 0.5, size=(50, 3))
    expected = np.mean((qz.mean(0) - pz.mean(0)) ** 2) + np.mean(
        (np.cov(qz, rowvar=False) - np.cov(pz, rowvar=False)) ** 2
    )
    got = ops.convert_to_numpy(
        losses.moment_matching_loss(ops.convert_to_tensor(qz), ops.convert_to_tensor(pz))
    )
    assert float(got) == pytest.approx(expected, rel=1e-9)
