"""Tests for wae_tf.metrics, wae_tf.inception and wae_tf.mnist_classifier."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import scipy.signal
from helpers import write_standin_inception_graph

from wae_tf import inception, metrics

# ---------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------


def _reference_fid(act1: np.ndarray, act2: np.ndarray) -> float:
    """TF-GAN's frechet_classifier_distance_from_activations formula, computed another way.

    trace(sqrtm(s1 s2)) = trace(sqrtm(sqrt(s1) s2 sqrt(s1))), and the latter
    matrix is symmetric PSD, so its root's trace is the sum of the square
    roots of its eigenvalues (TF-GAN's trick).
    """
    mu1, mu2 = act1.mean(0), act2.mean(0)
    c1 = act1 - mu1
    c2 = act2 - mu2
    s1 = c1.T @ c1 / (len(act1) - 1)
    s2 = c2.T @ c2 / (len(act2) - 1)
    w, v = np.linalg.eigh(s1)
    sqrt_s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_s1 @ s2 @ sqrt_s1)
    trace_sqrt = np.sum(np.sqrt(np.clip(eig, 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


@pytest.mark.parametrize("dim", [1, 5, 64])
def test_frechet_distance_matches_eigendecomposition_reference(dim):
    rng = np.random.default_rng(dim)
    mix = rng.normal(size=(dim, dim))
    a = rng.normal(size=(500, dim)) @ mix + 0.3
    b = rng.normal(size=(400, dim)) @ (mix + 0.2 * rng.normal(size=(dim, dim)))
    got = metrics.frechet_distance(a, b)
    want = _reference_fid(a, b)
    assert got == pytest.approx(want, rel=1e-6)


def test_frechet_distance_of_identical_sets_is_zero():
    acts = np.random.default_rng(0).normal(size=(300, 32))
    assert abs(metrics.frechet_distance(acts, acts)) < 1e-8
    assert metrics.frechet_distance(acts, acts + 1.0) == pytest.approx(32.0, rel=1e-6)


def test_frechet_distance_from_statistics_closed_form_for_diagonal_gaussians():
    # N(mu1, diag(v1)) vs N(mu2, diag(v2)): sum (mu1-mu2)^2 + sum (sqrt(v1) - sqrt(v2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # 5 + 2 = 7
    got = metrics.frechet_distance_from_statistics(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(exact, rel=1e-12)


def test_frechet_distance_of_samples_converges_to_closed_form():
    # 200k samples per set in 3-D: the plug-in estimate's standard error is
    # ~ sqrt(sum 2 v^2 / n) ~ 0.02 and its bias ~ d * v / n ~ 1e-4, so 0.15
    # absolute (about 7 standard errors) is a safe, still meaningful tolerance.
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    a = mu1 + np.sqrt(v1) * rng.normal(size=(200_000, 3))
    b = mu2 + np.sqrt(v2) * rng.normal(size=(200_000, 3))
    assert metrics.frechet_distance(a, b) == pytest.approx(7.0, abs=0.15)


def test_frechet_distance_with_constant_features_matches_reference():
    # Constant (dead) features are dropped before sqrtm; the result must not change.
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(300, 12)), rng.normal(size=(200, 12)) * 1.5 + 0.2
    a[:, 3:9] = 0.0
    b[:, 3:9] = 0.0
    b[:, 5] = 2.0  # constant in both sets but with different means: counted in ||mu1-mu2||^2
    got = metrics.frechet_distance(a, b)
    assert got == pytest.approx(_reference_fid(a, b), rel=1e-6)
    live = [0, 1, 2, 9, 10, 11]
    assert got == pytest.approx(metrics.frechet_distance(a[:, live], b[:, live]) + 4.0, rel=1e-9)


def test_gaussian_statistics_are_mean_and_unbiased_covariance():
    acts = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = metrics.gaussian_statistics(acts)
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)
    np.testing.assert_allclose(mu, acts.astype(np.float64).mean(0))
    np.testing.assert_allclose(sigma, np.cov(acts.astype(np.float64), rowvar=False))


def test_frechet_distance_handles_singular_covariances():
    # Fewer samples than dimensions: both covariances are singular.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 40)), rng.normal(size=(10, 40)) + 0.5
    value = metrics.frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros((10,)), np.zeros((10, 3)), "2-D"),
        (np.zeros((10, 3)), np.zeros((10, 4)), "feature dimensions"),
        (np.zeros((1, 3)), np.zeros((10, 3)), "at least 2 rows"),
        (np.full((5, 3), np.nan), np.zeros((10, 3)), "NaN"),
    ],
)
def test_frechet_distance_rejects_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        metrics.frechet_distance(a, b)


def test_frechet_distance_from_statistics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        metrics.frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


# ---------------------------------------------------------------------------
# Sharpness
# ---------------------------------------------------------------------------


def _reference_sharpness(images01: np.ndarray) -> np.ndarray:
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    if images01.shape[-1] == 3:
        gray = np.einsum("nhwc,c->nhw", images01, [0.2989, 0.5870, 0.1140])
    else:
        gray = images01[..., 0]
    return np.array([scipy.signal.convolve2d(g, kernel, mode="valid").var() for g in gray])


@pytest.mark.parametrize("channels", [1, 3])
def test_sharpness_matches_convolve2d_reference(channels):
    rng = np.random.default_rng(channels)
    images = rng.uniform(-1, 1, size=(6, 17, 13, channels))
    got = metrics.sharpness(images, pixel_range="symmetric")
    want = _reference_sharpness((images + 1) / 2)
    assert got.shape == (6,)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_sharpness_matches_tensorflow_ops_of_official_code():
    # The official compute_blurriness: rgb_to_grayscale, conv2d VALID, tf.nn.moments.
    tf = pytest.importorskip("tensorflow")
    images = np.random.default_rng(4).uniform(0, 1, size=(4, 16, 16, 3)).astype(np.float32)
    gray = tf.image.rgb_to_grayscale(images)
    lap = tf.constant(metrics.LAPLACIAN_KERNEL.reshape(3, 3, 1, 1), tf.float32)
    conv = tf.nn.conv2d(gray, lap, strides=[1, 1, 1, 1], padding="VALID")
    _, want = tf.nn.moments(conv, axes=[1, 2, 3])
    np.testing.assert_allclose(metrics.sharpness(images, "unit"), want.numpy(), rtol=1e-4)


def test_sharpness_depends_only_on_the_scale_of_the_range():
    images = np.random.default_rng(5).uniform(0, 1, size=(3, 10, 10, 3))
    unit = metrics.sharpness(images, "unit")
    np.testing.assert_allclose(metrics.sharpness(images * 255, "uint8"), unit, rtol=1e-12)
    np.testing.assert_allclose(metrics.sharpness(images * 2 - 1, "symmetric"), unit, rtol=1e-12)
    code_celeba = metrics.sharpness(images * 2 - 1, "symmetric", measure_range="symmetric")
    np.testing.assert_allclose(code_celeba, 4 * unit, rtol=1e-12)


def test_pixel_ranges_are_named_once_and_only_by_name():
    from wae_tf import configs

    bounds = {name: configs.pixel_bounds(name) for name in configs.IMAGE_RANGES}
    assert bounds == {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0), "uint8": (0.0, 255.0)}
    assert set(configs.PIXEL_RANGES) < set(configs.IMAGE_RANGES)  # a model's are among them
    images = np.random.default_rng(6).uniform(-1, 1, size=(3, 10, 10, 3))
    named_error = "pixel_range must be one of 'unit', 'symmetric', 'uint8'"
    with pytest.raises(ValueError, match=named_error):
        metrics.sharpness(images, "0-255")
    with pytest.raises(ValueError, match=named_error):  # a (low, high) pair is no range
        inception.to_inception_range(images, (-1.0, 1.0))


def test_sharpness_of_flat_images_is_zero_and_blur_lowers_it():
    flat = np.full((2, 8, 8, 3), 0.3)
    np.testing.assert_allclose(metrics.sharpness(flat, "unit"), 0.0, atol=1e-20)
    sharp = np.random.default_rng(6).uniform(0, 1, size=(4, 32, 32, 1))
    blurred = scipy.ndimage.gaussian_filter(sharp, sigma=(0, 1.5, 1.5, 0))
    assert metrics.mean_sharpness(blurred, "unit") < 0.1 * metrics.mean_sharpness(sharp, "unit")


def test_code_sharpness_is_the_official_codes_min_over_30_images_in_minus_one_one():
    # The code (wae.py:351-364, 533-536, 682-692 at 6351565): tf.image.rgb_to_grayscale,
    # conv2d VALID with the Laplacian, tf.nn.moments per image, np.min over 30 images in
    # [-1, 1]. Rebuilt here with the same TF ops on images in [-1, 1].
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(8)
    sym = rng.uniform(-1, 1, size=(36, 16, 16, 3)).astype(np.float32)
    sym[:30] *= np.linspace(0.2, 1.0, 30, dtype=np.float32)[:, None, None, None]
    sym[33] = 0.0  # flat, but not among the first 30: must not count
    gray = tf.image.rgb_to_grayscale(sym[:30])
    lap = tf.constant(metrics.LAPLACIAN_KERNEL.reshape(3, 3, 1, 1), tf.float32)
    _, lapvar = tf.nn.moments(tf.nn.conv2d(gray, lap, [1, 1, 1, 1], "VALID"), axes=[1, 2, 3])
    want = float(np.min(lapvar.numpy()))
    assert metrics.code_sharpness(sym, "symmetric") == pytest.approx(want, rel=1e-4)
    assert want > 0.01  # the flat image 33 was not used


def test_code_sharpness_is_four_times_ours_on_the_first_30_and_needs_30_images():
    unit = np.random.default_rng(9).uniform(0, 1, size=(45, 10, 10, 3))
    unit[40] = 0.5 + 0.01 * (unit[40] - 0.5)  # the least sharp image, outside the first 30
    ours = metrics.sharpness(unit, "unit")  # per image, pixels in [0, 1]
    code = metrics.code_sharpness(unit, "unit")
    assert code == pytest.approx(4 * ours[:30].min(), rel=1e-12)
    assert code != pytest.approx(4 * ours.min(), rel=1e-6)  # only the first 30 count
    assert metrics.code_sharpness(unit * 255, "uint8") == pytest.approx(code, rel=1e-12)
    assert metrics.CODE_SHARPNESS_BATCH == 30
    with pytest.raises(ValueError, match="batch of 30"):
        metrics.code_sharpness(unit[:29], "unit")


def test_sharpness_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        metrics.sharpness(np.zeros((2, 8, 8, 2)), "unit")
    with pytest.raises(ValueError, match="3x3"):
        metrics.sharpness(np.zeros((2, 2, 8, 1)), "unit")


# ---------------------------------------------------------------------------
# TTUR Inception loader, with a stand-in GraphDef
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin_extractor(tmp_path_factory):
    pb = write_standin_inception_graph(
        tmp_path_factory.mktemp("inception") / inception.GRAPH_FILENAME
    )
    return inception.TTURInception.from_graph_def(pb)


def _celeba_like_images(n: int, seed: int) -> np.ndarray:
    """Smooth random 'images' in [-1, 1], 16x16x3."""
    rng = np.random.default_rng(seed)
    x = scipy.ndimage.gaussian_filter(rng.uniform(-1, 1, size=(n, 16, 16, 3)), sigma=(0, 1, 1, 0))
    return np.clip(x * 3, -1, 1)


def test_ttur_inception_features_shape_and_determinism(standin_extractor):
    images = _celeba_like_images(10, seed=0)
    feats = standin_extractor.features(images, pixel_range="symmetric", batch_size=4)
    assert feats.shape == (10, 2048) and feats.dtype == np.float64
    assert np.all(np.isfinite(feats)) and feats.std() > 0
    again = standin_extractor.features(images, pixel_range="symmetric", batch_size=4)
    np.testing.assert_array_equal(feats, again)


def test_ttur_inception_batch_dim_is_not_fixed_to_one(standin_extractor):
    # TTUR patches the recorded batch size of 1 after pool_3; we re-infer shapes.
    assert standin_extractor.pool3_static_shape == (None, 1, 1, 2048)


def test_ttur_inception_features_do_not_depend_on_batch_size(standin_extractor):
    images = _celeba_like_images(10, seed=1)
    f3 = standin_extractor.features(images, pixel_range="symmetric", batch_size=3)
    f7 = standin_extractor.features(images, pixel_range="symmetric", batch_size=7)
    f1 = standin_extractor.features(images[:2], pixel_range="symmetric", batch_size=1)
    np.testing.assert_allclose(f3, f7, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f1, f3[:2], rtol=1e-5, atol=1e-6)


def test_ttur_inception_input_is_mapped_to_0_255(standin_extractor):
    images = _celeba_like_images(3, seed=2)
    from_sym = standin_extractor.features(images, pixel_range="symmetric")
    as_uint8 = np.round((images + 1) * 127.5)
    from_255 = standin_extractor.features(as_uint8, pixel_range="uint8")
    np.testing.assert_allclose(from_sym, from_255, atol=0.05)
    converted = inception.to_inception_range(images, "symmetric")
    assert converted.dtype == np.float32 and converted.min() >= 0 and converted.max() <= 255
    gray = inception.to_inception_range(np.ones((2, 28, 28, 1)), "unit")
    assert gray.shape == (2, 28, 28, 3) and np.all(gray == 255)


def test_fid_score_of_a_set_against_itself_is_zero_and_a_shift_is_positive(standin_extractor):
    images = _celeba_like_images(100, seed=3)
    same = inception.fid_score(
        standin_extractor, images, images, pixel_range="symmetric", batch_size=16
    )
    shifted = inception.fid_score(
        standin_extractor,
        images,
        np.clip(images + 0.5, -1, 1),
        pixel_range="symmetric",
        batch_size=16,
    )
    mu, sigma = inception.activation_statistics(standin_extractor, images, "symmetric")
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    scale = 2 * np.trace(sigma)  # the FID's size when the two sets are unrelated
    assert abs(same) < 1e-8 * scale
    assert shifted > 1e-2 * scale


def test_missing_inception_graph_error_says_where_to_get_it(tmp_path):
    with pytest.raises(inception.InceptionGraphMissingError) as err:
        inception.TTURInception.from_graph_def(tmp_path)
    message = str(err.value)
    assert inception.INCEPTION_URL in message and "offline" in message


def test_download_inception_graph_fails_cleanly_offline(tmp_path, monkeypatch):
    def _offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    with pytest.raises(ConnectionError, match="offline"):
        inception.download_inception_graph(tmp_path, timeout=1.0)
    assert not (tmp_path / inception.GRAPH_FILENAME).exists()


@pytest.mark.slow
def test_keras_inception_v3_features_shape():
    extractor = inception.KerasInceptionV3Features(weights=None)
    assert extractor.comparable_to_paper is False
    feats = extractor.features(
        _celeba_like_images(3, seed=4), pixel_range="symmetric", batch_size=2
    )
    assert feats.shape == (3, 2048) and np.all(np.isfinite(feats))


# ---------------------------------------------------------------------------
# MNIST classifier Fréchet score
# ---------------------------------------------------------------------------


def _shared_mnist_dir() -> Path:
    root = os.environ.get("WAE_TF_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "mnist"


MNIST_DIR = _shared_mnist_dir()
needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"MNIST not found in {MNIST_DIR}",
)


def test_classifier_features_are_the_same_in_every_pixel_range():
    """penultimate_features maps "unit", "symmetric" and "uint8" images to the same input: an
    untrained LeNet (seeded) gives identical (N, 128) float64 ReLU features for all three."""
    from wae_tf.mnist_classifier import build_classifier, penultimate_features

    model = build_classifier(seed=0)
    unit = np.random.default_rng(7).integers(0, 256, size=(6, 28, 28)) / 255.0
    features = penultimate_features(model, unit)
    assert features.shape == (6, 128) and features.dtype == np.float64
    assert (features >= 0).all() and features.any()
    for images, pixel_range in ((unit * 2 - 1, "symmetric"), (unit * 255, "uint8")):
        np.testing.assert_allclose(
            penultimate_features(model, images[..., None], pixel_range), features, atol=1e-5
        )


# A budget that trains in a few seconds on 2 CPU cores.
QUICK = {"epochs": 2, "num_train": 10_000, "batch_size": 64, "seed": 0}


# It trains (~10 s on 2 cores): every test that uses it is marked slow.
@pytest.fixture(scope="module")
def quick_classifier(tmp_path_factory):
    from wae_tf.mnist_classifier import get_or_train_classifier

    cache = tmp_path_factory.mktemp("mnist_classifier")
    return cache, get_or_train_classifier(cache, MNIST_DIR, **QUICK)


@pytest.fixture(scope="module")
def mnist_test():
    from wae_tf.data import load, load_labels

    return load("mnist", MNIST_DIR, "test"), load_labels("mnist", MNIST_DIR, "test")


@pytest.mark.slow
@needs_mnist
def test_quick_classifier_is_accurate_and_cached_with_a_sidecar(quick_classifier, mnist_test):
    from wae_tf.mnist_classifier import classifier_accuracy

    _, clf = quick_classifier
    assert clf.trained_now
    assert clf.info["test_accuracy"] > 0.95  # 2 epochs on 10k images
    assert clf.info["num_train"] == 10_000 and clf.info["num_test"] == 10_000
    images, labels = mnist_test
    assert classifier_accuracy(clf.model, images, labels) == pytest.approx(
        clf.info["test_accuracy"]
    )
    assert clf.path.is_file() and clf.path.with_suffix(".json").is_file()
    assert not [p for p in clf.path.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.slow
@needs_mnist
def test_cached_classifier_is_loaded_not_retrained(quick_classifier, mnist_test, monkeypatch):
    from wae_tf import mnist_classifier

    cache, clf = quick_classifier

    def _no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been reused")

    monkeypatch.setattr(mnist_classifier, "train_classifier", _no_training)
    loaded = mnist_classifier.get_or_train_classifier(cache, MNIST_DIR, **QUICK)
    assert not loaded.trained_now
    assert loaded.info == clf.info
    images = mnist_test[0][:64]
    np.testing.assert_allclose(
        mnist_classifier.penultimate_features(loaded, images),
        mnist_classifier.penultimate_features(clf, images),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.slow
@needs_mnist
def test_mnist_frechet_score_orders_real_blurred_shuffled_and_noise(quick_classifier, mnist_test):
    from wae_tf.mnist_classifier import mnist_frechet_score, penultimate_features

    _, clf = quick_classifier
    images = mnist_test[0]
    reference, real = images[:2000], images[2000:4000]
    rng = np.random.default_rng(0)
    blurred = scipy.ndimage.gaussian_filter(real, sigma=(0, 1.5, 1.5, 0))
    perm = rng.permutation(28 * 28)
    shuffled = real.reshape(len(real), -1)[:, perm].reshape(real.shape)
    noise = rng.uniform(0, 1, size=real.shape).astype(np.float32)

    assert penultimate_features(clf, real[:5]).shape == (5, 128)
    scores = {
        name: mnist_frechet_score(clf, x, reference)
        for name, x in [
            ("real", real),
            ("blurred", blurred),
            ("shuffled", shuffled),
            ("noise", noise),
        ]
    }
    assert scores["real"] < scores["blurred"]
    assert scores["real"] < scores["shuffled"]
    assert scores["noise"] > 10 * scores["real"]
    # [-1, 1] inputs give the same score when told so.
    same = mnist_frechet_score(clf, real * 2 - 1, reference * 2 - 1, pixel_range="symmetric")
    assert same == pytest.approx(scores["real"], rel=1e-4)
