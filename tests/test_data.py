"""Tests of wae_tf.data on the real files (skipped when /work/shared/data is absent)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wae_tf import celeba, data, streams

MNIST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # shared/data/README.md
MNIST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def _gunzip(path: Path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read()


@pytest.fixture()
def celeba_tmp(celeba_dir: Path, tmp_path: Path) -> Path:
    """A CelebA-layout folder of 40 real (symlinked) JPEGs, without a partition file."""
    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    for i in range(1, 41):
        name = f"{i:06d}.jpg"
        (images / name).symlink_to(celeba_dir / "img_align_celeba" / name)
    return tmp_path / "celeba"


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header + payload)


# --------------------------------------------------------------------------------------
# Module hygiene
# --------------------------------------------------------------------------------------


def test_import_does_not_import_tensorflow_or_keras():
    code = "import sys, wae_tf.data; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST
# --------------------------------------------------------------------------------------


def test_mnist_train_is_raw_idx_bytes_over_255(mnist_dir):
    images = data.load("mnist", mnist_dir, "train")
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.float32
    raw = _gunzip(mnist_dir / "train-images-idx3-ubyte.gz")
    first = np.frombuffer(raw[16 : 16 + 784], np.uint8).astype(np.float32) / 255
    np.testing.assert_array_equal(images[0].ravel(), first)
    assert images.min() == 0.0 and images.max() == 1.0
    labels = data.load_labels("mnist", mnist_dir, "train")
    assert labels.shape == (60000,) and labels[:10].tolist() == MNIST_TRAIN_LABELS


def test_mnist_test_split_and_labels(mnist_dir):
    assert data.load_uint8("mnist", mnist_dir, "test").shape == (10000, 28, 28, 1)
    assert data.load_labels("mnist", mnist_dir, "test")[:10].tolist() == MNIST_TEST_LABELS
    assert data.load("mnist", mnist_dir, "test", num_examples=5).shape == (5, 28, 28, 1)


def test_mnist_reads_uncompressed_idx(mnist_dir, tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(_gunzip(mnist_dir / f"{name}.gz"))
    np.testing.assert_array_equal(
        data.load_uint8("mnist", tmp_path, num_examples=50),
        data.load_uint8("mnist", mnist_dir, num_examples=50),
    )


def test_mnist_default_dir_from_env(mnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_dir.parent))
    assert data.load_labels("mnist", split="test")[:3].tolist() == MNIST_TEST_LABELS[:3]
    # Without it, MNIST is fetched into the cache: here from a mirror that is down.
    monkeypatch.delenv(data.DATA_DIR_ENV)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("WAE_TF_MNIST_MIRROR", "http://127.0.0.1:9/")  # discard port: refused
    with pytest.raises(data.DataError, match="no network.*--data_dir"):
        data.load("mnist")


def test_data_dir_env_accepts_the_documented_folder_names(celeba_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(celeba_dir.parent))  # holds celeba_10k/
    assert data.resolve_data_dir("celeba") == celeba_dir
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DataError) as error:
        data.resolve_data_dir("celeba")
    message = str(error.value)
    assert str(tmp_path / "celeba") in message and str(tmp_path / "celeba_10k") in message
    assert "img_align_celeba" in message and "--data_dir" in message and "\n" not in message


def test_fashion_mnist_from_debian_package():
    if not data.DEBIAN_FASHION_MNIST_DIR.is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist to run this test")
    images = data.load("fashion_mnist", split="test")
    assert images.shape == (10000, 28, 28, 1) and 0 <= images.min() < images.max() <= 1
    assert data.load_labels("fashion_mnist", split="train").shape == (60000,)


# --------------------------------------------------------------------------------------
# CelebA
# --------------------------------------------------------------------------------------


def test_celeba_crop_box_is_relative_to_image_size():
    assert celeba.celeba_crop_box(178, 218) == (19, 39, 159, 179)  # paper: 140x140 at (19, 39)
    assert celeba.celeba_crop_box(89, 109) == (10, 20, 80, 90)  # shared half-res copy: 70x70


def test_celeba_matches_pil_reference_and_folder_shuffle_split(celeba_tmp, tmp_path):
    images = data.load("celeba", celeba_tmp, "train", cache_dir=tmp_path / "cache")
    # None of 000001-000040 is among the code's 20,000 held-out names, so the fallback
    # applies: the code's Python 2 shuffle (seed 123) of the 40 sorted names, last 40 // 10
    # = 4 are test (celeba_split_rule's docstring).
    names = [f"{i:06d}.jpg" for i in range(1, 41)]
    assert not set(names) & set(celeba.official_celeba_order()[-20000:])
    order = celeba.python2_shuffle(names, 123)
    assert images.shape == (36, 64, 64, 3) and images.dtype == np.float32
    assert -1.0 <= images.min() < images.max() <= 1.0
    with Image.open(celeba_tmp / "img_align_celeba" / order[0]) as im:
        ref = np.asarray(im.convert("RGB").crop((10, 20, 80, 90)).resize((64, 64), Image.LANCZOS))
    np.testing.assert_array_equal(images[0], ref.astype(np.float32) / 127.5 - 1)
    test = data.load_uint8("celeba", celeba_tmp, "test", cache_dir=tmp_path / "cache")
    assert test.shape == (4, 64, 64, 3)
    with Image.open(celeba_tmp / "img_align_celeba" / order[-1]) as im:
        ref = np.asarray(im.convert("RGB").crop((10, 20, 80, 90)).resize((64, 64), Image.LANCZOS))
    np.testing.assert_array_equal(test[-1], ref)
    assert data.celeba_split_rule(celeba_tmp) == "folder_shuffle_last_tenth"


def test_celeba_cache_of_an_older_split_order_is_not_served(celeba_tmp, tmp_path):
    # The .npy cache key hashes the split's file list in order, so a cache written for the
    # former split (names in np.random.RandomState(123) order) cannot stand in for this one.
    cache = tmp_path / "cache"
    image_dir = celeba_tmp / "img_align_celeba"
    names = [f"{i:06d}.jpg" for i in range(1, 41)]
    old_order = [names[i] for i in np.random.RandomState(123).permutation(40)]  # noqa: NPY002
    old_paths = [image_dir / name for name in old_order[:36]]
    stale = cache / f"celeba_36_{celeba.celeba_cache_key(old_paths)}.npy"
    cache.mkdir()
    np.save(stale, np.zeros((36, 64, 64, 3), np.uint8))
    train = data.load_uint8("celeba", celeba_tmp, "train", cache_dir=cache)
    assert old_order[:36] != celeba.python2_shuffle(names, 123)[:36]
    assert train.shape == (36, 64, 64, 3) and train.max() > 0  # decoded, not the stale zeros
    assert len(list(cache.glob("*.npy"))) == 2


def test_celeba_second_load_comes_from_cache(celeba_tmp, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = data.load_uint8("celeba", celeba_tmp, "train", num_examples=10, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 1

    def no_decode(path):
        raise AssertionError(f"decoded {path} although it is cached")

    monkeypatch.setattr(celeba, "decode_celeba_file", no_decode)
    again = data.load_uint8("celeba", celeba_tmp, "train", num_examples=10, cache_dir=cache)
    np.testing.assert_array_equal(first, again)


def test_celeba_corrupt_cache_is_rebuilt(celeba_tmp, tmp_path):
    cache = tmp_path / "cache"
    first = data.load_uint8("celeba", celeba_tmp, "test", cache_dir=cache)
    (cache_file,) = cache.glob("*.npy")
    cache_file.write_bytes(cache_file.read_bytes()[:1000])  # a half-written file
    np.testing.assert_array_equal(
        data.load_uint8("celeba", celeba_tmp, "test", cache_dir=cache), first
    )
    assert np.load(cache_file).shape == (4, 64, 64, 3)


def test_celeba_partition_file_decides_splits_only_when_asked(celeba_tmp, tmp_path):
    # 000001-000030 train, 031-035 validation, 036-040 test.
    lines = [f"{i:06d}.jpg {0 if i <= 30 else 1 if i <= 35 else 2}" for i in range(1, 41)]
    (celeba_tmp / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    # The default (the paper preset's) is the code's shuffle even with the file beside the
    # images ([code] datahandler.py:592-608 never reads it).
    assert data.celeba_split_rule(celeba_tmp) == "folder_shuffle_last_tenth"
    assert len(data.load_uint8("celeba", celeba_tmp, "test", cache_dir=cache)) == 4
    assert data.celeba_split_rule(celeba_tmp, "partition_file") == "partition_file"
    sizes = {
        s: len(
            data.load_uint8("celeba", celeba_tmp, s, cache_dir=cache, split_rule="partition_file")
        )
        for s in celeba.PARTITION_IDS
    }
    assert sizes == {"train": 30, "validation": 5, "test": 5}


def test_celeba_partition_file_rule_errors_in_one_line(celeba_tmp, tmp_path):
    cache = dict(cache_dir=tmp_path / "cache", split_rule="partition_file")
    with pytest.raises(data.DataError, match="no list_eval_partition.txt") as missing:
        data.load_uint8("celeba", celeba_tmp, "train", **cache)
    lines = [f"{i:06d}.jpg 0" for i in range(1, 40)]  # 000040.jpg is not listed
    (celeba_tmp / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match="does not list 1 of the 40 images") as partial:
        data.load_uint8("celeba", celeba_tmp, "train", **cache)
    with pytest.raises(data.DataError, match="does not list"):
        data.celeba_split_rule(celeba_tmp, "partition_file")
    lines.append("000040.jpg 0")  # every image in train: no test images
    (celeba_tmp / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match="none of the images .* 'test' partition") as empty:
        data.load_uint8("celeba", celeba_tmp, "test", **cache)
    for error in (missing, partial, empty):
        assert "\n" not in str(error.value) and "--split_rule=official_code" in str(error.value)
    with pytest.raises(data.DataError, match="does not apply to celeba"):
        data.load_uint8("celeba", celeba_tmp, "train", split_rule="standard")


def test_shared_celeba_subset_uses_shuffle_rule(celeba_dir, tmp_path):
    # All 10k shared images are in the official train partition, so train/test come from the
    # official code's split ([code] datahandler.py:592-608) restricted to 000001-010000:
    # test = the 1,019 of them among the code's last 20,000 shuffled names, train = the
    # other 8,981 (was 9,000 / 1,000 under the former RandomState(123), n // 10 rule).
    assert data.celeba_split_rule(celeba_dir) == "official_code_shuffle"
    held_out = set(celeba.official_celeba_order()[-20000:])
    assert sum(f"{i:06d}.jpg" in held_out for i in range(1, 10001)) == 1019
    images = data.load("celeba", celeba_dir, "test", num_examples=8, cache_dir=tmp_path)
    assert images.shape == (8, 64, 64, 3) and -1 <= images.min() < images.max() <= 1
    # The test split's first image is the first held-out name of the subset in the code's
    # order; compare it with a direct decode.
    first = next(n for n in celeba.official_celeba_order()[-20000:] if n <= "010000.jpg")
    with Image.open(celeba_dir / "img_align_celeba" / first) as im:
        ref = np.asarray(im.convert("RGB").crop((10, 20, 80, 90)).resize((64, 64), Image.LANCZOS))
    np.testing.assert_array_equal(images[0], ref.astype(np.float32) / 127.5 - 1)
    with pytest.raises(data.DataError, match="validation"):
        data.load("celeba", celeba_dir, "validation", cache_dir=tmp_path)


def test_celeba_accepts_the_image_folder_itself(celeba_tmp, tmp_path):
    a = data.load_uint8("celeba", celeba_tmp / "img_align_celeba", "test", cache_dir=tmp_path)
    b = data.load_uint8("celeba", celeba_tmp, "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------
# Bad inputs: one clear DataError each
# --------------------------------------------------------------------------------------


def test_missing_data_dir_raises(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load("mnist", tmp_path / "nowhere")


def test_dir_without_idx_files_names_them(tmp_path):
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte\.gz"):
        data.load("mnist", tmp_path)
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte"):
        data.load("mnist", tmp_path, "test")


def test_truncated_gzip_names_file(mnist_dir, tmp_path):
    raw = (mnist_dir / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "train-labels-idx1-ubyte.gz").symlink_to(mnist_dir / "train-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte\.gz.*gzip"):
        data.load("mnist", tmp_path)


def test_corrupt_gzip_bytes_names_file(mnist_dir, tmp_path):
    raw = bytearray((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # overwrite compressed data
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(raw))
    (tmp_path / "t10k-images-idx3-ubyte.gz").symlink_to(mnist_dir / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte\.gz.*gzip"):
        data.load_labels("mnist", tmp_path, "test")


@pytest.fixture()
def small_idx(mnist_dir, tmp_path):
    """Real first 100 test images / labels, written uncompressed; returns (dir, pixels, labels)."""
    pixels = _gunzip(mnist_dir / "t10k-images-idx3-ubyte.gz")[16 : 16 + 100 * 784]
    labels = _gunzip(mnist_dir / "t10k-labels-idx1-ubyte.gz")[8 : 8 + 100]
    return tmp_path, pixels, labels


def test_idx_wrong_magic(small_idx):
    root, pixels, labels = small_idx
    _write_idx(root / "t10k-images-idx3-ubyte", 2049, (100, 28, 28), pixels)
    _write_idx(root / "t10k-labels-idx1-ubyte", 2049, (100,), labels)
    with pytest.raises(
        data.DataError, match=r"t10k-images-idx3-ubyte: IDX magic number 2049, expected 2051"
    ):
        data.load("mnist", root, "test")


def test_idx_header_count_exceeds_payload(small_idx):
    root, pixels, labels = small_idx
    _write_idx(root / "t10k-images-idx3-ubyte", 2051, (10000, 28, 28), pixels)
    _write_idx(root / "t10k-labels-idx1-ubyte", 2049, (100,), labels)
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte: header.*truncated"):
        data.load("mnist", root, "test")


def test_image_and_label_counts_must_agree(small_idx):
    root, pixels, labels = small_idx
    _write_idx(root / "t10k-images-idx3-ubyte", 2051, (100, 28, 28), pixels)
    _write_idx(root / "t10k-labels-idx1-ubyte", 2049, (99,), labels[:99])
    with pytest.raises(data.DataError, match="100 images but .*99 labels"):
        data.load("mnist", root, "test")
    _write_idx(root / "t10k-labels-idx1-ubyte", 2049, (100,), labels)
    assert data.load_labels("mnist", root, "test").tolist()[:10] == MNIST_TEST_LABELS


def test_corrupt_jpeg_fails_with_its_path_and_writes_no_cache(celeba_tmp, tmp_path):
    bad = celeba_tmp / "img_align_celeba" / "000041.jpg"
    real = (celeba_tmp / "img_align_celeba" / "000001.jpg").read_bytes()
    bad.write_bytes(real[:200] + b"\x00garbage" * 50)  # a JPEG header, then junk
    cache = tmp_path / "cache"
    with pytest.raises(data.DataError, match=r"000041\.jpg: cannot decode"):
        data.load("celeba", celeba_tmp, "train", cache_dir=cache)  # 41 files: 000041 in train
    assert not cache.exists() or not any(cache.iterdir())


def test_image_too_small_to_crop_names_file(celeba_tmp, tmp_path):
    small = celeba_tmp / "img_align_celeba" / "000041.jpg"
    Image.new("RGB", (60, 73), (128, 64, 32)).save(small)
    with pytest.raises(data.DataError, match=r"000041\.jpg: image is 60x73"):
        data.load("celeba", celeba_tmp, "train", cache_dir=tmp_path)


def test_unknown_dataset_split_and_source(mnist_dir, celeba_tmp, tmp_path):
    with pytest.raises(data.DataError, match="unknown dataset 'cifar10'"):
        data.load("cifar10", mnist_dir)
    with pytest.raises(data.DataError, match="unknown split 'validation'"):
        data.load("mnist", mnist_dir, "validation")
    with pytest.raises(data.DataError, match="unknown split 'dev'"):
        data.load("celeba", celeba_tmp, "dev", cache_dir=tmp_path)
    with pytest.raises(data.DataError, match="unknown source"):
        data.load("mnist", mnist_dir, source="hub")
    with pytest.raises(data.DataError, match="num_examples=70000 but mnist test"):
        data.load("mnist", mnist_dir, "test", num_examples=70000)
    with pytest.raises(data.DataError, match="no class labels"):
        data.load_labels("celeba", celeba_tmp)


def test_tfds_unprepared_dataset_gives_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DataError, match="tfds dataset 'mnist' is not prepared"):
        data.load("mnist", tmp_path, source="tfds")


# --------------------------------------------------------------------------------------
# Batch streams
# --------------------------------------------------------------------------------------


def _take(ds, k):
    if hasattr(ds, "take"):
        return [np.asarray(b) for b in ds.take(k)]
    return [ds[i] for i in range(k)]


@pytest.fixture()
def tiny_images():
    return (np.arange(10 * 2 * 2 * 1) % 256).astype(np.uint8).reshape(10, 2, 2, 1) * 6


def test_train_batches_have_model_range_and_drop_remainder(tiny_images):
    batches = _take(streams.train_dataset(tiny_images, 3, seed=0, pixel_range="symmetric"), 3)
    assert all(b.shape == (3, 2, 2, 1) and b.dtype == np.float32 for b in batches)
    epoch = np.concatenate(batches)
    assert -1 <= epoch.min() and epoch.max() <= 1
    # One epoch = floor(10 / 3) = 3 batches of 9 distinct images.
    firsts = {float(x) for x in epoch[:, 0, 0, 0]}
    assert len(firsts) == 9 and streams.steps_per_epoch(10, 3) == 3
    expected = streams.to_model_range(tiny_images, "symmetric")[
        streams.epoch_permutation(10, 0, 0)[:9]
    ]
    np.testing.assert_array_equal(epoch, expected)


def test_resuming_at_epoch_k_reproduces_the_uninterrupted_stream(tiny_images):
    steps = streams.steps_per_epoch(10, 3)
    full = _take(streams.train_dataset(tiny_images, 3, seed=7, pixel_range="unit"), 3 * steps)
    resumed = _take(
        streams.train_dataset(tiny_images, 3, seed=7, pixel_range="unit", start_epoch=1), 2 * steps
    )
    np.testing.assert_array_equal(np.stack(full[steps:]), np.stack(resumed))
    other = _take(streams.train_dataset(tiny_images, 3, seed=8, pixel_range="unit"), steps)
    assert not np.array_equal(np.stack(full[:steps]), np.stack(other))
    assert not np.array_equal(np.stack(full[:steps]), np.stack(full[steps : 2 * steps]))


def test_pydataset_fallback_yields_the_same_batches(tiny_images, monkeypatch):
    tf_batches = _take(streams.train_dataset(tiny_images, 4, seed=3, pixel_range="unit"), 6)
    monkeypatch.setattr(streams, "use_tf_data", lambda: False)
    py = streams.train_dataset(tiny_images, 4, seed=3, pixel_range="unit")
    assert py.num_batches is None  # infinite
    np.testing.assert_array_equal(np.stack(_take(py, 6)), np.stack(tf_batches))
    ev = streams.eval_dataset(tiny_images, 4, pixel_range="unit")
    assert len(ev) == 3 and ev[2].shape == (2, 2, 2, 1)


def test_eval_dataset_keeps_order_and_remainder(tiny_images):
    batches = [np.asarray(b) for b in streams.eval_dataset(tiny_images, 4, pixel_range="unit")]
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), tiny_images / np.float32(255))


def test_stream_argument_errors(tiny_images):
    with pytest.raises(data.DataError, match="fewer than one batch"):
        streams.steps_per_epoch(10, 11)
    with pytest.raises(data.DataError, match="outside the 'unit' range"):
        streams.train_dataset(tiny_images * 2.0 - 1.0, 2, seed=0, pixel_range="unit")
    with pytest.raises(data.DataError, match="need pixel_range"):
        streams.eval_dataset(tiny_images, 2)
    with pytest.raises(data.DataError, match="unknown pixel_range"):
        streams.train_dataset(tiny_images, 2, seed=0, pixel_range="0-255")
