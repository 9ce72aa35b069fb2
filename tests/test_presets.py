"""Presets and heuristics pinned to their sources.

[code] = github.com/tolstikhin/wae at commit 6351565 (file:line); [paper] = Tolstikhin et
al., ICLR 2018, App. C. Covers: the MNIST WAE-GAN lambda, encoder pretraining (lr, input
noise; TensorFlow and JAX), the `official_code` CelebA preset and its lr decay, and the
code's CelebA train/test split (its Python 2 shuffle).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

from wae_tf import data, optimizers, pretraining
from wae_tf.configs import get_config, tiny
from wae_tf.models import build_model

OFFICIAL_REPO = Path(
    os.environ.get("WAE_TF_OFFICIAL_CODE", "/work/.mirror/tolstikhin+wae/repo/.git")
)
OFFICIAL_COMMIT = "6351565"


# ======================================================================================
# 1. MNIST lambda
# ======================================================================================
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("model", ["wae_mmd", "wae_gan"])
def test_mnist_lambda_is_10_for_both_waes(dataset, model):
    # [code] configs.py:105 config_mnist['lambda'] = 10., one value for both WAEs (no
    # WAE-GAN-specific one); [paper] App. C.1 gives a single lambda = 10 for MNIST.
    assert get_config(dataset, model).penalty_weight == 10.0


def test_mnist_wae_gan_lambda_stays_overridable():
    config = get_config("mnist", "wae_gan").replace(penalty_weight=1.0)
    assert config.penalty_weight == 1.0 and config.adversary_learning_rate == 5e-4


# ======================================================================================
# 2. Encoder pretraining: the autoencoder's lr, input noise on
# ======================================================================================
PRESETS = [
    ("mnist", "wae_mmd", "paper"),
    ("mnist", "wae_gan", "paper"),
    ("celeba", "wae_mmd", "paper"),
    ("celeba", "wae_gan", "paper"),
    ("celeba", "wae_mmd", "official_code"),
    ("celeba", "wae_gan", "official_code"),
]


@pytest.mark.parametrize(("dataset", "model", "variant"), PRESETS)
def test_pretraining_lr_is_the_autoencoders_lr_and_noise_is_on(dataset, model, variant):
    # [code] wae.py:379 lr = opts['lr']; wae.py:406 opt = self.optimizer(lr) (decay 1), and
    # wae.py:445 runs the steps with is_training=True, i.e. with models.py:8-16 add_noise.
    config = get_config(dataset, model, variant)
    assert config.pretrain_learning_rate is None and config.pretrain_input_noise
    assert config.input_noise_stddev == 0.01  # [code] models.py:12
    optimizer = pretraining.make_pretrain_optimizer(config)
    assert float(optimizer.learning_rate) == pytest.approx(config.learning_rate, rel=1e-6)
    assert optimizer.beta_1 == 0.5 and optimizer.epsilon == 1e-8  # TF1 AdamOptimizer
    fixed = config.replace(pretrain_learning_rate=1e-3)  # the former fixed lr, still an option
    assert pretraining.pretrain_learning_rate(fixed) == 1e-3


def _one_pretraining_step(images, **overrides):
    """Encoder weights (before, after) one pretraining step of a tiny MNIST WAE-MMD."""
    config = tiny(get_config("mnist", "wae_mmd"), 4).replace(seed=2, **overrides)
    model = build_model(config)
    before = [np.array(v) for v in model.encoder.trainable_variables]
    losses = model.pretrain_encoder(images, steps=1, batch_size=32, verbose=False)
    assert len(losses) == 1 and np.isfinite(losses[0])
    return before, [np.array(v) for v in model.encoder.trainable_variables]


def _largest_move(before, after) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(after, before, strict=True))


@pytest.fixture(scope="module")
def random_images():
    return np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")


@pytest.mark.parametrize(
    ("overrides", "expected_lr"),
    [
        ({"learning_rate": 3e-4}, 3e-4),
        ({"learning_rate": 3e-4, "pretrain_learning_rate": 1e-3}, 1e-3),
    ],
)
def test_one_pretraining_step_moves_weights_by_the_pretraining_lr(
    random_images, overrides, expected_lr
):
    # Adam's first step moves every weight by lr * g / (|g| + eps / sqrt(1 - beta2)):
    # the largest move is the lr to ~1e-6 relative (|g| >> 3e-7). This measures the lr
    # the pretraining steps really use.
    before, after = _one_pretraining_step(random_images, **overrides)
    assert _largest_move(before, after) == pytest.approx(expected_lr, rel=1e-3)


def test_pretraining_input_noise_changes_the_step_and_is_seeded(random_images):
    noisy = _one_pretraining_step(random_images)[1]
    again = _one_pretraining_step(random_images)[1]
    clean = _one_pretraining_step(random_images, pretrain_input_noise=False)[1]
    # Same seed, same batch and prior draws: the runs repeat, and only the noise differs.
    assert all(np.array_equal(a, b) for a, b in zip(noisy, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(noisy, clean, strict=True))


JAX_PRETRAINING_CHECK = """
import json, numpy as np
from wae_tf import configs, models
images = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
def run(**overrides):
    config = configs.tiny(configs.get_config("mnist", "wae_mmd"), 4).replace(seed=2, **overrides)
    model = models.build_model(config)
    before = [np.array(v) for v in model.encoder.trainable_variables]
    model.pretrain_encoder(images, steps=1, batch_size=32, verbose=False)
    after = [np.array(v) for v in model.encoder.trainable_variables]
    return before, after, np.array(model.seed_generator.state).tolist()
(b0, noisy, seed_noisy), (_, again, _), (_, clean, seed_clean) = (
    run(learning_rate=3e-4), run(learning_rate=3e-4), run(learning_rate=3e-4, pretrain_input_noise=False))
print(json.dumps({
    "largest_move": max(float(np.abs(a - b).max()) for a, b in zip(noisy, b0)),
    "repeats": all(np.array_equal(a, b) for a, b in zip(noisy, again)),
    "noise_changes_step": not all(np.array_equal(a, b) for a, b in zip(noisy, clean)),
    "seed_noisy": seed_noisy, "seed_clean": seed_clean,
}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_pretraining_on_jax_uses_the_lr_noise_and_seed_generator():
    out = run_python("-c", JAX_PRETRAINING_CHECK, KERAS_BACKEND="jax", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["largest_move"] == pytest.approx(3e-4, rel=1e-3)
    assert result["repeats"] and result["noise_changes_step"]
    # The jitted step's SeedGenerator state is written back to the model: prior draws +
    # noise advance it by one draw more than prior draws alone, from the same start.
    assert result["seed_clean"][1] >= 1
    assert result["seed_noisy"][1] == result["seed_clean"][1] + 1


# ======================================================================================
# 3. The official_code CelebA preset and its smooth decay
# ======================================================================================
@pytest.mark.parametrize("model", ["wae_mmd", "wae_gan"])
def test_official_code_preset_is_configs_py_config_celeba(model):
    c = get_config("celeba", model, "official_code")
    # [code] configs.py line by line (config_celebA):
    assert c.pixel_range == "symmetric"  # :14 input_normalize_sym
    assert c.adam_beta1 == 0.5  # :19
    assert c.learning_rate == 5e-4  # :20 lr (both WAEs)
    assert c.adversary_learning_rate == 1e-3  # :21 lr_adv
    assert c.lr_schedule == "official_code" and c.lr_decay_epochs == 50  # :22 manual_smooth
    assert c.batch_size == 100  # :23
    assert c.epochs == 50  # :24 epoch_num
    assert c.init_stddev == 0.0099999  # :25
    assert c.batch_norm and c.bn_epsilon == 1e-5 and c.bn_momentum == 0.9  # :27-29
    assert c.kernel_size == 5  # :30
    assert c.pretrain_encoder and c.pretrain_batch_size == 256  # :32-33
    assert c.input_noise_stddev == 0.01  # :34 e_noise add_noise (models.py:12 std 0.01)
    assert c.encoder_filters == (128, 256, 512, 1024)  # :35-36, 1024 / 2^(3-i)
    assert c.decoder_dense_filters == 1024 and c.decoder_filters == (512, 256, 128)  # :39-40
    assert c.log_prior_trick == (model == "wae_gan")  # :43 gan_p_trick (WAE-GAN only)
    assert c.adversary_layers == 4 and c.adversary_units == 1024  # :44-45
    assert c.z_dim == 64  # :47
    assert c.reconstruction_scale == 0.05  # :49 cost l2sq (wae.py's 0.05 * sum)
    assert c.pz_scale == 1.0  # :50
    assert c.mmd_kernel == "imq"  # :52
    assert c.penalty_weight == 100.0  # :53 lambda


def _official_configs() -> dict:
    """The code's configs.py, executed (it is plain dict assignments); skip if absent."""
    if not OFFICIAL_REPO.exists() or shutil.which("git") is None:
        pytest.skip(f"official code not found at {OFFICIAL_REPO} (set WAE_TF_OFFICIAL_CODE)")
    source = subprocess.run(
        ["git", f"--git-dir={OFFICIAL_REPO}", "show", f"{OFFICIAL_COMMIT}:configs.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    namespace: dict = {}
    exec(compile(source, "configs.py", "exec"), namespace)  # noqa: S102 - the code's config
    return namespace


def test_presets_equal_the_official_configs_file_where_it_is_available():
    official = _official_configs()
    celeba, mnist = official["config_celebA"], official["config_mnist"]
    for model in ("wae_mmd", "wae_gan"):
        c = get_config("celeba", model, "official_code")
        assert (c.learning_rate, c.adversary_learning_rate) == (celeba["lr"], celeba["lr_adv"])
        assert (c.epochs, c.batch_size, c.penalty_weight) == (
            celeba["epoch_num"],
            celeba["batch_size"],
            celeba["lambda"],
        )
        assert (c.pz_scale, c.z_dim, c.pretrain_batch_size) == (
            celeba["pz_scale"],
            celeba["zdim"],
            celeba["e_pretrain_sample_size"],
        )
        assert (c.adversary_units, c.adversary_layers) == (
            celeba["d_num_filters"],
            celeba["d_num_layers"],
        )
        m = get_config("mnist", model)
        assert (m.penalty_weight, m.learning_rate, m.z_dim) == (
            mnist["lambda"],
            mnist["lr"],
            mnist["zdim"],
        )
        assert m.pretrain_batch_size == mnist["e_pretrain_sample_size"]
    assert get_config("mnist", "wae_gan").adversary_learning_rate == mnist["lr_adv"]
    assert get_config("mnist", "wae_gan").adversary_units == mnist["d_num_filters"]


def test_official_code_decay_matches_wae_py_epochs_0_1_49():
    # [code] wae.py:549-552: before epoch e's steps, decay /= exp(log(100) / epoch_num),
    # epoch 0 included, so epoch e (0-based) runs at lr * 100^(-(e + 1) / 50).
    steps = 7
    schedule = optimizers.EpochSchedule(5e-4, steps, kind="official_code", decay_epochs=50)
    for epoch in (0, 1, 49):
        expected = 5e-4 * 100.0 ** (-(epoch + 1) / 50)
        for step in (epoch * steps, epoch * steps + steps - 1):  # first and last step
            assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    # The code's own arithmetic for epoch 1, as a cross-check of the closed form.
    decay = 1.0
    for _ in range(2):
        decay = decay / np.exp(np.log(100.0) / 50)
    assert float(schedule(steps)) == pytest.approx(5e-4 * decay, rel=1e-5)
    # Past epoch_num (the code never gets there): held at lr / 100 (our choice, documented).
    assert float(schedule(50 * steps)) == pytest.approx(5e-6, rel=1e-5)
    assert float(schedule(80 * steps)) == pytest.approx(5e-6, rel=1e-5)


def test_official_code_preset_decays_both_optimizers_from_epoch_0():
    config = get_config("celeba", "wae_gan", "official_code")
    optimizer = optimizers.make_optimizer(config, steps_per_epoch=10)
    factor = 100.0 ** (-1 / 50)  # epoch 0 [code] wae.py:549-552
    for name, lr in ((optimizers.AUTOENCODER, 5e-4), (optimizers.ADVERSARY, 1e-3)):
        sub = optimizers.sub_optimizer(optimizer, name)
        assert int(sub.iterations.numpy()) == 0
        assert float(sub.learning_rate) == pytest.approx(lr * factor, rel=1e-5)


# ======================================================================================
# 4. The official code's CelebA split: Python 2's random.shuffle, seed 123
# ======================================================================================
def _reference_python2_shuffle(items, seed):
    """Python 2.7 Lib/random.py Random.shuffle, written out from scratch."""
    x = list(items)
    generator = random.Random(seed)  # int seeding = Python 2's init_by_array
    i = len(x) - 1
    while i >= 1:  # for i in reversed(xrange(1, len(x)))
        j = int(generator.random() * (i + 1))
        x[i], x[j] = x[j], x[i]
        i -= 1
    return x


def test_python2_shuffle_matches_python_2_7_on_small_lists():
    # Printed by CPython 2.7.18: random.seed(123); x = range(10); random.shuffle(x).
    assert data.python2_shuffle(range(10), 123) == [7, 1, 4, 2, 6, 5, 8, 3, 9, 0]
    # Python 3's random.shuffle gives another order, hence the explicit loop.
    python3 = list(range(10))
    random.Random(123).shuffle(python3)
    assert python3 != [7, 1, 4, 2, 6, 5, 8, 3, 9, 0]
    for n in (1, 2, 3, 40, 1000):
        names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
        assert data.python2_shuffle(names, 123) == _reference_python2_shuffle(names, 123)
    # CPython 2.7.18, same seeding, on the 40 names 000001-000040: the last four.
    names = [f"{i:06d}.jpg" for i in range(1, 41)]
    assert data.python2_shuffle(names, 123)[-4:] == [
        "000039.jpg",
        "000016.jpg",
        "000004.jpg",
        "000003.jpg",
    ]


# CPython 2.7.18 running datahandler.py:592-598 verbatim (paths = ['%.6d.jpg' % i for i in
# xrange(1, 202600)]; random.seed(123); random.shuffle(paths)). The official repository
# publishes no shuffled order (it only writes `shuffled_training_ids` into a run folder).
CODE_ORDER_FIRST = [
    "174314.jpg",
    "009461.jpg",
    "016555.jpg",
    "086072.jpg",
    "124490.jpg",
    "045579.jpg",
    "091797.jpg",
    "121806.jpg",
]
CODE_ORDER_LAST = ["082506.jpg", "017664.jpg", "010609.jpg"]
CODE_ORDER_SHA256 = "accb01d33ece6dabaa2e1da26bf4d2ab0e84810c42d53f07330eb8abd140a7f6"  # "\n".join
CODE_TEST_SET_SHA256 = "ae384523d4397cd34e2ebc7e881c657645e633d610786324035a62167d3b1fbc"  # sorted


def _sha256(names) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def test_official_celeba_order_is_the_codes_python_2_order():
    order = data.official_celeba_order()
    assert len(order) == 202_599 and len(set(order)) == 202_599
    assert list(order[:8]) == CODE_ORDER_FIRST and list(order[-3:]) == CODE_ORDER_LAST
    assert _sha256(order) == CODE_ORDER_SHA256
    assert _sha256(sorted(order[-20_000:])) == CODE_TEST_SET_SHA256
    # Independently: the from-scratch loop on the code's list.
    names = [f"{i:06d}.jpg" for i in range(1, 202_600)]
    assert list(order) == _reference_python2_shuffle(names, 123)


def _python2() -> str | None:
    """A working Python 2 interpreter ($WAE_TF_PYTHON2, python2.7, python2), or None."""
    for candidate in (os.environ.get("WAE_TF_PYTHON2"), "python2.7", "python2"):
        path = candidate and shutil.which(candidate)
        if not path:
            continue
        probe = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[0])"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == "2":
            return path
    return None


def test_official_celeba_order_against_a_live_python_2_where_available():
    python2 = _python2()
    if python2 is None:
        pytest.skip("no Python 2 interpreter (set WAE_TF_PYTHON2)")
    code = (
        "import random, hashlib\n"
        "paths = ['%.6d.jpg' % i for i in xrange(1, 202599 + 1)]\n"  # datahandler.py:595
        "random.seed(123)\n"
        "random.shuffle(paths)\n"
        "print(hashlib.sha256('\\n'.join(paths)).hexdigest())\n"
    )
    out = subprocess.run([python2, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _sha256(data.official_celeba_order()) == CODE_ORDER_SHA256


def test_full_celeba_gets_exactly_the_codes_split():
    # [code] datahandler.py:606-608: train = paths[:-20000], test = paths[-20000:].
    names = [f"{i:06d}.jpg" for i in range(1, 202_600)]
    rule, train, test = data.celeba_shuffle_split(names)
    order = data.official_celeba_order()
    assert rule == "official_code_shuffle"
    assert train == list(order[:-20_000]) and test == list(order[-20_000:])


def test_celeba_subset_gets_the_codes_split_restricted_to_it():
    names = [f"{i:06d}.jpg" for i in range(1, 10_001)]  # the shared 10k subset's names
    rule, train, test = data.celeba_shuffle_split(names)
    order = data.official_celeba_order()
    held_out = set(order[-20_000:])
    assert rule == "official_code_shuffle" and (len(train), len(test)) == (8_981, 1_019)
    assert set(test) <= held_out and not set(train) & held_out
    assert sorted(train + test) == names
    position = {name: i for i, name in enumerate(order)}
    assert test == sorted(test, key=position.__getitem__)  # the code's order, restricted
    assert train == sorted(train, key=position.__getitem__)


@pytest.mark.parametrize(
    "names",
    [
        [f"{i:06d}.jpg" for i in range(1, 41)],  # none of them held out by the code
        [f"face_{i}.png" for i in range(50)],  # not the code's file names
    ],
)
def test_celeba_split_falls_back_to_the_codes_shuffle_of_the_folder(names):
    rule, train, test = data.celeba_shuffle_split(names)
    shuffled = _reference_python2_shuffle(sorted(names), 123)
    cut = len(names) - len(names) // 10
    assert rule == "folder_shuffle_last_tenth"
    assert train == shuffled[:cut] and test == shuffled[cut:]
