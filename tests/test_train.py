"""The training CLI and `wae_tf.trainer.train`: workdir files, exact resume after kill -9,
idempotence, refusals with one clear error, the NaN stop, a damaged checkpoint, a full disk.

Every run uses tiny nets (`--width=4`), few images and batches of 50, so that the whole
file takes about 1.5-2 minutes on 2 shared CPU cores (most of it TensorFlow start-up in
the CLI subprocesses).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from absl import flags
from conftest import TINY_RUN_DATA, python_env, run_python, tiny_config
from PIL import Image

from wae_tf import callbacks, checkpoints, cli_flags, configs, console, data, rundir, train, trainer
from wae_tf.trainer import TrainSettings

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--width=4", "--eval_examples=100", "--batch_size=50"]


def cli_env() -> dict[str, str]:
    return python_env()


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_python("-m", "wae_tf.train", *args, timeout=timeout)


def history_rows(workdir: Path) -> list[dict[str, str]]:
    with open(workdir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under root: to show that nothing was written."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_same_weights(a, b) -> None:
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=x.path)


# ======================================================================================
# The check, and extending a finished run
# ======================================================================================


@pytest.mark.slow
def test_cli_one_epoch_then_two_gives_two_history_rows_pngs_and_provenance(mnist_dir, tmp_path):
    workdir = tmp_path / "run"
    common = [
        "--dataset=mnist",
        "--model=wae_gan",
        f"--data_dir={mnist_dir}",
        f"--workdir={workdir}",
        "--train_examples=200",
        *SMOKE,
    ]  # encoder pretraining stays on, as in the command
    first = run_cli(*common, "--epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "encoder pretraining" in first.stderr
    assert json.loads((workdir / "DONE.json").read_text())["epochs"] == 1

    second = run_cli(*common, "--epochs=2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stderr and "epoch 1 completed" in second.stderr
    assert "encoder pretraining" not in second.stderr  # only on a fresh start

    rows = history_rows(workdir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert {"loss", "reconstruction", "penalty", "adversary_loss", "val_loss"} <= set(rows[0])
    assert float(rows[1]["learning_rate"]) == pytest.approx(1e-3)  # before the /2 at 30
    assert float(rows[1]["adversary_learning_rate"]) == pytest.approx(5e-4)
    assert json.loads((workdir / "DONE.json").read_text())["epochs"] == 2
    # --keep_checkpoints=2 by default: the latest and one to fall back to if it is damaged
    checkpoint_files = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert checkpoint_files == ["epoch_0001.npz", "epoch_0002.npz"]

    for epoch in (1, 2):
        for kind in ("samples", "reconstructions"):
            with Image.open(workdir / "samples" / f"{kind}_epoch_{epoch:04d}.png") as png:
                # 8 x 8 cells of 28 px with 1 px gutters; reconstructions: 4 real + 4 rows
                assert png.size == (8 * 28 + 7, 8 * 28 + 7)

    record = json.loads((workdir / "config.json").read_text())
    assert configs.Config.from_dict(record["config"]) == tiny_config("wae_gan", epochs=2)
    assert record["data"]["train_size"] == 200 and record["data"]["eval_size"] == 100
    assert record["data"]["steps_per_epoch"] == 4
    assert "t10k" in record["data"]["split_rule"]
    assert {"python", "keras", "tensorflow", "numpy"} <= set(record["versions"])
    assert "--epochs=2" in record["command_line"] and "wae_tf.train" in record["command_line"]
    assert len(record["invocations"]) == 2
    assert trainer.load_trained_model(workdir).config.model == "wae_gan"
    with zipfile.ZipFile(workdir / "final.keras") as archive:  # the model, no Adam moments
        assert "optimizer" not in archive.read("config.json").decode()
    umask = os.umask(0)
    os.umask(umask)
    assert (workdir / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask


# ======================================================================================
# kill -9 and resume: the interrupted run ends exactly where an uninterrupted one does
# ======================================================================================

KILL_EXAMPLES = 4000  # 80 steps per epoch: epoch 2 lasts long enough to be killed in


# Trains 2 epochs of 80 steps: every test that uses it is marked slow.
@pytest.fixture(scope="module")
def reference_run(mnist_dir, tmp_path_factory):
    """An uninterrupted 2-epoch WAE-MMD run, in-process: (workdir, model)."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    model = trainer.train(
        tiny_config("wae_mmd", epochs=2),
        workdir,
        TrainSettings(
            data_dir=mnist_dir,
            train_examples=KILL_EXAMPLES,
            eval_examples=100,
            pretrain=False,
            verbose=0,
        ),
    )
    return workdir, model


def kill_run_cli_when(args: list[str], done, what: str) -> None:
    """Start `python -m wae_tf.train *args`, wait until `done()` (at most 240 s), then
    kill -9 it; assert it got there and had not finished."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wae_tf.train", *args],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not done() and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert done(), f"the run never {what}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


def kill_test_args(mnist_dir: Path, workdir: Path, *extra: str) -> list[str]:
    """A 2-epoch WAE-MMD run of 80 steps per epoch, long enough to be killed in epoch 2."""
    return [
        "--dataset=mnist",
        "--model=wae_mmd",
        f"--data_dir={mnist_dir}",
        f"--workdir={workdir}",
        f"--train_examples={KILL_EXAMPLES}",
        "--epochs=2",
        "--nopretrain",
        *extra,
        *SMOKE,
    ]


@pytest.mark.slow
def test_kill_9_in_epoch_two_then_rerun_equals_the_uninterrupted_run(
    mnist_dir, tmp_path, reference_run
):
    workdir = tmp_path / "run"
    args = kill_test_args(mnist_dir, workdir)
    first_checkpoint = workdir / "checkpoints" / "epoch_0001.npz"
    kill_run_cli_when(args, first_checkpoint.exists, "completed epoch 1")
    assert not (workdir / "DONE.json").exists(), "the run finished before it could be killed"
    assert not (workdir / "checkpoints" / "epoch_0002.npz").exists()

    # The model of the checkpoint: what the resumed run must continue from.
    at_epoch_1 = trainer.load_trained_model(workdir, allow_unfinished=True)
    with pytest.raises(rundir.WorkdirError, match="no final model"):
        trainer.load_trained_model(workdir)

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "epoch 1 completed" in resumed.stderr

    reference_dir, reference = reference_run
    final = trainer.load_trained_model(workdir)
    assert_same_weights(final, reference)  # bit-identical to the uninterrupted run
    # Each epoch once, with the same metrics and learning rates. Not bit-exact: the running
    # mean of `loss` (not its parts) can differ by 1 ulp in a freshly started process.
    rows, expected = history_rows(workdir), history_rows(reference_dir)
    assert [row.keys() for row in rows] == [row.keys() for row in expected]
    assert [row["epoch"] for row in rows] == ["1", "2"]
    np.testing.assert_allclose(
        [[float(v) for k, v in row.items() if k != "epoch_time_s"] for row in rows],
        [[float(v) for k, v in row.items() if k != "epoch_time_s"] for row in expected],
        rtol=1e-6,
    )
    assert all(float(row["epoch_time_s"]) > 0 for row in rows)
    pairs = zip(at_epoch_1.encoder.trainable_weights, final.encoder.trainable_weights, strict=True)
    assert not any(np.array_equal(a, b) for a, b in pairs)  # it trained on from the checkpoint


@pytest.mark.slow
def test_sparse_checkpoints_and_validation_keep_the_math_and_a_kill_loses_under_n_epochs(
    mnist_dir, tmp_path, reference_run
):
    """--checkpoint_every=2 --validate_every=2, killed in epoch 2 (after epoch 1, which had
    no checkpoint and no validation): the rerun starts over and ends bit-identical to the
    uninterrupted run that checkpointed and validated every epoch."""
    workdir = tmp_path / "run"
    args = kill_test_args(
        mnist_dir, workdir, "--checkpoint_every=2", "--validate_every=2", "--sample_every=0"
    )

    def epoch_one_logged() -> bool:
        return (workdir / "history.csv").exists() and len(history_rows(workdir)) == 1

    kill_run_cli_when(args, epoch_one_logged, "completed epoch 1")
    assert not (workdir / "DONE.json").exists(), "the run finished before it could be killed"
    assert not list((workdir / "checkpoints").glob("*.npz"))  # none after epoch 1 (N = 2)
    (killed_row,) = history_rows(workdir)
    assert killed_row["val_loss"] == "" and killed_row["loss"] != ""  # epoch 1: not validated

    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" not in resumed.stderr  # no checkpoint: started over, lost 1 epoch
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["epoch_0002.npz"]

    reference_dir, reference = reference_run  # every epoch checkpointed and validated
    assert_same_weights(trainer.load_trained_model(workdir), reference)
    rows, expected = history_rows(workdir), history_rows(reference_dir)
    assert [row.keys() for row in rows] == [row.keys() for row in expected]
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(rows[0][k] == "" for k in rows[0] if k.startswith("val_"))
    for row, want in zip(rows, expected, strict=True):
        measured = [k for k, v in row.items() if v != "" and k != "epoch_time_s"]
        np.testing.assert_allclose(
            [float(row[k]) for k in measured], [float(want[k]) for k in measured], rtol=1e-6
        )
    assert rows[1]["val_loss"] != ""  # the last epoch is always validated


def test_cadence_runs_every_n_epochs_and_after_the_last():
    due = callbacks.Cadence.due
    assert [e for e in range(1, 8) if due(3, e, last_epoch=7)] == [3, 6, 7]
    assert [e for e in range(1, 5) if due(1, e, last_epoch=4)] == [1, 2, 3, 4]
    assert not any(due(0, e, last_epoch=4) for e in range(1, 5))  # 0: never


@pytest.mark.slow
def test_resume_restores_weights_optimizer_and_rng_state_from_the_checkpoint(tmp_path):
    config = tiny_config("wae_gan")
    model = trainer.build_compiled_model(config, steps_per_epoch=3)
    images = np.random.default_rng(0).random((3, 50, 28, 28, 1), "float32")
    for batch in images:  # three eager WAE-GAN steps: moments, counters, RNG all move
        model.train_step(batch)
    path = tmp_path / "epoch_0001.npz"
    checkpoints.save(model, path, {"epoch": 1})

    restored = trainer.build_compiled_model(config, steps_per_epoch=3)
    assert restored.optimizer.iterations.numpy() == 0
    assert checkpoints.restore(restored, path)["epoch"] == 1
    assert restored.optimizer.iterations.numpy() == 3  # the lr schedule's position
    np.testing.assert_array_equal(restored.seed_generator.state, model.seed_generator.state)
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert_same_weights(model, restored)


# ======================================================================================
# Idempotence and refusals
# ======================================================================================


@pytest.mark.slow
def test_an_extension_in_progress_has_no_final_model_to_serve(
    mnist_dir, finished_tiny_run, tmp_path, monkeypatch
):
    """Extending a finished run (--epochs up) removes its DONE.json: while the extension
    runs, or after it is killed, its old final.keras is not served as the run's model."""
    import keras

    workdir = tmp_path / "run"
    common = dict(data_dir=mnist_dir, **TINY_RUN_DATA)
    shutil.copytree(finished_tiny_run("wae_mmd")[0], workdir)  # tiny_config("wae_mmd", 1)
    assert (workdir / "final.keras").is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # the extension is stopped before its first epoch ends

    monkeypatch.setattr(keras.Model, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny_config("wae_mmd", epochs=2), workdir, TrainSettings(verbose=0, **common))
    assert not (workdir / "DONE.json").exists()
    with pytest.raises(rundir.WorkdirError, match="no final model"):
        trainer.load_trained_model(workdir)
    assert trainer.load_trained_model(workdir, allow_unfinished=True) is not None  # epoch 1


@pytest.mark.slow
def test_extending_a_finished_run_without_checkpoints_is_refused_and_loses_nothing(
    mnist_dir, finished_tiny_run, tmp_path
):
    """checkpoints/ deleted, then --epochs up: no silent restart from epoch 1 (it would
    replace the finished run's history and final model)."""
    workdir = tmp_path / "run"
    common = dict(data_dir=mnist_dir, **TINY_RUN_DATA)
    shutil.copytree(finished_tiny_run("vae")[0], workdir)  # tiny_config("vae", epochs=1)
    shutil.rmtree(workdir / "checkpoints")
    before = snapshot(workdir)
    with pytest.raises(rundir.WorkdirError, match="finished run but no checkpoint to extend"):
        trainer.train(tiny_config("vae", epochs=2), workdir, TrainSettings(verbose=0, **common))
    assert snapshot(workdir) == before


@pytest.mark.slow
def test_damaged_final_keras_is_named_and_rewritten_from_the_last_checkpoint(
    mnist_dir, finished_tiny_run, tmp_path
):
    workdir = tmp_path / "run"
    common = dict(data_dir=mnist_dir, **TINY_RUN_DATA)
    source, trained = finished_tiny_run("vae")  # tiny_config("vae", epochs=1)
    shutil.copytree(source, workdir)
    final = workdir / "final.keras"
    final.write_bytes(final.read_bytes()[:20000])  # truncated
    with pytest.raises(trainer.DamagedModelFileError) as damaged:
        trainer.load_trained_model(workdir)
    message = str(damaged.value)
    assert "\n" not in message and str(final) in message, message
    assert "rerun the training command" in message and "File not found" not in message
    assert_same_weights(trainer.load_trained_model(workdir, allow_unfinished=True), trained)
    # The training command rewrites it from the checkpoint, without training an epoch.
    again = trainer.train(tiny_config("vae", epochs=1), workdir, TrainSettings(verbose=0, **common))
    assert_same_weights(again, trained)
    assert_same_weights(trainer.load_trained_model(workdir), trained)
    assert [row["epoch"] for row in history_rows(workdir)] == ["1"]


@pytest.mark.slow
def test_finished_run_is_loaded_not_retrained(mnist_dir, reference_run):
    workdir, reference = reference_run
    before = snapshot(workdir)
    start = time.time()
    model = trainer.train(
        tiny_config("wae_mmd", epochs=2),
        workdir,
        TrainSettings(
            data_dir=mnist_dir, train_examples=KILL_EXAMPLES, eval_examples=100, verbose=0
        ),
    )
    assert snapshot(workdir) == before
    assert_same_weights(model, reference)
    assert time.time() - start < 10


@pytest.mark.slow
def test_different_config_in_the_same_workdir_is_refused(mnist_dir, reference_run):
    workdir, _ = reference_run
    before = snapshot(workdir)
    with pytest.raises(rundir.WorkdirError, match=r"different config \(z_dim: 8 there, 4 now\)"):
        trainer.train(
            tiny_config("wae_mmd", epochs=2, z_dim=4),
            workdir,
            TrainSettings(data_dir=mnist_dir),
        )
    with pytest.raises(rundir.WorkdirError, match="different data.*train_size: 4000 there, 200"):
        trainer.train(
            tiny_config("wae_mmd", epochs=3),
            workdir,
            TrainSettings(data_dir=mnist_dir, train_examples=200, eval_examples=100),
        )
    assert snapshot(workdir) == before


def test_unwritable_workdir_is_reported_before_anything_is_loaded(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(rundir.WorkdirError, match="is not a directory"):
        trainer.train(tiny_config(), blocker / "run", TrainSettings(data_dir=tmp_path / "no_data"))
    with pytest.raises(rundir.WorkdirError, match="is not a directory"):
        trainer.train(tiny_config(), blocker / "run")  # settings None: TrainSettings()
    with pytest.raises(rundir.WorkdirError, match="exists and is not a directory"):
        trainer.train(tiny_config(), blocker, TrainSettings(data_dir=tmp_path / "no_data"))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(rundir.WorkdirError, match="not writable"):
            trainer.train(
                tiny_config(), locked / "run", TrainSettings(data_dir=tmp_path / "no_data")
            )
        with pytest.raises(rundir.WorkdirError, match="not writable"):
            trainer.train(tiny_config(), locked, TrainSettings(data_dir=tmp_path / "no_data"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] + (
        ["locked"] if os.geteuid() != 0 else []
    )


def test_non_empty_folder_without_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(rundir.WorkdirError, match="holds no wae_tf run"):
        trainer.train(tiny_config(), tmp_path, TrainSettings(data_dir=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_missing_data_dir_raises_the_data_error_and_writes_nothing(tmp_path, reference_run):
    workdir = tmp_path / "run"
    with pytest.raises(data.DataError, match="does not exist"):
        trainer.train(tiny_config(), workdir, TrainSettings(data_dir=tmp_path / "missing"))
    assert not workdir.exists()

    existing, _ = reference_run  # a run in progress or done: left untouched too
    before = snapshot(existing)
    with pytest.raises(data.DataError, match="does not exist"):
        trainer.train(tiny_config(epochs=3), existing, TrainSettings(data_dir=tmp_path / "missing"))
    assert snapshot(existing) == before


@pytest.mark.slow
def test_cli_missing_data_dir_is_one_clear_line(tmp_path):
    workdir = tmp_path / "run"
    result = run_cli(
        "--dataset=mnist",
        "--model=vae",
        f"--data_dir={tmp_path / 'missing'}",
        f"--workdir={workdir}",
        *SMOKE,
    )
    assert result.returncode == 1
    assert "wae_tf.train: error: --data_dir=" in result.stderr  # names the flag
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not workdir.exists()


# ======================================================================================
# Flags
# ======================================================================================


def parse(*args: str) -> flags.FlagValues:
    values = flags.FlagValues()
    train.define_flags(values)
    values(["wae_tf.train", "--workdir=W", *args])
    return values


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset=svhn", "--model=wae_mmd"], "dataset"),
        (["--dataset=mnist", "--model=wae"], "model"),
        (["--dataset=mnist", "--model=vae", "--config=best"], "config"),
        (["--dataset=mnist", "--model=vae", "--config=official_code"], "wae_mmd and wae_gan"),
        (["--dataset=celeba", "--model=vae", "--config=official_code"], "wae_mmd and wae_gan"),
        (["--dataset=mnist", "--model=vae", "--epochs=0"], "epochs"),
        (["--dataset=mnist", "--model=vae", "--learning_rate=0"], "learning_rate must be"),
        (["--dataset=mnist", "--model=vae", "--mmd_kernel=gauss"], "mmd_kernel"),
        (["--dataset=mnist", "--model=vae", "--precision=fp8"], "precision"),
        (["--dataset=mnist", "--model=vae", "--checkpoint_every=0"], "checkpoint_every"),
        (["--dataset=mnist", "--model=vae", "--validate_every=-1"], "validate_every"),
        (["--model=vae"], "dataset"),
    ],
)
def test_invalid_flag_values_are_rejected_by_absl(args, message):
    with pytest.raises(flags.Error, match=message):
        parse(*args)


@pytest.mark.parametrize(
    "model, args, flag",
    [
        ("wae_gan", ["--mmd_kernel=rbf"], "--mmd_kernel"),
        ("vae", ["--mmd_kernel=rbf"], "--mmd_kernel"),
        ("vae", ["--penalty_weight=2"], "--penalty_weight"),
        ("wae_mmd", ["--adversary_learning_rate=0.001"], "--adversary_learning_rate"),
        ("wae_mmd", ["--adversary_fresh_input_noise"], "--adversary_fresh_input_noise"),
        ("vae", ["--pretrain_learning_rate=0.001"], "--pretrain_learning_rate"),
        ("vae", ["--nopretrain_input_noise"], "--pretrain_input_noise"),
        ("vae", ["--num_gpus=1"], "--num_gpus"),
    ],
)
def test_flags_without_effect_on_the_chosen_model_are_refused(model, args, flag):
    with pytest.raises(flags.Error, match=f"{flag} has no effect"):
        parse("--dataset=mnist", f"--model={model}", *args)


def test_flags_with_effect_on_the_chosen_model_are_accepted():
    parse(
        "--dataset=mnist",
        "--model=wae_gan",
        "--adversary_learning_rate=0.001",
        "--penalty_weight=2",
    )
    parse("--dataset=mnist", "--model=wae_mmd", "--mmd_kernel=rbf", "--pretrain_learning_rate=0.1")
    parse("--dataset=mnist", "--model=vae", "--distribution=mirrored", "--num_gpus=0")


def test_flag_errors_read_as_one_line_naming_the_flags():
    values = flags.FlagValues()
    train.define_flags(values)
    with pytest.raises(flags.Error) as missing:
        values(["wae_tf.train", "--model=vae"])
    assert console.flag_error_line(missing.value) == (
        "--dataset, --workdir must be given (--help lists the flags)"
    )
    with pytest.raises(flags.Error) as variant:
        parse("--dataset=mnist", "--model=vae", "--config=official_code")
    assert console.flag_error_line(variant.value) == (
        "--config=official_code: the official_code variant exists for wae_mmd and wae_gan only"
    )


@pytest.mark.slow
def test_cli_help_exits_0_and_misuse_is_one_line():
    for module in ("wae_tf.train", "wae_tf.export"):
        shown = run_python("-m", module, "--help")
        assert shown.returncode == 0, shown.stderr[-2000:]
        assert "--workdir" in shown.stdout
    stray = run_cli("--dataset=mnist", "--model=vae", "--workdir=unused", "extra")
    assert stray.returncode == 1
    assert stray.stderr.strip().splitlines() == [
        "wae_tf.train: error: unexpected argument 'extra' (flags are written --name=value; "
        "--help lists them)"
    ]
    variant = run_cli("--dataset=mnist", "--model=vae", "--config=official_code", "--workdir=u")
    assert variant.returncode == 1
    assert variant.stderr.strip().splitlines() == [
        "wae_tf.train: error: --config=official_code: the official_code variant exists for "
        "wae_mmd and wae_gan only"
    ]
    idle = run_cli("--dataset=mnist", "--model=vae", "--penalty_weight=3", "--workdir=u")
    assert idle.returncode == 1
    assert idle.stderr.strip().splitlines() == [
        "wae_tf.train: error: --penalty_weight has no effect on the vae (only on wae_mmd, "
        "wae_gan): drop it"
    ]


def test_flags_resolve_to_the_preset_with_width_and_overrides():
    values = parse(
        "--dataset=celeba",
        "--model=wae_gan",
        "--config=official_code",
        "--width=8",
        "--penalty_weight=3",
        "--z_dim=16",
        "--epochs=2",
    )
    expected = configs.with_width(configs.get_config("celeba", "wae_gan", "official_code"), 8)
    assert train.config_from_flags(values) == expected.replace(
        penalty_weight=3.0, z_dim=16, epochs=2
    )


# --- One flag per Config field, and the shared flag table ----------------------------------

PRESET_FIELDS = {"dataset", "model", "variant"}  # chosen by --dataset, --model, --config


def test_every_config_field_but_the_preset_choice_has_a_flag_of_its_name():
    values = parse("--dataset=mnist", "--model=vae")
    fields = {f.name for f in dataclasses.fields(configs.Config)}
    missing = sorted(name for name in fields - PRESET_FIELDS if name not in values)
    assert not missing, f"Config fields without a --flag: {missing}"
    assert "variant" not in values  # --config names it; --dataset and --model the others
    # none set: the resolved config is the preset itself
    assert train.config_from_flags(values) == configs.get_config("mnist", "vae")


def test_generated_config_flags_reach_the_config():
    values = parse(
        "--dataset=mnist",
        "--model=wae_gan",
        "--adam_beta1=0.7",
        "--encoder_filters=8,16",
        "--lr_factors=0.5,0.25,0.125",
        "--lr_schedule=constant",
        "--nobatch_norm",
        "--adversary_units=12",
        "--width=4",  # applied before the field flags: --adversary_units wins
    )
    expected = configs.with_width(configs.get_config("mnist", "wae_gan"), 4).replace(
        adam_beta1=0.7,
        encoder_filters=(8, 16),
        lr_factors=(0.5, 0.25, 0.125),
        lr_schedule="constant",
        batch_norm=False,
        adversary_units=12,
    )
    assert train.config_from_flags(values) == expected
    vae = parse("--dataset=celeba", "--model=vae", "--vae_gaussian_variance=0.5")
    assert train.config_from_flags(vae).vae_gaussian_variance == 0.5


@pytest.mark.parametrize(
    "arg, line",
    [
        (
            "--encoder_filters=8,x",
            "flag --encoder_filters=8,x: expected a comma-separated list of integers, e.g. 64,128",
        ),
        ("--encoder_filters=8,0", "flag --encoder_filters=8,0: every item must be >= 1"),
        ("--adam_beta1=1.5", "flag --adam_beta1=1.5: 1.5 is not a number in the range [0.0, 1.0]"),
        ("--lr_schedule=cosine", "flag --lr_schedule=cosine: value should be one of"),
        (
            "--decoder_filters=8",  # the decoder must land on 28 x 28: Config's own check
            "decoder_initial_size 7 x 2^1 = 14 does not match image size (28, 28)",
        ),
        (
            "--image_shape=32,32,1",
            "--image_shape follows --dataset (mnist: 28,28,1) and cannot be overridden: drop it",
        ),
        (
            "--pixel_range=symmetric",
            "--pixel_range follows --dataset (mnist: unit) and cannot be overridden: drop it",
        ),
    ],
)
def test_a_bad_config_flag_value_is_one_clear_line(arg, line):
    with pytest.raises(flags.Error) as error:
        parse("--dataset=mnist", "--model=wae_mmd", arg)
    assert console.flag_error_line(error.value).startswith(line)


@pytest.mark.parametrize(
    "model, arg",
    [
        ("wae_mmd", "--adversary_units=8"),
        ("vae", "--adversary_layers=2"),
        ("wae_mmd", "--log_prior_trick"),
        ("vae", "--log_prior_constant=exact"),
        ("wae_gan", "--vae_likelihood=gaussian"),
        ("wae_mmd", "--vae_gaussian_variance=0.5"),
        ("vae", "--input_noise_stddev=0.1"),
        ("vae", "--pretrain_steps=3"),
        ("vae", "--pretrain_encoder"),
        ("vae", "--pretrain_batch_size=10"),
        ("vae", "--pretrain_threshold=0.5"),
    ],
)
def test_generated_flags_without_effect_on_the_chosen_model_are_refused(model, arg):
    flag = arg.split("=")[0]
    with pytest.raises(flags.Error) as error:
        parse("--dataset=mnist", f"--model={model}", arg)
    assert console.flag_error_line(error.value).startswith(f"{flag} has no effect on the {model}")


def test_run_setting_flags_become_the_train_settings():
    values = parse(
        "--dataset=mnist",
        "--model=vae",
        "--data_dir=D",
        "--train_examples=10",
        "--eval_examples=5",
        "--nopretrain",
        "--sample_every=0",
        "--checkpoint_every=3",
        "--validate_every=2",
        "--keep_checkpoints=4",
        "--verbose=0",
    )
    assert train.settings_from_flags(values) == TrainSettings(
        data_dir="D",
        train_examples=10,
        eval_examples=5,
        pretrain=False,
        sample_every=0,
        checkpoint_every=3,
        validate_every=2,
        keep_checkpoints=4,
        verbose=0,
    )
    defaults = train.settings_from_flags(parse("--dataset=mnist", "--model=vae", "--verbose=1"))
    assert defaults == TrainSettings()


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(distribution="tpu"), "distribution must be one of"),
        (dict(precision="fp8"), "precision must be one of"),
        (dict(sample_every=-1), r"sample_every must be >= 0 \(0: no sample grids\), got -1"),
        (dict(checkpoint_every=0), "checkpoint_every must be >= 1, got 0"),
        (dict(validate_every=-1), "validate_every must be >= 0"),
        (dict(keep_checkpoints=0), "keep_checkpoints must be >= 1, got 0"),
    ],
)
def test_invalid_train_settings_are_refused_when_made(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(**changes)


def test_a_program_picks_shared_flags_with_its_own_defaults_and_help():
    """The reproduce scripts' use: --workdir=runs, --seed=0 and their own help; the table's
    type, bounds and choices stay."""
    values = flags.FlagValues()
    names = ["workdir", "seed", "sample_every", "split_rule"]
    defaults = {"workdir": "runs", "seed": 0, "sample_every": None}
    helps = {"seed": "Seed of training and of the figure's draws."}
    assert cli_flags.define_flags(values, names, defaults=defaults, helps=helps) == names
    values(["figure2"])
    assert (values.workdir, values.seed, values.sample_every, values.split_rule) == (
        "runs",
        0,
        None,
        None,
    )
    assert values["seed"].help == helps["seed"]
    assert values["sample_every"].help == cli_flags.FLAG_SPECS["sample_every"].help
    assert "epochs" not in values
    for bad in ("--seed=-1", "--split_rule=random"):
        with pytest.raises(flags.IllegalFlagValueError):
            values(["figure2", bad])
    with pytest.raises(ValueError, match="no shared flag out_dir"):
        cli_flags.define_flags(flags.FlagValues(), ["out_dir"])
    with pytest.raises(ValueError, match="not defined here: epochs"):
        cli_flags.define_flags(flags.FlagValues(), ["seed"], defaults={"epochs": 3})


def _flag_definitions() -> dict[str, list[str]]:
    """{flag name: where it is defined} over wae_tf/ and reproduce/: every literal name of
    a flags.DEFINE* call, and cli_flags' table (its DEFINE calls take the name from it)."""
    places: dict[str, list[str]] = {n: ["wae_tf/cli_flags.py"] for n in cli_flags.FLAG_SPECS}
    for package in ("wae_tf", "reproduce"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                call = node if isinstance(node, ast.Call) else None
                name = getattr(getattr(call, "func", None), "attr", "")
                if not name.startswith("DEFINE"):
                    continue
                index = 1 if name == "DEFINE" else 0  # DEFINE(parser, name, ...)
                argument = call.args[index] if len(call.args) > index else None
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    places.setdefault(argument.value, []).append(
                        f"{path.relative_to(REPO)}:{call.lineno}"
                    )
    return places


def test_the_flag_definition_finder_sees_every_spelling():
    defined = {
        name: [p.split(":")[0] for p in places] for name, places in _flag_definitions().items()
    }
    assert defined["export_dir"] == ["wae_tf/export.py"]  # flags.DEFINE_string("export_dir", ...)
    assert defined["adam_beta1"] == ["wae_tf/cli_flags.py"]  # generated from the table
    assert defined["out_dir"] == ["reproduce/cli.py"]  # a reproduce script's own flag


def test_no_flag_is_defined_in_two_places():
    twice = {name: places for name, places in _flag_definitions().items() if len(places) > 1}
    assert not twice, f"flags defined more than once (define them in wae_tf.cli_flags): {twice}"


@pytest.mark.slow
def test_cli_unknown_dataset_exits_with_the_flag_error():
    result = run_cli("--dataset=svhn", "--model=wae_mmd", "--workdir=unused")
    assert result.returncode != 0
    assert "--dataset=svhn" in result.stderr and "mnist" in result.stderr
    assert "Traceback" not in result.stderr


# ======================================================================================
# NaN guard
# ======================================================================================


@pytest.mark.slow
def test_nan_loss_stops_naming_the_metric_and_writes_no_checkpoint(mnist_dir, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(
        trainer.TrainingDivergedError, match=r"non-finite .*loss = nan.* at epoch 1"
    ):
        trainer.train(
            tiny_config("vae", epochs=2, learning_rate=1e30),
            workdir,
            TrainSettings(data_dir=mnist_dir, train_examples=200, eval_examples=100, verbose=0),
        )
    assert not (workdir / "checkpoints").exists()
    assert not (workdir / "DONE.json").exists() and not (workdir / "final.keras").exists()
    assert not (workdir / "history.csv").exists()


@pytest.mark.slow
def test_cli_divergence_is_the_last_line_without_tensorflows_finalizer_error(mnist_dir, tmp_path):
    args = [f"--data_dir={mnist_dir}", f"--workdir={tmp_path / 'run'}", "--learning_rate=1e30"]
    args += ["--train_examples=100", "--eval_examples=50", "--verbose=0", *SMOKE]
    # TensorFlow's warnings as a user sees them (the CLI's default log level, not the tests')
    result = run_python(
        "-m", "wae_tf.train", "--dataset=mnist", "--model=vae", *args, TF_CPP_MIN_LOG_LEVEL="1"
    )
    assert result.returncode == 1
    assert "GeneratorDataset" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("wae_tf.train: error: training diverged: non-finite"), last


@pytest.mark.slow
def test_sample_every_zero_writes_no_grids(mnist_dir, tmp_path):
    workdir = tmp_path / "run"
    trainer.train(
        tiny_config("wae_mmd", epochs=1),
        workdir,
        TrainSettings(
            data_dir=mnist_dir,
            train_examples=100,
            eval_examples=50,
            pretrain=False,
            sample_every=0,
            verbose=0,
        ),
    )
    assert (workdir / "DONE.json").exists()
    assert not list(workdir.glob("samples/*.png"))


# ======================================================================================
# history.csv bookkeeping
# ======================================================================================


def test_history_keeps_rows_up_to_the_checkpoint_and_drops_a_torn_row(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,3.5\n2,2.5\n3,1.5\n4,1.")  # epoch 4 torn by a kill
    rundir.truncate_history(path, 2)
    assert path.read_text() == "epoch,loss\n1,3.5\n2,2.5\n"
    rundir.append_history_row(path, {"epoch": 3, "loss": 1.25})
    assert history_rows(tmp_path) == [
        {"epoch": "1", "loss": "3.5"},
        {"epoch": "2", "loss": "2.5"},
        {"epoch": "3", "loss": "1.25"},
    ]


@pytest.mark.parametrize(
    ("examples", "flag"),
    [
        (dict(train_examples=60_001), "--train_examples"),
        (dict(eval_examples=10_001), "--eval_examples"),
    ],
)
def test_too_many_examples_name_the_flag(mnist_dir, examples, flag):
    # The error names the command line's flag, not an internal argument (num_examples).
    with pytest.raises(data.DataError, match=f"^{flag}=") as error:
        trainer.load_data(tiny_config("wae_mmd"), mnist_dir, **examples)
    assert "num_examples" not in str(error.value)
