"""SavedModel export for TF Serving: signatures, round trip, the CLI and its bad inputs.

Tiny nets (width 4) trained for one step, so that BatchNormalization's moving statistics
differ from batch statistics and an export in training mode would show. The nine
command-line runs (export CLI, saved_model_cli, two fresh-Python loads) start together,
four at a time (`cli_runs`): each pays its own TensorFlow import.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fill_disk
from helpers import run_together

from wae_tf import checkpoints, configs, export, fileio, models, rundir

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_SIGNATURES = {"encode", "decode", "reconstruct", "sample", "serving_default"}
# The signatures run the Keras model's float32 ops. The reference runs it in a
# tf.function too (`_graph`): eagerly, oneDNN's unfused kernels round differently from
# the graph's fused ones, by up to ~1e-6 on these outputs.
ATOL = 1e-6


def _tiny(dataset: str, kind: str):
    return configs.with_width(configs.get_config(dataset, kind), 4).replace(lr_schedule="constant")


@pytest.fixture(scope="module")
def images(mnist_images) -> np.ndarray:
    return mnist_images[:16]


# It trains (one step): every test that uses it, or the exports made from it, is marked slow.
@pytest.fixture(scope="module")
def model(images):
    """A tiny WAE-MMD on MNIST after one training step (moving BN statistics updated)."""
    model = models.build_model(_tiny("mnist", "wae_mmd"))
    model.compile()
    model.fit(images, batch_size=16, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("serving") / "models" / "wae_mnist" / "1"
    assert export.export_saved_model(model, target) == target
    return target


@pytest.fixture(scope="module")
def served(export_dir):
    import tensorflow as tf

    return tf.saved_model.load(str(export_dir))


def _graph(fn, *args) -> np.ndarray:
    """fn(*args) run in a tf.function (graph mode, as in the SavedModel), as numpy."""
    import tensorflow as tf

    return np.asarray(tf.function(fn)(*args))


def _call(served, name, **inputs):
    import tensorflow as tf

    tensors = {k: tf.constant(v) for k, v in inputs.items()}
    return {k: v.numpy() for k, v in served.signatures[name](**tensors).items()}


@pytest.mark.slow
def test_export_has_the_serving_signatures_with_named_inputs_and_outputs(served):
    import tensorflow as tf

    assert set(served.signatures) == EXPECTED_SIGNATURES
    expected = {
        "encode": ({"images": [None, 28, 28, 1]}, {"codes": [None, 8]}),
        "decode": ({"z": [None, 8]}, {"images": [None, 28, 28, 1]}),
        "serving_default": ({"z": [None, 8]}, {"images": [None, 28, 28, 1]}),
        "reconstruct": ({"images": [None, 28, 28, 1]}, {"images": [None, 28, 28, 1]}),
        "sample": ({"count": [], "seed": []}, {"images": [None, 28, 28, 1]}),
    }
    for name, (inputs, outputs) in expected.items():
        signature = served.signatures[name]
        specs = signature.structured_input_signature[1]
        assert {k: spec.shape.as_list() for k, spec in specs.items()} == inputs, name
        assert all(
            spec.dtype == (tf.int32 if name == "sample" else tf.float32) for spec in specs.values()
        )
        results = signature.structured_outputs
        assert {k: t.shape.as_list() for k, t in results.items()} == outputs, name
        assert all(t.dtype == tf.float32 for t in results.values())


@pytest.mark.slow
def test_signatures_equal_the_keras_model_in_inference_mode(model, served, images):
    x = images[:5]
    z = np.asarray(model.sample_prior(5, seed=1))
    encoded = _call(served, "encode", images=x)["codes"]
    np.testing.assert_allclose(encoded, _graph(model.encode, x), atol=ATOL, rtol=0)
    decoded = _call(served, "decode", z=z)["images"]
    np.testing.assert_allclose(decoded, _graph(model.decode, z), atol=ATOL, rtol=0)
    default = _call(served, "serving_default", z=z)["images"]
    np.testing.assert_array_equal(default, decoded)
    reconstructed = _call(served, "reconstruct", images=x)["images"]
    np.testing.assert_allclose(reconstructed, _graph(model, x), atol=ATOL, rtol=0)
    # Inference mode matters here: with batch statistics the output would differ.
    training_mode = np.asarray(model.reconstruct(x, training=True))
    assert np.max(np.abs(training_mode - reconstructed)) > 1e-4
    assert 0.0 <= decoded.min() and decoded.max() <= 1.0  # MNIST pixels in [0, 1]


@pytest.mark.slow
def test_sample_signature_is_deterministic_and_equals_model_sample(model, served):
    first = _call(served, "sample", count=np.int32(6), seed=np.int32(3))["images"]
    again = _call(served, "sample", count=np.int32(6), seed=np.int32(3))["images"]
    other = _call(served, "sample", count=np.int32(6), seed=np.int32(4))["images"]
    assert first.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)  # (an untrained decoder: images near 0.5)
    # model.sample(6, seed=3) = decode(model.sample_prior(6, seed=3)): the same prior
    # draws, decoded by the exported graph (decode itself is checked against Keras above).
    z = np.asarray(model.sample_prior(6, seed=3))
    np.testing.assert_array_equal(first, _call(served, "decode", z=z)["images"])
    assert _call(served, "sample", count=np.int32(0), seed=np.int32(0))["images"].shape[0] == 0


@pytest.mark.slow
def test_encode_rejects_images_of_the_wrong_size_at_serving_time(served, export_dir):
    import tensorflow as tf

    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError), match="28"):
        served.signatures["encode"](images=tf.zeros([2, 32, 32, 1]))
    # The graph checks the shape itself too, for servers that skip Python's check.
    assert b"EnsureShape" in (export_dir / "saved_model.pb").read_bytes()


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures_and_input_names(cli_runs):
    run = cli_runs["saved_model_cli"]
    assert run.returncode == 0, run.stderr[-3000:]
    for name in EXPECTED_SIGNATURES:
        assert f"signature_def['{name}']" in run.stdout
    for text in ("inputs['images']", "inputs['z']", "inputs['count']", "outputs['codes']"):
        assert text in run.stdout
    assert "(-1, 28, 28, 1)" in run.stdout


@pytest.mark.slow
def test_export_records_the_pixel_range_and_config(export_dir):
    metadata = json.loads((export_dir / export.METADATA_FILE).read_text())
    assert metadata["pixel_range"] == "[0, 1]"
    assert metadata["image_shape"] == [28, 28, 1] and metadata["z_dim"] == 8
    assert set(metadata["signatures"]) == EXPECTED_SIGNATURES


@pytest.mark.slow
def test_existing_version_is_refused_without_overwrite_and_replaced_with_it(model, export_dir):
    before = (export_dir / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_saved_model(model, export_dir)
    assert (export_dir / "saved_model.pb").stat().st_mtime_ns == before
    export.export_saved_model(model, export_dir, overwrite=True, include_sample=False)
    metadata = json.loads((export_dir / export.METADATA_FILE).read_text())
    assert "sample" not in metadata["signatures"]
    assert sorted(p.name for p in export_dir.parent.iterdir()) == ["1"]  # no leftovers
    export.export_saved_model(model, export_dir, overwrite=True)  # restore for other tests


@pytest.mark.slow
def test_failed_export_leaves_nothing_behind(model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "build_archive", broken)
    target = tmp_path / "wae_mnist" / "1"
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model, target)
    assert list(target.parent.iterdir()) == []


def test_vae_on_celeba_exports_its_posterior_mean_in_minus_one_one(tmp_path):
    import tensorflow as tf

    vae = models.build_model(_tiny("celeba", "vae"))
    target = export.export_saved_model(vae, tmp_path / "vae_celeba" / "1", include_sample=False)
    served = tf.saved_model.load(str(target))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype("float32")
    codes = _call(served, "encode", images=x)["codes"]
    assert codes.shape == (3, 64)
    np.testing.assert_allclose(codes, _graph(vae.encode, x), atol=ATOL, rtol=0)
    reconstructed = _call(served, "reconstruct", images=x)["images"]
    assert reconstructed.min() >= -1.0 and reconstructed.max() <= 1.0
    assert json.loads((target / export.METADATA_FILE).read_text())["pixel_range"] == "[-1, 1]"


# --- Loading a training run ------------------------------------------------------------------


def test_load_model_explains_a_missing_or_empty_workdir(tmp_path):
    with pytest.raises(export.ExportError, match="does not exist"):
        export.load_model(tmp_path / "nope")
    with pytest.raises(export.ExportError, match="is empty"):
        export.load_model(tmp_path)


def test_load_model_explains_a_workdir_without_checkpoint(tmp_path):
    (tmp_path / "history.csv").write_text("epoch\n")
    with pytest.raises(export.ExportError, match="nothing to export"):
        export.load_model(tmp_path)


@pytest.mark.slow
def test_load_model_reads_final_keras_of_a_workdir(model, tmp_path):
    model.save(tmp_path / "final.keras")
    loaded = export.load_model(tmp_path)
    z = np.asarray(model.sample_prior(3, seed=2))
    np.testing.assert_array_equal(np.asarray(loaded.decode(z)), np.asarray(model.decode(z)))


@pytest.mark.slow
def test_wae_tf_load_model_reads_a_keras_file_of_ours(model, tmp_path):
    import wae_tf

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = wae_tf.load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    z = np.asarray(model.sample_prior(3, seed=2))
    np.testing.assert_array_equal(np.asarray(loaded.decode(z)), np.asarray(model.decode(z)))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a zip"])
def test_load_model_names_a_damaged_keras_file_and_what_to_do(model, tmp_path, damage):
    path = tmp_path / "final.keras"
    model.save(path)
    content = bytearray(path.read_bytes())
    if damage == "truncated":
        content = content[: len(content) // 4]
    elif damage == "flipped byte":
        content[len(content) // 2] ^= 0xFF
    else:
        content = bytearray(b"not a model")
    path.write_bytes(bytes(content))
    with pytest.raises(export.ExportError) as caught:
        export.load_model(path)
    message = str(caught.value)
    assert "\n" not in message and f"{path} is damaged" in message, message
    assert "File not found" not in message and "--workdir=<run>" in message


# --- The command line ------------------------------------------------------------------------


def _export_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "wae_tf.export", *args]


def _load_in_a_fresh_python(load: str, path: Path) -> list[str]:
    code = f"{load.replace('PATH', repr(str(path)))}; print(type(model).__name__)"
    return [sys.executable, "-c", code]


# The two documented ways to load a .keras file of ours: wae_tf.load_model, or keras's
# loader after `import wae_tf.models` (which registers the classes).
DOCUMENTED_LOADS = (
    "import wae_tf; model = wae_tf.load_model(PATH)",
    "import keras, wae_tf.models; model = keras.saving.load_model(PATH)",
)


# Every command-line run of this file, started together (each pays its own TensorFlow
# import): {name: its CompletedProcess}, and `cli_runs.folder` where their inputs are.
@pytest.fixture(scope="module")
def cli_runs(model, export_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    for name in ("workdir", "keras_file", "damaged", "jax"):  # a run's final model
        (folder / name).mkdir()
        model.save(folder / name / "final.keras")
    damaged = folder / "damaged" / "final.keras"
    damaged.write_bytes(damaged.read_bytes()[:20000])
    (folder / "empty").mkdir()
    unfinished = rundir.RunPaths(folder / "unfinished")  # killed after epoch 3's checkpoint
    fileio.write_json(
        unfinished.config, {"config": model.config.to_dict(), "data": {"steps_per_epoch": 1}}
    )
    checkpoints.save(model, unfinished.checkpoint(3), {"epoch": 3})
    tool = shutil.which("saved_model_cli")
    tool = [tool] if tool else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    commands = {
        "saved_model_cli": [*tool, "show", "--all", "--dir", str(export_dir)],
        "workdir": _export_cli(
            f"--workdir={folder / 'workdir'}", f"--export_dir={folder / 'workdir_export' / '1'}"
        ),
        "empty": _export_cli(
            f"--workdir={folder / 'empty'}", f"--export_dir={folder / 'empty_export' / '1'}"
        ),
        "damaged": _export_cli(f"--workdir={damaged}", f"--export_dir={folder / 'out' / '1'}"),
        "keras_file": _export_cli(
            f"--workdir={folder / 'keras_file' / 'final.keras'}",
            f"--export_dir={folder / 'keras_file_export' / '1'}",
        ),
        "unfinished_refused": _export_cli(
            f"--workdir={unfinished.root}", f"--export_dir={folder / 'refused' / '1'}"
        ),
        "unfinished_allowed": _export_cli(
            f"--workdir={unfinished.root}",
            f"--export_dir={folder / 'allowed' / '1'}",
            "--allow_unfinished",
        ),
    }
    for i, load in enumerate(DOCUMENTED_LOADS):
        commands[f"load_{i}"] = _load_in_a_fresh_python(load, folder / "keras_file" / "final.keras")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    each = {}
    if importlib.util.find_spec("jax") is not None:
        jax = folder / "jax" / "final.keras"
        commands["jax"] = _export_cli(f"--workdir={jax}", f"--export_dir={folder}/1")
        each["jax"] = {"env": dict(env, KERAS_BACKEND="jax")}
    runs = run_together(commands, cwd=REPO_ROOT, env=env, each=each)
    runs["folder"] = folder
    return runs


@pytest.mark.slow
def test_cli_exports_a_training_workdir(model, cli_runs):
    import tensorflow as tf

    run, target = cli_runs["workdir"], cli_runs["folder"] / "workdir_export" / "1"
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"exported {target}" in run.stdout
    served = tf.saved_model.load(str(target))
    z = np.asarray(model.sample_prior(4, seed=5))
    decoded = _call(served, "serving_default", z=z)["images"]
    np.testing.assert_allclose(decoded, _graph(model.decode, z), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_cli_reports_an_empty_workdir_and_an_existing_version(cli_runs):
    run = cli_runs["empty"]
    assert run.returncode == 1
    assert "wae_tf.export: error: workdir" in run.stderr and "is empty" in run.stderr
    assert not (cli_runs["folder"] / "empty_export").exists()


@pytest.mark.slow
def test_cli_damaged_keras_file_is_one_line(cli_runs):
    run, path = cli_runs["damaged"], cli_runs["folder"] / "damaged" / "final.keras"
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1].startswith(f"wae_tf.export: error: {path} is")


@pytest.mark.slow
def test_cli_on_the_jax_backend_says_export_needs_tensorflow_in_one_line(cli_runs):
    pytest.importorskip("jax")
    run = cli_runs["jax"]
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "wae_tf.export: error: a SavedModel export needs the TensorFlow backend (this is "
        "KERAS_BACKEND=jax): rerun without KERAS_BACKEND=jax; models trained on JAX export too"
    ]
    assert not (cli_runs["folder"] / "1").exists()


@pytest.mark.slow
def test_export_stores_each_variable_once(model, export_dir):
    import tensorflow as tf

    stored = tf.train.list_variables(str(export_dir / "variables" / "variables"))
    values = sum(int(np.prod(shape)) for name, shape in stored if "VARIABLE_VALUE" in name)
    # encoder + decoder, BN moving statistics included (no adversary, no optimizer).
    assert values == model.encoder.count_params() + model.decoder.count_params()


@pytest.mark.slow
def test_cli_exports_a_keras_file_that_wae_tf_and_keras_load(cli_runs):
    run, target = cli_runs["keras_file"], cli_runs["folder"] / "keras_file_export" / "1"
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"exported {target}" in run.stdout
    # The two documented ways (DOCUMENTED_LOADS), each in a fresh Python.
    for i in range(len(DOCUMENTED_LOADS)):
        loaded = cli_runs[f"load_{i}"]
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        assert loaded.stdout.split() == ["WAE"]


@pytest.mark.slow
def test_cli_exports_an_unfinished_run_only_with_allow_unfinished(cli_runs):
    root = cli_runs["folder"] / "unfinished"
    refused = cli_runs["unfinished_refused"]
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"wae_tf.export: error: nothing to export in {root}: no final model (rerun the "
        "training command to finish the run); its latest checkpoint is epoch 3: pass "
        "--allow_unfinished to export that"
    )
    assert not (cli_runs["folder"] / "refused").exists()

    run = cli_runs["unfinished_allowed"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert (cli_runs["folder"] / "allowed" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_full_disk_is_one_error_line_and_leaves_no_partial_export(model, small_tmpfs):
    fill_disk(small_tmpfs, leave=64 << 10)
    target = small_tmpfs / "models" / "wae_mnist" / "1"
    with pytest.raises(export.ExportError) as caught:
        export.export_saved_model(model, target)
    assert str(caught.value) == (
        f"no space left to write the SavedModel to {target}; nothing was exported (the "
        "partial copy was removed). Free some space and rerun the same command"
    )
    assert list(target.parent.iterdir()) == []
