"""Train a WAE-MMD, WAE-GAN or VAE on MNIST, Fashion-MNIST or CelebA, resumably.

Command line (absl flags; `--helpfull` lists them all):

    python -m wae_tf.train --dataset=mnist --model=wae_mmd --data_dir=../shared/data/mnist \\
        --workdir=runs/mnist_wae_mmd

Rerunning the same command after an interruption (even `kill -9` mid-epoch) continues from
the last completed epoch with the same weights, optimizer state, learning-rate schedule
position, RNG stream and data order, and ends with the same weights as an uninterrupted
run (bit for bit on CPU: tests/test_train.py for TensorFlow; checked by hand on JAX).
A larger `--epochs` extends a run; a finished run is not retrained. From Python:
`train(config, workdir, ...)` and `load_trained_model(workdir)`.

What a workdir holds:

    config.json        the resolved Config, data provenance (sizes, split rule), the command
                       line of every invocation, library versions
    history.csv        one row per completed epoch: epoch (1, 2, ...), then the training and
                       validation metrics and the learning rates used in that epoch
    checkpoints/epoch_NNNN.npz
                       every variable of the model (weights, BN statistics, the seed
                       generator's state) and of the optimizer (Adam moments, step counters,
                       hence the schedule position) after epoch NNNN; written atomically
                       every --checkpoint_every epochs and after the last; only the latest
                       is kept
    samples/samples_epoch_NNNN.png          decoded fixed prior draws (the same z each time)
    samples/reconstructions_epoch_NNNN.png  test images (odd rows) and their reconstructions
                                            (even rows), the paper's Fig. 2-3 layout
    tensorboard/       TensorBoard logs (TensorFlow backend, `tensorboard` package installed)
    final.keras        the trained model, without optimizer (`load_trained_model`), and
    DONE.json          written last: epochs trained and the total training time

Backends: this module never imports TensorFlow itself except for the optional
`--distribution` / `--precision` support (`wae_tf.distribute`) and Keras's TensorBoard
callback on the TensorFlow backend, so `KERAS_BACKEND=jax python -m wae_tf.train` works
wherever the models support JAX.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from absl import app, flags, logging

from wae_tf import configs, data, models, optimizers, visualize
from wae_tf.configs import Config
from wae_tf.provenance import command_line, library_versions
from wae_tf.rundir import CHECKPOINT_PREFIX, RunPaths

# Validation metrics are computed on the first min(1000, N_test) test images by default:
# enough to watch progress at a small cost per epoch. Figures and FID use the full set.
DEFAULT_EVAL_EXAMPLES = 1000
# Sample grids: 64 random samples (8 x 8) from fixed prior draws, and 32 test images with
# their reconstructions (8 rows of 8, real and reconstructed rows alternating).
GRID_COLS = 8
NUM_SAMPLES = 64
NUM_RECONSTRUCTIONS = 32
SAMPLE_SEED = 2018  # fixed integer seed of the sample grids' prior draws (any constant works)


class TrainError(RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


class WorkdirError(TrainError):
    """The workdir is unusable: not writable, or it holds a different run."""


class TrainingDivergedError(TrainError):
    """A loss or metric became NaN or infinite; no checkpoint of that state was written."""


# ======================================================================================
# Workdir layout and small file helpers
# ======================================================================================


def _file_mode() -> int:
    """The mode a plainly created file gets: 0o666 minus the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def _atomic_path(path: Path, suffix: str = ".tmp"):
    """Yield a temporary path next to `path`; on success rename it onto `path` (atomic).

    On any failure (or interruption) the temporary file is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; use the usual umask mode
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WorkdirError(
            f"{path} is unreadable ({e}); move it away or use another --workdir"
        ) from e


# ======================================================================================
# Workdir checks: before anything is loaded or written
# ======================================================================================


def _check_workdir_usable(root: Path) -> None:
    """Fail early, writing nothing, if `root` cannot hold a run."""
    if root.exists():
        if not root.is_dir():
            raise WorkdirError(f"workdir {root} exists and is not a directory")
        _probe_writable(root)
        if not (root / "config.json").is_file() and any(root.iterdir()):
            raise WorkdirError(
                f"workdir {root} is not empty and holds no wae_tf run (no config.json); "
                "choose a new or empty --workdir"
            )
        return
    ancestor = root.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise WorkdirError(f"cannot create workdir {root}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise WorkdirError(f"cannot create workdir {root}: {ancestor} is not writable")


def _probe_writable(root: Path) -> None:
    """Create and delete a temporary file in `root` (leaves nothing behind)."""
    try:
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as e:
        raise WorkdirError(f"workdir {root} is not writable ({e.strerror or e})") from e


def _create_workdir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {root} ({e.strerror or e})") from e
    _probe_writable(root)


# Fields a resumed run may change: the target epoch count, and BN synchronisation, which
# follows --distribution (the weights and the math per replica are the same).
_RESUMABLE_FIELDS = ("epochs", "sync_batch_norm")


def _config_differences(stored: dict[str, Any], config: Config) -> list[str]:
    """Fields (other than _RESUMABLE_FIELDS) where the stored run's config differs."""
    try:
        previous = Config.from_dict(stored).to_dict()
    except (TypeError, ValueError) as e:
        return [f"the stored config is not a valid Config ({e})"]
    current = config.to_dict()
    return [
        f"{name}: {previous[name]!r} there, {current[name]!r} now"
        for name in current
        if name not in _RESUMABLE_FIELDS and previous[name] != current[name]
    ]


def _check_same_run(record: dict[str, Any], config: Config, root: Path) -> None:
    differences = _config_differences(record.get("config", {}), config)
    if differences:
        raise WorkdirError(
            f"workdir {root} holds a run with a different config ({'; '.join(differences)}); "
            "refusing to overwrite it: use another --workdir (only --epochs may change)"
        )


# Data provenance fields that must match for a resumed run to see the same batches.
_DATA_IDENTITY = ("dataset", "source", "train_split", "eval_split", "train_size", "eval_size")


def _check_same_data(record: dict[str, Any], provenance: dict[str, Any], root: Path) -> None:
    stored = record.get("data", {})
    differences = [
        f"{key}: {stored.get(key)!r} there, {provenance[key]!r} now"
        for key in _DATA_IDENTITY
        if stored.get(key) != provenance[key]
    ]
    if differences:
        raise WorkdirError(
            f"workdir {root} holds a run on different data ({'; '.join(differences)}); "
            "use another --workdir or the same --train_examples / --eval_examples / --data_source"
        )


# ======================================================================================
# Data
# ======================================================================================


@dataclasses.dataclass
class _Data:
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
        return data.to_model_range(self.images[index], self.pixel_range)


def _split_rule(dataset: str, data_dir: Any, source: str) -> str:
    if source == "tfds":
        return "tensorflow-datasets splits 'train' / 'test'"
    if dataset == "celeba":
        return data.celeba_split_rule(data_dir)
    return "standard IDX split: train = the 60,000 train images, test = the 10,000 t10k images"


def _load_data(
    config: Config,
    data_dir: str | os.PathLike | None,
    source: str,
    train_examples: int | None,
    eval_examples: int | None,
) -> _Data:
    """Train and test images as uint8, and where they came from. Writes nothing."""
    start = time.time()
    load = dict(source=source)
    train = data.load_uint8(config.dataset, data_dir, "train", num_examples=train_examples, **load)
    if eval_examples is None:
        evaluation = data.load_uint8(config.dataset, data_dir, "test", **load)
        evaluation = evaluation[:DEFAULT_EVAL_EXAMPLES]
    else:
        evaluation = data.load_uint8(
            config.dataset, data_dir, "test", num_examples=eval_examples, **load
        )
    if train.shape[1:] != tuple(config.image_shape):
        raise TrainError(
            f"{config.dataset} images are {train.shape[1:]} but the config expects "
            f"{tuple(config.image_shape)}"
        )
    steps = data.steps_per_epoch(len(train), config.batch_size)
    provenance = {
        "dataset": config.dataset,
        "source": source,
        "data_dir": None if data_dir is None else str(Path(data_dir).expanduser().resolve()),
        "split_rule": _split_rule(config.dataset, data_dir, source),
        "train_split": "train",
        "eval_split": "test",
        "train_size": len(train),
        "eval_size": len(evaluation),
        "train_examples": train_examples,
        "eval_examples": eval_examples,
        "batch_size": config.batch_size,
        "steps_per_epoch": steps,
        "pixel_range": config.pixel_range,
    }
    logging.info(
        "data: %d train / %d test %s images %s (%s), %d steps per epoch, loaded in %.1f s",
        len(train),
        len(evaluation),
        config.dataset,
        train.shape[1:],
        provenance["split_rule"],
        steps,
        time.time() - start,
    )
    return _Data(train, evaluation, provenance)


# ======================================================================================
# Run record (config.json) and provenance
# ======================================================================================


def _write_run_record(
    paths: RunPaths,
    config: Config,
    provenance: dict[str, Any],
    previous: dict[str, Any] | None,
    settings: dict[str, Any],
) -> None:
    invocation = {
        "command_line": command_line(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target_epochs": config.epochs,
        **settings,
    }
    record = {
        "config": config.to_dict(),
        "data": provenance,
        "command_line": invocation["command_line"],
        "versions": library_versions(),
        "invocations": [*(previous or {}).get("invocations", []), invocation],
    }
    _write_json(paths.config, record)


# ======================================================================================
# Checkpoints: every variable of the model and its optimizer, one atomic .npz per epoch
# ======================================================================================


def _state_variables(model: keras.Model) -> list[tuple[str, Any]]:
    """(kind, variable) for everything a resumed run needs, in a build-determined order.

    model.variables includes the seed generator's state (the RNG stream of prior draws
    and input noise), which `model.save` does not store; the optimizer's variables hold
    the Adam moments and the step counters that position the per-epoch lr schedule.
    """
    return [("model", v) for v in model.variables] + [
        ("optimizer", v) for v in model.optimizer.variables
    ]


def _save_checkpoint(model: keras.Model, path: Path, meta: dict[str, Any]) -> None:
    arrays = {
        f"{kind}_{i:05d}": np.asarray(keras.ops.convert_to_numpy(v.value))
        for i, (kind, v) in enumerate(_state_variables(model))
    }
    names = [f"{kind}:{v.path}" for kind, v in _state_variables(model)]
    arrays["meta"] = np.array(json.dumps({**meta, "variables": names}))
    with _atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _restore_checkpoint(model: keras.Model, path: Path) -> dict[str, Any]:
    """Assign every saved variable; returns the checkpoint's metadata (epoch, time)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = [saved[k] for k in sorted(k for k in saved.files if k != "meta")]
    except (OSError, ValueError, KeyError) as e:
        raise WorkdirError(f"checkpoint {path} is unreadable ({e}); delete it to fall back") from e
    variables = _state_variables(model)
    if len(arrays) != len(variables):
        raise WorkdirError(
            f"checkpoint {path} holds {len(arrays)} variables but the model has "
            f"{len(variables)}: it was written by different code; use another --workdir"
        )
    for (kind, variable), value in zip(variables, arrays, strict=True):
        if tuple(variable.shape) != value.shape:
            raise WorkdirError(
                f"checkpoint {path}: {kind} variable {variable.path} has shape "
                f"{tuple(variable.shape)} in the model but {value.shape} in the checkpoint"
            )
        variable.assign(value.astype(variable.dtype))
    return meta


def _remove_stale_temporaries(paths: RunPaths) -> None:
    """Delete temporary files that a killed run left behind (see `_atomic_path`)."""
    ours = ("config.json", "history.csv", "final.keras", "DONE.json")
    stale = [p for name in ours for p in paths.root.glob(f".{name}.*")]
    for folder in (paths.checkpoints, paths.samples):
        stale += folder.glob(".*") if folder.is_dir() else []
    for path in stale:
        if path.is_file():
            path.unlink(missing_ok=True)


def _checkpoint_epochs(paths: RunPaths) -> list[int]:
    if not paths.checkpoints.is_dir():
        return []
    epochs = []
    for path in paths.checkpoints.glob(f"{CHECKPOINT_PREFIX}*.npz"):
        suffix = path.stem[len(CHECKPOINT_PREFIX) :]
        if suffix.isdigit():
            epochs.append(int(suffix))
    return sorted(epochs)


def _latest_checkpoint(paths: RunPaths) -> tuple[int, Path] | None:
    epochs = _checkpoint_epochs(paths)
    return (epochs[-1], paths.checkpoint(epochs[-1])) if epochs else None


def _remove_older_checkpoints(paths: RunPaths, keep_from: int) -> None:
    for epoch in _checkpoint_epochs(paths):
        if epoch < keep_from:
            paths.checkpoint(epoch).unlink(missing_ok=True)


# ======================================================================================
# history.csv: one row per completed epoch, appended across resumes
# ======================================================================================


def _read_history(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and complete rows; a row torn by a kill (wrong field count) is dropped."""
    if not path.is_file():
        return [], []
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return [], []
    header = next(csv.reader([lines[0]]))
    rows = []
    for line in lines[1:]:
        if not line.endswith("\n"):
            break  # torn last line
        values = next(csv.reader([line]), [])
        if len(values) == len(header) and values[0].isdigit():
            rows.append(dict(zip(header, values, strict=True)))
    return header, rows


def _truncate_history(path: Path, last_epoch: int) -> None:
    """Keep only rows of epochs <= last_epoch (a kill can leave a row ahead of a checkpoint)."""
    header, rows = _read_history(path)
    if not header:
        return
    kept = [row for row in rows if int(row["epoch"]) <= last_epoch]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    if buffer.getvalue() != path.read_text():
        with _atomic_path(path) as tmp:
            tmp.write_text(buffer.getvalue())


def _append_history_row(path: Path, row: dict[str, Any]) -> None:
    header, _ = _read_history(path)
    new_file = not header
    if new_file:
        header = ["epoch", *sorted(k for k in row if k != "epoch")]
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=header, extrasaction="ignore", restval="", lineterminator="\n"
        )
        if new_file:
            writer.writeheader()
        # 9 significant digits: float32 values round-trip exactly; None: not measured.
        writer.writerow(
            {
                k: v if isinstance(v, int) else "" if v is None else f"{v:.9g}"
                for k, v in row.items()
            }
        )
        f.flush()
        os.fsync(f.fileno())


# ======================================================================================
# Callbacks
# ======================================================================================


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
            _append_history_row(self.path, row)


class EpochCheckpoint(keras.callbacks.Callback):
    """Every `every` epochs and after the last: write checkpoints/epoch_NNNN.npz
    atomically, then drop older ones."""

    def __init__(
        self,
        paths: RunPaths,
        guard: NonFiniteGuard,
        elapsed_before: float,
        every: int,
        last_epoch: int,
    ):
        super().__init__()
        self.paths, self.guard = paths, guard
        self.every, self.last_epoch = every, last_epoch
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
        _save_checkpoint(self.model, self.paths.checkpoint(epoch + 1), meta)
        _remove_older_checkpoints(self.paths, keep_from=epoch + 1)


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
            "epoch %d/%d: %s (%.1f s, ~%.0f s left)",
            epoch + 1,
            self.last_epoch,
            metrics,
            now - self._epoch_start,
            left,
        )


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
    real = data.to_model_range(test_images[:n], pixel_range)
    reconstructed = visualize.to_uint8(model.reconstruct(real), pixel_range)
    rows = visualize.interleave_rows(test_images[:n], reconstructed, cols)
    reconstruction_path = visualize.save_png(
        directory / f"reconstructions_epoch_{epoch:04d}.png",
        visualize.image_grid(rows, 2 * n // cols, cols),
    )
    return sample_path, reconstruction_path


# ======================================================================================
# Devices, model
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


def _build_model(config: Config, steps_per_epoch: int) -> keras.Model:
    model = models.build_model(config)
    model.compile(steps_per_epoch=steps_per_epoch)  # also builds every optimizer variable
    return model


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
        model.pretrain_encoder(images, verbose=verbose > 0)
        return
    single = models.build_model(config)
    single.pretrain_encoder(images, verbose=verbose > 0)
    for target, source in zip(model.variables, single.variables, strict=True):
        target.assign(source.value)


# ======================================================================================
# Public API
# ======================================================================================


def train(
    config: Config,
    workdir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    data_source: str = "files",
    train_examples: int | None = None,
    eval_examples: int | None = None,
    pretrain: bool = True,
    sample_every: int = 1,
    checkpoint_every: int = 1,
    validate_every: int = 1,
    distribution: str = "none",
    num_gpus: int | None = None,
    precision: str = "float32",
    verbose: int = 1,
) -> keras.Model:
    """Train `config` for `config.epochs` epochs in `workdir`, resuming what is there.

    Args:
      config: the resolved run config (`configs.get_config(...)` plus overrides); its
        `epochs` is the target number of epochs, all other fields must match a run already
        in `workdir` (else WorkdirError).
      workdir: the run's folder (created if needed; see the module docstring).
      data_dir, data_source: where the images are (`wae_tf.data.load_uint8`).
      train_examples: keep the first N training images (smoke runs); default all.
      eval_examples: validation on the first N test images; default min(1000, N_test).
      pretrain: run the encoder pretraining [code] on a fresh start when the config asks
        for it (WAE presets do, VAE presets do not).
      sample_every: write sample/reconstruction PNGs every this many epochs and after the
        last one; 0 disables them.
      checkpoint_every: write a checkpoint every this many epochs and after the last one
        (>= 1). An interrupted run resumes from the latest checkpoint, so it repeats at
        most `checkpoint_every - 1` completed epochs; the math is unchanged (data order and
        RNG state are part of the checkpoint).
      validate_every: evaluate on the test images every this many epochs and after the
        last one; 0 disables validation. history.csv leaves the val_ cells of the other
        epochs empty.
      distribution, num_gpus, precision: "none" | "mirrored" | "multi_worker", the number
        of GPUs (None: all visible), and "float32" | "mixed_bfloat16" | "mixed_float16";
        non-defaults go through `wae_tf.distribute` (TensorFlow).
      verbose: Keras's progress bar (1), one line per epoch (2) or none (0).

    Returns:
      The trained model. A finished run (DONE.json with >= config.epochs epochs) is not
      retrained: its final model is loaded and returned.

    Raises:
      WorkdirError (unwritable workdir, different run there), wae_tf.data.DataError (bad
      data; nothing is written then), TrainingDivergedError (NaN/inf loss).
    """
    invocation_start = time.time()
    _check_settings(distribution, precision, sample_every, checkpoint_every, validate_every)
    paths = RunPaths(Path(workdir).expanduser().absolute())
    _check_workdir_usable(paths.root)
    devices = _setup_devices(distribution, num_gpus, precision, config.batch_size)
    if devices.strategy is not None and devices.strategy.num_replicas_in_sync > 1:
        # The paper's BN statistics are over the whole batch of 100: synchronise them.
        if not config.sync_batch_norm:
            logging.info(
                "%d replicas: batch-norm statistics synchronised across them",
                devices.strategy.num_replicas_in_sync,
            )
        config = config.replace(sync_batch_norm=True)
    previous = _read_json(paths.config)
    if previous is not None:
        _check_same_run(previous, config, paths.root)
    finished = _read_json(paths.done)
    if finished is not None and paths.final_model.is_file():
        if finished.get("epochs", 0) >= config.epochs:
            logging.info(
                "%s already finished %d epochs (>= %d requested): not retraining; loading %s",
                paths.root,
                finished["epochs"],
                config.epochs,
                paths.final_model.name,
            )
            return load_trained_model(paths.root)

    run_data = _load_data(config, data_dir, data_source, train_examples, eval_examples)
    if previous is not None:
        _check_same_data(previous, run_data.provenance, paths.root)
    # Everything above wrote nothing; from here on the workdir is created and updated
    # (by the chief only, under multi-worker training: the workdir must be shared).
    if devices.chief:
        _create_workdir(paths.root)
    with _workdir_lock(paths.root) if devices.chief else contextlib.nullcontext():
        if devices.chief:
            settings = {"distribution": distribution, "num_gpus": num_gpus, "precision": precision}
            _write_run_record(paths, config, run_data.provenance, previous, settings)
        steps = run_data.provenance["steps_per_epoch"]
        with devices.strategy.scope() if devices.strategy else contextlib.nullcontext():
            model = _build_model(config, steps)
        initial_epoch, elapsed = _resume_or_start(
            model, paths, run_data, pretrain, verbose, devices
        )
        if initial_epoch < config.epochs:
            cadence = Cadence(sample_every, checkpoint_every, validate_every)
            elapsed = _fit(
                model, paths, run_data, initial_epoch, elapsed, cadence, verbose, devices.chief
            )
        else:
            logging.warning(
                "the latest checkpoint is at epoch %d >= %d requested: finishing without training",
                initial_epoch,
                config.epochs,
            )
        if devices.chief:
            epochs_done = max(initial_epoch, config.epochs)
            _finish(model, paths, epochs_done, elapsed, time.time() - invocation_start)
    return model


def _check_settings(
    distribution: str, precision: str, sample_every: int, checkpoint_every: int, validate_every: int
) -> None:
    if distribution not in configs.DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {configs.DISTRIBUTIONS}, got {distribution!r}"
        )
    if precision not in configs.PRECISIONS:
        raise ValueError(f"precision must be one of {configs.PRECISIONS}, got {precision!r}")
    if sample_every < 0:
        raise ValueError(f"sample_every must be >= 0 (0: no sample grids), got {sample_every}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if validate_every < 0:
        raise ValueError(f"validate_every must be >= 0 (0: no validation), got {validate_every}")


@dataclasses.dataclass(frozen=True)
class Cadence:
    """How often (in epochs) the loop does its per-epoch extras; none changes the math.

    Each extra also happens after the run's last epoch. 0 turns samples or validation off.
    """

    sample_every: int = 1
    checkpoint_every: int = 1
    validate_every: int = 1

    @staticmethod
    def due(every: int, completed: int, last_epoch: int) -> bool:
        """Whether an extra done every `every` epochs runs after epoch `completed` (1-based)."""
        return every > 0 and (completed % every == 0 or completed == last_epoch)


@contextlib.contextmanager
def _workdir_lock(root: Path):
    """Hold an exclusive lock on root/.lock: two processes never train in one workdir.

    The OS releases the lock when the holder exits, however it exits (kill -9 included).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    with open(root / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise WorkdirError(
                f"workdir {root} is in use by another training process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from e
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resume_or_start(
    model: keras.Model,
    paths: RunPaths,
    run_data: _Data,
    pretrain: bool,
    verbose: int,
    devices: _Devices,
) -> tuple[int, float]:
    """Restore the latest checkpoint, or pretrain a fresh model. Returns (epoch, seconds).

    The chief also tidies the workdir: temporary files of a killed run, history rows
    ahead of the checkpoint, older checkpoints, and DONE.json of a run being extended.
    """
    chief = devices.chief
    if chief:
        _remove_stale_temporaries(paths)
        paths.done.unlink(missing_ok=True)  # extending a finished run: not finished any more
    latest = _latest_checkpoint(paths)
    if latest is None:
        if chief:
            _truncate_history(paths.history, 0)
        if pretrain and model.config.pretrain_encoder and model.config.penalty is not None:
            _pretrain(model, run_data.train, verbose, devices.strategy)
        return 0, 0.0
    epoch, path = latest
    meta = _restore_checkpoint(model, path)
    if chief:
        _truncate_history(paths.history, epoch)
        _remove_older_checkpoints(paths, keep_from=epoch)
    logging.info("resuming from %s (epoch %d completed)", path, epoch)
    return epoch, float(meta.get("elapsed_s", 0.0))


def _tensorboard_callbacks(log_dir: Path) -> list[keras.callbacks.Callback]:
    """Keras's TensorBoard callback on the TensorFlow backend when `tensorboard` is installed
    (tf.summary needs it; TensorFlow >= 2.21 no longer depends on it), else none."""
    if keras.backend.backend() != "tensorflow":
        return []
    if importlib.util.find_spec("tensorboard") is None:
        logging.warning("no TensorBoard logs: `pip install tensorboard` to get them")
        return []
    return [keras.callbacks.TensorBoard(str(log_dir), write_graph=False)]


def _fit(
    model: keras.Model,
    paths: RunPaths,
    run_data: _Data,
    initial_epoch: int,
    elapsed_before: float,
    cadence: Cadence,
    verbose: int,
    chief: bool = True,
) -> float:
    """model.fit from `initial_epoch` to config.epochs. Returns the cumulative train time.

    Only the chief gets the callbacks that write files.
    """
    config = model.config
    train_ds = data.train_dataset(
        run_data.train,
        config.batch_size,
        seed=config.seed,
        pixel_range=config.pixel_range,
        start_epoch=initial_epoch,
    )
    # Keras validates after the (1-based) epochs listed in validation_freq.
    validated = [
        e
        for e in range(initial_epoch + 1, config.epochs + 1)
        if Cadence.due(cadence.validate_every, e, config.epochs)
    ]
    eval_ds = None
    if validated:
        eval_ds = data.eval_dataset(
            run_data.eval, config.batch_size, pixel_range=config.pixel_range
        )
    guard = NonFiniteGuard()
    checkpoint = EpochCheckpoint(
        paths, guard, elapsed_before, cadence.checkpoint_every, config.epochs
    )
    callbacks: list[keras.callbacks.Callback] = [guard]  # first: the others read guard.tripped
    if chief:
        callbacks += [
            # before the checkpoint: see _truncate_history
            HistoryCSV(paths.history, guard, validation=cadence.validate_every > 0),
            checkpoint,
            SampleGrids(paths.samples, cadence.sample_every, config.epochs, guard, run_data.eval),
            *_tensorboard_callbacks(paths.tensorboard),
        ]
    callbacks.append(EpochSummary(config.epochs))
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
        callbacks=callbacks,
        verbose=verbose,
    )
    if guard.tripped:
        latest = _latest_checkpoint(paths)
        raise TrainingDivergedError(
            f"training diverged: {guard.message}. Nothing of that state was saved; the last "
            f"good checkpoint is {latest[1] if latest else 'none (no epoch completed)'}. "
            "Try a lower --learning_rate or --penalty_weight."
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
    with _atomic_path(paths.final_model, suffix=".keras") as tmp:
        plain.save(tmp)
    _write_json(
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


def load_trained_model(workdir: str | os.PathLike, allow_unfinished: bool = False) -> keras.Model:
    """The trained model of a finished run in `workdir` (its final.keras), uncompiled.

    allow_unfinished=True: for a run still in progress, the model of the latest checkpoint
    (built from config.json; weights, BN statistics and seed state restored).
    """
    paths = RunPaths(Path(workdir).expanduser().absolute())
    if paths.final_model.is_file():
        return keras.saving.load_model(paths.final_model, compile=False)
    latest = _latest_checkpoint(paths)
    record = _read_json(paths.config)
    if not allow_unfinished or latest is None or record is None:
        state = f"latest checkpoint: epoch {latest[0]}" if latest else "no checkpoint"
        raise WorkdirError(
            f"{paths.root} has no final model ({state}); rerun the training command to "
            "finish it, or pass allow_unfinished=True for the latest checkpoint"
        )
    config = Config.from_dict(record["config"])
    model = _build_model(config, record["data"]["steps_per_epoch"])
    _restore_checkpoint(model, latest[1])
    return model


# ======================================================================================
# Command line
# ======================================================================================

# Flags that override a field of the preset Config (flag name = field name).
_OVERRIDES = (
    "epochs",
    "batch_size",
    "seed",
    "penalty_weight",
    "learning_rate",
    "adversary_learning_rate",
    "z_dim",
    "pz_scale",
    "mmd_kernel",
    "pretrain_learning_rate",
    "pretrain_input_noise",
)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define the CLI's flags on `flag_values` (called by `main`, not at import time, so
    that importing this module from other absl programs defines no flags)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, configs.DATASETS, "Dataset.", **fv)
    flags.DEFINE_enum("model", None, configs.MODELS, "Model: WAE-MMD, WAE-GAN or the VAE.", **fv)
    flags.DEFINE_enum(
        "config",
        "paper",
        configs.VARIANTS,
        "Preset: the paper's settings, or the official code's (CelebA WAEs only).",
        **fv,
    )
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, samples.", **fv)
    flags.DEFINE_string(
        "data_dir",
        None,
        "Dataset folder (MNIST: the four IDX files; CelebA: img_align_celeba/). "
        f"Default: ${data.DATA_DIR_ENV}/<dataset>.",
        **fv,
    )
    flags.DEFINE_enum("data_source", "files", data.SOURCES, "Read files, or tfds.", **fv)
    flags.DEFINE_integer(
        "epochs", None, "Target number of epochs (default: the preset's).", lower_bound=1, **fv
    )
    flags.DEFINE_integer("batch_size", None, "Batch size (default 100).", lower_bound=1, **fv)
    flags.DEFINE_integer("seed", None, "Seed of init, data order and noise.", lower_bound=0, **fv)
    flags.DEFINE_integer(
        "train_examples", None, "Use the first N training images.", lower_bound=1, **fv
    )
    flags.DEFINE_integer(
        "eval_examples",
        None,
        f"Validate on the first N test images (default min({DEFAULT_EVAL_EXAMPLES}, all)).",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_float("penalty_weight", None, "lambda.", lower_bound=0.0, **fv)
    flags.DEFINE_float("learning_rate", None, "Encoder/decoder Adam lr.", lower_bound=0.0, **fv)
    flags.DEFINE_float(
        "adversary_learning_rate", None, "Adversary Adam lr (WAE-GAN).", lower_bound=0.0, **fv
    )
    flags.DEFINE_integer("z_dim", None, "Latent dimension d_z.", lower_bound=1, **fv)
    flags.DEFINE_float(
        "pz_scale", None, "sigma_z of P_Z = N(0, sigma_z^2 I).", lower_bound=0.0, **fv
    )
    flags.DEFINE_enum("mmd_kernel", None, ("imq", "rbf"), "MMD kernel (WAE-MMD).", **fv)
    flags.DEFINE_integer(
        "width", None, "Make every layer this wide (tiny nets for smoke runs).", lower_bound=1, **fv
    )
    flags.DEFINE_boolean("pretrain", True, "Encoder pretraining on a fresh start (WAEs).", **fv)
    flags.DEFINE_float(
        "pretrain_learning_rate",
        None,
        "Adam lr of the encoder pretraining (default: --learning_rate, as the code).",
        lower_bound=0.0,
        **fv,
    )
    flags.DEFINE_boolean(
        "pretrain_input_noise",
        None,
        "Input noise during encoder pretraining (default: on, as the code).",
        **fv,
    )
    flags.DEFINE_integer(
        "sample_every", 1, "Epochs between sample PNGs (0: none).", lower_bound=0, **fv
    )
    flags.DEFINE_integer(
        "checkpoint_every",
        1,
        "Epochs between checkpoints (and after the last); a resumed run repeats at most "
        "N-1 epochs.",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_integer(
        "validate_every",
        1,
        "Epochs between validations on the test images (and after the last; 0: none).",
        lower_bound=0,
        **fv,
    )
    flags.DEFINE_enum(
        "distribution", "none", configs.DISTRIBUTIONS, "tf.distribute strategy.", **fv
    )
    flags.DEFINE_integer(
        "num_gpus", None, "GPUs for --distribution (default: all).", lower_bound=1, **fv
    )
    flags.DEFINE_enum("precision", "float32", configs.PRECISIONS, "Keras dtype policy.", **fv)
    flags.DEFINE_integer(
        "verbose", 1, "1: progress bar, 2: a line per epoch, 0: quiet.", lower_bound=0, **fv
    )
    flags.mark_flags_as_required(["dataset", "model", "workdir"], **fv)
    names = ["dataset", "model", "config", "width", *_OVERRIDES]
    flags.register_multi_flags_validator(names, _validate_config_flags, **fv)


def config_from_flags(values: dict[str, Any] | flags.FlagValues) -> Config:
    """The resolved Config: the preset, `width` (tiny nets), then the field overrides."""
    get = values.__getitem__ if isinstance(values, dict) else lambda name: values[name].value
    config = configs.get_config(get("dataset"), get("model"), get("config"))
    if get("width") is not None:
        config = configs.tiny(config, get("width"))
    overrides = {name: get(name) for name in _OVERRIDES if get(name) is not None}
    return config.replace(**overrides)


def _validate_config_flags(values: dict[str, Any]) -> bool:
    if values["dataset"] is None or values["model"] is None:
        return True  # reported by the required-flag check
    try:
        config_from_flags(values)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from e
    return True


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    config = config_from_flags(FLAGS)
    try:
        train(
            config,
            FLAGS.workdir,
            data_dir=FLAGS.data_dir,
            data_source=FLAGS.data_source,
            train_examples=FLAGS.train_examples,
            eval_examples=FLAGS.eval_examples,
            pretrain=FLAGS.pretrain,
            sample_every=FLAGS.sample_every,
            checkpoint_every=FLAGS.checkpoint_every,
            validate_every=FLAGS.validate_every,
            distribution=FLAGS.distribution,
            num_gpus=FLAGS.num_gpus,
            precision=FLAGS.precision,
            verbose=FLAGS.verbose,
        )
    except (TrainError, data.DataError) as e:
        print(f"wae_tf.train: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(
            "wae_tf.train: interrupted; rerun the same command to resume from the last "
            "completed epoch",
            file=sys.stderr,
        )
        sys.exit(130)


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m wae_tf.train`."""
    define_flags()
    app.run(main, argv)


if __name__ == "__main__":
    run()
