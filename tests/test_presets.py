"""Presets and heuristics pinned to their sources.

[code] = github.com/tolstikhin/wae at commit 6351565 (file:line); [paper] = Tolstikhin et
al., ICLR 2018, App. C. Covers: every field of every preset against tests/preset_table.py
(and README's tables generated from it), the learning rates of the real optimizers at the
schedule's boundaries, encoder pretraining (lr, input noise; TensorFlow and JAX), the
presets against the code's own configs.py, and the code's CelebA train/test split (its
Python 2 shuffle). tests/test_preset_mutations.py checks that these checks catch changes.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import preset_checks
import preset_table
import pytest
from conftest import REPO_ROOT, run_python

from wae_tf import data, pretraining
from wae_tf.configs import get_config, with_width
from wae_tf.models import build_model

OFFICIAL_REPO = Path(
    os.environ.get("WAE_TF_OFFICIAL_CODE", "/work/.mirror/tolstikhin+wae/repo/.git")
)
OFFICIAL_COMMIT = "6351565"


# ======================================================================================
# 1. Every preset = tests/preset_table.py, field by field; the real optimizers' lrs
# ======================================================================================
@pytest.mark.parametrize("preset", preset_table.PRESETS, ids="-".join)
def test_preset_equals_the_table_field_by_field(preset):
    # A Config field without a row fails here too: a new field cannot go unpinned.
    assert preset_checks.table_mismatches(preset) == []


@pytest.mark.parametrize("preset", preset_table.PRESETS, ids="-".join)
def test_real_optimizers_follow_the_codes_schedule_around_every_boundary(preset):
    # The compiled model's own Adam(s), read at the first and last step of epochs 29/30/31,
    # 49/50/51, 99/100/101 ([code] wae.py:542-548: /2 from 0-based epoch 30, /5 more from
    # 50, /10 more from 100) or 0/1/24/48/49 and past the end ([code] wae.py:549-552).
    assert preset_checks.learning_rate_mismatches(preset) == []


def test_every_table_row_names_real_presets_and_a_tagged_source():
    # A row for a misspelt preset would pin nothing; an untagged source explains nothing.
    for row in preset_table.ROWS:
        assert row.presets and set(row.presets) <= set(preset_table.ALL), row
        assert row.source.split()[0] in preset_table.TAGS, row


@pytest.mark.parametrize("preset", preset_table.NO_PRESET, ids="-".join)
def test_the_official_code_variant_has_no_vae(preset):
    with pytest.raises(ValueError, match="official_code variant exists for wae_mmd and wae_gan"):
        get_config(*preset)


def test_readme_preset_section_is_the_tables_output():
    # README's preset tables are generated: `python tests/preset_table.py` prints them.
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert preset_table.markdown() in readme, "README: paste `python tests/preset_table.py`"


# ======================================================================================
# 2. Encoder pretraining: the autoencoder's lr, input noise on
# ======================================================================================
@pytest.mark.parametrize(("dataset", "model", "variant"), preset_table.WAES)
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
    config = with_width(get_config("mnist", "wae_mmd"), 4).replace(seed=2, **overrides)
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    config = configs.with_width(configs.get_config("mnist", "wae_mmd"), 4).replace(seed=2, **overrides)
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


@pytest.mark.slow
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
# 3. The presets against the code's own configs.py, where a copy of the code is found
# ======================================================================================
def _official_configs() -> dict:
    """The code's configs.py at 6351565, executed (plain dict assignments), from
    $WAE_TF_OFFICIAL_CODE: a checkout folder or a git directory; skip if neither is found."""
    configs_py = OFFICIAL_REPO / "configs.py"
    if configs_py.is_file():
        source = configs_py.read_text()
    elif OFFICIAL_REPO.exists() and shutil.which("git") is not None:
        source = subprocess.run(
            ["git", f"--git-dir={OFFICIAL_REPO}", "show", f"{OFFICIAL_COMMIT}:configs.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    else:
        pytest.skip(f"official code not found at {OFFICIAL_REPO} (set WAE_TF_OFFICIAL_CODE)")
    namespace: dict = {}
    exec(compile(source, "configs.py", "exec"), namespace)  # noqa: S102 - the code's config
    return namespace


def _as_the_code_writes_it(c) -> dict:
    """Our preset in the code's configs.py keys (config_mnist / config_celebA)."""
    values = {
        "input_normalize_sym": c.pixel_range == "symmetric",
        "adam_beta1": c.adam_beta1,
        "lr": c.learning_rate,
        "lr_schedule": {"paper": "manual", "official_code": "manual_smooth"}[c.lr_schedule],
        "batch_size": c.batch_size,
        "epoch_num": c.epochs,
        "init_std": c.init_stddev,
        "batch_norm": c.batch_norm,
        "batch_norm_eps": c.bn_epsilon,
        "batch_norm_decay": c.bn_momentum,
        "conv_filters_dim": c.kernel_size,
        "e_pretrain": c.pretrain_encoder,
        "e_pretrain_sample_size": c.pretrain_batch_size,
        "e_noise": "add_noise" if c.input_noise_stddev == 0.01 else c.input_noise_stddev,
        "e_num_filters": c.encoder_filters[-1],  # the last block's; halved per block before
        "e_num_layers": len(c.encoder_filters),
        "g_num_filters": c.decoder_dense_filters,
        "g_num_layers": len(c.decoder_filters) + 1,  # dcgan_mod: + the stride-1 output layer
        "zdim": c.z_dim,
        "cost": "l2sq" if c.reconstruction_scale == 0.05 else c.reconstruction_scale,
        "pz_scale": c.pz_scale,
        "mmd_kernel": c.mmd_kernel.upper(),
        "lambda": c.penalty_weight,
    }
    if c.model == "wae_gan":  # the adversary's settings, used by WAE-GAN only
        values |= {
            "lr_adv": c.adversary_learning_rate,
            "gan_p_trick": c.log_prior_trick,
            "d_num_filters": c.adversary_units,
            "d_num_layers": c.adversary_layers,
        }
    return values


@pytest.mark.parametrize(
    ("dataset", "model", "variant"),
    preset_table.CODE_PRESETS + (preset_table.M_MMD, preset_table.M_GAN),
)
def test_presets_equal_the_official_configs_file_where_it_is_available(dataset, model, variant):
    # The official_code presets are configs.py's config_mnist / config_celebA; MNIST's
    # paper presets equal config_mnist too (App. C.1 and the code agree).
    official = _official_configs()
    code = official["config_celebA" if dataset == "celeba" else "config_mnist"]
    ours = _as_the_code_writes_it(get_config(dataset, model, variant))
    assert ours == {key: code[key] for key in ours}
    if variant == "official_code" and ours["lr_schedule"] == "manual_smooth":
        assert get_config(dataset, model, variant).lr_decay_epochs == code["epoch_num"]


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


def _python2_candidates() -> list[tuple[str, dict]]:
    """(interpreter, extra environment) pairs that may run Python 2.7: $WAE_TF_PYTHON2,
    python2.7 / python2 on PATH, every pyenv 2.x version's own binary, and pyenv's shims
    with PYENV_VERSION set (a shim alone fails unless a 2.x version is selected)."""
    candidates = [(os.environ.get("WAE_TF_PYTHON2", ""), {})]
    candidates += [(shutil.which(name) or "", {}) for name in ("python2.7", "python2")]
    pyenv_root = os.environ.get("PYENV_ROOT")
    if not pyenv_root and shutil.which("pyenv"):
        probe = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        pyenv_root = probe.stdout.strip() if probe.returncode == 0 else None
    pyenv_root = pyenv_root or os.path.expanduser("~/.pyenv")
    for version_dir in sorted(glob.glob(os.path.join(pyenv_root, "versions", "2.*")), reverse=True):
        version = os.path.basename(version_dir)
        candidates.append((os.path.join(version_dir, "bin", "python2.7"), {}))
        for shim in ("python2.7", "python2"):
            path = shutil.which(shim) or os.path.join(pyenv_root, "shims", shim)
            candidates.append((path, {"PYENV_VERSION": version}))
    return [(path, env) for path, env in candidates if path and os.access(path, os.X_OK)]


def _python2() -> tuple[str, dict] | None:
    """A working Python 2.7 interpreter and the environment it needs, or None."""
    for path, extra in _python2_candidates():
        probe = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
            capture_output=True,
            text=True,
            env={**os.environ, **extra},
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return path, extra
    return None


def test_official_celeba_order_against_a_live_python_2_where_available():
    found = _python2()
    if found is None:
        pytest.skip(
            "no Python 2.7 interpreter: none in $WAE_TF_PYTHON2, python2.7 / python2 on PATH, "
            "or a pyenv 2.x version"
        )
    python2, extra = found
    code = (
        "import random, hashlib\n"
        "paths = ['%.6d.jpg' % i for i in xrange(1, 202599 + 1)]\n"  # datahandler.py:595
        "random.seed(123)\n"
        "random.shuffle(paths)\n"
        "print(hashlib.sha256('\\n'.join(paths)).hexdigest())\n"
    )
    out = subprocess.run(
        [python2, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **extra},
    )
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
