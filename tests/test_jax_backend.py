"""The JAX backend: one-step parity with TensorFlow, training, reproducibility, checkpoints.

Keras fixes its backend when it is first imported, so every JAX (and TensorFlow) part
runs in a subprocess started with KERAS_BACKEND set: this file doubles as the worker
script (`python tests/test_jax_backend.py ROLE DIR`). The workers write arrays to DIR
and the tests compare them with NumPy. Three module-scoped runs are shared by all
tests: TensorFlow one step (skipped without TensorFlow), JAX one step + training (with
TensorFlow made unimportable, as on the GPU host), and TensorFlow loading the JAX
checkpoints. About 60-80 s on 2 busy CPU cores.

Skipped when JAX is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python
from helpers import tiny_mnist_run_flags

KINDS = ("wae_mmd", "wae_gan", "vae")
CHECKPOINT_KINDS = ("wae_gan", "vae")  # MultiOptimizer and plain Adam
BATCH = 16
WIDTH = 4
# Faster XLA compiles on CPU (the nets are tiny; compile time dominates these tests).
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


HAVE_TENSORFLOW = _installed("tensorflow")
if not _installed("jax") and __name__ != "__main__":
    pytest.skip("JAX is not installed (pip install jax)", allow_module_level=True)

# Every test but one reads the JAX and TensorFlow workers' subprocess runs (~1 min).
pytestmark = pytest.mark.slow


# ==========================================================================================
# Worker side: runs in a subprocess with KERAS_BACKEND set.
# ==========================================================================================
def _parity_inputs():
    """Identical data, prior draws and VAE epsilons on both backends."""
    rng = np.random.default_rng(1)
    images = rng.random((BATCH, 28, 28, 1)).astype("float32")
    pz = rng.normal(size=(BATCH, 8)).astype("float32")
    eps = rng.normal(size=(BATCH, 8)).astype("float32")
    return images, pz, eps


def _stroke_images(count: int = 160) -> np.ndarray:
    """Synthetic MNIST-like images in [0, 1]: one bright bar each (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    images = np.zeros((count, 28, 28, 1), "float32")
    for image in images:
        r, c = rng.integers(4, 24, size=2)
        image[r - 3 : r + 3, max(c - 8, 0) : c + 8, 0] = 1.0
    return images


def _parity_config(kind: str):
    from wae_tf import configs

    # No input noise and a constant learning rate: the step is deterministic given pz.
    return configs.with_width(configs.get_config("mnist", kind), WIDTH).replace(
        input_noise_stddev=0.0, lr_schedule="constant"
    )


def _outputs(model, images: np.ndarray) -> np.ndarray:
    """Reconstructions in inference mode, called eagerly (cheaper than compiling predict)."""
    return np.asarray(model(images, training=False))


def _save_arrays(path: Path, **arrays) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


def _one_step(out: Path, backend: str) -> None:
    """One train step per model kind from shared initial weights and prior draws."""
    import keras
    from keras import ops

    from wae_tf import models

    images, pz, eps = _parity_inputs()
    for kind in KINDS:
        model = models.build_model(_parity_config(kind))
        init = out / f"{kind}_init.npz"
        if init.exists():  # the other backend ran first: start from its weights
            with np.load(init) as saved:
                model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
        else:
            _save_arrays(init, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        # The seam for identical randomness: fixed prior draws and reparameterisation noise.
        model.sample_prior = lambda n, seed=None: ops.convert_to_tensor(pz)
        model.reparameterize = lambda mean, log_variance: (
            mean + ops.exp(0.5 * log_variance) * ops.convert_to_tensor(eps)
        )
        model.compile()
        logs = model.train_on_batch(images, return_dict=True)
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        arrays.update({f"o{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
        arrays.update({f"l_{k}": v for k, v in logs.items()})
        arrays["weight_paths"] = [w.path for w in model.weights]
        arrays["optimizer_paths"] = [v.path for v in model.optimizer.variables]
        _save_arrays(out / f"{kind}_{backend}.npz", **arrays)
        if kind in CHECKPOINT_KINDS:
            model.save(out / f"{kind}_{backend}.keras")
            np.save(out / f"{kind}_{backend}_outputs.npy", _outputs(model, images))
    print(f"one step on {keras.backend.backend()}: done")


def _load_checkpoints(out: Path, source: str, backend: str) -> None:
    """Load the other backend's .keras files; record outputs and optimizer counters."""
    import keras

    import wae_tf.models  # noqa: F401  (registers WAE / VAE for deserialisation)

    images, _, _ = _parity_inputs()
    for kind in CHECKPOINT_KINDS:
        path = out / f"{kind}_{source}.keras"
        if not path.exists():
            continue
        model = keras.saving.load_model(path)
        np.save(out / f"{kind}_{source}_on_{backend}.npy", _outputs(model, images))
        np.save(
            out / f"{kind}_{source}_on_{backend}_iterations.npy",
            [int(v.numpy()) for v in model.optimizer.variables if v.path.endswith("/iteration")],
        )


def _train_on_jax(out: Path) -> None:
    """A few epochs per model kind, twice with the same seed; save/load; evaluate; pretrain."""
    import jax
    import keras

    from wae_tf import configs, models

    # The second identical run reuses the first one's compiled step from this cache.
    jax.config.update("jax_compilation_cache_dir", str(out / "xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    images = _stroke_images()
    results = {}
    for kind in KINDS:
        config = configs.with_width(configs.get_config("mnist", kind), WIDTH).replace(
            lr_schedule="constant"
        )
        runs = []
        for _ in range(2):
            model = models.build_model(config)
            model.compile()
            history = model.fit(images, batch_size=32, epochs=3, shuffle=False, verbose=0)
            runs.append(
                {
                    "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
                    "seed_state": model.seed_generator.state.numpy().tolist(),
                    "iterations": int(model.optimizer.iterations.numpy()),
                }
            )
            np.savez(out / f"{kind}_train_{len(runs)}.npz", *model.get_weights())
        # .keras round trip on JAX: identical outputs and optimizer state.
        model.save(out / f"{kind}_trained.keras")
        loaded = keras.saving.load_model(out / f"{kind}_trained.keras")
        runs[0]["outputs_max_difference"] = float(
            np.max(np.abs(_outputs(model, images[:32]) - _outputs(loaded, images[:32])))
        )
        runs[0]["loaded_iterations"] = int(loaded.optimizer.iterations.numpy())
        if kind == "wae_gan":
            runs[0]["sub_iterations"] = {
                o.name: int(o.iterations.numpy()) for o in model.optimizer.optimizers
            }
            runs[0]["evaluate"] = model.evaluate(
                images[:64], batch_size=32, verbose=0, return_dict=True
            )
        if kind == "wae_mmd":
            before = model.encoder.get_weights()
            runs[0]["pretrain_losses"] = model.pretrain_encoder(
                images, steps=3, batch_size=64, verbose=False
            )
            runs[0]["pretrain_moved"] = any(
                not np.array_equal(a, b)
                for a, b in zip(before, model.encoder.get_weights(), strict=True)
            )
        results[kind] = runs
    results["tensorflow_blocked"] = sys.modules.get("tensorflow", "absent") is None
    (out / "train_results.json").write_text(json.dumps(results))
    print("training on jax: done")


def _worker(role: str, out: Path) -> None:
    import keras

    backend = keras.backend.backend()
    if role == "one_step":
        _one_step(out, backend)
        if backend == "jax":
            _load_checkpoints(out, "tensorflow", backend)
            _train_on_jax(out)
    elif role == "load_jax_checkpoints":
        _load_checkpoints(out, "jax", backend)
    else:
        raise SystemExit(f"unknown role {role!r}")


# ==========================================================================================
# Test side.
# ==========================================================================================
def _run(role: str, out: Path, backend: str) -> None:
    start = time.time()
    result = run_python(
        __file__, role, str(out), timeout=600, KERAS_BACKEND=backend, XLA_FLAGS=FAST_XLA
    )
    if result.returncode != 0:
        pytest.fail(f"{backend} worker {role!r} failed:\n{result.stdout}\n{result.stderr[-6000:]}")
    print(f"{backend} worker {role!r}: {time.time() - start:.1f} s")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """TensorFlow one step (if installed), then JAX, then TensorFlow loading JAX's files."""
    out = tmp_path_factory.mktemp("jax_backend")
    if HAVE_TENSORFLOW:
        _run("one_step", out, "tensorflow")
    _run("one_step", out, "jax")
    if HAVE_TENSORFLOW:
        _run("load_jax_checkpoints", out, "tensorflow")
    return out


@pytest.fixture(scope="module")
def train_results(runs) -> dict:
    return json.loads((runs / "train_results.json").read_text())


def _needs_tensorflow():
    if not HAVE_TENSORFLOW:
        pytest.skip("TensorFlow is not installed: no cross-backend comparison")


# Conv / transposed-conv biases that feed a BatchNormalization: BN removes any per-channel
# shift, so their exact gradient is 0 and the computed one is float32 round-off of either
# sign. Adam's first step is lr * g / (|g| + eps) with eps = 1e-8, which turns that noise
# into moves of up to +-lr that legitimately differ between backends.
_PRE_BN_BIAS = re.compile(r"(^|/)(de)?conv\d+[/_]bias(_momentum|_velocity)?$")


def test_pre_batchnorm_bias_pattern_matches_only_those_biases():
    assert _PRE_BN_BIAS.search("conv1/bias")
    assert _PRE_BN_BIAS.search("autoencoder_adam/deconv2_bias_momentum")
    assert not _PRE_BN_BIAS.search("deconv_out/bias")  # output layer: no BN after it
    assert not _PRE_BN_BIAS.search("conv1/kernel")
    assert not _PRE_BN_BIAS.search("codes/bias")


@pytest.mark.parametrize("kind", KINDS)
def test_one_train_step_matches_tensorflow(runs, kind):
    """Same initial weights, data and prior draws: same updated weights on both backends.

    Tolerances: Adam's first step moves every weight by lr * m_hat / (sqrt(v_hat) + eps),
    i.e. by +-lr (1e-3 here) wherever |g| >> 1e-8, independently of the gradient's size.
    Any real divergence (a wrong sign, a missed sub-step, the wrong learning rate or
    optimizer) therefore shows up as an error of the order of lr; float32 round-off in
    the updated weights is ~1e-7. atol = lr / 100 = 1e-5 separates the two. Adam's
    moments (0.5 g and 0.001 g^2) carry the gradients themselves, compared relative to
    each variable's largest entry (1e-3: cuDNN/Eigen/XLA summation orders differ).
    """
    _needs_tensorflow()
    with (
        np.load(runs / f"{kind}_tensorflow.npz") as tf_run,
        np.load(runs / f"{kind}_jax.npz") as jax_run,
    ):
        tf_arrays, jax_arrays = dict(tf_run), dict(jax_run)
    assert list(tf_arrays["weight_paths"]) == list(jax_arrays["weight_paths"])
    assert list(tf_arrays["optimizer_paths"]) == list(jax_arrays["optimizer_paths"])

    compared = 0
    for i, path in enumerate(tf_arrays["weight_paths"]):
        if _PRE_BN_BIAS.search(path):
            continue
        np.testing.assert_allclose(
            jax_arrays[f"w{i}"], tf_arrays[f"w{i}"], rtol=0, atol=1e-5, err_msg=f"weight {path}"
        )
        compared += 1
    assert compared >= 20

    momenta = [
        np.abs(tf_arrays[f"o{i}"]).max()
        for i, p in enumerate(tf_arrays["optimizer_paths"])
        if p.endswith("_momentum")
    ]
    for i, path in enumerate(tf_arrays["optimizer_paths"]):
        a, b = jax_arrays[f"o{i}"], tf_arrays[f"o{i}"]
        if _PRE_BN_BIAS.search(path):
            if path.endswith("_momentum"):  # the justification above: |g| is round-off
                for run in (a, b):
                    assert np.abs(run).max() <= 1e-3 * max(momenta), path
            continue
        np.testing.assert_allclose(
            a, b, rtol=0, atol=1e-3 * np.abs(b).max() + 1e-12, err_msg=f"optimizer {path}"
        )
    for key in tf_arrays:
        if key.startswith("l_"):
            np.testing.assert_allclose(jax_arrays[key], tf_arrays[key], rtol=1e-5, err_msg=key)


def test_wae_gan_step_moves_each_network_with_its_own_adam(runs):
    """Algorithm 1 on JAX: the AE Adam (lr 1e-3) moves the encoder/decoder, the adversary
    Adam (lr 5e-4) the adversary; each counts one step, and so does the MultiOptimizer.

    Adam's first step is a known function of the recorded moments m = (1 - beta1) g and
    v = (1 - beta2) g^2 and of lr: each weight's move identifies its optimizer and lr.
    """
    learning_rates = {"autoencoder_adam": 1e-3, "adversary_adam": 5e-4}
    with np.load(runs / "wae_gan_init.npz") as init, np.load(runs / "wae_gan_jax.npz") as after:
        slots = {p: after[f"o{i}"] for i, p in enumerate(after["optimizer_paths"])}
        checked = {name: 0 for name in learning_rates}
        for i, path in enumerate(after["weight_paths"]):
            if "moving_" in path:
                continue  # batch-norm statistics: not trained by an optimizer
            slot_name = path.replace("/", "_") + "_momentum"
            (owner,) = [n for n in learning_rates if f"{n}/{slot_name}" in slots]
            assert (owner == "adversary_adam") == path.startswith("adversary/"), path
            m = slots[f"{owner}/{slot_name}"]
            v = slots[f"{owner}/{slot_name[: -len('momentum')]}velocity"]
            # Keras's Adam at step 1: lr * sqrt(1 - beta2) / (1 - beta1) * m / (sqrt(v) + eps)
            # with beta1 = 0.5, beta2 = 0.999 [paper, App. C], eps = 1e-8.
            expected = -learning_rates[owner] * np.sqrt(1 - 0.999) / (1 - 0.5) * m
            expected = expected / (np.sqrt(v) + 1e-8)
            # The move is read back as a difference of float32 weights: 2 ulp of |w| slack.
            ulp = np.spacing(np.abs(after[f"w{i}"]).max())
            np.testing.assert_allclose(
                after[f"w{i}"] - init[f"w{i}"], expected, rtol=1e-4, atol=2 * ulp, err_msg=path
            )
            checked[owner] += int(np.any(m != 0))  # the logit bias's gradient can be 0
        iterations = {p: int(v) for p, v in slots.items() if p.endswith("/iteration")}
    # Weights with a non-zero gradient: 9 of the adversary's 10, most of the rest.
    assert checked["adversary_adam"] >= 8 and checked["autoencoder_adam"] >= 20
    assert iterations == {
        "wae_gan_optimizers/iteration": 1,
        "adversary_adam/iteration": 1,
        "autoencoder_adam/iteration": 1,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_training_on_jax_gives_finite_decreasing_losses(train_results, kind):
    history = train_results[kind][0]["history"]
    for name, values in history.items():
        assert np.all(np.isfinite(values)), name
    assert history["loss"][-1] < history["loss"][0]
    assert history["reconstruction"][-1] < 0.9 * history["reconstruction"][0]
    assert train_results[kind][0]["iterations"] == 15  # 3 epochs x 5 batches


@pytest.mark.parametrize("kind", KINDS)
def test_training_on_jax_is_reproducible_with_the_same_seed(runs, train_results, kind):
    first, second = train_results[kind]
    assert first["history"] == second["history"]
    with np.load(runs / f"{kind}_train_1.npz") as a, np.load(runs / f"{kind}_train_2.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("kind,draws_per_step", [("wae_mmd", 2), ("wae_gan", 2), ("vae", 1)])
def test_jax_train_step_threads_the_seed_generator(train_results, kind, draws_per_step):
    """Fresh prior draws / input noise (WAE) or epsilon (VAE) every step, not one
    frozen at trace time: the seed state advances once per draw inside the jitted step."""
    run = train_results[kind][0]
    assert run["seed_state"] == [0, draws_per_step * run["iterations"]]


def test_keras_file_round_trip_on_jax_gives_identical_outputs(train_results):
    for kind in KINDS:
        run = train_results[kind][0]
        assert run["outputs_max_difference"] == 0.0, kind
        assert run["loaded_iterations"] == run["iterations"], kind
    assert train_results["wae_gan"][0]["sub_iterations"] == {
        "adversary_adam": 15,
        "autoencoder_adam": 15,
    }


def test_jax_worker_ran_without_tensorflow(train_results):
    """Everything the JAX worker does (build, fit, evaluate, pretraining, .keras save and
    load, loading TensorFlow-written files) ran with TensorFlow unimportable, as on the
    GPU host: an import on that path would have failed the worker."""
    assert train_results["tensorflow_blocked"] is True


# The user-facing entry points, as on the GPU host: JAX and no TensorFlow at all.
_WITHOUT_TENSORFLOW = """
import runpy, sys
sys.modules["tensorflow"] = None  # any `import tensorflow` now fails
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _run_module_without_tensorflow(module: str, *args: str) -> subprocess.CompletedProcess:
    return run_python(
        "-c",
        _WITHOUT_TENSORFLOW,
        module,
        *args,
        timeout=600,
        KERAS_BACKEND="jax",
        XLA_FLAGS=FAST_XLA,
    )


def test_training_cli_and_figure2_run_on_jax_without_tensorflow(mnist_dir, tmp_path):
    workdir = tmp_path / "run"
    train = _run_module_without_tensorflow(
        "wae_tf.train", *tiny_mnist_run_flags(mnist_dir, workdir), "--epochs=1"
    )
    assert train.returncode == 0, train.stderr[-4000:]
    record = json.loads((workdir / "config.json").read_text())
    assert record["versions"]["keras_backend"] == "jax"
    assert len((workdir / "history.csv").read_text().strip().splitlines()) == 2  # header + 1

    out = tmp_path / "figure2"
    figure = _run_module_without_tensorflow(
        "reproduce.figure2",
        "--quick",
        *("--width=8", "--train_examples=300", "--epochs=1"),  # plumbing only: 3 steps
        f"--data_dir={mnist_dir}",
        f"--workdir={tmp_path / 'runs'}",
        f"--out_dir={out}",
    )
    assert figure.returncode == 0, figure.stderr[-4000:]
    for name in ("figure2.png", "figure2.md", "figure2.json", "figure2_training_curves.png"):
        assert (out / name).is_file(), name
    provenance = json.loads((out / "figure2.json").read_text())["provenance"]
    assert provenance["machine"]["keras_backend"] == "jax"


def test_evaluate_on_jax_reports_every_term(train_results):
    logs = train_results["wae_gan"][0]["evaluate"]
    assert set(logs) == {"loss", "reconstruction", "penalty", "adversary_loss"}
    assert all(np.isfinite(v) for v in logs.values())


def test_encoder_pretraining_on_jax_updates_the_encoder(train_results):
    run = train_results["wae_mmd"][0]
    assert len(run["pretrain_losses"]) >= 1 and np.all(np.isfinite(run["pretrain_losses"]))
    assert run["pretrain_moved"]


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
@pytest.mark.parametrize("source,target", [("tensorflow", "jax"), ("jax", "tensorflow")])
def test_keras_checkpoint_loads_on_the_other_backend(runs, kind, source, target):
    """A .keras file written on one backend gives the same outputs and optimizer
    counters on the other (up to float32 round-off of different conv kernels)."""
    _needs_tensorflow()
    expected = np.load(runs / f"{kind}_{source}_outputs.npy")
    got = np.load(runs / f"{kind}_{source}_on_{target}.npy")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert set(np.load(runs / f"{kind}_{source}_on_{target}_iterations.npy").tolist()) == {1}


if __name__ == "__main__":
    if os.environ.get("KERAS_BACKEND") == "jax":
        # As on the GPU host (JAX + PyTorch only): any `import tensorflow` fails. Keras's
        # own optional uses of TensorFlow (e.g. in serialisation) then step aside.
        sys.modules["tensorflow"] = None
    _worker(sys.argv[1], Path(sys.argv[2]))
