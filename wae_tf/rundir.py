"""A run folder: where each of its files lives, whether it can hold a run, and the two
small files the trainer keeps in it (config.json, the run record, and history.csv).

`RunPaths(root)` is the one place that names a run's files; the trainer, the export and
the reproduce scripts ask it instead of spelling the names again. What each file holds
is described in `wae_tf.train`'s module docstring.

Everything here refuses with a one-line `WorkdirError` (what is wrong, what to do), or
`fileio.DiskFullError` for a full disk, and writes nothing before the workdir has been
found usable. No Keras import.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wae_tf import fileio
from wae_tf.configs import Config
from wae_tf.errors import WaeError
from wae_tf.provenance import command_line, library_versions

CHECKPOINT_PREFIX = "epoch_"


class TrainError(WaeError, RuntimeError):
    """A run cannot start or continue; the message says why and what to do."""


class WorkdirError(TrainError):
    """The workdir is unusable: not writable, or it holds a different run."""


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its files (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def final_model(self) -> Path:
        return self.root / "final.keras"

    @property
    def done(self) -> Path:
        return self.root / "DONE.json"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{epoch:04d}.npz"


# ======================================================================================
# Workdir checks: before anything is loaded or written
# ======================================================================================


LOCK_NAME = ".lock"


def check_workdir_usable(root: Path) -> None:
    """Fail early, writing nothing, if `root` cannot hold a run.

    A finished run (DONE.json) is not probed for writing: rerun with the same settings it
    is a no-op that writes nothing, also on a read-only file system; extending it probes
    in `create_workdir`, before anything is written.
    """
    if root.exists():
        if not root.is_dir():
            raise WorkdirError(f"workdir {root} exists and is not a directory")
        if not (root / "DONE.json").is_file():
            _probe_writable(root)
        if not (root / "config.json").is_file() and any(
            p.name != LOCK_NAME for p in root.iterdir()
        ):
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
    """Write a few bytes to a temporary file in `root` and fsync them (leaves nothing
    behind): a full disk or a read-only file system is found before the run writes."""
    try:
        with tempfile.TemporaryFile(dir=root) as probe:
            probe.write(str(os.getpid()).encode())
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise _unwritable(root, e) from e


def _unwritable(root: Path, error: OSError) -> WorkdirError | fileio.DiskFullError:
    """One line: the workdir cannot be written, why, and what to do. A full disk is a
    DiskFullError, which the trainer reports with the run's intact checkpoint."""
    if fileio.is_disk_full(error):
        return fileio.DiskFullError(error.errno, f"no space left to write in workdir {root}")
    failure = fileio.write_error(error, root)
    remedy = f": {failure.remedy}" if isinstance(failure, fileio.WriteError) else ""
    return WorkdirError(f"workdir {root} is not writable ({error.strerror or error}){remedy}")


def create_workdir(root: Path) -> None:
    """Create `root` (and its parents) and check that files can be created in it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {root} ({e.strerror or e})") from e
    _probe_writable(root)


@contextlib.contextmanager
def workdir_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on root/.lock: two processes never train in one workdir.

    The OS releases the lock when the holder exits, however it exits (kill -9 included).
    A lock file this process created but could not write (a full disk) is removed again.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    path = root / LOCK_NAME
    created = not path.exists()
    try:
        lock = open(path, "a+")
    except OSError as e:
        raise _unwritable(root, e) from e
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise WorkdirError(
                f"workdir {root} is in use by another training process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from e
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(str(os.getpid()))
            lock.flush()
        except OSError as e:
            if created:  # ours and empty: leave the workdir as it was
                path.unlink(missing_ok=True)
            raise _unwritable(root, e) from e
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_stale_temporaries(paths: RunPaths) -> None:
    """Delete the temporary files a killed run left behind (see `fileio.atomic_path`)."""
    ours = tuple(p.name for p in (paths.config, paths.history, paths.final_model, paths.done))
    fileio.remove_temporaries(paths.root, ours)
    fileio.remove_temporaries(paths.checkpoints)
    fileio.remove_temporaries(paths.samples)


# ======================================================================================
# The run record (config.json): the config, the data and every invocation
# ======================================================================================

# Fields a resumed run may change: the target epoch count, and BN synchronisation, which
# follows --distribution (the weights and the math per replica are the same).
RESUMABLE_FIELDS = ("epochs", "sync_batch_norm")
# Data provenance fields that must match for a resumed run to see the same batches.
# What makes two runs' data the same. eval_order: a run recorded before validation moved
# to a fixed random order of the test set validated on other images (the file's first N).
DATA_IDENTITY = (
    "dataset",
    "source",
    "train_split",
    "eval_split",
    "train_size",
    "eval_size",
    "eval_order",
)


def read_json(path: Path) -> dict[str, Any] | None:
    """A run's JSON file (config.json, DONE.json), or None when absent; WorkdirError
    naming the file when it exists but cannot be parsed."""
    try:
        return fileio.read_json(path)
    except fileio.UnreadableFileError as e:
        raise WorkdirError(f"{e}; move it away or use another --workdir") from e


def config_differences(stored: dict[str, Any], config: Config) -> list[str]:
    """Fields (other than RESUMABLE_FIELDS) where the stored run's config differs."""
    try:
        previous = Config.from_dict(stored).to_dict()
    except (TypeError, ValueError) as e:
        return [f"the stored config is not a valid Config ({e})"]
    current = config.to_dict()
    return [
        f"{name}: {previous[name]!r} there, {current[name]!r} now"
        for name in current
        if name not in RESUMABLE_FIELDS and previous[name] != current[name]
    ]


def check_same_run(record: dict[str, Any], config: Config, root: Path) -> None:
    """WorkdirError unless the run recorded in `root` has `config` (up to the epochs)."""
    differences = config_differences(record.get("config", {}), config)
    if differences:
        raise WorkdirError(
            f"workdir {root} holds a run with a different config ({'; '.join(differences)}); "
            "refusing to overwrite it: use another --workdir (only --epochs may change)"
        )


def check_same_data(record: dict[str, Any], provenance: dict[str, Any], root: Path) -> None:
    """WorkdirError unless the run recorded in `root` trained on the same data."""
    stored = record.get("data", {})
    differences = [
        f"{key}: {stored.get(key)!r} there, {provenance[key]!r} now"
        for key in DATA_IDENTITY
        if stored.get(key) != provenance[key]
    ]
    if differences:
        raise WorkdirError(
            f"workdir {root} holds a run on different data ({'; '.join(differences)}); "
            "use another --workdir or the same --train_examples / --eval_examples / --data_source"
        )


def write_run_record(
    paths: RunPaths,
    config: Config,
    provenance: dict[str, Any],
    previous: dict[str, Any] | None,
    settings: dict[str, Any],
) -> None:
    """(Re)write config.json: the config, the data, versions, and this invocation appended
    to the earlier ones of `previous` (the record read before, or None)."""
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
    fileio.write_json(paths.config, record)


# ======================================================================================
# history.csv: one row per completed epoch, appended across resumes
# ======================================================================================


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """history.csv rows as floats (empty cells dropped); [] when there is no file.

    A row torn by a kill is left out, as when the run resumes.
    """
    _, rows = read_history_rows(Path(path))
    return [{k: float(v) for k, v in row.items() if v != ""} for row in rows]


def read_history_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and complete rows as strings; a row torn by a kill (wrong field count, no
    final newline) is dropped."""
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


def truncate_history(path: Path, last_epoch: int) -> None:
    """Keep only rows of epochs <= last_epoch (a kill can leave a row ahead of a checkpoint).

    WorkdirError, leaving the file as it is, when it is not a wae_tf history.
    """
    _check_ours(path, read_history_header(path))
    header, rows = read_history_rows(path)
    if not header:
        return
    kept = [row for row in rows if int(row["epoch"]) <= last_epoch]
    content = _csv_text(header, kept)
    if content != path.read_text():
        fileio.write_text(path, content)


def read_history_header(path: Path) -> list[str]:
    """The column names on history.csv's first line; [] when there is no file or no
    complete first line. Reads that line only."""
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", errors="replace")
    if not first.endswith("\n"):
        return []  # empty, or a header torn by a kill
    return next(csv.reader([first]), [])


def _check_ours(path: Path, header: list[str]) -> None:
    """WorkdirError unless `header` is empty or a wae_tf history's (first column epoch)."""
    if header and header[0] != "epoch":
        raise WorkdirError(
            f"{path} is not a wae_tf history (its first column is {header[0]!r}, not "
            "'epoch'): move it away or use another --workdir"
        )


def _csv_text(header: list[str], rows: list[dict[str, Any]], with_header: bool = True) -> str:
    """`rows` as CSV under `header` (missing cells empty), with the header line first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", lineterminator="\n")
    if with_header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def append_history_row(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row (the header first, for a new file) and fsync it.

    Values: ints as they are, floats with 9 significant digits (float32 round-trips
    exactly), None as an empty cell (not measured that epoch). Only the header line is
    read, so an epoch costs the same however long the file is. A row with a column the
    file lacks (validation turned on later, a column added by a newer version) makes the
    file be rewritten once, atomically, with the union of the columns: earlier rows get
    empty cells, no value is dropped. A file that is not a wae_tf history raises
    WorkdirError, untouched. A full disk raises `fileio.DiskFullError`; a partly written
    row is dropped when the run resumes.
    """
    cells = {
        k: v if isinstance(v, int) else "" if v is None else f"{v:.9g}" for k, v in row.items()
    }
    header = read_history_header(path)
    _check_ours(path, header)
    if not header:  # a new file (or one whose header a kill tore: nothing to keep)
        fileio.write_text(
            path, _csv_text(["epoch", *sorted(k for k in row if k != "epoch")], [cells])
        )
        return
    added = sorted(set(row) - set(header))
    if added:
        _, rows = read_history_rows(path)
        fileio.write_text(path, _csv_text([*header, *added], [*rows, cells]))
        return
    fileio.append_text(path, _csv_text(header, [cells], with_header=False))
