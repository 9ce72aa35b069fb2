"""An MNIST Fréchet score: FID's recipe with a small MNIST classifier as the feature map.

The paper reports no FID for MNIST (Figure 2 is qualitative). To give its
samples a number, this module trains a LeNet-style classifier on the MNIST
train split and measures the Fréchet distance (:mod:`wae_tf.metrics`)
between its penultimate-layer features ("features", 128-d) of model samples
and of real test images. Protocol: 10,000 samples vs the 10,000 test images.
The numbers are only comparable between runs that use the same classifier
(same cache file); they are not Inception FIDs.

Architecture (LeNet-style): Conv 32 3x3 ReLU, MaxPool 2, Conv 64 3x3 ReLU,
MaxPool 2, Flatten, Dense 128 ReLU ("features"), Dropout 0.3, Dense 10
("logits"). Adam 1e-3, batch 128, cross-entropy on logits.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wae_tf import fileio
from wae_tf.configs import ImageRange, pixel_bounds
from wae_tf.metrics import frechet_distance

__all__ = [
    "FEATURE_LAYER",
    "TrainedClassifier",
    "build_classifier",
    "classifier_accuracy",
    "get_or_train_classifier",
    "mnist_frechet_score",
    "penultimate_features",
    "train_classifier",
]

logger = logging.getLogger(__name__)

FEATURE_LAYER = "features"
FEATURE_DIM = 128


@dataclass
class TrainedClassifier:
    """A classifier and what is known about it.

    Attributes:
        model: the Keras model; input (N, 28, 28, 1) float in [0, 1], output 10 logits.
        info: the JSON sidecar (test accuracy, training settings, timings, versions).
        path: the cached ``.keras`` file.
        trained_now: True if this call trained it, False if it was loaded from the cache.
    """

    model: Any
    info: dict = field(default_factory=dict)
    path: Path | None = None
    trained_now: bool = False


def build_classifier(seed: int = 0):
    """The LeNet-style classifier (module docstring), uncompiled; weights seeded by ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(FEATURE_DIM, activation="relu", name=FEATURE_LAYER)(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    logits = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, logits, name="mnist_lenet")


def _as_mnist_batch(images: np.ndarray, pixel_range: ImageRange = "unit") -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (28, 28, 1):
        raise ValueError(f"expected MNIST images of shape (N, 28, 28[, 1]); got {np.shape(images)}")
    lo, hi = pixel_bounds(pixel_range)
    if (lo, hi) != (0.0, 1.0):
        x = (x - lo) / (hi - lo)
    return x


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    epochs: int = 3,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    verbose: int = 0,
):
    """Train :func:`build_classifier` on images in [0, 1]; returns the compiled model."""
    import keras

    model = build_classifier(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        _as_mnist_batch(train_images),
        np.asarray(train_labels, dtype=np.int64),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
    )
    return model


def classifier_accuracy(
    model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000
) -> float:
    """Fraction in [0, 1] of ``images`` (in [0, 1]) whose argmax logit equals ``labels``."""
    logits = model.predict(_as_mnist_batch(images), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def _cache_name(epochs: int, batch_size: int, seed: int, num_train: int | None) -> str:
    n = "all" if num_train is None else str(num_train)
    return f"mnist_lenet_e{epochs}_b{batch_size}_s{seed}_n{n}"


def get_or_train_classifier(
    cache_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    epochs: int = 5,
    batch_size: int = 128,
    seed: int = 0,
    num_train: int | None = None,
    verbose: int = 0,
) -> TrainedClassifier:
    """Load the cached classifier for these settings, or train, evaluate and cache it.

    The cache is ``<cache_dir>/mnist_lenet_e{epochs}_b{batch}_s{seed}_n{num_train}.keras``
    plus a ``.json`` sidecar (test accuracy on the 10k test split, settings,
    training seconds, versions). Both are written atomically
    (``wae_tf.fileio``), sidecar last, and the cache counts as present only
    when both exist.

    Args:
        cache_dir: directory for the cached files (created if missing).
        data_dir: MNIST directory with the four IDX .gz files (see ``wae_tf.data.load``).
        epochs, batch_size, seed: training settings. The defaults (5 epochs, batch 128,
            seed 0, all 60k images) gave 99.06% test accuracy here (3 epochs: 98.85%).
        num_train: use only the first ``num_train`` training images (None: all 60,000).
    """
    from wae_tf.data import load, load_labels

    cache = Path(cache_dir)
    name = _cache_name(epochs, batch_size, seed, num_train)
    model_path = cache / f"{name}.keras"
    info_path = cache / f"{name}.json"
    if model_path.is_file() and info_path.is_file():
        cached = _load_cached(model_path, info_path)
        if cached is not None:
            return cached

    train_x = load("mnist", data_dir, "train", num_examples=num_train)
    train_y = load_labels("mnist", data_dir, "train", num_examples=num_train)
    test_x = load("mnist", data_dir, "test")
    test_y = load_labels("mnist", data_dir, "test")
    t0 = time.perf_counter()
    model = train_classifier(
        train_x, train_y, epochs=epochs, batch_size=batch_size, seed=seed, verbose=verbose
    )
    train_seconds = time.perf_counter() - t0
    accuracy = classifier_accuracy(model, test_x, test_y)
    logger.info("Trained MNIST classifier in %.1f s: test accuracy %.4f", train_seconds, accuracy)

    from wae_tf import provenance

    info = {
        "test_accuracy": accuracy,
        "num_test": int(len(test_x)),
        "num_train": int(len(train_x)),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": 1e-3,
        "seed": seed,
        "train_seconds": round(train_seconds, 2),
        "feature_layer": FEATURE_LAYER,
        "versions": provenance.library_versions(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with fileio.atomic_path(model_path, suffix=".keras") as tmp:
        model.save(tmp)
    fileio.write_json(info_path, info, sort_keys=True)
    return TrainedClassifier(model=model, info=info, path=model_path, trained_now=True)


def _load_cached(model_path: Path, info_path: Path) -> TrainedClassifier | None:
    """The cached classifier, or None (after one warning line) when the cache is damaged
    (a truncated or flipped .keras, an unreadable sidecar): it is only a cache, so the
    caller trains it again and overwrites both files."""
    from wae_tf.trained import DamagedModelFileError, load_keras_file

    try:
        info = json.loads(info_path.read_text())
        if not isinstance(info, dict):
            raise ValueError(f"{info_path} holds no JSON object")
        model = load_keras_file(model_path, compile=True)
    except (DamagedModelFileError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        logger.warning(
            "MNIST classifier cache %s is damaged, training it again (%s)", model_path, reason[:160]
        )
        return None
    logger.info(
        "Loaded MNIST classifier %s (test accuracy %.4f)",
        model_path,
        info.get("test_accuracy", float("nan")),
    )
    return TrainedClassifier(model=model, info=info, path=model_path, trained_now=False)


def _keras_model(classifier):
    return classifier.model if isinstance(classifier, TrainedClassifier) else classifier


def penultimate_features(
    model,
    images: np.ndarray,
    pixel_range: ImageRange = "unit",
    batch_size: int = 1000,
) -> np.ndarray:
    """(N, 128) float64 activations of the "features" layer (after ReLU, before dropout).

    Args:
        model: a classifier from this module (or a :class:`TrainedClassifier`).
        images: (N, 28, 28[, 1]) in ``pixel_range`` (default "unit": [0, 1]).
    """
    import keras

    model = _keras_model(model)
    extractor = keras.Model(model.inputs, model.get_layer(FEATURE_LAYER).output)
    feats = extractor.predict(
        _as_mnist_batch(images, pixel_range), batch_size=batch_size, verbose=0
    )
    return np.asarray(feats, dtype=np.float64)


def mnist_frechet_score(
    classifier,
    samples: np.ndarray,
    reference_images: np.ndarray,
    pixel_range: ImageRange = "unit",
    batch_size: int = 1000,
) -> float:
    """Fréchet distance between penultimate features of ``samples`` and ``reference_images``.

    Protocol: 10,000 model samples vs the 10,000 MNIST test images, both in
    ``pixel_range`` (the models' outputs are in [0, 1]). Returns a float
    >= 0 (smaller is better; about 0 for two halves of the test set, up to
    sampling noise); only comparable across runs that use the same classifier.
    """
    feats_s = penultimate_features(classifier, samples, pixel_range, batch_size)
    feats_r = penultimate_features(classifier, reference_images, pixel_range, batch_size)
    return frechet_distance(feats_s, feats_r)
