"""The official code's data handling, reproduced exactly where `official_code` asks for it,
and validation on test images in a fixed random order (not the file's order).

Citations are to github.com/tolstikhin/wae at commit 6351565. Tests that read real data
skip cleanly without the shared data folder.
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import numpy as np
import pytest

from wae_tf import celeba, configs, data, losses, metrics, mnist_files, streams, trainer

# Computed by Python 2.7.18 + NumPy 1.16.6 running the code's own lines on the real MNIST
# ([code] datahandler.py:437-446: X = np.concatenate((tr_X, te_X)); y likewise; X / 255.;
# np.random.seed(123); np.random.shuffle(X); np.random.seed(123); np.random.shuffle(y)),
# then test = X[-10000:], train = X[:-10000] ([code] datahandler.py:467-470), the images
# mapped back to uint8 (x * 255 is exact) and hashed as C-order bytes.
CODE_MNIST_TEST_IMAGES_SHA256 = "8cfd221dae150da42322e0242f73982b3725c33221b5121e2a6760e5b4110c15"
CODE_MNIST_TRAIN_IMAGES_SHA256 = "4e4e7ed5aca2fae8fe9a65f4b0e861e8f13d1fdd84ffa2c6c2b8bb8068023ffb"
CODE_MNIST_TEST_LABELS_SHA256 = "2f5d30b650621dc7bf76bc52941032f3e1bc09664df981b25234df2d8ad83acf"
CODE_MNIST_TEST_FIRST_LABELS = [6, 2, 1, 1, 4, 0, 9, 3, 7, 6, 6, 0, 0, 2, 5, 1, 4, 9, 5, 1]
CODE_MNIST_TRAIN_FIRST_LABELS = [0, 9, 4, 9, 5, 6, 1, 3, 1, 3, 9, 5, 7, 0, 5, 4, 8, 7, 7, 7]


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, np.uint8).tobytes())


# --------------------------------------------------------------------------------------
# MNIST: the code's pooled split
# --------------------------------------------------------------------------------------


def test_official_mnist_order_moves_rows_as_the_codes_np_random_shuffle():
    # [code] datahandler.py:441-445 shuffles a 4-D array and a 1-D one in place after
    # np.random.seed(123) each; `official_mnist_order` must move rows exactly as that does.
    pooled = np.arange(70 * 3).reshape(70, 3, 1)
    labels = np.arange(70) % 10
    np.random.seed(123)  # noqa: NPY002 - the code's global-state calls, on purpose
    np.random.shuffle(pooled)  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    np.random.shuffle(labels)  # noqa: NPY002
    order = mnist_files.official_mnist_order(70)
    np.testing.assert_array_equal(pooled, np.arange(70 * 3).reshape(70, 3, 1)[order])
    np.testing.assert_array_equal(labels, (np.arange(70) % 10)[order])


@pytest.mark.slow
def test_mnist_official_code_split_is_the_codes_pooled_shuffle(mnist_dir):
    # [code] datahandler.py:437-470: train and test pooled, shuffled (seed 123), the last
    # 10,000 held out. Pinned to the hashes of the code's own lines run under Python 2.7.
    load = dict(split_rule="official_code")
    test = data.load_uint8("mnist", mnist_dir, "test", **load)
    train = data.load_uint8("mnist", mnist_dir, "train", **load)
    test_labels = data.load_labels("mnist", mnist_dir, "test", **load)
    train_labels = data.load_labels("mnist", mnist_dir, "train", **load)
    assert test.shape == (10_000, 28, 28, 1) and train.shape == (60_000, 28, 28, 1)
    assert _sha256(test) == CODE_MNIST_TEST_IMAGES_SHA256
    assert _sha256(train) == CODE_MNIST_TRAIN_IMAGES_SHA256
    assert _sha256(test_labels.astype(np.int64)) == CODE_MNIST_TEST_LABELS_SHA256
    assert test_labels[:20].tolist() == CODE_MNIST_TEST_FIRST_LABELS
    assert train_labels[:20].tolist() == CODE_MNIST_TRAIN_FIRST_LABELS
    # The standard split is untouched, and the code's test set mixes both files.
    standard_test = data.load_uint8("mnist", mnist_dir, "test")
    assert _sha256(standard_test) != CODE_MNIST_TEST_IMAGES_SHA256
    from_t10k = mnist_files.official_mnist_order(70_000)[-10_000:] >= 60_000
    assert 1_000 < from_t10k.sum() < 2_000  # ~1/7 of the held-out images come from t10k


def test_mnist_split_rule_errors_name_the_flag(mnist_dir):
    with pytest.raises(data.DataError, match="--split_rule=partition_file does not apply to mnist"):
        data.load_uint8("mnist", mnist_dir, "test", split_rule="partition_file")


@pytest.mark.slow
def test_run_data_takes_the_configs_split_rule_and_records_it(mnist_dir):
    config = configs.get_config("mnist", "wae_mmd", "official_code")
    assert config.split_rule == "official_code"  # [code] datahandler.py:437-470
    run_data = trainer.load_data(config, mnist_dir, train_examples=200, eval_examples=100)
    code_train = data.load_uint8("mnist", mnist_dir, "train", split_rule="official_code")
    np.testing.assert_array_equal(run_data.train, code_train[:200])
    code_test = data.load_uint8("mnist", mnist_dir, "test", split_rule="official_code")
    np.testing.assert_array_equal(run_data.eval, streams.eval_subset(code_test, 100, "100"))
    assert run_data.provenance["split_rule"].startswith("official_code: ")
    assert run_data.provenance["batch_order"] == "independent_draws"
    assert "eval_order" in run_data.provenance["eval_order"]
    paper = trainer.load_data(configs.get_config("mnist", "wae_mmd"), mnist_dir, eval_examples=10)
    assert paper.provenance["split_rule"].startswith("standard: ")


# --------------------------------------------------------------------------------------
# CelebA: the code's shuffle by default, the partition file only when asked for
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_celeba_default_split_is_the_codes_held_out_set_beside_a_partition_file(celeba_dir):
    # [code] datahandler.py:592-608 never reads list_eval_partition.txt: the code's test set
    # is the last 20,000 of its shuffled names. The shared 10k subset has the partition
    # file beside its images, and the default split still is the code's, restricted to it.
    assert (celeba_dir / celeba.PARTITION_FILE).is_file()
    held_out = celeba.official_celeba_order()[-20_000:]
    expected_test = [name for name in held_out if name <= "010000.jpg"]
    test = data.celeba_split_names(celeba_dir, "test")
    train = data.celeba_split_names(celeba_dir, "train")
    assert test == expected_test and (len(train), len(test)) == (8_981, 1_019)
    assert data.celeba_split_rule(celeba_dir) == "official_code_shuffle"
    assert data.celeba_split_names(celeba_dir, "test", "official_code") == test
    # Asked for, the partition file splits; on this subset it has no test images at all.
    assert len(data.celeba_split_names(celeba_dir, "train", "partition_file")) == 10_000
    with pytest.raises(data.DataError, match="none of the images"):
        data.celeba_split_names(celeba_dir, "test", "partition_file")


@pytest.fixture()
def celeba_40(celeba_dir: Path, tmp_path: Path) -> Path:
    """000001-000040 (symlinks) with a partition file that holds out the same 4 images as
    the code's shuffle of these names, so that both rules split into the same sets."""
    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 41)]
    for name in names:
        (images / name).symlink_to(celeba_dir / "img_align_celeba" / name)
    test = set(celeba.celeba_shuffle_split(names)[2])
    lines = [f"{name} {2 if name in test else 0}" for name in names]
    (tmp_path / "celeba" / celeba.PARTITION_FILE).write_text("\n".join(lines) + "\n")
    return tmp_path / "celeba"


def test_celeba_cache_differs_per_split_rule(celeba_40, tmp_path):
    # Same 36 train images under both rules, in another order (file-name order vs the
    # code's shuffle): the .npy cache key hashes the ordered file list, so each rule gets
    # its own cache and neither serves the other's order.
    cache = tmp_path / "cache"
    code = data.load_uint8("celeba", celeba_40, "train", cache_dir=cache)
    partition = data.load_uint8(
        "celeba", celeba_40, "train", cache_dir=cache, split_rule="partition_file"
    )
    code_names = data.celeba_split_names(celeba_40, "train")
    partition_names = data.celeba_split_names(celeba_40, "train", "partition_file")
    assert sorted(code_names) == partition_names != code_names
    assert len(list(cache.glob("*.npy"))) == 2
    position = {name: i for i, name in enumerate(code_names)}
    np.testing.assert_array_equal(partition, code[[position[n] for n in partition_names]])


# --------------------------------------------------------------------------------------
# Batches: independent draws ([code] wae.py:573-576)
# --------------------------------------------------------------------------------------


def _take(ds, k):
    if hasattr(ds, "take"):
        return [np.asarray(b) for b in ds.take(k)]
    return [ds[i] for i in range(k)]


def test_independent_draws_are_the_codes_batches():
    # [code] wae.py:569-575: batches_num = train_size // batch_size steps per epoch, each
    # np.random.choice(train_size, batch_size, replace=False): distinct inside a batch,
    # independent across steps (an epoch may repeat or miss examples).
    n, batch = 10, 3
    epochs = [streams.batch_indices(n, batch, 5, e, "independent_draws") for e in range(20)]
    assert all(len(steps) == n // batch for steps in epochs)
    assert all(len(set(b.tolist())) == batch for steps in epochs for b in steps)
    assert all(0 <= b.min() and b.max() < n for steps in epochs for b in steps)
    assert all(len({b.tobytes() for b in steps}) > 1 for steps in epochs)  # fresh each step
    repeats = [len(set(np.concatenate(steps).tolist())) < batch * len(steps) for steps in epochs]
    assert any(repeats)  # an epoch permutation never repeats an example inside an epoch
    permutation = streams.batch_indices(n, batch, 5, 0, "epoch_permutation")
    assert len(set(np.concatenate(permutation).tolist())) == batch * len(permutation)
    assert not np.array_equal(np.stack(epochs[0]), np.stack(permutation))
    again = streams.batch_indices(n, batch, 5, 0, "independent_draws")
    np.testing.assert_array_equal(np.stack(again), np.stack(epochs[0]))
    other_seed = streams.batch_indices(n, batch, 6, 0, "independent_draws")
    assert not np.array_equal(np.stack(other_seed), np.stack(epochs[0]))


@pytest.mark.parametrize("tf_data", [True, False])
def test_independent_draws_stream_resumes_exactly(tf_data, monkeypatch):
    images = (np.arange(10 * 2 * 2 * 1) % 256).astype(np.uint8).reshape(10, 2, 2, 1)
    if not tf_data:
        monkeypatch.setattr(streams, "use_tf_data", lambda: False)
    elif not streams.use_tf_data():
        pytest.skip("Keras does not run on TensorFlow here")
    stream = dict(seed=7, pixel_range="unit", batch_order="independent_draws")
    steps = streams.steps_per_epoch(10, 3)
    full = _take(streams.train_dataset(images, 3, **stream), 3 * steps)
    resumed = _take(streams.train_dataset(images, 3, start_epoch=1, **stream), 2 * steps)
    np.testing.assert_array_equal(np.stack(full[steps:]), np.stack(resumed))
    scale = np.float32(255)
    for epoch in range(3):
        expected = [
            images[i] / scale for i in streams.batch_indices(10, 3, 7, epoch, stream["batch_order"])
        ]
        np.testing.assert_array_equal(
            np.stack(full[epoch * steps : (epoch + 1) * steps]), np.stack(expected)
        )


# --------------------------------------------------------------------------------------
# Validation in a fixed random order of the test images
# --------------------------------------------------------------------------------------


@pytest.fixture()
def mnist_sorted_by_label(mnist_dir: Path, tmp_path: Path) -> Path:
    """The real MNIST with its t10k files sorted by label (train files linked)."""
    folder = tmp_path / "mnist_sorted"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(mnist_dir / name)
    images = data.load_uint8("mnist", mnist_dir, "test")[..., 0]
    labels = data.load_labels("mnist", mnist_dir, "test")
    order = np.argsort(labels, kind="stable")
    _write_idx(folder / "t10k-images-idx3-ubyte", mnist_files.IDX_IMAGES_MAGIC, images[order])
    _write_idx(folder / "t10k-labels-idx1-ubyte", mnist_files.IDX_LABELS_MAGIC, labels[order])
    return folder


def _validation_labels(run_data: trainer.RunData, folder: Path) -> np.ndarray:
    """The labels of a run's validation images (found by their bytes in the test file)."""
    test = data.load_uint8("mnist", folder, "test")
    labels = data.load_labels("mnist", folder, "test")
    where = {image.tobytes(): label for image, label in zip(test, labels, strict=True)}
    return np.array([where[image.tobytes()] for image in run_data.eval])


def _mean_batch_mmd(run_data: trainer.RunData, batch: int = 100) -> float:
    """The mean over validation batches of MMD(codes, P_Z), with a fixed random linear
    map of the pixels (standardised) standing in for a trained encoder."""
    x = streams.to_model_range(run_data.eval, "unit").reshape(len(run_data.eval), -1)
    projection = np.random.default_rng(0).normal(size=(x.shape[1], 8)).astype(np.float32)
    z = x @ projection
    z = (z - z.mean(0)) / z.std(0)
    prior = np.random.default_rng(1).normal(size=z.shape).astype(np.float32)
    values = [
        float(losses.mmd_penalty(z[i : i + batch], prior[i : i + batch]))
        for i in range(0, len(z), batch)
    ]
    return float(np.mean(values))


@pytest.mark.slow
def test_validation_does_not_depend_on_the_test_files_order(mnist_dir, mnist_sorted_by_label):
    # Validation batches of a test file sorted by label would each hold one or two digits,
    # and a batch's MMD against P_Z depends on that. The run's validation images are a
    # fixed-seed random order of the test split (streams.eval_order), so every batch mixes
    # the digits, whatever the file's order, and the batch MMD is the same.
    config = configs.with_width(configs.get_config("mnist", "wae_mmd"), 4)
    runs = {
        "file": trainer.load_data(config, mnist_dir, train_examples=100),
        "sorted": trainer.load_data(config, mnist_sorted_by_label, train_examples=100),
    }
    for folder, run_data in zip((mnist_dir, mnist_sorted_by_label), runs.values(), strict=True):
        labels = _validation_labels(run_data, folder)
        assert len(labels) == trainer.DEFAULT_EVAL_EXAMPLES
        assert all(len(set(labels[i : i + 100])) == 10 for i in range(0, len(labels), 100))
        assert np.bincount(labels, minlength=10).min() > 60  # ~100 of each digit
    mmd = {name: _mean_batch_mmd(run_data) for name, run_data in runs.items()}
    assert abs(mmd["sorted"] - mmd["file"]) < 0.25 * mmd["file"], mmd
    # The same images in the sorted file's order: the batch MMD the permutation avoids.
    in_file_order = runs["sorted"].eval[
        np.argsort(_validation_labels(runs["sorted"], mnist_sorted_by_label), kind="stable")
    ]
    biased = _mean_batch_mmd(trainer.RunData(runs["sorted"].train, in_file_order, {}))
    assert biased > 2 * mmd["sorted"], (biased, mmd)


# --------------------------------------------------------------------------------------
# Real-image sharpness: the code's statistic on the first 30 training images
# --------------------------------------------------------------------------------------


@pytest.fixture()
def celeba_400(celeba_dir: Path, tmp_path: Path, monkeypatch) -> Path:
    """000001-000400 (symlinks; ~40 of them among the code's held-out names)."""
    images = tmp_path / "celeba" / "img_align_celeba"
    images.mkdir(parents=True)
    for i in range(1, 401):
        name = f"{i:06d}.jpg"
        (images / name).symlink_to(celeba_dir / "img_align_celeba" / name)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "celeba"


class _GreyModel:
    """Samples that are flat grey images: enough for the evaluator's real-image numbers."""

    def sample_prior(self, n, seed=None):
        return np.zeros((n, 2), np.float32)

    def decode(self, z):
        return np.zeros((len(z), 64, 64, 3), np.float32)


def test_true_data_code_sharpness_is_on_the_first_30_training_images(celeba_400, tmp_path):
    # [code] wae.py:533-536: "Real pictures sharpness" = np.min of compute_blurriness over
    # data.data[:self.num_pics], the first 30 images of the TRAINING set after the split.
    from reproduce.cli import parse_args
    from reproduce.evaluation import (
        CelebaScores,
        code_real_sharpness,
        load_celeba_real_images,
    )

    argv = ["table1", f"--data_dir={celeba_400}", f"--workdir={tmp_path / 'runs'}"]
    options = parse_args([*argv, "--num_samples=40"], "table1")
    first_train = data.celeba_split_names(celeba_400, "train")[:30]
    decoded = np.stack(
        [celeba.decode_celeba_file(celeba_400 / "img_align_celeba" / n) for n in first_train]
    )
    expected = metrics.code_sharpness(decoded, "uint8")
    assert code_real_sharpness(options) == pytest.approx(expected, rel=1e-6)
    scores = CelebaScores(options, None, {"reason": "no graph"})
    test = data.load_uint8("celeba", celeba_400, "test")
    numbers = scores.evaluate(types.SimpleNamespace(name="vae", model=_GreyModel()), test)
    assert numbers["true_data"]["sharpness_code"] == pytest.approx(expected, rel=1e-6)
    # Not the first 30 of the shuffled real pool (what the row measured before).
    pool = load_celeba_real_images(options, options.num_samples).reference
    assert metrics.code_sharpness(pool, "uint8") != pytest.approx(expected, rel=1e-3)


# --------------------------------------------------------------------------------------
# The flag: --split_rule (wae_tf.train and the reproduce scripts)
# --------------------------------------------------------------------------------------


def test_split_rule_flag_reaches_the_config_and_the_reproduce_runs(tmp_path):
    from absl import flags

    from reproduce.cli import ReproError, parse_args
    from reproduce.specs import run_config, run_group
    from wae_tf import train

    values = flags.FlagValues()
    train.define_flags(values)
    values(["train", "--dataset=celeba", "--model=wae_mmd", "--workdir=w"])
    assert train.config_from_flags(values).split_rule == "official_code"  # the paper's default
    values(
        [
            "train",
            "--dataset=celeba",
            "--model=wae_mmd",
            "--workdir=w",
            "--split_rule=partition_file",
        ]
    )
    assert train.config_from_flags(values).split_rule == "partition_file"
    with pytest.raises(
        flags.IllegalFlagValueError, match="split_rule 'partition_file' does not apply"
    ):
        values(
            [
                "train",
                "--dataset=mnist",
                "--model=wae_mmd",
                "--workdir=w",
                "--split_rule=partition_file",
            ]
        )

    argv = ["table1", f"--workdir={tmp_path}", "--split_rule=partition_file"]
    options = parse_args(argv, "table1")
    assert run_config(options, "wae_gan").split_rule == "partition_file"
    assert run_group(options).endswith("partition_file")  # its own runs folder
    default = parse_args(["table1", f"--workdir={tmp_path}"], "table1")
    assert run_config(default, "vae").split_rule == "official_code"
    assert run_group(default) == "celeba"
    with pytest.raises(ReproError, match="--split_rule=partition_file does not apply to mnist"):
        parse_args(["figure2", "--split_rule=partition_file"], "figure2")
