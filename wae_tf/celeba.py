"""CelebA "Align&Cropped": the folder of JPEGs, the preprocessing, the splits and the cache.

A CelebA folder holds `img_align_celeba/*.jpg` (or the images themselves) and, optionally,
`list_eval_partition.txt` beside or above them (`image_files`). Each image is centre-cropped
and resized to uint8 (64, 64, 3) in [0, 255] (`preprocess_celeba_image`, [paper, App. C.2]);
a split's images are decoded once into a `.npy` cache keyed by `celeba_cache_key`
(`cached_images`). The splits (`folder_split_rule`, `split_names`):
  * split_rule "official_code": the code's shuffle ([code] datahandler.py:592-608), see
    `official_celeba_order` and `celeba_shuffle_split`;
  * split_rule "partition_file": the official `list_eval_partition.txt`.
Every bad file or folder raises `DataError` naming it. Callers go through `wae_tf.data`
(`load`, `celeba_split_rule`, `celeba_split_names`), which finds the folder first.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wae_tf import fileio
from wae_tf.data_errors import DataError

logger = logging.getLogger(__name__)

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
# last 20,000 are the test set. See `official_celeba_order` and `folder_split_rule`.
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


def image_files(root: Path) -> tuple[Path, list[str]]:
    """(the image folder, its image file names sorted) of the CelebA folder `root`."""
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
    "official_code_shuffle" or "folder_shuffle_last_tenth" (see `folder_split_rule`).
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


def folder_split_rule(image_dir: Path, names: Sequence[str], split_rule: str) -> str:
    """How `split_names` splits the images `names` of `image_dir` (`image_files`) under
    `split_rule`, for docs and provenance (`wae_tf.data.celeba_split_rule`).

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
    if split_rule == "partition_file":
        _check_partition_covers(_read_partition(image_dir), image_dir, names)
        return "partition_file"
    return celeba_shuffle_split(names)[0]


def split_names(image_dir: Path, names: list[str], split: str, split_rule: str) -> list[str]:
    """The file names of one split ("train", "test", or "validation" with "partition_file")
    of the images `names` in `image_dir`, in the order `wae_tf.data.load` returns them."""
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


def cached_images(image_dir: Path, names: Sequence[str], cache_dir: Path) -> np.ndarray:
    """The preprocessed images of `names` in `image_dir`, in that order, as uint8
    (N, 64, 64, 3): from `cache_dir`'s .npy when valid, else decoded and cached."""
    paths = [image_dir / name for name in names]
    key = celeba_cache_key(paths)
    return _cached(cache_dir, f"celeba_{len(paths)}_{key}", len(paths), paths)


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
