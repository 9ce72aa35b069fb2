"""Step for step equal to the authors' own code (tolstikhin/wae @ 6351565).

One Python 2.7 process runs the official files, unmodified, in TF 1.15
(tools/official_driver_py2.py): its own graph (wae.WAE) at a reduced width, its own loops
(WAE.train, WAE.pretrain_encoder), its own configs.py values. It records each step's
batch, prior sample and input noise and every variable; our `official_code` preset at the
same widths starts from the code's initial variables and replays those draws
(tools/compare_official.py). Checked: per-step reconstruction, penalty, total loss and
adversary loss; every variable after the last step (batch-norm moving statistics
included); the encoder pretraining steps; the learning rate in every epoch of both
schedules. About 60 s on 2 cores.

Tolerances, and why:
- Losses: relative 2e-5. Both sides compute in float32, with different kernels (TF 1.15
  vs TF 2.x / Keras 3) that sum in different orders: rounding of ~1e-7 per operation.
  Seen: <= 5e-7. The MNIST WAE-GAN's penalty and loss also get the slack that its
  adversary's last bias explains (`_adversary_bias_allowance`): seen 1.5e-4 on the penalty
  after one step at width 8, within the 5e-4 allowed.
- Variables trained by Adam: per network (encoder, decoder, adversary), all its variables
  together, ||ours - code|| <= 10% of ||code after - code before||, i.e. of how far the
  steps moved them; and every entry within 2 lr per step of the code's. Adam divides each
  gradient entry by its own running RMS, so an entry whose gradient is of the order of
  rounding noise moves by about lr in a direction that rounding decides, and the two runs
  then drift apart a little. Seen: <= 2e-5 after 1 step; after 3, <= 1% (WAE-MMD) and up
  to 6% (WAE-GAN's decoder: its adversary starts at the optimum, loss ln 2, where the
  penalty's gradients are near rounding level). A wrong formula, step order, learning
  rate or missed step moves every entry by O(lr): a ratio of order 1.
- Biases right before a batch norm (conv/deconv biases, models.py:115-118, 229-233) have
  an exactly zero gradient (training-mode BN subtracts the batch mean), so both sides move
  them by rounding noise through Adam: only the 2 lr per step bound applies. Their BN
  layer's moving mean tracks the batch mean including that bias: |diff| <= (1 - decay) x
  (moving-average updates) x that bound. The moving variance, unaffected, is held to the
  10% rule per variable (seen: <= 1e-4) and pins the decay.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tools import compare_official, official_code, official_env
from wae_tf import configs, models, optimizers

STEPS = 3
LOSS_RTOL = 2e-5
VARIABLE_RATIO = 0.1
PRE_BN_BIAS = re.compile(r"(encoder/h\d+_conv|generator/h\d+_deconv)/b:0$")
PRE_BN_MOVING_MEAN = re.compile(r"(encoder|generator)/h\d+_bn/moving_mean:0$")
# (dataset, model, width, batch): the CelebA nets carry the log-prior trick (WAE-GAN).
TRAINING_RUNS = {
    "mnist_wae_mmd": ("mnist", "wae_mmd", 16, 100),
    "mnist_wae_gan": ("mnist", "wae_gan", 16, 100),
    "celeba_wae_gan": ("celeba", "wae_gan", 8, 50),
}
# Epochs of the schedule runs: past every boundary of 'manual' (30, 50, 100, wae.py:542-548)
# and the whole of 'manual_smooth' (epoch_num 50, wae.py:549-552).
SCHEDULE_RUNS = {"mnist": 101, "celeba": 50}


@pytest.fixture(scope="module")
def official_records(tmp_path_factory):
    """Every official run of this file, in one Python 2.7 process: {name: record}.

    conftest points WAE_TF_CACHE_DIR at a temporary folder; CI builds the environment and
    the files in the real cache and names them (.ci/run sets WAE_TF_OFFICIAL_ENV and
    WAE_TF_OFFICIAL_CODE). Without those variables, the default cache is read (only read).
    """
    real = official_env.default_cache_root()
    mp = pytest.MonkeyPatch()
    if not os.environ.get("WAE_TF_OFFICIAL_ENV"):
        mp.setenv("WAE_TF_OFFICIAL_ENV", str(real / "official_py27"))
    if not os.environ.get("WAE_TF_OFFICIAL_CODE"):
        mp.setenv("WAE_TF_OFFICIAL_CODE", str(real / f"official_code_{official_code.COMMIT[:7]}"))
    try:
        compare_official.locate_official()
    except compare_official.OfficialUnavailable as e:
        mp.undo()
        pytest.skip(f"official code not runnable here: {e}")
    workdir = tmp_path_factory.mktemp("official")
    jobs, names, inputs = [], [], {}
    for name, (dataset, model, width, batch) in TRAINING_RUNS.items():
        config = compare_official.reduced_config(dataset, model, width, batch)
        path = workdir / f"{name}.npy"
        np.save(path, compare_official.random_images(config, batch * STEPS, seed=1))
        jobs.append(compare_official.training_job(config, width, STEPS, path))
        names.append(name)
    config = compare_official.reduced_config("mnist", "wae_mmd", 16, 100)
    inputs["pretrain"] = compare_official.random_images(config, 100, seed=2)
    np.save(workdir / "pretrain.npy", inputs["pretrain"])
    jobs.append(compare_official.pretraining_job(config, 16, STEPS, workdir / "pretrain.npy"))
    names.append("pretrain")
    for dataset, epochs in SCHEDULE_RUNS.items():
        config = compare_official.reduced_config(dataset, "wae_mmd", 8, 2)
        path = workdir / f"schedule_{dataset}.npy"
        np.save(path, compare_official.random_images(config, 2, seed=3))
        job = compare_official.training_job(config, 8, 1, path)
        job["opts"]["epoch_num"] = epochs  # one step per epoch: 2 images, batch 2
        jobs.append(job)
        names.append(f"schedule_{dataset}")
    try:
        records = compare_official.run_official(jobs, workdir)
    finally:
        mp.undo()
    return dict(zip(names, records, strict=True)), inputs


def _adversary_bias_allowance(config, term: str, step: int) -> float:
    """The absolute slack of `term` at `step` that the WAE-GAN's adversary bias explains.

    Without the log-prior trick the adversary starts at D = 1/2 on every code (its weights
    have std 0.01), so the gradient of its loss w.r.t. its last bias, lambda (mean
    sigmoid(l_p) - 1 + mean sigmoid(l_q)), vanishes up to rounding: Adam moves that bias by
    about lr_adv per step in a direction rounding decides, independently on each side, so
    the two biases may differ by 2 lr_adv per step. -log D(z~) moves by (1 - D) = 1/2 of a
    bias shift: the penalty may differ by lr_adv per step taken, the loss by lambda times
    that. (The adversary's own loss is insensitive to first order: the shift raises one of
    its two terms and lowers the other.) With the trick the logits are far from 0.
    """
    if config.penalty != "gan" or config.log_prior_trick or term not in ("penalty", "loss"):
        return 0.0
    allowance = config.adversary_learning_rate * step
    return allowance if term == "penalty" else config.penalty_weight * allowance


def _check_variables(comparison, config, steps: int, bn_updates: int) -> None:
    """The tolerances of the module docstring, on every variable after the last step."""
    lr = max(config.learning_rate, config.adversary_learning_rate)
    adam_bound = 2.0 * lr * steps
    assert comparison.variables, "no variables compared"
    moved, differ = {}, {}
    for name, (code, ours) in comparison.variables.items():
        assert code.shape == ours.shape, name
        difference = np.abs(ours - code)
        initial = comparison.initial[name]
        if PRE_BN_MOVING_MEAN.search(name):
            bound = (1 - config.bn_momentum) * bn_updates * adam_bound
            assert difference.max() <= bound, (name, difference.max(), bound)
        elif name.endswith("moving_variance:0"):
            allowed = VARIABLE_RATIO * np.linalg.norm(code - initial) + 1e-7
            assert np.linalg.norm(ours - code) <= allowed, (name, np.linalg.norm(ours - code))
        else:  # trained by Adam
            assert difference.max() <= adam_bound, (name, difference.max(), adam_bound)
            if not PRE_BN_BIAS.search(name):
                network = name.split("/")[0]
                moved[network] = moved.get(network, 0.0) + np.sum((code - initial) ** 2)
                differ[network] = differ.get(network, 0.0) + np.sum((ours - code) ** 2)
    for network in moved:
        ratio = np.sqrt(differ[network] / moved[network])
        assert ratio <= VARIABLE_RATIO, (network, ratio)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAINING_RUNS))
def test_training_steps_equal_the_official_code(official_records, name):
    records, _ = official_records
    record = records[name]
    dataset, model, width, batch = TRAINING_RUNS[name]
    config = compare_official.reduced_config(dataset, model, width, batch)
    comparison = compare_official.replay_training(config, record)
    assert comparison.official_parameters == comparison.our_parameters
    # Every official variable of the encoder, decoder (and adversary) has its counterpart.
    official_names = [
        k for k in record if k.startswith("var/init/") and k.count("/") == 4 and "Adam" not in k
    ]
    assert comparison.mapped == len(official_names)
    assert len(comparison.official) == STEPS
    for step, (code, ours) in enumerate(zip(comparison.official, comparison.ours, strict=True)):
        assert set(code) <= set(ours)
        for term, value in code.items():
            extra = _adversary_bias_allowance(config, term, step)
            assert ours[term] == pytest.approx(value, rel=LOSS_RTOL, abs=extra), (step, term)
    # The GAN's encoder BN statistics move twice a step: AE step and adversary step.
    _check_variables(comparison, config, STEPS, STEPS * (2 if model == "wae_gan" else 1))


@pytest.mark.slow
def test_encoder_pretraining_steps_equal_the_official_code(official_records):
    records, inputs = official_records
    record = records["pretrain"]
    config = compare_official.reduced_config("mnist", "wae_mmd", 16, 100)
    comparison = compare_official.replay_pretraining(config, record, inputs["pretrain"])
    # The code's stop rule (loss < 0.1, wae.py:451) and ours end at the same step.
    assert len(comparison.ours) == len(comparison.official) >= 1
    for code, ours in zip(comparison.official, comparison.ours, strict=True):
        assert ours["loss"] == pytest.approx(code["loss"], rel=LOSS_RTOL)
    _check_variables(comparison, config, len(comparison.ours), len(comparison.ours))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(SCHEDULE_RUNS))
@pytest.mark.parametrize("model", ["wae_mmd", "wae_gan"])
def test_learning_rate_in_every_epoch_equals_the_official_code(official_records, dataset, model):
    """lr x the decay the code feeds (wae.py:392, 398 optimizer(lr, lr_decay)) in each epoch
    equals our schedule's learning rate for both optimizers, across the boundaries."""
    records, _ = official_records
    decays = compare_official.schedule_decays(records[f"schedule_{dataset}"])
    assert len(decays) == SCHEDULE_RUNS[dataset]
    config = configs.get_config(dataset, model, "official_code")
    names = [optimizers.AUTOENCODER] + ([optimizers.ADVERSARY] if model == "wae_gan" else [])
    for name in names:
        lr = (
            config.learning_rate
            if name == optimizers.AUTOENCODER
            else config.adversary_learning_rate
        )
        ours = compare_official.our_learning_rates(config, len(decays), name)
        np.testing.assert_allclose(ours, [lr * d for d in decays], rtol=1e-5)
    if dataset == "mnist":  # the boundaries of 'manual' are in the range
        assert decays[29] == 1.0 and decays[30] == 0.5 and decays[50] == 0.1
        assert decays[100] == pytest.approx(0.01)


# --- config.adversary_fresh_input_noise (fast) -----------------------------------------
@pytest.mark.parametrize("fresh", [False, True])
def test_adversary_step_draws_fresh_input_noise_only_when_asked(fresh):
    """WAE-GAN: with the flag, the adversary step encodes the batch with a second draw of
    input noise, as the code's second sess.run does (wae.py:605-611); without it, the
    AE step's noisy batch is reused. Counted on the model's SeedGenerator (one increment
    per draw): prior + noise (+ fresh noise) per step."""
    config = configs.with_width(configs.get_config("mnist", "wae_gan"), 4).replace(
        adversary_fresh_input_noise=fresh, batch_size=8
    )
    model = models.build_model(config)
    model.compile(optimizer=None, steps_per_epoch=1)
    images = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    before = np.asarray(model.seed_generator.state.value).copy()
    model.train_step(images)
    after = np.asarray(model.seed_generator.state.value)
    assert int(after[1] - before[1]) == (3 if fresh else 2)


_JAX_FRESH_NOISE_SCRIPT = """
import numpy as np
from wae_tf import configs, models
config = configs.with_width(configs.get_config("mnist", "wae_gan"), 4).replace(
    adversary_fresh_input_noise=True, batch_size=8
)
model = models.build_model(config)
model.compile(steps_per_epoch=1)
images = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
model.fit(images, batch_size=8, epochs=1, verbose=0)
print(int(np.asarray(model.seed_generator.state.value)[1]))
"""


@pytest.mark.slow
def test_jax_adversary_step_draws_fresh_input_noise_when_asked():
    """The same on JAX (`jax_steps.wae_train_step`): 3 draws in the step with the flag
    (without it, 2: tests/test_jax_backend.py pins that)."""
    pytest.importorskip("jax")
    from conftest import run_python

    result = run_python("-c", _JAX_FRESH_NOISE_SCRIPT, KERAS_BACKEND="jax", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "3"
