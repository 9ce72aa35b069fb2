"""Training as a library: load the data, build, pretrain, train or resume, finish.

    train(config, workdir, settings)    train `config` in `workdir`, resuming what is there
    TrainSettings(...)                  the run settings: data, cadence, devices } from wae_tf.
                                                                                } run_settings
    load_trained_model(workdir)         the model of a finished (or unfinished) run } from
    build_compiled_model(config, steps) a run's model, compiled                   } wae_tf.
    load_keras_file(path)               a .keras file, one line if it is damaged  } trained

The command line (`python -m wae_tf.train`) is a thin shell over `train`; the workdir's
files are described in `wae_tf.train`'s docstring and named by `wae_tf.rundir.RunPaths`.

Errors a user can act on are `TrainError`s with a one-line message: `WorkdirError`
(unusable or different run; `DamagedModelFileError`, `NoFinalModelError`),
`TrainingDivergedError` (NaN/inf), `NoSpaceError` (a file could not be written; the last
checkpoint is intact), plus `wae_tf.data.DataError`.

Backends: TensorFlow is imported only for `--distribution` / `--precision`
(`wae_tf.distribute`), so training runs on JAX wherever the models support it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from absl import logging

from wae_tf import callbacks, checkpoints, console, data, fileio, models, rundir, streams
from wae_tf.configs import Config
from wae_tf.run_settings import (  # noqa: F401  (re-exported: this module's API)
    DEFAULT_EVAL_EXAMPLES,
    Cadence,
    TrainSettings,
)
from wae_tf.rundir import RunPaths, TrainError, WorkdirError
from wae_tf.trained import (  # noqa: F401  (re-exported: this module's API)
    DamagedModelFileError,
    NoFinalModelError,
    build_compiled_model,
    load_keras_file,
    load_trained_model,
)


class TrainingDivergedError(TrainError):
    """A loss or metric became NaN or infinite; no checkpoint of that state was written."""


class NoSpaceError(TrainError):
    """A file of the run could not be written (full disk); the checkpoints are intact."""


# ======================================================================================
# Data
# ======================================================================================


@dataclasses.dataclass
class RunData:
    """A run's images and where they came from (config.json's "data" record)."""

    train: np.ndarray  # uint8 (N, H, W, C) in [0, 255]
    eval: np.ndarray  # uint8 (M, H, W, C) in [0, 255]
    provenance: dict[str, Any]


class _ModelRangeView:
    """uint8 images seen as float32 in the model's range, converted when indexed.

    Lets encoder pretraining draw random batches without a 4x float copy of the data.
    """

    def __init__(self, images: np.ndarray, pixel_range: str):
        self.images, self.pixel_range = images, pixel_range

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> np.ndarray:
        return streams.to_model_range(self.images[index], self.pixel_range)


def load_data(
    config: Config,
    data_dir: str | os.PathLike | None,
    source: str = "files",
    train_examples: int | None = None,
    eval_examples: int | None = None,
) -> RunData:
    """Train and test images as uint8, and where they came from. Writes nothing.

    The split is config.split_rule's. Validation uses the test images in the fixed-seed
    order `streams.eval_order` (not the file's order, which would bias a batch's MMD): the
    first eval_examples of that order, by default min(DEFAULT_EVAL_EXAMPLES, N_test).
    """
    start = time.time()
    load = dict(source=source, split_rule=config.split_rule)
    train = dict(num_examples=train_examples, num_examples_name="--train_examples")
    train_images = data.load_uint8(config.dataset, data_dir, "train", **train, **load)
    test_images = data.load_uint8(config.dataset, data_dir, "test", **load)
    wanted = (
        min(DEFAULT_EVAL_EXAMPLES, len(test_images)) if eval_examples is None else eval_examples
    )
    evaluation = streams.eval_subset(test_images, wanted, f"--eval_examples={wanted}")
    if train_images.shape[1:] != tuple(config.image_shape):
        raise TrainError(
            f"{config.dataset} images are {train_images.shape[1:]} but the config expects "
            f"{tuple(config.image_shape)}"
        )
    steps = streams.steps_per_epoch(len(train_images), config.batch_size)
    provenance = {
        "dataset": config.dataset,
        "source": source,
        "data_dir": None if data_dir is None else str(Path(data_dir).expanduser().resolve()),
        "split_rule": data.describe_split(config.dataset, data_dir, config.split_rule, source),
        "train_split": "train",
        "eval_split": "test",
        "eval_order": streams.EVAL_ORDER_TEXT,
        "batch_order": config.batch_order,
        "train_size": len(train_images),
        "eval_size": len(evaluation),
        "train_examples": train_examples,
        "eval_examples": eval_examples,
        "batch_size": config.batch_size,
        "steps_per_epoch": steps,
        "pixel_range": config.pixel_range,
    }
    logging.info(
        "data: %d train / %d test %s images %s (%s), %d steps per epoch, loaded in %.1f s",
        len(train_images),
        len(evaluation),
        config.dataset,
        train_images.shape[1:],
        provenance["split_rule"],
        steps,
        time.time() - start,
    )
    return RunData(train_images, evaluation, provenance)


# ======================================================================================
# Devices, model, pretraining
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class _Devices:
    strategy: Any  # a tf.distribute.Strategy, or None: the default device
    chief: bool  # whether this process writes the workdir's files


def _setup_devices(
    distribution: str, num_gpus: int | None, precision: str, batch_size: int
) -> _Devices:
    """Set the dtype policy, make the strategy and check that the global batch splits.

    Follows the contract of `wae_tf.distribute` (TensorFlow), which is imported only for
    non-default settings. Writes no file.
    """
    if precision == "float32" and distribution == "none":
        if keras.config.dtype_policy().name != "float32":
            keras.config.set_dtype_policy("float32")
        if num_gpus is not None:
            logging.warning("num_gpus=%s is ignored without a --distribution", num_gpus)
        return _Devices(strategy=None, chief=True)
    from wae_tf import distribute

    distribute.set_precision(precision)  # before any layer is built
    try:
        strategy = distribute.make_strategy(distribution, num_gpus)
        distribute.check_global_batch(batch_size, strategy)
    except ValueError as e:  # too many GPUs asked for, a batch that does not split, ...
        raise TrainError(f"--distribution={distribution}: {e}") from e
    chief = strategy is None or distribute.is_chief(strategy)
    return _Devices(strategy=strategy, chief=chief)


def _pretrain(model: keras.Model, train_images: np.ndarray, verbose: int, strategy=None) -> None:
    """Encoder pretraining [code, e_pretrain], on the default device.

    `pretraining.pretrain_encoder` runs its steps outside `strategy.run`, which mirrored
    variables do not allow; under a strategy it therefore runs on an identical model
    built outside it, whose state (encoder weights, BN statistics, seed generator) is then
    copied over. Both models start equal: every initialiser is seeded by config.seed.
    """
    config = model.config
    logging.info(
        "encoder pretraining: up to %d steps on batches of %d [code, e_pretrain]",
        config.pretrain_steps,
        min(config.pretrain_batch_size, len(train_images)),
    )
    images = _ModelRangeView(train_images, config.pixel_range)
    if strategy is None:
        model.pretrain_encoder(images, verbose=verbose)
        return
    single = models.build_model(config)
    single.pretrain_encoder(images, verbose=verbose)
    for target, source in zip(model.variables, single.variables, strict=True):
        target.assign(source.value)


# ======================================================================================
# Resume, fit, finish
# ======================================================================================


def _resume_or_start(
    model: keras.Model,
    paths: RunPaths,
    run_data: RunData,
    settings: TrainSettings,
    devices: _Devices,
) -> tuple[int, float]:
    """Restore the newest readable checkpoint, or pretrain a fresh model.

    Returns (completed epochs, training seconds so far). The chief also tidies the
    workdir: temporary files of a killed run, damaged checkpoints (moved aside), history
    rows ahead of the checkpoint, surplus checkpoints, and DONE.json of a run being
    extended.
    """
    chief = devices.chief
    if chief:
        rundir.remove_stale_temporaries(paths)
    restored = checkpoints.restore_latest(model, paths, move_aside=chief)
    if restored is None:
        _check_nothing_finished_is_lost(paths, warn=False)  # every checkpoint was unreadable
        if chief:
            paths.done.unlink(missing_ok=True)
            rundir.truncate_history(paths.history, 0)
        config = model.config
        if settings.pretrain and config.pretrain_encoder and config.penalty is not None:
            _pretrain(model, run_data.train, settings.verbose, devices.strategy)
        return 0, 0.0
    epoch, meta = restored
    if chief:
        paths.done.unlink(missing_ok=True)  # extending a finished run: not finished any more
        rundir.truncate_history(paths.history, epoch)
        checkpoints.prune(paths, settings.keep_checkpoints)
    logging.info("resuming from %s (epoch %d completed)", paths.checkpoint(epoch), epoch)
    return epoch, float(meta.get("elapsed_s", 0.0))


def _check_nothing_finished_is_lost(paths: RunPaths, warn: bool = True) -> None:
    """Before a fresh start in a workdir without checkpoints: refuse if it holds a finished
    run (restarting would replace its history and final model), warn if it holds the
    history of epochs that will be trained again."""
    if paths.done.is_file() or paths.final_model.is_file():
        raise WorkdirError(
            f"{paths.root} holds a finished run but no checkpoint to extend it from "
            f"({paths.checkpoints.name}/ is empty or gone); training would restart from "
            "epoch 1 and replace its history and final model. Use a new --workdir for a "
            "longer run, or move this one away first"
        )
    if warn and paths.history.is_file() and paths.history.stat().st_size > 0:
        logging.warning(
            "%s: no checkpoint to resume from; training starts at epoch 1 and history.csv is "
            "rewritten",
            paths.root,
        )


def _fit(
    model: keras.Model,
    paths: RunPaths,
    run_data: RunData,
    initial_epoch: int,
    elapsed_before: float,
    settings: TrainSettings,
    chief: bool = True,
) -> float:
    """model.fit from `initial_epoch` to config.epochs. Returns the cumulative train time.

    Only the chief gets the callbacks that write files.
    """
    config, cadence = model.config, settings.cadence
    train_ds = streams.train_dataset(
        run_data.train,
        config.batch_size,
        seed=config.seed,
        pixel_range=config.pixel_range,
        start_epoch=initial_epoch,
        batch_order=config.batch_order,
    )
    # Keras validates after the (1-based) epochs listed in validation_freq.
    validated = [
        e
        for e in range(initial_epoch + 1, config.epochs + 1)
        if Cadence.due(cadence.validate_every, e, config.epochs)
    ]
    eval_ds = None
    if validated:
        eval_ds = streams.eval_dataset(
            run_data.eval, config.batch_size, pixel_range=config.pixel_range
        )
        if streams.use_tf_data():
            # Repeated, each pass bounded by validation_steps: under a strategy Keras peeks
            # at its cached validation iterator before each pass, which a one-pass stream
            # has exhausted by the second (StopIteration; keras/src/backend/tensorflow/
            # trainer.py, evaluate -> _maybe_symbolic_build). Every pass restarts at image 0.
            eval_ds = eval_ds.repeat()
    guard = callbacks.NonFiniteGuard()
    checkpoint = callbacks.EpochCheckpoint(
        paths,
        guard,
        elapsed_before,
        cadence.checkpoint_every,
        config.epochs,
        keep=cadence.keep_checkpoints,
    )
    extras: list[keras.callbacks.Callback] = [guard]  # first: the others read guard.tripped
    if chief:
        extras += [
            # before the checkpoint: a kill between the two leaves a row ahead of the
            # checkpoint, which the resumed run drops (rundir.truncate_history)
            callbacks.HistoryCSV(paths.history, guard, validation=cadence.validate_every > 0),
            checkpoint,
            callbacks.SampleGrids(
                paths.samples, cadence.sample_every, config.epochs, guard, run_data.eval
            ),
            *callbacks.tensorboard_callbacks(paths.tensorboard),
        ]
    extras += [callbacks.TimeProjection(), callbacks.EpochSummary(config.epochs)]
    logging.info(
        "training %s on %s: epochs %d..%d of %d, %d steps each, workdir %s",
        config.model,
        config.dataset,
        initial_epoch + 1,
        config.epochs,
        config.epochs,
        run_data.provenance["steps_per_epoch"],
        paths.root,
    )
    model.fit(
        train_ds,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=run_data.provenance["steps_per_epoch"],
        validation_data=eval_ds,
        validation_freq=validated or 1,
        # The streams have no static length: say how long each pass is (this also keeps
        # Keras from warning that the evaluation input "ran out of data").
        validation_steps=-(-len(run_data.eval) // config.batch_size) if validated else None,
        shuffle=False,  # the stream is already shuffled per epoch [wae_tf.data]
        callbacks=extras,
        # --verbose=2's one line per epoch is EpochSummary's (metrics, time, time left):
        # Keras's own "Epoch N/M" and metrics lines would repeat it on stdout.
        verbose=1 if settings.verbose == 1 else 0,
    )
    if guard.tripped:
        latest = checkpoints.latest(paths)
        raise TrainingDivergedError(
            f"training diverged: {guard.message}. Nothing of that state was saved; the last "
            f"good checkpoint is {latest[1] if latest else 'none (no epoch completed)'}. "
            f"Try a lower --learning_rate{' or --penalty_weight' if config.penalty else ''}."
        )
    return checkpoint.elapsed


def _finish(
    model: keras.Model, paths: RunPaths, epochs: int, train_seconds: float, wall_seconds: float
) -> None:
    """Write final.keras, then DONE.json (the marker that the run is complete).

    final.keras holds the model without its optimizer (3x smaller: Adam keeps two moments
    per weight); the last checkpoint keeps the optimizer for extending the run.
    """
    plain = models.build_model(model.config)
    plain.set_weights(model.get_weights())
    console.import_tensorflow_quietly()  # Keras's save imports it even on JAX, noisily
    with fileio.atomic_path(paths.final_model, suffix=".keras") as tmp:
        plain.save(tmp)
    fileio.write_json(
        paths.done,
        {
            "epochs": epochs,
            "total_train_time_s": round(train_seconds, 3),
            "this_invocation_s": round(wall_seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "final_model": paths.final_model.name,
        },
    )
    logging.info(
        "finished %d epochs: %.1f s of training in total (%.1f s in this invocation); %s",
        epochs,
        train_seconds,
        wall_seconds,
        paths.final_model,
    )


def _no_space_message(paths: RunPaths, error: BaseException) -> str:
    """One line: what could not be written, the intact checkpoint, and what to do."""
    while not isinstance(error, fileio.DiskFullError) and (error.__cause__ or error.__context__):
        error = error.__cause__ or error.__context__
    what = str(error) if isinstance(error, fileio.DiskFullError) else f"no space left ({error})"
    latest = checkpoints.latest(paths)
    if latest is None:
        state = "no checkpoint was written yet"
    else:
        state = f"the last good checkpoint is epoch {latest[0]} ({latest[1]}), intact"
    return f"{what}; {state}. Free some space and rerun the same command to resume"


# ======================================================================================
# train
# ======================================================================================


def train(
    config: Config, workdir: str | os.PathLike, settings: TrainSettings | None = None
) -> keras.Model:
    """Train `config` for `config.epochs` epochs in `workdir`, resuming what is there.

    Args:
      config: the resolved run config (`configs.get_config(...)` plus overrides); its
        `epochs` is the target number of epochs, all other fields must match a run already
        in `workdir` (else WorkdirError).
      workdir: the run's folder (created if needed; see `wae_tf.train`'s docstring).
      settings: where the data is, how often to sample / checkpoint / validate, devices,
        verbosity (`TrainSettings`, whose docstring says what each means); None: the
        defaults, `TrainSettings()`.

    Returns:
      The trained model. A finished run (DONE.json with >= config.epochs epochs) is not
      retrained: its final model is loaded and returned.

    Raises:
      WorkdirError (unwritable workdir, different run there, no readable checkpoint),
      wae_tf.data.DataError (bad data; nothing is written then), TrainingDivergedError
      (NaN/inf loss), NoSpaceError (a full disk; the last checkpoint is intact).
    """
    settings = TrainSettings() if settings is None else settings
    paths = RunPaths(Path(workdir).expanduser().absolute())
    try:
        return _train(config, paths, settings)
    except OSError as e:
        if not fileio.is_disk_full(e):
            failure = fileio.find_write_error(e)  # read-only, too large, no permission
            if failure is None:
                raise
            raise WorkdirError(checkpoints.write_failure_message(paths, failure)) from e
        raise NoSpaceError(_no_space_message(paths, e)) from e


def _train(config: Config, paths: RunPaths, settings: TrainSettings) -> keras.Model:
    """`train` with the workdir resolved."""
    invocation_start = time.time()
    rundir.check_workdir_usable(paths.root)
    devices = {k: getattr(settings, k) for k in ("distribution", "num_gpus", "precision")}
    setup = _setup_devices(**devices, batch_size=config.batch_size)
    replicas = setup.strategy.num_replicas_in_sync if setup.strategy is not None else 1
    if replicas > 1:  # the paper's BN statistics are over the whole batch: synchronise them
        logging.info("%d replicas: batch-norm statistics synchronised across them", replicas)
        config = config.replace(sync_batch_norm=True)
    previous = rundir.read_json(paths.config)
    if previous is not None:
        rundir.check_same_run(previous, config, paths.root)
    finished = rundir.read_json(paths.done)
    if finished is not None and paths.final_model.is_file():
        if finished.get("epochs", 0) >= config.epochs:
            logging.info(
                "%s already finished %d epochs (>= %d requested): not retraining; loading %s",
                paths.root,
                finished["epochs"],
                config.epochs,
                paths.final_model.name,
            )
            try:
                return load_trained_model(paths.root)
            except DamagedModelFileError as error:
                if checkpoints.latest(paths) is None:
                    raise
                logging.warning("%s: rewriting it from the last checkpoint", error)
    if checkpoints.latest(paths) is None:
        _check_nothing_finished_is_lost(paths)  # before anything is written

    run_data = load_data(
        config,
        settings.data_dir,
        settings.data_source,
        settings.train_examples,
        settings.eval_examples,
    )
    if previous is not None:
        rundir.check_same_data(previous, run_data.provenance, paths.root)
    # Everything above wrote nothing; from here on the workdir is created and updated
    # (by the chief only, under multi-worker training: the workdir must be shared).
    chief = setup.chief
    if chief:
        rundir.create_workdir(paths.root)
    with rundir.workdir_lock(paths.root) if chief else contextlib.nullcontext():
        if chief:
            rundir.write_run_record(paths, config, run_data.provenance, previous, devices)
        steps = run_data.provenance["steps_per_epoch"]
        with setup.strategy.scope() if setup.strategy else contextlib.nullcontext():
            model = build_compiled_model(config, steps)
        initial_epoch, elapsed = _resume_or_start(model, paths, run_data, settings, setup)
        if initial_epoch < config.epochs:
            elapsed = _fit(model, paths, run_data, initial_epoch, elapsed, settings, chief)
        else:
            logging.warning(
                "the latest checkpoint is at epoch %d >= %d requested: finishing without training",
                initial_epoch,
                config.epochs,
            )
        if chief:
            epochs_done = max(initial_epoch, config.epochs)
            _finish(model, paths, epochs_done, elapsed, time.time() - invocation_start)
    return model
