"""Datasets of the WAE paper: MNIST, Fashion-MNIST and CelebA, read from the original files.

Value ranges (what the networks see) [paper, App. C]:
  * mnist / fashion_mnist: float32 in [0, 1], shape (N, 28, 28, 1)  ("unit" pixel range);
  * celeba: float32 in [-1, 1], shape (N, 64, 64, 3)                ("symmetric" pixel range).
`load_uint8` returns the same images as uint8 in [0, 255] (4x less memory: the full CelebA is
202,599 x 64 x 64 x 3 = 2.5 GB as uint8, 10 GB as float32); `train_dataset` / `eval_dataset`
convert to float batch by batch.

Sources:
  * source="files" (default): the original distributions, read directly:
    - MNIST / Fashion-MNIST: the four IDX files (`.gz` or uncompressed);
    - CelebA "Align&Cropped": a folder with `img_align_celeba/*.jpg` and, optionally,
      `list_eval_partition.txt`. Decoded and preprocessed once into a uint8 `.npy` cache.
  * source="tfds": tensorflow-datasets (`mnist`, `fashion_mnist`, `celeb_a`), which must already
    be prepared in `data_dir` (nothing is downloaded); CelebA gets the same preprocessing.

Every bad input raises `DataError` (a ValueError) with one message naming the offending
path / file / value and what was expected.

This module does not import TensorFlow (or Keras) at import time: both are imported lazily, so
that the data code works on the JAX / PyTorch backends too.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gzip
import hashlib
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np

from wae_tf import fileio
from wae_tf.configs import BATCH_ORDERS, DATASET_SPLIT_RULES, DATASETS, PIXEL_RANGES, DataSource

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = get_args(DataSource)

# Default locations when data_dir is None.
DATA_DIR_ENV = "WAE_TF_DATA_DIR"  # $WAE_TF_DATA_DIR/<dataset>
CACHE_DIR_ENV = "WAE_TF_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/wae_tf")
# Debian's `dataset-fashion-mnist` package installs the four IDX .gz files here.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataError(ValueError):
    """A data file, folder or argument is missing, malformed or inconsistent."""


# The seed of `eval_order` (fixed: every run validates on the same test images, in the same
# order) and the tags that keep the streams of `eval_order` and `independent_batch` apart
# from `epoch_permutation`'s.
EVAL_ORDER_SEED = 0
EVAL_ORDER_STREAM = 1
INDEPENDENT_DRAWS_STREAM = 2


# ======================================================================================
# Public API
# ======================================================================================


def pixel_range_for(dataset: str) -> str:
    """'unit' ([0, 1]) for MNIST-like datasets, 'symmetric' ([-1, 1]) for CelebA [paper]."""
    _check_dataset(dataset)
    return "symmetric" if dataset == "celeba" else "unit"


def load_uint8(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    *,
    num_examples: int | None = None,
    source: str = "files",
    cache_dir: str | os.PathLike | None = None,
    split_rule: str | None = None,
) -> np.ndarray:
    """The images of one split as uint8 in [0, 255], NHWC.

    Shapes: (N, 28, 28, 1) for mnist / fashion_mnist, (N, 64, 64, 3) for celeba (already
    cropped and resized, see `preprocess_celeba_image`). `num_examples` keeps the first N
    images of the split (in the split's order). `cache_dir` is used by CelebA only (default
    $WAE_TF_CACHE_DIR or ~/.cache/wae_tf). See `load` for the splits and `split_rule`.
    """
    _check_dataset(dataset)
    _check_source(source)
    split_rule = check_split_rule(dataset, split_rule)
    num_examples = _check_num_examples(num_examples)
    if source == "tfds":
        _check_tfds_split_rule(dataset, split_rule)
        return _tfds_images(dataset, data_dir, split, num_examples, cache_dir)
    root = resolve_data_dir(dataset, data_dir)
    if dataset == "celeba":
        return _celeba_images(root, split, num_examples, cache_dir, split_rule)
    images, _ = _read_idx_split(root, split, split_rule)
    return _take_first(images, num_examples, f"{dataset} {split} in {root}")


def load(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    *,
    num_examples: int | None = None,
    source: str = "files",
    cache_dir: str | os.PathLike | None = None,
    split_rule: str | None = None,
) -> np.ndarray:
    """The images of one split as float32 NHWC in the model's pixel range.

    mnist / fashion_mnist: (N, 28, 28, 1) in [0, 1] (x / 255); splits "train" and "test".
      split_rule "standard" (default): the distributed 60,000 train / 10,000 test files;
      "official_code": the code's pooled split (`official_mnist_order`), 60,000 / 10,000.
    celeba: (N, 64, 64, 3) in [-1, 1] (x / 127.5 - 1); splits "train", "test" and, with
      split_rule "partition_file", "validation". split_rule "official_code" (default): the
      code's shuffle of whatever files sit in the folder; "partition_file": the official
      list_eval_partition.txt (see `celeba_split_rule`).
    split_rule None: the dataset's default (configs.DATASET_SPLIT_RULES, first entry).

    data_dir=None: the folder `resolve_data_dir` finds ($WAE_TF_DATA_DIR/<name>, Debian's
    Fashion-MNIST, else MNIST / Fashion-MNIST downloaded into the cache; CelebA: DataError).
    """
    images = load_uint8(
        dataset,
        data_dir,
        split,
        num_examples=num_examples,
        source=source,
        cache_dir=cache_dir,
        split_rule=split_rule,
    )
    return to_model_range(images, pixel_range_for(dataset))


def load_labels(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    split: str = "train",
    *,
    num_examples: int | None = None,
    source: str = "files",
    split_rule: str | None = None,
) -> np.ndarray:
    """Integer class labels (int64 in 0..9) of mnist / fashion_mnist, aligned with `load`."""
    _check_dataset(dataset)
    _check_source(source)
    num_examples = _check_num_examples(num_examples)
    if dataset == "celeba":
        raise DataError("load_labels: celeba has no class labels; use mnist or fashion_mnist")
    split_rule = check_split_rule(dataset, split_rule)
    if source == "tfds":
        _check_tfds_split_rule(dataset, split_rule)
        return _tfds_labels(dataset, data_dir, split, num_examples)
    root = resolve_data_dir(dataset, data_dir)
    _, labels = _read_idx_split(root, split, split_rule)
    return _take_first(labels, num_examples, f"{dataset} {split} labels in {root}").astype(np.int64)


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


# ======================================================================================
# Argument checks and locations
# ======================================================================================


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise DataError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")


def check_split_rule(dataset: str, split_rule: str | None) -> str:
    """`split_rule`, or the dataset's default when None; DataError if it does not apply."""
    allowed = DATASET_SPLIT_RULES[dataset]
    if split_rule is None:
        return allowed[0]
    if split_rule not in allowed:
        raise DataError(
            f"--split_rule={split_rule} does not apply to {dataset}; choose from "
            f"{', '.join(allowed)}"
        )
    return split_rule


def _check_tfds_split_rule(dataset: str, split_rule: str) -> None:
    """tensorflow-datasets serves its own train / test splits: only the matching rule."""
    native = "partition_file" if dataset == "celeba" else "standard"
    if split_rule != native:
        raise DataError(
            f"source='tfds' serves {dataset}'s own splits, not --split_rule={split_rule}: "
            f"pass --split_rule={native} or read the files (--data_source=files)"
        )


def _check_batch_order(batch_order: str) -> None:
    if batch_order not in BATCH_ORDERS:
        raise DataError(
            f"unknown batch_order {batch_order!r}; expected {' or '.join(BATCH_ORDERS)}"
        )


def describe_split(
    dataset: str, data_dir: Any, split_rule: str | None, source: str = "files"
) -> str:
    """The split rule in words, for provenance and captions (resolves data_dir for CelebA)."""
    split_rule = check_split_rule(dataset, split_rule)
    if source == "tfds":
        return f"{split_rule}: tensorflow-datasets splits 'train' / 'test'"
    if dataset == "celeba":
        return f"{split_rule}: {celeba_split_rule(data_dir, split_rule)}"
    if split_rule == "official_code":
        return (
            "official_code: the train and t10k files pooled and shuffled as the official "
            "code does (seed 123), the last 10,000 held out as test"
        )
    return "standard: train = the 60,000 train images, test = the 10,000 t10k images"


def _check_pixel_range(pixel_range: str) -> None:
    if pixel_range not in PIXEL_RANGES:
        raise DataError(f"unknown pixel_range {pixel_range!r}; expected 'unit' or 'symmetric'")


def _check_num_examples(num_examples: int | None) -> int | None:
    if num_examples is not None and (isinstance(num_examples, bool) or int(num_examples) < 1):
        raise DataError(f"num_examples must be a positive integer or None, got {num_examples!r}")
    return None if num_examples is None else int(num_examples)


def _take_first(array: np.ndarray, num_examples: int | None, what: str) -> np.ndarray:
    if num_examples is None:
        return array
    if num_examples > len(array):
        raise DataError(f"num_examples={num_examples} but {what} has only {len(array)} examples")
    return array[:num_examples]


# Folder names looked for under $WAE_TF_DATA_DIR, per dataset (README "Data").
DATA_DIR_NAMES = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "celeba": ("celeba", "celeba_10k"),
}
CELEBA_HINT = (
    "CelebA cannot be downloaded automatically: get 'Align&Cropped Images' "
    "(img_align_celeba.zip) and list_eval_partition.txt from the CelebA site, unzip them "
    "into DIR/img_align_celeba/ and DIR/list_eval_partition.txt, and pass --data_dir=DIR"
)


def resolve_data_dir(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding `dataset`'s files, by one rule for every entry point:

    1. `data_dir` (the --data_dir flag) when given;
    2. else $WAE_TF_DATA_DIR/<name> for the first existing name of DATA_DIR_NAMES;
    3. else, for Fashion-MNIST, Debian's /usr/share/datasets/fashion-mnist when present;
    4. else, for MNIST and Fashion-MNIST, the cache folder (<cache>/<dataset>), where the
       four IDX files are downloaded and verified if missing (`wae_tf.download`).
    CelebA has no step 4: the error says where to get it and how to lay it out.
    Raises DataError (one line) when none applies.
    """
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"--data_dir={str(root)!r} for {dataset!r} does not exist")
        return root
    looked = []
    if os.environ.get(DATA_DIR_ENV):
        base = Path(os.environ[DATA_DIR_ENV]).expanduser()
        for name in DATA_DIR_NAMES.get(dataset, (dataset,)):
            if (base / name).is_dir():
                return base / name
            looked.append(str(base / name))
    if dataset == "fashion_mnist":
        if DEBIAN_FASHION_MNIST_DIR.is_dir():
            return DEBIAN_FASHION_MNIST_DIR
        looked.append(str(DEBIAN_FASHION_MNIST_DIR))
    if dataset in ("mnist", "fashion_mnist"):
        from wae_tf import download

        try:
            return download.fetch(
                download.REMOTE_DATASETS[dataset], _resolve_cache_dir(None) / dataset
            )
        except download.DownloadError as e:
            raise DataError(str(e)) from e
    where = f" (looked in {', '.join(looked)})" if looked else f" and ${DATA_DIR_ENV} is not set"
    raise DataError(f"no {dataset} data: no --data_dir given{where}. {CELEBA_HINT}")


def _resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    return Path(cache_dir).expanduser()


# ======================================================================================
# MNIST / Fashion-MNIST: IDX files
# ======================================================================================

# The IDX format (yann.lecun.com/exdb/mnist): big-endian magic 0x00000803 (unsigned bytes,
# 3 dims) for images and 0x00000801 (unsigned bytes, 1 dim) for labels, then one uint32
# per dimension, then the payload.
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_SIZE = 28
# [code] datahandler.py:437-446, 467-470 (_load_mnist): the train and test files pooled
# (train first), np.random.seed(123); np.random.shuffle of images and labels alike, and the
# last 10,000 (the size of the t10k file) held out as the test set.
OFFICIAL_MNIST_SEED = 123


def official_mnist_order(n: int) -> np.ndarray:
    """The official code's shuffled order of the n pooled MNIST images (train, then test).

    np.random.seed(123); np.random.shuffle(X) moves the rows of X exactly as
    np.random.RandomState(123).permutation(n) orders range(n): both run the same
    Fisher-Yates loop on the same legacy Mersenne Twister stream, which NumPy keeps stable
    across versions (checked against Python 2.7 + NumPy 1.16 running the code's lines on the
    real MNIST: tests/test_official_data_handling.py). Position i of the shuffled pool is
    pooled image order[i]; the code's test set is the last 10,000 positions.
    """
    return np.random.RandomState(OFFICIAL_MNIST_SEED).permutation(n)  # noqa: NPY002


def _read_idx_split(
    root: Path, split: str, split_rule: str = "standard"
) -> tuple[np.ndarray, np.ndarray]:
    if split not in IDX_FILES:
        raise DataError(f"unknown split {split!r} for an IDX dataset; expected 'train' or 'test'")
    if split_rule == "official_code":
        return _official_idx_split(root, split)
    return _read_idx_files(root, split)


def _official_idx_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The code's pooled split (`official_mnist_order`), the test set as large as t10k's."""
    train_images, train_labels = _read_idx_files(root, "train")
    test_images, test_labels = _read_idx_files(root, "test")
    images = np.concatenate([train_images, test_images])
    labels = np.concatenate([train_labels, test_labels])
    order = official_mnist_order(len(images))
    cut = len(images) - len(test_images)
    chosen = order[:cut] if split == "train" else order[cut:]
    return images[chosen], labels[chosen]


def _read_idx_files(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_name, label_name = IDX_FILES[split]
    image_path = _find_idx_file(root, image_name)
    label_path = _find_idx_file(root, label_name)
    images = _parse_idx(image_path, IDX_IMAGES_MAGIC, ndim=3)
    labels = _parse_idx(label_path, IDX_LABELS_MAGIC, ndim=1)
    if images.shape[1:] != (MNIST_SIZE, MNIST_SIZE):
        raise DataError(f"{image_path}: images are {images.shape[1:]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_path}: label {int(labels.max())} is not a digit class 0..9")
    return images[..., None], labels


def _find_idx_file(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root} has no {name}.gz or {name} (expected the four standard IDX files)")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it ends in .gz; DataError on a corrupt/truncated gzip."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip file ({e})") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e


def _parse_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: {len(data)} bytes, shorter than the {header}-byte IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    payload = len(data) - header
    if payload != expected:
        raise DataError(
            f"{path}: header says {dims} = {expected} bytes of data but the file has {payload} "
            f"({'truncated' if payload < expected else 'trailing bytes'})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ======================================================================================
# CelebA: folder of aligned JPEGs
# ======================================================================================

CELEBA_SIZE = 64  # output images are 64x64x3 [paper, App. C.2]
# [paper; code datahandler] the 178x218 aligned image is cropped to its centre 140x140
# (left 19, top 39) before the resize. Defined relative to the image size so that the
# half-resolution copy (89x109) gets the same framing (a 70x70 box at left 10, top 20).
CELEBA_REF_WIDTH, CELEBA_REF_HEIGHT = 178, 218
CELEBA_REF_CROP, CELEBA_REF_LEFT, CELEBA_REF_TOP = 140, 19, 39
CELEBA_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PARTITION_FILE = "list_eval_partition.txt"
PARTITION_IDS = {"train": 0, "validation": 1, "test": 2}  # [CelebA list_eval_partition]
# [code] datahandler.py:592-608 (_load_celebA, Python 2): the list of all 202,599 names
# '%.6d.jpg' % i, i = 1..202599, shuffled by random.seed(123); random.shuffle(paths); the
# last 20,000 are the test set. See `official_celeba_order` and `celeba_split_rule`.
OFFICIAL_CELEBA_SIZE = 202_599
OFFICIAL_SHUFFLE_SEED = 123
OFFICIAL_TEST_SIZE = 20_000
# Bump when the preprocessing changes: part of the cache key.
CELEBA_PREPROCESS_VERSION = 1


def _round_half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves rounded up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def celeba_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) square crop for a width x height aligned CelebA image.

    size = round(140/178 W), left = round(19/178 W), top = round(39/218 H): (19, 39, 159, 179)
    for 178x218, (10, 20, 80, 90) for the 89x109 half-resolution copy.
    """
    size = _round_half_up(CELEBA_REF_CROP * width, CELEBA_REF_WIDTH)
    left = _round_half_up(CELEBA_REF_LEFT * width, CELEBA_REF_WIDTH)
    top = _round_half_up(CELEBA_REF_TOP * height, CELEBA_REF_HEIGHT)
    return left, top, left + size, top + size


def preprocess_celeba_image(image: Any, name: str = "<image>") -> np.ndarray:
    """A PIL image -> uint8 (64, 64, 3): centre crop (`celeba_crop_box`), LANCZOS resize.

    LANCZOS is Pillow's name for the filter the official code used as `Image.ANTIALIAS`.
    Raises DataError naming `name` if the crop is smaller than 64 px or does not fit.
    """
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    box = celeba_crop_box(width, height)
    if box[2] - box[0] < CELEBA_SIZE:
        raise DataError(
            f"{name}: image is {width}x{height}, its centre crop is {box[2] - box[0]} px, "
            f"smaller than the {CELEBA_SIZE} px output (need width >= 82)"
        )
    if box[2] > width or box[3] > height:
        raise DataError(f"{name}: crop box {box} does not fit in a {width}x{height} image")
    image = image.crop(box).resize((CELEBA_SIZE, CELEBA_SIZE), Image.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def decode_celeba_file(path: Path) -> np.ndarray:
    """Decode one image file and preprocess it. A corrupt file raises DataError with its path.

    No `Image.draft`: it decodes JPEGs at a reduced DCT scale, which changes the pixels
    (measured: 178x218 JPEGs drafted to 89x109 differ from full decode + LANCZOS by up to 145
    grey levels after the resize, ~2x faster); on the 89x109 copy no reduction keeps a
    >= 64 px crop, so it would not even apply.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return preprocess_celeba_image(image, str(path))
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from e


def _celeba_image_dir(root: Path) -> Path:
    nested = root / "img_align_celeba"
    if nested.is_dir():
        return nested
    if any(_is_celeba_image(p) for p in root.iterdir()):
        return root
    raise DataError(f"{root} has no img_align_celeba/ folder and no *.jpg images")


def _is_celeba_image(path: Path) -> bool:
    return path.suffix.lower() in CELEBA_IMAGE_SUFFIXES and path.is_file()


def _celeba_files(root: Path) -> tuple[Path, list[str]]:
    image_dir = _celeba_image_dir(root)
    names = sorted(p.name for p in image_dir.iterdir() if _is_celeba_image(p))
    if not names:
        raise DataError(f"{image_dir} contains no .jpg images")
    return image_dir, names


def _partition_path(image_dir: Path) -> Path | None:
    """The official partition file next to or above the images, or None."""
    for path in (image_dir / PARTITION_FILE, image_dir.parent / PARTITION_FILE):
        if path.is_file():
            return path
    return None


def _read_partition(image_dir: Path) -> dict[str, int]:
    """--split_rule=partition_file: the partition file (name -> 0/1/2), which must exist
    and list every image of the folder; else DataError (one line)."""
    path = _partition_path(image_dir)
    if path is None:
        raise DataError(
            f"--split_rule=partition_file: no {PARTITION_FILE} in {image_dir} or its parent; "
            "put the CelebA file there or use --split_rule=official_code"
        )
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{number}: expected '<file name> <0|1|2>', got {line!r}")
        partition[fields[0]] = int(fields[1])
    return partition


def _check_partition_covers(partition: dict[str, int], image_dir: Path, names: Sequence[str]):
    missing = [name for name in names if name not in partition]
    if missing:
        raise DataError(
            f"--split_rule=partition_file: {PARTITION_FILE} does not list {len(missing)} of "
            f"the {len(names)} images in {image_dir} (e.g. {missing[0]}); use the file that "
            "belongs to these images or --split_rule=official_code"
        )


def python2_shuffle(items: Sequence[Any], seed: int) -> list:
    """`items` in the order of Python 2.7's `random.seed(seed); random.shuffle(items)`.

    Python 3's random.shuffle draws indices with `_randbelow` and so gives another order;
    Python 2.7's (Lib/random.py, Random.shuffle) is the loop below. Seeding with an int
    and `random()` are the same Mersenne Twister in both, so `random.Random(seed)` serves.
    Returns a new list; `items` is not changed.
    """
    import random

    out = list(items)
    draw = random.Random(seed).random
    for i in reversed(range(1, len(out))):
        j = int(draw() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


@functools.lru_cache(maxsize=1)
def official_celeba_order() -> tuple[str, ...]:
    """The official code's shuffled list of all 202,599 CelebA file names.

    [code] datahandler.py:594-598: paths = ['%.6d.jpg' % i for i in xrange(1, 202600)],
    random.seed(123), random.shuffle(paths) under Python 2. The code's test set is the
    last 20,000 of this list, its training set the rest (datahandler.py:606-608).
    """
    names = [f"{i:06d}.jpg" for i in range(1, OFFICIAL_CELEBA_SIZE + 1)]
    return tuple(python2_shuffle(names, OFFICIAL_SHUFFLE_SEED))


@functools.lru_cache(maxsize=1)
def _official_positions() -> dict[str, int]:
    return {name: i for i, name in enumerate(official_celeba_order())}


def celeba_shuffle_split(names: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """(rule, train names, test names) of CelebA file names under --split_rule=official_code:
    "official_code_shuffle" or "folder_shuffle_last_tenth" (see `celeba_split_rule`).
    """
    position = _official_positions()
    if all(name in position for name in names):
        ordered = sorted(names, key=position.__getitem__)
        cut = OFFICIAL_CELEBA_SIZE - OFFICIAL_TEST_SIZE
        train = [name for name in ordered if position[name] < cut]
        test = [name for name in ordered if position[name] >= cut]
        if train and test:
            return "official_code_shuffle", train, test
    shuffled = python2_shuffle(sorted(names), OFFICIAL_SHUFFLE_SEED)
    cut = len(shuffled) - min(OFFICIAL_TEST_SIZE, len(shuffled) // 10)
    return "folder_shuffle_last_tenth", shuffled[:cut], shuffled[cut:]


def celeba_split_rule(data_dir: str | os.PathLike, split_rule: str = "official_code") -> str:
    """How `load("celeba", data_dir, split, split_rule=split_rule)` splits this folder, for
    docs and provenance.

    split_rule="partition_file" -> "partition_file": the official `list_eval_partition.txt`
      (in the image folder or its parent), which must list every image of the folder;
      splits train = 0, validation = 1, test = 2, each in file-name order.
    split_rule="official_code" (the default, also the paper preset's: the split behind the
    paper's numbers): the official code's split ([code] datahandler.py:592-608), whatever
    files sit in the folder and whether or not a partition file sits beside them. It has
    train and test only ("validation" is an error):
    "official_code_shuffle": every image is one of the code's 202,599 names (000001.jpg ..
      202599.jpg) and the folder has images both in and out of the code's 20,000 held-out
      names. Train = the images outside, test = those inside, each in the order of the
      code's shuffled list (`official_celeba_order`). On the full dataset this is exactly
      the code's 182,599 / 20,000 split; on a subset it is the code's split restricted to
      the images present, so a subset's test images are never in the full set's train split.
    "folder_shuffle_last_tenth": otherwise (other file names, or a folder too small to have
      images on both sides): the code's procedure applied to this folder's sorted file
      names (`python2_shuffle` with seed 123); the last min(20000, n // 10) are "test".
    A 10,000-image subset 000001-010000 uses "official_code_shuffle": 8,981 train / 1,019
    test (all of it lies in the partition file's train partition, so "partition_file" has
    no test images there).
    """
    split_rule = check_split_rule("celeba", split_rule)
    image_dir, names = _celeba_files(resolve_data_dir("celeba", data_dir))
    if split_rule == "partition_file":
        _check_partition_covers(_read_partition(image_dir), image_dir, names)
        return "partition_file"
    return celeba_shuffle_split(names)[0]


def celeba_split_names(
    data_dir: str | os.PathLike | None, split: str, split_rule: str | None = None
) -> list[str]:
    """The file names of one CelebA split, in the order `load` returns its images."""
    image_dir, names = _celeba_files(resolve_data_dir("celeba", data_dir))
    return _celeba_split_names(image_dir, names, split, check_split_rule("celeba", split_rule))


def _celeba_split_names(
    image_dir: Path, names: list[str], split: str, split_rule: str
) -> list[str]:
    if split not in PARTITION_IDS:
        raise DataError(f"unknown split {split!r} for celeba; expected train, validation or test")
    if split_rule == "partition_file":
        partition = _read_partition(image_dir)
        _check_partition_covers(partition, image_dir, names)
        selected = [name for name in names if partition[name] == PARTITION_IDS[split]]
        if not selected:
            raise DataError(
                f"--split_rule=partition_file: {PARTITION_FILE} puts none of the images in "
                f"{image_dir} in the {split!r} partition; use --split_rule=official_code"
            )
        return selected
    if split == "validation":
        raise DataError(
            "celeba has no 'validation' split under --split_rule=official_code (the code's "
            "split is train/test only); use --split_rule=partition_file"
        )
    _, train, test = celeba_shuffle_split(names)
    selected = train if split == "train" else test
    if not selected:
        raise DataError(f"celeba split {split!r} is empty: {image_dir} has {len(names)} images")
    return selected


def _celeba_images(
    root: Path,
    split: str,
    num_examples: int | None,
    cache_dir: str | os.PathLike | None,
    split_rule: str,
) -> np.ndarray:
    image_dir, names = _celeba_files(root)
    selected = _celeba_split_names(image_dir, names, split, split_rule)
    selected = _take_first(selected, num_examples, f"celeba {split} in {image_dir}")
    paths = [image_dir / name for name in selected]
    key = celeba_cache_key(paths)
    return _cached(_resolve_cache_dir(cache_dir), f"celeba_{len(paths)}_{key}", len(paths), paths)


def celeba_cache_key(paths: Sequence[Path]) -> str:
    """Hash of the file list (name, size, mtime, in split order) and the preprocessing:
    each split of each rule lists other files or another order, so gets its own cache."""
    digest = hashlib.sha256()
    params = {
        "version": CELEBA_PREPROCESS_VERSION,
        "size": CELEBA_SIZE,
        "crop": [CELEBA_REF_WIDTH, CELEBA_REF_HEIGHT, CELEBA_REF_CROP, CELEBA_REF_LEFT],
        "top": CELEBA_REF_TOP,
        "filter": "LANCZOS",
    }
    digest.update(json.dumps(params, sort_keys=True).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _cached(cache_dir: Path, stem: str, n: int, paths: Sequence[Path]) -> np.ndarray:
    """Load `stem`.npy from the cache if valid, else decode `paths` and write it atomically."""
    cache_path = cache_dir / f"{stem}.npy"
    expected = (n, CELEBA_SIZE, CELEBA_SIZE, 3)
    if cache_path.is_file():
        try:
            images = np.load(cache_path, allow_pickle=False)
            if images.shape == expected and images.dtype == np.uint8:
                return images
            logger.warning("cache %s has %s %s; rebuilding", cache_path, images.shape, images.dtype)
        except (OSError, ValueError, EOFError) as e:
            logger.warning("cache %s is unreadable (%s); rebuilding", cache_path, e)
    images = _decode_all(paths)
    _atomic_save(cache_path, images)
    return images


def _decode_all(paths: Sequence[Path]) -> np.ndarray:
    """Decode + preprocess in a thread pool (PIL releases the GIL while decoding/resizing).

    Fails on the first corrupt file (DataError with its path) rather than skipping it: a
    silently shorter dataset would shift every index and the split sizes.
    """
    out = np.empty((len(paths), CELEBA_SIZE, CELEBA_SIZE, 3), np.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))
    start, report_every = time.perf_counter(), max(1, len(paths) // 10)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        try:
            for i, image in enumerate(pool.map(decode_celeba_file, paths, chunksize=64)):
                out[i] = image
                if (i + 1) % report_every == 0 and len(paths) >= 1000:
                    logger.info(
                        "celeba: preprocessed %d/%d images (%.1f s)",
                        i + 1,
                        len(paths),
                        time.perf_counter() - start,
                    )
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return out


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write the cache atomically (`fileio.atomic_path`): never a half-written cache."""
    with fileio.atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


# ======================================================================================
# tensorflow-datasets source (optional)
# ======================================================================================

TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "celeba": "celeb_a"}


def _tfds_dataset(dataset: str, data_dir: Any, split: str, num_examples: int | None) -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(
            "source='tfds' needs tensorflow-datasets: pip install tensorflow-datasets "
            f"importlib_resources ({e})"
        ) from e
    name = TFDS_NAMES[dataset]
    builder = tfds.builder(name, data_dir=None if data_dir is None else str(data_dir))
    if not builder.is_prepared():
        raise DataError(
            f"tfds dataset {name!r} is not prepared in {builder.data_dir!r}; prepare it with "
            f"`tfds build {name}` (no download happens here) or use source='files'"
        )
    if split not in builder.info.splits:
        raise DataError(f"tfds {name!r} has no split {split!r}: {list(builder.info.splits)}")
    spec = split if num_examples is None else f"{split}[:{num_examples}]"
    return tfds.as_numpy(builder.as_dataset(split=spec, shuffle_files=False)), name


def _tfds_images(
    dataset: str, data_dir: Any, split: str, num_examples: int | None, cache_dir: Any
) -> np.ndarray:
    examples, name = _tfds_dataset(dataset, data_dir, split, num_examples)
    if dataset != "celeba":
        return np.stack([ex["image"] for ex in examples]).astype(np.uint8)
    from PIL import Image

    return np.stack(
        [
            preprocess_celeba_image(Image.fromarray(ex["image"]), f"tfds {name} {split}[{i}]")
            for i, ex in enumerate(examples)
        ]
    )


def _tfds_labels(dataset: str, data_dir: Any, split: str, num_examples: int | None) -> np.ndarray:
    examples, _ = _tfds_dataset(dataset, data_dir, split, num_examples)
    return np.array([ex["label"] for ex in examples], dtype=np.int64)


# ======================================================================================
# Batches for fit / evaluate
# ======================================================================================


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
