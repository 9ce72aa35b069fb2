"""Inception features for FID, with the paper's protocol.

The paper's FID (Table 1; protocol confirmed by the authors in
tolstikhin/wae issue #7): 10,000 model samples vs 10,000 real 64x64 CelebA
images, 2048-d ``pool_3`` features of the TTUR reference network
(``inception-2015-12-05``, file ``classify_image_graph_def.pb``), Fréchet
distance of the two Gaussian fits (:mod:`wae_tf.metrics`).

Two extractors share one interface, ``features(images, pixel_range=...,
batch_size=...) -> (N, 2048) float64``:

* :class:`TTURInception` -- the reference network loaded from its frozen
  GraphDef. Only this one gives numbers comparable to the paper's FID.
  How TTUR (bioinf-jku/TTUR, ``fid.py``) uses the graph: it imports the
  GraphDef under the name ``FID_Inception_Net``, feeds float images in
  [0, 255] of shape (N, H, W, 3) into ``FID_Inception_Net/ExpandDims:0`` (the
  graph itself resizes to 299x299 and rescales to [-1, 1]) and reads
  ``FID_Inception_Net/pool_3:0``, of shape (N, 1, 1, 2048). The graph was
  frozen for one JPEG at a time, so its recorded shapes carry a batch
  dimension of 1; TTUR rewrites them to ``None`` before use. Here, in TF2,
  the recorded ``_output_shapes`` are dropped before import and the
  ``ExpandDims:0`` tensor is replaced (``input_map``) by a
  ``[None, None, None, 3]`` float32 input, so every shape after it is
  re-inferred with an unknown batch size -- the same effect.
* :class:`KerasInceptionV3Features` -- ``keras.applications.InceptionV3``
  (global-average-pooled, 2048-d). Its ImageNet weights and resizing differ
  from the 2015 graph, so its FIDs are NOT comparable to the paper's; use it
  for relative comparisons only, when the reference graph is unavailable.

No Inception weights exist on the development machines and they are offline:
the reference graph has to be fetched once on a machine with internet
(:func:`download_inception_graph`) and copied over.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from wae_tf import fileio
from wae_tf.configs import ImageRange, pixel_bounds
from wae_tf.errors import WaeError
from wae_tf.metrics import frechet_distance, gaussian_statistics

__all__ = [
    "FEATURE_DIM",
    "GRAPH_FILENAME",
    "INCEPTION_URL",
    "FeatureExtractor",
    "InceptionGraphMissingError",
    "KerasInceptionV3Features",
    "TTURInception",
    "activation_statistics",
    "download_inception_graph",
    "fid_score",
    "to_inception_range",
]

logger = logging.getLogger(__name__)

# The archive TTUR downloads (fid.py, check_or_download_inception).
INCEPTION_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
GRAPH_FILENAME = "classify_image_graph_def.pb"
FEATURE_DIM = 2048
# Tensor names inside the GraphDef (TTUR prefixes them with its import name).
IMPORT_NAME = "FID_Inception_Net"
INPUT_TENSOR = "ExpandDims:0"
OUTPUT_TENSOR = "pool_3:0"


class InceptionGraphMissingError(WaeError, FileNotFoundError):
    """The reference Inception GraphDef is not where it was looked for."""


class FeatureExtractor(Protocol):
    """Anything that maps a batch of images to (N, D) features."""

    comparable_to_paper: bool

    def features(
        self,
        images: np.ndarray,
        pixel_range: ImageRange = "uint8",
        batch_size: int = 50,
    ) -> np.ndarray: ...


# --------------------------------------------------------------------------
# Input conversion
# --------------------------------------------------------------------------


def to_inception_range(images: np.ndarray, pixel_range: ImageRange) -> np.ndarray:
    """Convert images to float32 RGB in [0, 255], the input range of the TTUR graph.

    Args:
        images: (N, H, W, 3), (N, H, W, 1) or (N, H, W); uint8 or float.
            Grayscale images (MNIST) are repeated over 3 channels.
        pixel_range: range of ``images`` (`wae_tf.configs.ImageRange`): "symmetric"
            ([-1, 1], CelebA model outputs), "unit" ([0, 1], MNIST) or "uint8" ([0, 255]
            pictures).

    Returns:
        (N, H, W, 3) float32 in [0, 255] (values outside ``pixel_range`` are clipped).
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, H, W), (N, H, W, 1) or (N, H, W, 3); got {np.shape(images)}"
        )
    lo, hi = pixel_bounds(pixel_range)
    x = (x.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
    x = np.clip(x, 0.0, 255.0)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x


def _batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def _run_batched(
    fn, images: np.ndarray, pixel_range: ImageRange, batch_size: int, label: str
) -> np.ndarray:
    """Apply ``fn`` ((B, H, W, 3) float32 in [0, 255] -> (B, ...)) over all images."""
    n = len(images)
    if n == 0:
        raise ValueError("no images given")
    out = np.empty((n, FEATURE_DIM), dtype=np.float64)
    num_batches = -(-n // batch_size)
    t0 = last_log = time.monotonic()
    for i, (start, stop) in enumerate(_batches(n, batch_size)):
        batch = to_inception_range(images[start:stop], pixel_range)
        feats = np.asarray(fn(batch), dtype=np.float64).reshape(stop - start, -1)
        if feats.shape[1] != FEATURE_DIM:
            raise ValueError(
                f"{label} returned {feats.shape[1]} features per image, expected {FEATURE_DIM}"
            )
        out[start:stop] = feats
        now = time.monotonic()
        if now - last_log > 30.0 or (i + 1 == num_batches and now - t0 > 30.0):
            last_log = now
            logger.info("%s: %d/%d images (%.0f s)", label, stop, n, now - t0)
    return out


# --------------------------------------------------------------------------
# The TTUR reference network
# --------------------------------------------------------------------------


class TTURInception:
    """pool_3 features of the TTUR reference Inception graph (inception-2015-12-05).

    Build it with :meth:`from_graph_def`. ``features`` processes every image
    (TTUR's ``get_activations`` silently drops the last ``N % batch_size``
    images; with 10,000 images and a divisor batch size the two agree).
    """

    comparable_to_paper = True

    def __init__(self, graph_def, name: str = GRAPH_FILENAME) -> None:
        """Wrap an already parsed ``tf.compat.v1.GraphDef`` (see :meth:`from_graph_def`)."""
        import tensorflow as tf

        graph_def = _strip_recorded_shapes(graph_def)

        def _import() -> None:
            images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="images")
            tf.graph_util.import_graph_def(
                graph_def, input_map={INPUT_TENSOR: images}, name=IMPORT_NAME
            )

        try:
            wrapped = tf.compat.v1.wrap_function(_import, [])
        except ValueError as err:  # e.g. no ExpandDims tensor to feed
            raise ValueError(f"{name} is not the TTUR Inception graph ({err})") from err
        graph = wrapped.graph
        try:
            pool3 = graph.get_tensor_by_name(f"{IMPORT_NAME}/{OUTPUT_TENSOR}")
        except KeyError as err:
            raise ValueError(
                f"{name} has no tensor {OUTPUT_TENSOR!r}; is it the TTUR Inception graph?"
            ) from err
        self.name = name
        self.pool3_static_shape = tuple(pool3.shape.as_list())
        if self.pool3_static_shape[0] is not None:
            logger.warning("pool_3 kept a fixed batch size %s", self.pool3_static_shape[0])
        self._fn = wrapped.prune(feeds=graph.get_tensor_by_name("images:0"), fetches=pool3)
        self._tf = tf

    @classmethod
    def from_graph_def(cls, path: str | os.PathLike) -> TTURInception:
        """Load ``classify_image_graph_def.pb`` (a file, or a directory holding it).

        Raises InceptionGraphMissingError (no such file), ValueError (a file that is not
        a GraphDef, or a GraphDef without the TTUR tensors) or OSError (unreadable).
        """
        import tensorflow as tf

        p = Path(path)
        if p.is_dir():
            p = p / GRAPH_FILENAME
        if not p.is_file():
            raise InceptionGraphMissingError(
                f"Inception graph not found at {p}. FID as in the paper needs TTUR's reference "
                f"network: download {INCEPTION_URL} on a machine with internet access "
                f"(e.g. wae_tf.inception.download_inception_graph(dest_dir)), extract "
                f"{GRAPH_FILENAME} and point to it. This machine may be offline: no Inception "
                "weights are available on the project's development machines."
            )
        from google.protobuf.message import DecodeError

        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(p.read_bytes())
        except DecodeError as err:
            raise ValueError(
                f"{p} is not a TensorFlow GraphDef ({err}); expected TTUR's {GRAPH_FILENAME}"
            ) from err
        return cls(graph_def, name=str(p))

    def features(
        self,
        images: np.ndarray,
        pixel_range: ImageRange = "uint8",
        batch_size: int = 50,
    ) -> np.ndarray:
        """(N, 2048) float64 pool_3 features of images of any size (resized to 299 inside)."""
        tf = self._tf
        return _run_batched(
            lambda b: self._fn(tf.constant(b)).numpy(),
            images,
            pixel_range,
            batch_size,
            "TTUR Inception",
        )


def _strip_recorded_shapes(graph_def):
    """Copy of ``graph_def`` without the ``_output_shapes`` attributes.

    The importer trusts those recorded shapes, which fix the batch size to 1
    in the 2015 graph; without them shapes are inferred from the new input.
    """
    import tensorflow as tf

    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    for node in out.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
    return out


def download_inception_graph(
    dest_dir: str | os.PathLike, url: str = INCEPTION_URL, timeout: float = 10.0
) -> Path:
    """Fetch TTUR's Inception archive and extract ``classify_image_graph_def.pb`` into ``dest_dir``.

    Returns the path of the .pb (immediately, if it is already there). Needs
    internet access; fails with ``ConnectionError`` after ``timeout`` seconds
    otherwise. The file is written atomically (``wae_tf.fileio.atomic_path``).
    """
    dest = Path(dest_dir)
    target = dest / GRAPH_FILENAME
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading %s", url)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "inception.tgz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as f:
                shutil.copyfileobj(resp, f)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise ConnectionError(
                f"could not download {url} ({err}); this machine is probably offline. Fetch the "
                f"archive elsewhere and extract {GRAPH_FILENAME} into {dest}."
            ) from err
        with tarfile.open(archive, mode="r:gz") as tar:
            member = next(
                (m for m in tar.getmembers() if Path(m.name).name == GRAPH_FILENAME), None
            )
            if member is None or not member.isfile():
                raise ValueError(f"{url} does not contain {GRAPH_FILENAME}")
            src = tar.extractfile(member)
            assert src is not None
            with src, fileio.atomic_path(target) as partial, open(partial, "wb") as f:
                shutil.copyfileobj(src, f)
    return target


# --------------------------------------------------------------------------
# Keras InceptionV3 (not the paper's network)
# --------------------------------------------------------------------------


class KerasInceptionV3Features:
    """2048-d average-pooled features of ``keras.applications.InceptionV3``.

    NOT comparable to the paper's FID: different weights (Keras' ImageNet
    checkpoint, not the 2015 graph) and different resizing. Images are
    converted to [0, 255], resized to 299x299 (bilinear) and passed through
    ``keras.applications.inception_v3.preprocess_input`` (-> [-1, 1]).

    Args:
        weights: "imagenet" (downloads on first use; needs internet), a path
            to a weights file, or None (random weights; for tests).
        image_size: network input size (299 for InceptionV3).
    """

    comparable_to_paper = False

    def __init__(self, weights: str | None = "imagenet", image_size: int = 299) -> None:
        import keras

        logger.warning(
            "KerasInceptionV3Features: FIDs from keras.applications.InceptionV3 are NOT "
            "comparable to the paper's (TTUR graph); use TTURInception for that."
        )
        self.image_size = int(image_size)
        self.model = keras.applications.InceptionV3(
            include_top=False,
            weights=weights,
            input_shape=(self.image_size, self.image_size, 3),
            pooling="avg",
        )
        self._keras = keras

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        keras = self._keras
        x = keras.ops.image.resize(
            batch, (self.image_size, self.image_size), interpolation="bilinear"
        )
        x = keras.applications.inception_v3.preprocess_input(x)
        return keras.ops.convert_to_numpy(self.model(x, training=False))

    def features(
        self,
        images: np.ndarray,
        pixel_range: ImageRange = "uint8",
        batch_size: int = 50,
    ) -> np.ndarray:
        """(N, 2048) float64 features; see the class docstring."""
        return _run_batched(self._forward, images, pixel_range, batch_size, "Keras InceptionV3")


# --------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------


def activation_statistics(
    extractor: FeatureExtractor,
    images: np.ndarray,
    pixel_range: ImageRange,
    batch_size: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the extractor's features, e.g. to cache real-data statistics."""
    return gaussian_statistics(
        extractor.features(images, pixel_range=pixel_range, batch_size=batch_size)
    )


def fid_score(
    extractor: FeatureExtractor,
    images_a: np.ndarray,
    images_b: np.ndarray,
    pixel_range: ImageRange,
    batch_size: int = 50,
) -> float:
    """Fréchet distance between the extractor's features of two image sets.

    With :class:`TTURInception`, 10,000 model samples and 10,000 real 64x64
    images this is the paper's FID (Table 1: 2 for real vs real, 42-63 for
    the models). Both sets must be in ``pixel_range``.
    """
    feats_a = extractor.features(images_a, pixel_range=pixel_range, batch_size=batch_size)
    feats_b = extractor.features(images_b, pixel_range=pixel_range, batch_size=batch_size)
    return frechet_distance(feats_a, feats_b)
