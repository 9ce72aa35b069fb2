"""tf.distribute: a MirroredStrategy step equals a single-device step on the global batch.

The proof runs in a subprocess (this file's `__main__`): the CPU must be split into two
logical devices before TensorFlow initialises, which the pytest process has long done.
The subprocess runs every scenario once and writes its numbers to a JSON file; the
tests below assert on them. Runtime: about 2 min wall (50 s CPU) on 2 shared CPU cores.

Why SGD in the equality test: the first Adam step is lr * g / (|g| + eps), blind to the
scale of the gradient, so a wrong replica normalisation (e.g. a gradient summed twice)
would not show in Adam's updated weights. With SGD the update is lr * g: the weight
change *is* the gradient, and comparing it compares the gradients. The paper's Adam runs
in the checkpoint/resume scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python
from helpers import tiny_mnist_run_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("wae_mmd", "wae_gan", "vae")
GLOBAL_BATCH = 8  # 4 images per replica
SGD_LEARNING_RATE = 0.1  # large enough that weight changes are far above float32 noise

# Tolerance of the equality test, on the weight changes dw = -lr * g of one step. The
# two runs add the same float32 numbers in a different order: per-replica partial sums
# then an all-reduce (gradients, synchronised BN moments, gathered codes) against one
# sum on one device. A float32 sum of n terms is exact to about sqrt(n) * 6e-8 of the
# sum of the terms' magnitudes; with n up to ~1e4 (pixels x images) that is ~1e-5, so
# each dw agrees to TOLERANCE x max|dw| of its own variable. Gradients that are zero in
# exact arithmetic (conv biases followed by BN) are pure rounding noise of the layer's
# gradient sums, measured at up to 4e-5 x the model's largest |dw|; they get
# TOLERANCE x max|dw| of the whole model. Measured worst cases: 4e-6 (own variable),
# 4e-5 (model scale). Each bug this test guards against moves some dw by far more,
# measured by breaking each on purpose (worst dw error / max|dw|, per kind):
#   prior draws and noise repeated on every replica   0.77 (mmd) 0.08 (gan) 0.43 (vae)
#   BN statistics per replica (sync_batch_norm off)   0.70       0.44       0.11
#   loss not divided by the number of replicas        1.0        0.70       1.0
#   MMD on each replica's own codes (no all_gather)   0.62       -          -
# (the WAE-GAN's losses are batch means of per-code terms, so gathering its codes does
# not change them; the VAE gathers nothing).
TOLERANCE = 3e-4


# ---------------------------------------------------------------------------------------
# The subprocess: two logical CPUs, every scenario once, numbers to a JSON file.
# ---------------------------------------------------------------------------------------


def _tiny_config(kind: str):
    from wae_tf import configs

    # sync_batch_norm: BN statistics over the global batch, as on one device. Input
    # noise stays on (the default 0.01): each replica must take its rows of one draw.
    config = configs.with_width(configs.get_config("mnist", kind), 4).replace(
        lr_schedule="constant", sync_batch_norm=True
    )
    if kind == "wae_gan":
        # The paper's init (std 0.01) makes a tiny adversary's logits ~1e-8: its
        # gradients would vanish and the comparison would not see the GAN terms.
        config = config.replace(init_stddev=0.3)
    return config


def _sgd(config):
    import keras

    from wae_tf import optimizers

    autoencoder = keras.optimizers.SGD(SGD_LEARNING_RATE, name=optimizers.AUTOENCODER)
    if config.penalty != "gan":
        return autoencoder
    adversary = keras.optimizers.SGD(SGD_LEARNING_RATE, name=optimizers.ADVERSARY)
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(autoencoder, {optimizers.ADVERSARY_PATHS: adversary})
    )


def _weights(model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.weights]


def _one_sgd_step(kind: str, images, strategy) -> dict:
    from wae_tf import distribute, models

    config = _tiny_config(kind)
    with distribute.scope(strategy):
        model = models.build_model(config)
        model.compile(optimizer=_sgd(config))
    before = _weights(model)
    history = model.fit(images, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    after = _weights(model)
    return {
        "paths": [v.path.split("/", 1)[-1] for v in model.weights],
        "before": before,
        "after": after,
        "logs": {k: float(v[-1]) for k, v in history.history.items()},
    }


def _equality_scenario(images, strategy) -> dict:
    results = {}
    for kind in KINDS:
        single = _one_sgd_step(kind, images, None)
        mirrored = _one_sgd_step(kind, images, strategy)
        assert single["paths"] == mirrored["paths"], (single["paths"], mirrored["paths"])
        variables = []
        for path, b_s, a_s, b_m, a_m in zip(
            single["paths"],
            single["before"],
            single["after"],
            mirrored["before"],
            mirrored["after"],
            strict=True,
        ):
            delta_s, delta_m = a_s - b_s, a_m - b_m
            variables.append(
                {
                    "path": path,
                    "initial_max_difference": float(np.max(np.abs(b_s - b_m))),
                    "max_change": float(np.max(np.abs(delta_s))),
                    "max_difference": float(np.max(np.abs(delta_m - delta_s))),
                }
            )
        results[kind] = {
            "variables": variables,
            "logs_single": single["logs"],
            "logs_mirrored": mirrored["logs"],
        }
    return results


def _prior_scenario(strategy) -> dict:
    """What each replica draws from sample_prior(4), against one device's sample_prior(8)."""
    import tensorflow as tf

    from wae_tf import distribute, models

    config = _tiny_config("wae_mmd")
    single = models.build_model(config).sample_prior(GLOBAL_BATCH)
    with distribute.scope(strategy):
        model = models.build_model(config)
    per_replica = strategy.run(tf.function(lambda: model.sample_prior(GLOBAL_BATCH // 2)))
    local = [np.array(t) for t in strategy.experimental_local_results(per_replica)]
    return {"single": np.array(single).tolist(), "replicas": [t.tolist() for t in local]}


def _state(model) -> list[np.ndarray]:
    """Every model and optimizer variable, the seed generator's RNG state included."""
    return [np.array(v.numpy()) for v in model.variables + model.optimizer.variables]


def _max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _resume_scenario(images, strategy, workdir: Path) -> dict:
    """Adam (the paper's optimizer) under the strategy: 2 steps straight, or 1 step,
    a checkpoint of the training CLI (wae_tf.checkpoints), a fresh model restored from it
    in the strategy's scope, then 1 more step. Also a `.keras` round trip in the scope."""
    import keras

    from wae_tf import checkpoints, distribute, models

    config = _tiny_config("wae_gan")

    def fresh_model():
        with distribute.scope(strategy):
            model = models.build_model(config)
            model.compile()
        return model

    straight = fresh_model()
    straight.fit(images, batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0)

    first = fresh_model()
    first.fit(images, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    checkpoints.save(first, workdir / "epoch_0001.npz", {"epoch": 1})
    resumed = fresh_model()
    checkpoints.restore(resumed, workdir / "epoch_0001.npz")
    restored_exactly = _max_difference(_state(first), _state(resumed)) == 0.0
    resumed.fit(images, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)

    first.save(workdir / "first.keras")
    with distribute.scope(strategy):
        loaded = keras.saving.load_model(workdir / "first.keras")
    return {
        "restored_exactly": restored_exactly,
        "max_state_difference": _max_difference(_state(straight), _state(resumed)),
        "iterations": [
            int(straight.optimizer.iterations.numpy()),
            int(resumed.optimizer.iterations.numpy()),
        ],
        "keras_file_weight_difference": _max_difference(_weights(first), _weights(loaded)),
        "keras_file_replicas": int(loaded.distribute_strategy.num_replicas_in_sync),
    }


def _main(images_path: str, out_path: str) -> None:
    from wae_tf import distribute

    distribute.split_cpu(2)  # before anything touches TensorFlow's devices
    strategy = distribute.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    images = np.load(images_path)
    results = {
        "replicas": strategy.num_replicas_in_sync,
        "equality": _equality_scenario(images, strategy),
        "prior": _prior_scenario(strategy),
        "resume": _resume_scenario(images, strategy, Path(out_path).parent),
    }
    Path(out_path).write_text(json.dumps(results))


# ---------------------------------------------------------------------------------------
# The tests.
# ---------------------------------------------------------------------------------------


# A ~45 s subprocess on 2 cores: every test that uses it is marked slow.
@pytest.fixture(scope="module")
def mirrored_results(tmp_path_factory, mnist_images) -> dict:
    workdir = tmp_path_factory.mktemp("mirrored")
    images_path, out_path = workdir / "images.npy", workdir / "results.json"
    np.save(images_path, mnist_images[:GLOBAL_BATCH])
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run(
        [sys.executable, __file__, str(images_path), str(out_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"subprocess failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    return json.loads(out_path.read_text())


@pytest.mark.slow
def test_subprocess_trains_on_two_cpu_replicas(mirrored_results):
    assert mirrored_results["replicas"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_mirrored_step_equals_single_device_step(mirrored_results, kind):
    result = mirrored_results["equality"][kind]
    scale = max(v["max_change"] for v in result["variables"])
    assert scale > 1e-4, "the step changed nothing: the comparison would be vacuous"
    for variable in result["variables"]:
        assert variable["initial_max_difference"] == 0.0, variable["path"]
        bound = TOLERANCE * max(variable["max_change"], scale)
        assert variable["max_difference"] <= bound, (variable, bound)
    # The reported losses (metric trackers aggregated over replicas) agree too.
    for name, value in result["logs_single"].items():
        np.testing.assert_allclose(result["logs_mirrored"][name], value, rtol=1e-5, err_msg=name)


@pytest.mark.slow
def test_bn_moving_statistics_and_adversary_take_part_in_the_comparison(mirrored_results):
    paths = [v["path"] for v in mirrored_results["equality"]["wae_gan"]["variables"]]
    assert any("moving_mean" in p for p in paths)
    assert any(p.startswith("adversary/") or "/fc1/" in p or "fc1" in p for p in paths)
    changed = [
        v["path"]
        for v in mirrored_results["equality"]["wae_gan"]["variables"]
        if v["max_change"] > 0
    ]
    assert any("moving_variance" in p for p in changed)


@pytest.mark.slow
def test_replicas_take_their_rows_of_one_global_prior_draw(mirrored_results):
    prior = mirrored_results["prior"]
    replicas = [np.array(r) for r in prior["replicas"]]
    assert not np.allclose(replicas[0], replicas[1]), "replicas repeat the same prior draws"
    np.testing.assert_array_equal(np.concatenate(replicas), np.array(prior["single"]))


@pytest.mark.slow
def test_checkpoint_resume_under_mirrored_equals_uninterrupted_training(mirrored_results):
    resume = mirrored_results["resume"]
    assert resume["restored_exactly"]
    assert resume["iterations"] == [2, 2]
    # The same ops on the same devices in the same order, the same RNG stream: the
    # resumed run's weights, BN statistics, Adam moments and seed state are identical.
    assert resume["max_state_difference"] == 0.0


@pytest.mark.slow
def test_keras_file_saved_under_mirrored_loads_in_the_strategy_scope(mirrored_results):
    resume = mirrored_results["resume"]
    assert resume["keras_file_replicas"] == 2
    assert resume["keras_file_weight_difference"] == 0.0


# --- make_strategy and friends, in-process (no device split needed) -----------------------


def test_make_strategy_none_is_none_and_scope_is_a_no_op():
    from wae_tf import distribute

    assert distribute.make_strategy("none") is None
    with distribute.scope(None):
        pass
    assert distribute.num_replicas(None) == 1


def test_make_strategy_rejects_unknown_names_and_bad_gpu_counts():
    import tensorflow as tf

    from wae_tf import distribute

    with pytest.raises(ValueError, match="unknown distribution 'tpu'"):
        distribute.make_strategy("tpu")
    with pytest.raises(ValueError, match="num_gpus must be >= 0"):
        distribute.make_strategy("mirrored", -1)
    visible = len(tf.config.list_logical_devices("GPU"))
    with pytest.raises(ValueError, match=f"asked for {visible + 1} GPU"):
        distribute.make_strategy("mirrored", visible + 1)


def test_too_many_gpus_suggests_a_num_gpus_the_cli_accepts():
    """The refusal's suggested --num_gpus=N parses, and trains on what it promises."""
    import re

    import tensorflow as tf
    from absl import flags

    from wae_tf import distribute, train

    visible = len(tf.config.list_logical_devices("GPU"))
    with pytest.raises(ValueError) as refusal:
        distribute.make_strategy("mirrored", visible + 1)
    suggested = re.search(r"--num_gpus=(\d+)", str(refusal.value))
    assert suggested, str(refusal.value)
    values = flags.FlagValues()
    train.define_flags(values)
    command = ["wae_tf.train", "--dataset=mnist", "--model=vae", "--workdir=W"]
    values([*command, "--distribution=mirrored", suggested[0]])
    assert values.num_gpus == int(suggested[1]) == visible
    strategy = distribute.make_strategy("mirrored", values.num_gpus)
    assert strategy.num_replicas_in_sync >= 1


@pytest.mark.slow
def test_cli_distribution_on_the_jax_backend_is_refused_in_one_line(tmp_path):
    """It used to train on JAX as if --distribution were not there, and record it."""
    pytest.importorskip("jax")
    flags = ["--dataset=mnist", "--model=vae", f"--workdir={tmp_path / 'run'}"]
    result = run_python(
        "-m", "wae_tf.train", *flags, "--distribution=mirrored", KERAS_BACKEND="jax"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "wae_tf.train: error: --distribution=mirrored: tf.distribute needs the TensorFlow "
        "backend (this is KERAS_BACKEND=jax); rerun without KERAS_BACKEND=jax, or without "
        "--distribution"
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_mirrored_without_gpus_falls_back_to_the_cpu():
    import tensorflow as tf

    from wae_tf import distribute

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this machine has GPUs")
    strategy = distribute.make_strategy("mirrored", num_gpus=None)
    assert strategy.num_replicas_in_sync == len(tf.config.list_logical_devices("CPU"))
    assert distribute.is_chief(strategy)


def test_check_global_batch_refuses_uneven_splits():
    from wae_tf import distribute

    class _TwoReplicas:
        num_replicas_in_sync = 2

    assert distribute.check_global_batch(100, _TwoReplicas()) == 50
    with pytest.raises(ValueError, match="does not split evenly over 2 replicas"):
        distribute.check_global_batch(7, _TwoReplicas())


# ---------------------------------------------------------------------------------------
# The training CLI under --distribution=mirrored (two logical CPU devices).
# ---------------------------------------------------------------------------------------
_CLI_ON_TWO_CPUS = """
import sys
from wae_tf import distribute, train
distribute.split_cpu(2)  # mirrored without GPUs uses every CPU device: two replicas
sys.argv = ["wae_tf.train", *sys.argv[1:]]
train.run()
"""


def _train_cli(*args: str, two_cpus: bool) -> subprocess.CompletedProcess:
    command = ["-c", _CLI_ON_TWO_CPUS] if two_cpus else ["-m", "wae_tf.train"]
    return run_python(*command, *args)


@pytest.mark.slow
def test_cli_trains_under_mirrored_with_synchronised_bn_and_resumes_on_one_device(
    mnist_dir, tmp_path
):
    import csv

    workdir = tmp_path / "run"
    common = tiny_mnist_run_flags(mnist_dir, workdir)
    first = _train_cli(*common, "--epochs=1", "--distribution=mirrored", two_cpus=True)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "2 replicas" in first.stderr  # the strategy really had two
    record = json.loads((workdir / "config.json").read_text())
    assert record["config"]["sync_batch_norm"] is True  # BN over the global batch
    # The mirrored checkpoint resumes on one device (no BN sync there): epoch 2 only.
    second = _train_cli(*common, "--epochs=2", two_cpus=False)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "resuming from" in second.stderr
    with open(workdir / "history.csv", newline="") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f)]
    assert [int(e) for e in epochs] == [1, 2]


@pytest.mark.slow
def test_cli_trains_several_epochs_under_mirrored_on_a_single_device(mnist_dir, tmp_path):
    """One replica (this CPU, not split): a second validated epoch used to end in a
    StopIteration traceback, in Keras's peek at the cached, exhausted validation iterator
    (keras/src/backend/tensorflow/trainer.py, `evaluate` -> `_maybe_symbolic_build`)."""
    import csv

    workdir = tmp_path / "run"
    common = tiny_mnist_run_flags(mnist_dir, workdir, model="vae")
    result = _train_cli(*common, "--epochs=2", "--distribution=mirrored", two_cpus=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "1 replica" in result.stderr
    assert "Traceback" not in result.stderr
    with open(workdir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert all(row["val_loss"] for row in rows)  # both epochs were validated


if __name__ == "__main__":
    _main(*sys.argv[1:])
