"""MNIST / Fashion-MNIST: the four IDX files, read directly, and the official code's split.

`read_split(root, split, split_rule)` returns one split's uint8 images (N, 28, 28, 1) in
[0, 255] and their labels, from the folder `root` holding the IDX files (`.gz` or not):
  * split_rule "standard": the distributed train (60,000) / t10k (10,000) files;
  * split_rule "official_code": the code's pooled shuffle ([code] datahandler.py:437-446,
    467-470), see `official_mnist_order`.
Every malformed file raises `DataError` naming the file and what was expected. Callers go
through `wae_tf.data.load` / `load_labels`, which find the folder and check the arguments.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from wae_tf.data_errors import DataError

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


def read_split(
    root: Path, split: str, split_rule: str = "standard"
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, 28, 28, 1), labels (N,)) of `split` ("train" or "test") in `root`."""
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
