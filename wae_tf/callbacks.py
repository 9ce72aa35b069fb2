"""What the training loop does after each epoch, as Keras callbacks.

    NonFiniteGuard   stop at a NaN/inf metric, naming it (first: the others check it)
    HistoryCSV       one history.csv row per epoch
    EpochCheckpoint  checkpoints/epoch_NNNN.npz every N epochs and after the last
    SampleGrids      sample and reconstruction PNGs every K epochs and after the last
    EpochSummary     one log line per epoch with the time left
    TimeProjection   one log line after the first steps: time per step, projected run time
    tensorboard_callbacks   Keras's TensorBoard callback where it works

`Cadence` says when the per-epoch extras are due; none of them changes the training
math. A write that fails (a full disk) raises `fileio.DiskFullError` out of `fit`
unchanged; `wae_tf.trainer` turns it into one line.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from absl import logging

from wae_tf import checkpoints, console, optimizers, streams, visualize
from wae_tf.run_settings import Cadence  # noqa: F401  (re-exported: when extras are due)
from wae_tf.rundir import RunPaths, append_history_row

# Sample grids: 64 random samples (8 x 8) from fixed prior draws, and 32 test images with
# their reconstructions (8 rows of 8, real and reconstructed rows alternating).
GRID_COLS = 8
NUM_SAMPLES = 64
NUM_RECONSTRUCTIONS = 32
SAMPLE_SEED = 2018  # fixed integer seed of the sample grids' prior draws (any constant works)


def _float_logs(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(np.asarray(keras.ops.convert_to_numpy(v))) for k, v in (logs or {}).items()}


def _learning_rates(model: keras.Model) -> dict[str, float]:
    """The current learning rate of each Adam (the schedule reads their step counters)."""
    rates = {}
    names = {
        optimizers.AUTOENCODER: "learning_rate",
        optimizers.ADVERSARY: "adversary_learning_rate",
    }
    for name, column in names.items():
        if column == "adversary_learning_rate" and model.config.penalty != "gan":
            continue
        optimizer = optimizers.sub_optimizer(model.optimizer, name)
        rates[column] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    return rates


class NonFiniteGuard(keras.callbacks.Callback):
    """Stop training when a loss or metric becomes NaN or infinite, and say which.

    Checks every batch's running metrics and the epoch's validation metrics. Once it has
    tripped, the other callbacks of this module write nothing for that epoch, so no
    checkpoint of the diverged state exists.
    """

    def __init__(self):
        super().__init__()
        self.message: str | None = None
        self._epoch = 0

    @property
    def tripped(self) -> bool:
        return self.message is not None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"epoch {self._epoch + 1}, step {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"the end of epoch {epoch + 1}")

    def _check(self, logs, where: str) -> None:
        if self.tripped:
            return
        values = _float_logs(logs)
        bad = {k: v for k, v in values.items() if not np.isfinite(v)}
        if bad:
            listed = ", ".join(f"{k} = {v}" for k, v in bad.items())
            self.message = f"non-finite {listed} at {where}"
            logging.error("stopping: %s", self.message)
            self.model.stop_training = True


class HistoryCSV(keras.callbacks.Callback):
    """Append one row per completed epoch to history.csv (CSVLogger(append=True) style).

    Columns: epoch (1-based count of completed epochs), the metrics sorted by name, and
    the learning rate(s) the epoch trained with, and epoch_time_s: the epoch's wall time
    from its first step to the end of its validation (checkpoint and sample grids not
    included). With `validation`, every row has the
    val_ columns (validation reports the training metrics' names with a val_ prefix);
    they stay empty in epochs that were not validated (see `Cadence`).
    """

    def __init__(self, path: Path, guard: NonFiniteGuard, validation: bool = True):
        super().__init__()
        self.path, self.guard, self.validation = path, guard, validation
        self._rates: dict[str, float] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self._rates = _learning_rates(self.model)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if not self.guard.tripped:
            values: dict[str, float | None] = _float_logs(logs)
            if self.validation:
                trained = [k for k in values if not k.startswith("val_")]
                values = {**{f"val_{k}": None for k in trained}, **values}
            seconds = time.perf_counter() - self._start
            row = {"epoch": epoch + 1, **values, **self._rates, "epoch_time_s": seconds}
            append_history_row(self.path, row)


class EpochCheckpoint(keras.callbacks.Callback):
    """Every `every` epochs and after the last: write checkpoints/epoch_NNNN.npz
    atomically, then drop all but the newest `keep`."""

    def __init__(
        self,
        paths: RunPaths,
        guard: NonFiniteGuard,
        elapsed_before: float,
        every: int,
        last_epoch: int,
        keep: int = checkpoints.DEFAULT_KEEP,
    ):
        super().__init__()
        self.paths, self.guard = paths, guard
        self.every, self.last_epoch, self.keep = every, last_epoch, keep
        self.elapsed_before = elapsed_before  # training seconds of earlier invocations
        self._start = time.time()

    def on_train_begin(self, logs=None):
        self._start = time.time()

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.tripped or not Cadence.due(self.every, epoch + 1, self.last_epoch):
            return
        meta = {
            "epoch": epoch + 1,
            "elapsed_s": self.elapsed,
            "config": self.model.config.to_dict(),
        }
        checkpoints.save(self.model, self.paths.checkpoint(epoch + 1), meta)
        checkpoints.prune(self.paths, self.keep)


class SampleGrids(keras.callbacks.Callback):
    """Every `every` epochs and after the last: PNG grids of samples and reconstructions."""

    def __init__(
        self,
        directory: Path,
        every: int,
        last_epoch: int,
        guard: NonFiniteGuard,
        test_images: np.ndarray,
    ):
        super().__init__()
        self.directory, self.every, self.last_epoch = directory, every, last_epoch
        self.guard, self.test_images = guard, test_images

    def on_epoch_end(self, epoch, logs=None):
        if not self.guard.tripped and Cadence.due(self.every, epoch + 1, self.last_epoch):
            write_sample_grids(self.model, self.directory, epoch + 1, self.test_images)


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch: metrics, duration and the estimated time left."""

    def __init__(self, last_epoch: int):
        super().__init__()
        self.last_epoch = last_epoch
        self._epoch_start = self._train_start = time.time()
        self._first_epoch: int | None = None  # the epoch this invocation started at

    def on_train_begin(self, logs=None):
        self._train_start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()
        if self._first_epoch is None:
            self._first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        done = epoch + 1 - (self._first_epoch or 0)
        left = (now - self._train_start) / max(done, 1) * (self.last_epoch - epoch - 1)
        metrics = " ".join(f"{k}={v:.4g}" for k, v in _float_logs(logs).items())
        logging.info(
            "epoch %d/%d: %s (%.1f s, ~%s left)",
            epoch + 1,
            self.last_epoch,
            metrics,
            now - self._epoch_start,
            console.format_duration(left),
        )


class TimeProjection(keras.callbacks.Callback):
    """One log line early in the first epoch of this invocation: the measured time per
    training step and what it projects for the epochs left, on this machine.

    Timed from the end of the epoch's first step (which includes tracing) over the next
    `timed_steps` steps; an epoch shorter than that reports at its end from the steps it
    had (from the whole epoch when it had one step). Counts training steps only: the
    per-epoch lines (`EpochSummary`) then refine it with validation and checkpoints.
    """

    def __init__(self, timed_steps: int = 5):
        super().__init__()
        self.timed_steps = timed_steps
        self._epoch: int | None = None  # the first epoch of this invocation (0-based)
        self._begin = self._first_step_done = self._last_step_done = 0.0
        self._steps_done = 0
        self.reported = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._epoch is None:
            self._epoch, self._begin = epoch, time.time()

    def on_train_batch_end(self, batch, logs=None):
        if self.reported or self._epoch is None:
            return
        self._steps_done = batch + 1
        self._last_step_done = time.time()
        if batch == 0:
            self._first_step_done = self._last_step_done
        elif batch >= self.timed_steps:
            self._report((self._last_step_done - self._first_step_done) / batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.reported or self._steps_done == 0:
            return
        if self._steps_done > 1:
            timed = self._steps_done - 1
            self._report((self._last_step_done - self._first_step_done) / timed)
        else:
            self._report(self._last_step_done - self._begin)

    def _report(self, per_step: float) -> None:
        self.reported = True
        steps, last = self.params["steps"], self.params["epochs"]
        epochs = last - self._epoch
        left = "" if self._epoch == 0 else " left"
        logging.info(
            "epoch %d: %s x %d steps/epoch x %d epoch%s%s: ~%s on this machine (training "
            "steps only; the epoch lines add validation and checkpoints)",
            self._epoch + 1,
            console.format_step_time(per_step),
            steps,
            epochs,
            "" if epochs == 1 else "s",
            left,
            console.format_duration(per_step * steps * epochs),
        )


def tensorboard_callbacks(log_dir: Path) -> list[keras.callbacks.Callback]:
    """Keras's TensorBoard callback on the TensorFlow backend when `tensorboard` is installed
    (tf.summary needs it; TensorFlow >= 2.21 no longer depends on it), else none."""
    if keras.backend.backend() != "tensorflow":
        return []
    if importlib.util.find_spec("tensorboard") is None:
        logging.warning("no TensorBoard logs: `pip install tensorboard` to get them")
        return []
    return [keras.callbacks.TensorBoard(str(log_dir), write_graph=False)]


def write_sample_grids(
    model: keras.Model, directory: str | os.PathLike, epoch: int, test_images: np.ndarray
) -> tuple[Path, Path]:
    """Write samples_epoch_NNNN.png and reconstructions_epoch_NNNN.png under `directory`.

    Samples decode NUM_SAMPLES fixed prior draws (seed SAMPLE_SEED, the same at every
    epoch); reconstructions show up to NUM_RECONSTRUCTIONS uint8 `test_images` (odd rows)
    above their reconstructions (even rows) [paper, Fig. 2-3].
    """
    directory = Path(directory)
    pixel_range = model.config.pixel_range
    samples = visualize.to_uint8(model.sample(NUM_SAMPLES, seed=SAMPLE_SEED), pixel_range)
    sample_path = visualize.save_png(
        directory / f"samples_epoch_{epoch:04d}.png",
        visualize.image_grid(samples, NUM_SAMPLES // GRID_COLS, GRID_COLS),
    )
    n = min(NUM_RECONSTRUCTIONS, len(test_images))
    cols = GRID_COLS if n >= GRID_COLS else n
    n -= n % cols
    reconstructed = model.reconstruct(streams.to_model_range(test_images[:n], pixel_range))
    reconstruction_path = visualize.save_png(
        directory / f"reconstructions_epoch_{epoch:04d}.png",
        visualize.reconstruction_grid(test_images[:n], reconstructed, pixel_range, cols),
    )
    return sample_path, reconstruction_path
