"""The batches a run trains and validates on: train / eval streams, batch orders, eval order.

  * `train_dataset`: the infinite stream of training batches; epoch e's batches are
    `batch_indices(N, B, seed, e, batch_order)`: slices of `epoch_permutation` (ours, each
    example once per epoch) or `independent_batch` per step (the code's draw, [code]
    wae.py:573-576). Both depend only on (seed, epoch[, step]), which makes resuming exact.
  * `eval_dataset`: one pass over images in order; `eval_order` / `eval_subset`: the fixed
    random order of the test images every run validates on.
  * `to_model_range`: uint8 [0, 255] -> float32 in [0, 1] or [-1, 1], applied per batch.
Streams are `tf.data.Dataset`s when Keras runs on TensorFlow (`use_tf_data`), else
`keras.utils.PyDataset`s with the same batches; TensorFlow and Keras are imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from wae_tf.configs import BATCH_ORDERS, PIXEL_RANGES
from wae_tf.data_errors import DataError

# The seed of `eval_order` (fixed: every run validates on the same test images, in the same
# order) and the tags that keep the streams of `eval_order` and `independent_batch` apart
# from `epoch_permutation`'s.
EVAL_ORDER_SEED = 0
EVAL_ORDER_STREAM = 1
INDEPENDENT_DRAWS_STREAM = 2


def to_model_range(images: np.ndarray, pixel_range: str) -> np.ndarray:
    """uint8 [0, 255] -> float32 in [0, 1] ("unit": x/255) or [-1, 1] ("symmetric": x/127.5-1)."""
    _check_pixel_range(pixel_range)
    x = np.asarray(images).astype(np.float32)
    if pixel_range == "unit":
        return x / np.float32(255.0)
    return x / np.float32(127.5) - np.float32(1.0)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """floor(n / batch_size): an epoch drops the last partial batch [code: num_points // batch]."""
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    steps = n // batch_size
    if steps == 0:
        raise DataError(f"{n} examples are fewer than one batch of {batch_size}")
    return steps


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of `epoch`: a permutation of range(n) that depends only on (seed, epoch).

    This is what makes resuming exact: a run restarted at epoch k sees the same batches as
    an uninterrupted run, whatever happened before.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))
    return rng.permutation(n)


def independent_batch(n: int, batch_size: int, seed: int, epoch: int, step: int) -> np.ndarray:
    """The indices of one batch drawn afresh: `batch_size` distinct indices of range(n), drawn
    independently of every other step, as the code's np.random.choice(train_size,
    batch_size, replace=False) each step ([code] wae.py:573-576). Seeded by (seed, epoch,
    step) alone, so that a resumed run draws the same batches as an uninterrupted one.
    """
    entropy = [int(seed), int(epoch), int(step), INDEPENDENT_DRAWS_STREAM]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    return rng.choice(n, batch_size, replace=False)


def batch_indices(
    n: int, batch_size: int, seed: int, epoch: int, batch_order: str = "epoch_permutation"
) -> list[np.ndarray]:
    """The example indices of every batch of `epoch` (`steps_per_epoch(n, batch_size)` of
    them) under `batch_order`: "epoch_permutation" (ours: consecutive slices of
    `epoch_permutation`, each example at most once per epoch) or "independent_draws"
    (`independent_batch` per step, the code's)."""
    _check_batch_order(batch_order)
    steps = steps_per_epoch(n, batch_size)
    if batch_order == "independent_draws":
        return [independent_batch(n, batch_size, seed, epoch, step) for step in range(steps)]
    order = epoch_permutation(n, seed, epoch)
    return [order[step * batch_size : (step + 1) * batch_size] for step in range(steps)]


def eval_order(n: int, seed: int = EVAL_ORDER_SEED) -> np.ndarray:
    """The fixed-seed random order in which runs evaluate the test images.

    Batches cut in a test file's order are not i.i.d. draws of Q_Z, and a batch's MMD
    against P_Z depends on that: on MNIST, WAE-MMD's val_penalty read ~0.10 in file order
    and ~0.01 on shuffled batches of the same images. The order does not depend on the
    run's seed, so every run validates on the same images and its numbers stay comparable.
    """
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), EVAL_ORDER_STREAM])
    ).permutation(n)


# Recorded in config.json; it names `eval_order` where it was defined before the split
# (`wae_tf.data` re-exports it), so a run's provenance reads as it did.
EVAL_ORDER_TEXT = f"the test split in wae_tf.data.eval_order (seed {EVAL_ORDER_SEED}), first N"


def eval_subset(test_images: np.ndarray, num: int, what: str) -> np.ndarray:
    """The first `num` test images in `eval_order`: what a run validates on. `what` names
    the request in the DataError raised when the split has fewer images."""
    if num > len(test_images):
        raise DataError(f"{what} but the test split has only {len(test_images)} images")
    return test_images[eval_order(len(test_images))[:num]]


def train_dataset(
    images: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    pixel_range: str,
    start_epoch: int = 0,
    batch_order: str = "epoch_permutation",
) -> Any:
    """An infinite stream of shuffled float32 batches (B, H, W, C) in the model's pixel range.

    `images` may be uint8 in [0, 255] (converted per batch, recommended: 4x less memory) or
    float already in `pixel_range`. Epoch e (e = start_epoch, start_epoch + 1, ...) has
    `steps_per_epoch(N, batch_size)` batches, `batch_indices(N, batch_size, seed, e,
    batch_order)`: slices of `epoch_permutation(N, seed, e)`, or with "independent_draws"
    a fresh draw per step; the last partial batch is dropped, as in the paper/official code.

    Returns a `tf.data.Dataset` (prefetched, uint8->float inside the pipeline) when Keras runs
    on TensorFlow, else a `keras.utils.PyDataset` with the same batches that never imports
    TensorFlow. Use with `model.fit(ds, steps_per_epoch=steps_per_epoch(N, batch_size))`.
    """
    images = _check_images_for_stream(images, pixel_range)
    n = len(images)
    steps_per_epoch(n, batch_size)  # DataError if fewer than one batch
    _check_batch_order(batch_order)
    if start_epoch < 0:
        raise DataError(f"start_epoch must be >= 0, got {start_epoch}")

    def batches() -> Iterator[np.ndarray]:
        epoch = start_epoch
        while True:
            for indices in batch_indices(n, batch_size, seed, epoch, batch_order):
                yield images[indices]
            epoch += 1

    if use_tf_data():
        return _tf_stream(batches, images, batch_size, pixel_range)
    return _make_py_dataset(images, batch_size, seed, pixel_range, start_epoch, batch_order)


def eval_dataset(images: np.ndarray, batch_size: int, *, pixel_range: str | None = None) -> Any:
    """One pass over `images` in order, float32 batches, the last batch possibly smaller.

    uint8 inputs need `pixel_range` ("unit" or "symmetric"); float inputs are passed through.
    Returns a `tf.data.Dataset` on the TensorFlow backend, else a `keras.utils.PyDataset`.
    """
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    images = np.asarray(images)
    if images.dtype == np.uint8 and pixel_range is None:
        raise DataError("eval_dataset: uint8 images need pixel_range='unit' or 'symmetric'")
    if pixel_range is not None:
        images = _check_images_for_stream(images, pixel_range)
    if len(images) == 0:
        raise DataError("eval_dataset: got 0 images")
    n_batches = -(-len(images) // batch_size)

    def batches() -> Iterator[np.ndarray]:
        for i in range(n_batches):
            yield images[i * batch_size : (i + 1) * batch_size]

    if use_tf_data():
        return _tf_stream(batches, images, None, pixel_range)
    return _make_eval_py_dataset(images, batch_size, pixel_range, n_batches)


def _check_batch_order(batch_order: str) -> None:
    if batch_order not in BATCH_ORDERS:
        raise DataError(
            f"unknown batch_order {batch_order!r}; expected {' or '.join(BATCH_ORDERS)}"
        )


def _check_pixel_range(pixel_range: str) -> None:
    if pixel_range not in PIXEL_RANGES:
        raise DataError(f"unknown pixel_range {pixel_range!r}; expected 'unit' or 'symmetric'")


def use_tf_data() -> bool:
    """True iff Keras runs on TensorFlow and TensorFlow imports (imports Keras lazily)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def _check_images_for_stream(images: np.ndarray, pixel_range: str) -> np.ndarray:
    _check_pixel_range(pixel_range)
    images = np.asarray(images)
    if images.ndim != 4:
        raise DataError(f"images must be NHWC (4-D), got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"images must be uint8 or float, got dtype {images.dtype}")
    low = 0.0 if pixel_range == "unit" else -1.0
    if images.size and (images.min() < low - 1e-6 or images.max() > 1.0 + 1e-6):
        raise DataError(
            f"float images span [{images.min():.3g}, {images.max():.3g}], outside the "
            f"{pixel_range!r} range [{low:g}, 1]"
        )
    return images.astype(np.float32, copy=False)


def _tf_stream(
    batches: Any, images: np.ndarray, batch_size: int | None, pixel_range: str | None
) -> Any:
    """tf.data from a numpy batch generator: gather in numpy (no 2 GB graph constant for
    full CelebA), uint8->float in a parallel map, prefetch so the model never waits."""
    import tensorflow as tf

    signature = tf.TensorSpec((batch_size, *images.shape[1:]), tf.as_dtype(images.dtype))
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    if images.dtype == np.uint8:
        scale, offset = (255.0, 0.0) if pixel_range == "unit" else (127.5, 1.0)
        ds = ds.map(
            lambda x: tf.cast(x, tf.float32) / scale - offset,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _to_float_batch(batch: np.ndarray, pixel_range: str | None) -> np.ndarray:
    if batch.dtype == np.uint8:
        return to_model_range(batch, pixel_range)
    return batch


def _make_py_dataset(
    images: np.ndarray,
    batch_size: int,
    seed: int,
    pixel_range: str,
    start_epoch: int,
    batch_order: str,
) -> Any:
    """The same stream as a keras PyDataset: batch i is step i % steps of epoch start + i // steps."""
    import keras

    steps = steps_per_epoch(len(images), batch_size)

    class _TrainPyDataset(keras.utils.PyDataset):
        _epoch: tuple[int, list[np.ndarray]] = (-1, [])  # (epoch, its batches' indices)

        @property
        def num_batches(self) -> None:
            return None  # infinite

        def __getitem__(self, index: int) -> np.ndarray:
            epoch, step = divmod(index, steps)
            if self._epoch[0] != epoch:  # the epoch's indices once, not per batch
                indices = batch_indices(
                    len(images), batch_size, seed, start_epoch + epoch, batch_order
                )
                self._epoch = (epoch, indices)
            return _to_float_batch(images[self._epoch[1][step]], pixel_range)

    return _TrainPyDataset()


def _make_eval_py_dataset(
    images: np.ndarray, batch_size: int, pixel_range: str | None, n_batches: int
) -> Any:
    import keras

    class _EvalPyDataset(keras.utils.PyDataset):
        def __len__(self) -> int:
            return n_batches

        def __getitem__(self, index: int) -> np.ndarray:
            batch = images[index * batch_size : (index + 1) * batch_size]
            return _to_float_batch(batch, pixel_range)

    return _EvalPyDataset()
