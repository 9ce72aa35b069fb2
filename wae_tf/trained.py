"""A trained model from its files: a run's final.keras or newest checkpoint, or a .keras file.

    load_trained_model(workdir)          the model of a finished (or unfinished) run
    load_keras_file(path)                a .keras file's model; DamagedModelFileError when
                                         the file exists but cannot be read
    build_compiled_model(config, steps)  a run's model, compiled: every variable built

`wae_tf.trainer` re-exports these three (its public API); the export, the reproduce
scripts and the tests load trained models through them. Keras's own message for a
truncated or corrupted .keras file is a 20-line traceback ending in "File not found"
although the file is there; here it is one line naming the file and what to do.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras
from absl import logging

from wae_tf import checkpoints, models, rundir
from wae_tf.configs import Config
from wae_tf.rundir import RunPaths, WorkdirError


class NoFinalModelError(WorkdirError):
    """A run has no final model (and no checkpoint was asked for, or there is none)."""

    def __init__(self, message: str, latest_epoch: int | None):
        super().__init__(message)
        self.latest_epoch = latest_epoch


class DamagedModelFileError(WorkdirError):
    """A .keras file exists but cannot be read (truncated, a flipped byte, not a model)."""


# What keras.saving.load_model raises for a damaged file: "File not found" (a ValueError)
# when it is no zip archive, BadZipFile for a failed CRC, OSError/KeyError/EOFError from
# h5py or the archive's members, ValueError for a garbled config.json.
_DAMAGED = (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile)


def load_keras_file(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """`keras.saving.load_model(path)`, with one-line errors: FileNotFoundError when there
    is no such file, DamagedModelFileError when the file cannot be read as a model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return keras.saving.load_model(path, compile=compile)
    except _DAMAGED as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, json.JSONDecodeError) or "File not found" in reason:
            reason = "not a readable .keras archive"
        raise DamagedModelFileError(
            f"{path} is damaged or not a Keras model ({reason[:120]})"
        ) from error


def build_compiled_model(config: Config, steps_per_epoch: int) -> keras.Model:
    """The model of `config`, compiled with the per-epoch lr schedule of `steps_per_epoch`
    steps; compiling builds every optimizer variable, so a checkpoint can be restored."""
    model = models.build_model(config)
    model.compile(steps_per_epoch=steps_per_epoch)
    return model


def load_trained_model(workdir: str | os.PathLike, allow_unfinished: bool = False) -> keras.Model:
    """The trained model of a finished run in `workdir` (its final.keras), uncompiled.

    allow_unfinished=True: for a run still in progress, the model of its newest readable
    checkpoint (built from config.json; weights, BN statistics and seed state restored;
    the workdir is not modified); also the fallback, with a warning, when final.keras is
    damaged. NoFinalModelError when there is nothing to load; DamagedModelFileError when
    final.keras is damaged and allow_unfinished is False.
    """
    paths = RunPaths(Path(workdir).expanduser().absolute())
    latest = checkpoints.latest(paths)
    # A run being extended has its old final.keras but no DONE.json: that model is stale.
    if paths.final_model.is_file() and (paths.done.is_file() or not paths.config.is_file()):
        try:
            return load_keras_file(paths.final_model)
        except DamagedModelFileError as error:
            if not (allow_unfinished and latest and paths.config.is_file()):
                raise DamagedModelFileError(f"{error}; {_damaged_final_remedy(latest)}") from error
            logging.warning("%s; loading the newest checkpoint instead", error)
    record = rundir.read_json(paths.config)
    if not allow_unfinished or latest is None or record is None:
        state = f"latest checkpoint: epoch {latest[0]}" if latest else "no checkpoint"
        hint = " or load its latest checkpoint with allow_unfinished=True" if latest else ""
        raise NoFinalModelError(
            f"{paths.root} has no final model ({state}); rerun the training command to "
            f"finish it{hint}",
            latest[0] if latest else None,
        )
    model = build_compiled_model(
        Config.from_dict(record["config"]), record["data"]["steps_per_epoch"]
    )
    checkpoints.restore_latest(model, paths, move_aside=False)
    return model


def _damaged_final_remedy(latest: tuple[int, Path] | None) -> str:
    if latest is None:
        return "no checkpoint is left to rebuild it from: retrain the run"
    return (
        "rerun the training command to rewrite it from the last checkpoint (epoch "
        f"{latest[0]}; nothing is retrained), or use that checkpoint (export: --allow_unfinished)"
    )
