"""Checkpoints: every variable of a model and its optimizer, one atomic .npz per epoch.

    save(model, path, meta)        write checkpoints/epoch_NNNN.npz atomically
    restore(model, path) -> meta   assign every saved variable (all-or-nothing on a bad file)
    list_checkpoints(paths)        [(epoch, path), ...] oldest first
    latest(paths)                  the newest (epoch, path), or None
    prune(paths, keep)             delete all but the newest `keep`
    restore_latest(model, paths)   the newest readable one; unreadable ones are reported in
                                   one line each and moved aside as `<name>.corrupt`

Why not `.keras` files or Keras's BackupAndRestore: neither stores the seed generator's
state, so a resumed run would not continue the same random stream. A checkpoint holds
`model.variables` (weights, BN statistics, the seed generator) and
`model.optimizer.variables` (Adam moments and step counters, hence the position of the
per-epoch learning-rate schedule), in an order fixed by how the model is built.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import keras
import numpy as np
from absl import logging

from wae_tf import fileio
from wae_tf.run_settings import DEFAULT_KEEP  # the latest and one before it
from wae_tf.rundir import CHECKPOINT_PREFIX, RunPaths, WorkdirError

CORRUPT_SUFFIX = ".corrupt"  # what an unreadable checkpoint is renamed to (not deleted)

# What reading a damaged .npz raises: a truncated file (BadZipFile, EOFError), a flipped
# byte (BadZipFile "Bad CRC-32" when the member is read, zlib.error, ValueError in the
# .npy header or the metadata's JSON), a missing member (KeyError), an I/O error.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)
# The first bytes of a zip archive (an .npz): a local file header, or an empty archive.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class UnreadableCheckpointError(WorkdirError):
    """A checkpoint file is damaged (truncated, a flipped byte) and cannot be read."""


def state_variables(model: keras.Model) -> list[tuple[str, Any]]:
    """(kind, variable) for everything a resumed run needs, in a build-determined order.

    kind is "model" or "optimizer". model.variables includes the seed generator's state
    (the RNG stream of prior draws and input noise), which `model.save` does not store.
    """
    return [("model", v) for v in model.variables] + [
        ("optimizer", v) for v in model.optimizer.variables
    ]


def save(model: keras.Model, path: str | Path, meta: dict[str, Any]) -> None:
    """Write every state variable and `meta` (JSON: epoch, elapsed time, config) to `path`.

    Atomic: a kill or a full disk (`fileio.DiskFullError`) leaves no partial file.
    """
    variables = state_variables(model)
    arrays = {
        f"{kind}_{i:05d}": np.asarray(keras.ops.convert_to_numpy(v.value))
        for i, (kind, v) in enumerate(variables)
    }
    names = [f"{kind}:{v.path}" for kind, v in variables]
    arrays["meta"] = np.array(json.dumps({**meta, "variables": names}))
    with fileio.atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def read(path: str | Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """(meta, arrays in save order) of a checkpoint, every member read in full so that
    each one's CRC is checked. UnreadableCheckpointError (naming the file) if damaged."""
    _check_is_archive(path)
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = [saved[k] for k in sorted(k for k in saved.files if k != "meta")]
    except _READ_ERRORS as e:
        reason = str(e) or type(e).__name__
        raise UnreadableCheckpointError(f"checkpoint {path} is unreadable ({reason})") from e
    return meta, arrays


def _check_is_archive(path: str | Path) -> None:
    """UnreadableCheckpointError in plain words for a file that is not a zip archive at
    all (empty, or other bytes): np.load would try it as a pickle and answer with a
    paragraph about allow_pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC[0]))
    except OSError as e:
        raise UnreadableCheckpointError(
            f"checkpoint {path} is unreadable ({e.strerror or e})"
        ) from e
    if not head:
        raise UnreadableCheckpointError(f"{path} is not a checkpoint (an empty file)")
    if head not in _ZIP_MAGIC:
        raise UnreadableCheckpointError(f"{path} is not a checkpoint (not an .npz archive)")


def restore(model: keras.Model, path: str | Path) -> dict[str, Any]:
    """Assign every saved variable; returns the checkpoint's metadata (epoch, time).

    Nothing is assigned unless the whole file reads back and matches the model:
    UnreadableCheckpointError for a damaged file, WorkdirError for one written by a
    different model (another variable count or shape).
    """
    meta, arrays = read(path)
    variables = state_variables(model)
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
    for (_, variable), value in zip(variables, arrays, strict=True):
        variable.assign(value.astype(variable.dtype))
    return meta


def list_checkpoints(paths: RunPaths) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint in the run, oldest first."""
    if not paths.checkpoints.is_dir():
        return []
    epochs = []
    for path in paths.checkpoints.glob(f"{CHECKPOINT_PREFIX}*.npz"):
        suffix = path.stem[len(CHECKPOINT_PREFIX) :]
        if suffix.isdigit():
            epochs.append(int(suffix))
    return [(epoch, paths.checkpoint(epoch)) for epoch in sorted(epochs)]


def latest(paths: RunPaths) -> tuple[int, Path] | None:
    """(epoch, path) of the newest checkpoint, or None (readability not checked)."""
    found = list_checkpoints(paths)
    return found[-1] if found else None


def write_failure_message(paths: RunPaths, error: fileio.WriteError) -> str:
    """One line after a failed write: what could not be written and why, the intact
    checkpoint the run resumes from, and what to do."""
    found = latest(paths)
    if found is None:
        state = "no checkpoint was written yet"
    else:
        state = f"the last good checkpoint is epoch {found[0]} ({found[1]}), intact"
    remedy = error.remedy[:1].upper() + error.remedy[1:]
    return f"{error}; {state}. {remedy}, then rerun the same command to resume"


def prune(paths: RunPaths, keep: int = DEFAULT_KEEP) -> None:
    """Delete all checkpoints but the newest `keep` (>= 1)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for _, path in list_checkpoints(paths)[:-keep]:
        path.unlink(missing_ok=True)


def restore_latest(
    model: keras.Model, paths: RunPaths, move_aside: bool = True
) -> tuple[int, dict[str, Any]] | None:
    """Restore the newest checkpoint that reads back; returns (epoch, meta), or None when
    the run has no checkpoint.

    Each unreadable one is reported in one log line and, with `move_aside`, renamed to
    `<name>.corrupt` (kept for inspection, no longer listed). When checkpoints exist but
    none is readable: WorkdirError saying what to do.

    Multi-worker training: every worker calls this on the shared workdir, and only the
    chief (move_aside=True) renames. The choice is made by reading alone, newest first,
    so every worker makes the same one; the chief renames the damaged files only after
    it has chosen, and a worker that finds one already renamed skips it as the chief did.
    """
    damaged: list[tuple[Path, UnreadableCheckpointError]] = []
    restored = None
    for epoch, path in reversed(list_checkpoints(paths)):
        try:
            restored = epoch, restore(model, path)
            break
        except UnreadableCheckpointError as e:
            aside = path.with_name(path.name + CORRUPT_SUFFIX)
            if not path.exists() and aside.exists():  # the chief judged it first
                logging.info("%s was damaged and is moved aside as %s", path.name, aside.name)
                continue
            damaged.append((path, e))
    for path, error in damaged:
        if move_aside:
            path.rename(path.with_name(path.name + CORRUPT_SUFFIX))
            logging.warning("%s; moved it aside to %s%s", error, path.name, CORRUPT_SUFFIX)
        else:
            logging.warning("%s; skipped it", error)
    if restored is not None or not damaged:
        return restored
    names = ", ".join(p.name for p, _ in damaged)
    if move_aside:
        finished = paths.done.is_file() or paths.final_model.is_file()
        todo = (
            "put a good copy of a checkpoint back to extend this finished run, or use a new "
            "--workdir"
            if finished  # starting over would replace its history and final model
            else "rerun the same command to start over from epoch 1, or put a good copy of "
            "a checkpoint back"
        )
        raise WorkdirError(
            f"no readable checkpoint in {paths.checkpoints} ({names} damaged, moved aside "
            f"as *{CORRUPT_SUFFIX}): {todo}"
        )
    raise WorkdirError(f"no readable checkpoint in {paths.checkpoints} ({names} damaged)")
