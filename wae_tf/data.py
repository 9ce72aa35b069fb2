"""Datasets of the WAE paper: MNIST, Fashion-MNIST and CelebA, read from the original files.

Value ranges (what the networks see) [paper, App. C]:
  * mnist / fashion_mnist: float32 in [0, 1], shape (N, 28, 28, 1)  ("unit" pixel range);
  * celeba: float32 in [-1, 1], shape (N, 64, 64, 3)                ("symmetric" pixel range).
`load_uint8` returns the same images as uint8 in [0, 255] (4x less memory: the full CelebA is
202,599 x 64 x 64 x 3 = 2.5 GB as uint8, 10 GB as float32); `streams.train_dataset` /
`streams.eval_dataset` convert to float batch by batch.

Sources:
  * source="files" (default): the original distributions, read directly:
    - MNIST / Fashion-MNIST: the four IDX files (`.gz` or uncompressed);
    - CelebA "Align&Cropped": a folder with `img_align_celeba/*.jpg` and, optionally,
      `list_eval_partition.txt`. Decoded and preprocessed once into a uint8 `.npy` cache.
  * source="tfds": tensorflow-datasets (`mnist`, `fashion_mnist`, `celeb_a`), which must already
    be prepared in `data_dir` (nothing is downloaded); CelebA gets the same preprocessing.

Every bad input raises `DataError` (a ValueError) with one message naming the offending
path / file / value and what was expected.

This module holds the entry points (`load`, `load_uint8`, `load_labels`, the CelebA split
helpers), the argument checks, the data-folder rule (`resolve_data_dir`) and the tfds source.
It reads with:
  * `wae_tf.mnist_files`: the IDX files of MNIST / Fashion-MNIST and the code's MNIST split;
  * `wae_tf.celeba`: CelebA's folder, preprocessing, splits and `.npy` cache;
  * `wae_tf.streams`: the train / eval batch streams, batch orders and the eval order;
  * `wae_tf.data_errors`: `DataError`, re-exported here.
It also re-exports, for README's example and older tests, `streams.train_dataset`,
`streams.eval_order` (and `EVAL_ORDER_TEXT`) and CelebA's official-order helpers.

This module does not import TensorFlow (or Keras) at import time: both are imported lazily, so
that the data code works on the JAX / PyTorch backends too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, get_args

import numpy as np

# The two `noqa: F401` lines are deliberate re-exports: README's example
# (`data.train_dataset`), the provenance text that names `wae_tf.data.eval_order`, and tests
# that read CelebA's official-order helpers from `data`. `DataError` is re-exported too.
from wae_tf import celeba, mnist_files, streams
from wae_tf.celeba import celeba_shuffle_split, official_celeba_order, python2_shuffle  # noqa: F401
from wae_tf.configs import DATASET_SPLIT_RULES, DATASETS, DataSource
from wae_tf.data_errors import DataError
from wae_tf.streams import EVAL_ORDER_TEXT, eval_order, train_dataset  # noqa: F401

SOURCES: tuple[str, ...] = get_args(DataSource)

# Default locations when data_dir is None.
DATA_DIR_ENV = "WAE_TF_DATA_DIR"  # $WAE_TF_DATA_DIR/<dataset>
CACHE_DIR_ENV = "WAE_TF_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/wae_tf")
# Debian's `dataset-fashion-mnist` package installs the four IDX .gz files here.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


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
    num_examples_name: str = "num_examples",
) -> np.ndarray:
    """The images of one split as uint8 in [0, 255], NHWC.

    Shapes: (N, 28, 28, 1) for mnist / fashion_mnist, (N, 64, 64, 3) for celeba (already
    cropped and resized, see `celeba.preprocess_celeba_image`). `num_examples` keeps the
    first N images of the split (in the split's order). `cache_dir` is used by CelebA only
    (default $WAE_TF_CACHE_DIR or ~/.cache/wae_tf). See `load` for the splits and
    `split_rule`. `num_examples_name` is what an error about `num_examples` calls it (a
    command line passes its flag, e.g. "--train_examples").
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
        return _celeba_images(root, split, num_examples, cache_dir, split_rule, num_examples_name)
    images, _ = mnist_files.read_split(root, split, split_rule)
    return _take_first(images, num_examples, f"{dataset} {split} in {root}", num_examples_name)


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
      "official_code": the code's pooled split (`mnist_files.official_mnist_order`),
      60,000 / 10,000.
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
    return streams.to_model_range(images, pixel_range_for(dataset))


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
    _, labels = mnist_files.read_split(root, split, split_rule)
    return _take_first(labels, num_examples, f"{dataset} {split} labels in {root}").astype(np.int64)


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


def _check_num_examples(num_examples: int | None) -> int | None:
    if num_examples is not None and (isinstance(num_examples, bool) or int(num_examples) < 1):
        raise DataError(f"num_examples must be a positive integer or None, got {num_examples!r}")
    return None if num_examples is None else int(num_examples)


def _take_first(
    array: np.ndarray, num_examples: int | None, what: str, name: str = "num_examples"
) -> np.ndarray:
    if num_examples is None:
        return array
    if num_examples > len(array):
        raise DataError(f"{name}={num_examples} but {what} has only {len(array)} examples")
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


def resolve_data_dir(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
) -> Path:
    """The folder holding `dataset`'s files, by one rule for every entry point:

    1. `data_dir` (the --data_dir flag) when given;
    2. else <root>/<name> for the first existing name of DATA_DIR_NAMES, where <root> is
       `data_root` (`reproduce.all --data_root`) or else $WAE_TF_DATA_DIR;
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
    base_dir = data_root if data_root is not None else os.environ.get(DATA_DIR_ENV)
    if base_dir:
        base = Path(base_dir).expanduser()
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
# CelebA: the entry points over a data folder (`wae_tf.celeba` works on the found folder)
# ======================================================================================


def celeba_split_rule(data_dir: str | os.PathLike, split_rule: str = "official_code") -> str:
    """How `load("celeba", data_dir, split, split_rule=split_rule)` splits this folder, for
    docs and provenance: "partition_file", "official_code_shuffle" or
    "folder_shuffle_last_tenth" (`celeba.folder_split_rule` says which applies when)."""
    split_rule = check_split_rule("celeba", split_rule)
    image_dir, names = celeba.image_files(resolve_data_dir("celeba", data_dir))
    return celeba.folder_split_rule(image_dir, names, split_rule)


def celeba_split_names(
    data_dir: str | os.PathLike | None, split: str, split_rule: str | None = None
) -> list[str]:
    """The file names of one CelebA split, in the order `load` returns its images."""
    image_dir, names = celeba.image_files(resolve_data_dir("celeba", data_dir))
    return celeba.split_names(image_dir, names, split, check_split_rule("celeba", split_rule))


def _celeba_images(
    root: Path,
    split: str,
    num_examples: int | None,
    cache_dir: str | os.PathLike | None,
    split_rule: str,
    num_examples_name: str = "num_examples",
) -> np.ndarray:
    image_dir, names = celeba.image_files(root)
    selected = celeba.split_names(image_dir, names, split, split_rule)
    what = f"celeba {split} in {image_dir}"
    selected = _take_first(selected, num_examples, what, num_examples_name)
    return celeba.cached_images(image_dir, selected, _resolve_cache_dir(cache_dir))


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
            celeba.preprocess_celeba_image(
                Image.fromarray(ex["image"]), f"tfds {name} {split}[{i}]"
            )
            for i, ex in enumerate(examples)
        ]
    )


def _tfds_labels(dataset: str, data_dir: Any, split: str, num_examples: int | None) -> np.ndarray:
    examples, _ = _tfds_dataset(dataset, data_dir, split, num_examples)
    return np.array([ex["label"] for ex in examples], dtype=np.int64)
