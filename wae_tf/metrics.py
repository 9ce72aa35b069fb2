"""Sample-quality metrics of Table 1: Fréchet distance (FID) and sharpness.

Everything here is plain numpy/scipy in float64, so it can be checked
against independent references and reused with any feature extractor
(:mod:`wae_tf.inception` for the paper's FID, :mod:`wae_tf.mnist_classifier`
for an MNIST Fréchet score).

Fréchet distance
    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) between the Gaussian
    fits (sample mean, unbiased covariance) of two sets of features. Matches
    TTUR's ``calculate_frechet_distance`` (the reference implementation behind
    the paper's FID, see ``docs``/paper_spec.md "Figures and Table 1"),
    including its handling of near-singular covariances.

Sharpness [code]
    The official code (tolstikhin/wae, ``wae.py``, ``WAE.compute_blurriness``)
    converts RGB to grayscale with ``tf.image.rgb_to_grayscale`` (luma weights
    0.2989, 0.5870, 0.1140; single-channel images are used as they are),
    convolves with the Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``
    (``tf.nn.conv2d``, stride 1, VALID padding) and takes
    ``tf.nn.moments(conv, axes=[1, 2, 3])`` -- the population variance
    (ddof=0) per image. See :func:`sharpness` for the pixel range.

Two statistics of it are reported for Table 1, side by side: ours,
:func:`mean_sharpness` (mean over all samples, pixels mapped to [0, 1]), and the
official code's, :func:`code_sharpness` (minimum over a batch of 30, pixels in
[-1, 1] as the code feeds its CelebA model).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from wae_tf.configs import ImageRange, pixel_bounds

__all__ = [
    "CODE_SHARPNESS_BATCH",
    "GRAYSCALE_WEIGHTS",
    "LAPLACIAN_KERNEL",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "code_sharpness",
    "gaussian_statistics",
    "mean_sharpness",
    "sharpness",
    "to_unit_range",
]

# Luma weights of tf.image.rgb_to_grayscale (what the official code calls).
GRAYSCALE_WEIGHTS: np.ndarray = np.array([0.2989, 0.5870, 0.1140], dtype=np.float64)
# The 4-neighbour Laplacian of the official code's compute_blurriness.
LAPLACIAN_KERNEL: np.ndarray = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
# The official code measures sharpness on batches of `plot_num_pics` = 30 images (CelebA
# config) [code, configs.py:11 at commit 6351565].
CODE_SHARPNESS_BATCH = 30


# --------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------


def _as_activations(acts: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(acts, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (num_samples, num_features); got shape {arr.shape}"
        )
    if arr.shape[0] < 2:
        raise ValueError(
            f"{name} needs at least 2 rows to estimate a covariance; got {arr.shape[0]}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def gaussian_statistics(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a set of feature vectors.

    Args:
        acts: (N, D) features, N >= 2, any real values.

    Returns:
        ``(mu, sigma)``: float64 arrays of shape (D,) and (D, D); ``sigma`` is
        ``np.cov(acts, rowvar=False)`` (divides by N - 1), as in TTUR.
    """
    arr = _as_activations(acts, "acts")
    mu = arr.mean(axis=0)
    sigma = np.atleast_2d(np.cov(arr, rowvar=False))
    return mu, sigma


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its singular-matrix warnings (checked by the caller)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(scipy.linalg.sqrtm(m))


def frechet_distance_from_statistics(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 @ sigma2))``, in
    float64. Near-singular handling as in TTUR: if ``sqrtm`` returns
    non-finite values, ``eps * I`` is added to both covariances and the root is
    recomputed; a complex root whose diagonal's imaginary part is within 1e-3
    of zero is replaced by its real part, a larger imaginary part raises
    ``ValueError`` (it signals a numerical problem, not a distance).

    Args:
        mu1, mu2: (D,) means.
        sigma1, sigma2: (D, D) covariances (symmetric positive semi-definite).
        eps: diagonal offset used only when ``sqrtm`` fails.

    Returns:
        The squared Fréchet distance, a float >= 0 up to round-off (it can be
        a tiny negative number, about -1e-10 * scale, for identical inputs).
        The paper reports it as "FID" for Inception pool_3 features: 2 for
        two disjoint sets of 10k real CelebA images, 42-63 for the models.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError(f"means must be 1-D; got shapes {mu1.shape} and {mu2.shape}")
    if mu1.shape != mu2.shape:
        raise ValueError(f"means have different feature dimensions: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means; got {s.shape}")

    diff = mu1 - mu2
    # Features with zero variance in both sets (e.g. dead ReLUs) have all-zero rows and
    # columns in both covariances, so they add exactly 0 to the trace term: drop them
    # before the O(D^3) matrix square root. (Only if the eps fallback below triggers does
    # this differ from TTUR, which would also add -2 * eps per dropped feature.)
    live = np.any(sigma1 != 0, axis=0) | np.any(sigma2 != 0, axis=0)
    if not np.all(live):
        sigma1, sigma2 = sigma1[np.ix_(live, live)], sigma2[np.ix_(live, live)]
        d = int(live.sum())
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.all(np.isfinite(covmean)):
        warnings.warn(
            f"sqrtm(sigma1 @ sigma2) is not finite (singular product); adding {eps} to the "
            "diagonal of both covariances",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(d) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            max_imag = float(np.max(np.abs(covmean.imag)))
            raise ValueError(
                f"sqrtm(sigma1 @ sigma2) has a large imaginary component ({max_imag:.3g}); "
                "the covariances are probably too ill-conditioned (too few samples?)"
            )
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance(act1: np.ndarray, act2: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets.

    Args:
        act1: (N1, D) features of the first set (e.g. model samples), N1 >= 2.
        act2: (N2, D) features of the second set (e.g. real images), N2 >= 2.
        eps: see :func:`frechet_distance_from_statistics`.

    Returns:
        A float >= 0 (up to round-off); 0 for identical sets. With Inception
        pool_3 features of 10k vs 10k 64x64 images this is the paper's FID.
    """
    a1 = _as_activations(act1, "act1")
    a2 = _as_activations(act2, "act2")
    if a1.shape[1] != a2.shape[1]:
        raise ValueError(
            f"feature dimensions differ: act1 has {a1.shape[1]}, act2 has {a2.shape[1]}"
        )
    mu1, s1 = gaussian_statistics(a1)
    mu2, s2 = gaussian_statistics(a2)
    return frechet_distance_from_statistics(mu1, s1, mu2, s2, eps=eps)


# --------------------------------------------------------------------------
# Sharpness
# --------------------------------------------------------------------------


def to_unit_range(images: np.ndarray, pixel_range: ImageRange) -> np.ndarray:
    """Affinely map images from ``pixel_range`` (e.g. "symmetric": [-1, 1]) to [0, 1],
    float64."""
    lo, hi = pixel_bounds(pixel_range)
    return (np.asarray(images, dtype=np.float64) - lo) / (hi - lo)


def sharpness(
    images: np.ndarray,
    pixel_range: ImageRange,
    measure_range: ImageRange = "unit",
) -> np.ndarray:
    """Per-image sharpness: variance of the Laplacian of the grayscale image.

    The computation is the official code's ``compute_blurriness`` (see the
    module docstring): grayscale with ``tf.image.rgb_to_grayscale`` weights,
    3x3 Laplacian with VALID padding, population variance over the
    (H-2) x (W-2) outputs.

    Pixel range. The official code applies it to the arrays the model sees,
    i.e. to images in [-1, 1] for CelebA (``input_normalize_sym=True`` in its
    CelebA config; ``datahandler.py`` maps x -> (x - 0.5) * 2) and logs
    ``np.min`` over a batch of 30 images. The paper's Table 1 does not say
    which statistic it reports. Because the Laplacian sums to zero the value
    only depends on the scale of the range: values for [-1, 1] are exactly 4x
    those for [0, 1]. Measured here on 500 real CelebA faces (64x64, centre
    crop): mean 0.022, median 0.020 in [0, 1]; mean 0.088, min-of-30 about
    0.027 in [-1, 1]. The [0, 1] mean matches Table 1's "true data 2e-2"
    best, hence the default ``measure_range="unit"``; pass
    ``measure_range="symmetric"`` for the code's literal CelebA numbers, and see
    :func:`code_sharpness` for the code's statistic (min over 30 in [-1, 1]).

    Args:
        images: (N, H, W, C) with C in {1, 3}, or (N, H, W) grayscale; H, W >= 3.
        pixel_range: range of ``images`` (`wae_tf.configs.ImageRange`): "unit" ([0, 1],
            MNIST), "symmetric" ([-1, 1], CelebA) or "uint8" ([0, 255] pictures).
        measure_range: range the images are mapped to before measuring.

    Returns:
        (N,) float64 array of non-negative sharpness values (larger = sharper).
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, H, W), (N, H, W, 1) or (N, H, W, 3); got {np.shape(images)}"
        )
    if x.shape[1] < 3 or x.shape[2] < 3:
        raise ValueError(
            f"images must be at least 3x3 for a VALID 3x3 Laplacian; got {x.shape[1:3]}"
        )
    lo, hi = pixel_bounds(measure_range)
    x = to_unit_range(x, pixel_range) * (hi - lo) + lo
    gray = x[..., 0] if x.shape[-1] == 1 else x @ GRAYSCALE_WEIGHTS  # (N, H, W)
    # VALID 3x3 cross-correlation with the (symmetric) Laplacian, written out.
    lap = (
        gray[:, :-2, 1:-1]
        + gray[:, 2:, 1:-1]
        + gray[:, 1:-1, :-2]
        + gray[:, 1:-1, 2:]
        - 4.0 * gray[:, 1:-1, 1:-1]
    )
    return lap.reshape(lap.shape[0], -1).var(axis=1)


def mean_sharpness(
    images: np.ndarray,
    pixel_range: ImageRange,
    measure_range: ImageRange = "unit",
) -> float:
    """Mean of :func:`sharpness` over the images: our Table 1 statistic (see there and
    :func:`code_sharpness` for the official code's)."""
    return float(np.mean(sharpness(images, pixel_range, measure_range)))


def code_sharpness(
    images: np.ndarray,
    pixel_range: ImageRange,
    batch_size: int = CODE_SHARPNESS_BATCH,
    measure_range: ImageRange = "symmetric",
) -> float:
    """The official code's sharpness number: the minimum of :func:`sharpness` over the
    first ``batch_size`` (30) images, measured with pixels in [-1, 1].

    What the code logs (github.com/tolstikhin/wae, commit 6351565): ``compute_blurriness``
    (wae.py:351-364) is run on ``data.data[:self.num_pics]`` for the real images and on
    the decoded fixed prior draws ``self.fixed_noise = self.sample_pz(plot_num_pics)``
    for the model (wae.py:511-512, 533-536, 682-692), and ``np.min`` of the per-image
    values is printed ("Real pictures sharpness", "SHARPNESS"); ``plot_num_pics`` is 30
    for CelebA (configs.py:11), whose pixels are in [-1, 1] there
    (``input_normalize_sym``, datahandler.py:269-272). Because the Laplacian sums to zero,
    the per-image values are exactly 4x those measured in [0, 1] (:func:`sharpness`).

    Args:
        images: (N, H, W, C) or (N, H, W), N >= ``batch_size``; the first ``batch_size``
            are used (as the code uses the first 30 of its shuffled data / a fixed draw).
        pixel_range: range of ``images``, e.g. "symmetric" or "uint8".
        batch_size: images in the batch (the code: 30).
        measure_range: range the images are mapped to before measuring (the code's
            CelebA: "symmetric", [-1, 1]).

    Returns:
        A float >= 0: min over the batch of the per-image Laplacian variance.

    Raises:
        ValueError: fewer than ``batch_size`` images (the statistic would not be the code's).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    if n < batch_size:
        raise ValueError(
            f"code_sharpness is the minimum over a batch of {batch_size} images; got only {n}"
        )
    return float(np.min(sharpness(images[:batch_size], pixel_range, measure_range)))
