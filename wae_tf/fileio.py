"""The one way this project writes a file: atomically, durably, with the usual mode.

Every file a run, a figure or a cache writes goes through `atomic_path` (or the helpers
built on it): the bytes go to a temporary file next to the target, are flushed to disk
(fsync), get the mode a plainly created file would get (0o666 minus the umask; mkstemp
makes 0600 files), and are renamed onto the target. A crash, a kill or a full disk leaves
either the old file or the new one, never a torn one, and no temporary file behind.

A write that fails for a reason the user has to fix outside the program is reported as
a `WriteError` whose message names the file, so callers can print it as one line: a full
disk (ENOSPC, or EDQUOT for a quota) as its subclass `DiskFullError`, a read-only file
system (EROFS), a file over the size limit (EFBIG: `ulimit -f`, or the file system's
maximum), no permission (EACCES, EPERM) or a failing disk (EIO).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wae_tf.errors import WaeError

TEMPORARY_PREFIX = "."  # temporary files are hidden: .<name>.<random><suffix>
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class WriteError(WaeError, OSError):
    """A write failed for a reason outside the program (see the module docstring); the
    target is untouched.

    Built as `WriteError(errno, message)`; str() is the message alone (no "[Errno 30]"),
    so that it can be printed as one line. `remedy` says what the user should do.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()

    @property
    def remedy(self) -> str:
        return _CANNOT_WRITE.get(self.errno, ("", "make it writable"))[1]


class DiskFullError(WriteError):
    """A write failed because the file system is full (or the quota is used up)."""

    @property
    def remedy(self) -> str:
        return "free some space"


# errno: (what the user is told after "cannot write <file>: ", what they should do).
_CANNOT_WRITE = {
    errno.EROFS: (
        "the file system is read-only",
        "make it writable, or copy the folder to a writable place and use that",
    ),
    errno.EFBIG: (
        "the file would be larger than allowed (a file-size limit, `ulimit -f`, or the "
        "file system's largest file)",
        "raise the limit (`ulimit -f unlimited`) or use another file system",
    ),
    errno.EACCES: ("permission denied", "make the folder writable for this user"),
    errno.EPERM: ("operation not permitted", "make the folder writable for this user"),
    errno.EIO: ("input/output error (a failing disk or a lost network mount?)", "check the disk"),
}


class UnreadableFileError(WaeError, ValueError):
    """A file exists but cannot be read or parsed; the message names it."""


def file_mode() -> int:
    """The mode a plainly created file gets: 0o666 minus the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_error(error: OSError, path: str | os.PathLike) -> OSError:
    """`error` as the one-line WriteError naming `path` when the user must fix its cause
    (see the module docstring); `error` itself otherwise, or when it is one already."""
    if isinstance(error, WriteError):
        return error
    if is_disk_full(error):
        return DiskFullError(error.errno, f"no space left to write {path}")
    if error.errno in _CANNOT_WRITE:
        return WriteError(error.errno, f"cannot write {path}: {_CANNOT_WRITE[error.errno][0]}")
    return error


def find_write_error(error: BaseException | None) -> WriteError | None:
    """The WriteError that `error` is or was raised from (Keras and TensorFlow wrap the
    errors of callbacks), or None."""
    while error is not None:
        if isinstance(error, WriteError):
            return error
        error = error.__cause__ or error.__context__
    return None


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) is a full disk or quota."""
    while error is not None:
        if isinstance(error, DiskFullError):
            return True
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block succeeds, fsync it and rename
    it onto `path`. On any failure the temporary file is removed and `path` is untouched.

    `suffix` matters to writers that choose a format by extension (`.npz`, `.keras`).
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.name}.", suffix=suffix
        )
        os.close(fd)
        tmp = Path(name)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as e:
        failure = write_error(e, path)
        if failure is e:
            raise
        raise failure from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def promote(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make a finished temporary file the file at `path`: fsync it, give it the usual mode,
    rename it onto `path`. For writers that fill the temporary file over several sessions
    (a resumable download), where `atomic_path`'s single block does not fit."""
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(temporary, file_mode())
    os.replace(temporary, path)


def write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Write `content` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def write_text(path: str | os.PathLike, content: str) -> None:
    """Write `content` (UTF-8) to `path` atomically."""
    write_bytes(path, content.encode("utf-8"))


def append_text(path: str | os.PathLike, content: str) -> None:
    """Append `content` (UTF-8) to `path` (created if absent) and fsync it.

    Not atomic: a crash or a full disk can leave part of `content` at the end of the
    file, which readers of append-only files (history.csv) must drop. A full disk raises
    DiskFullError naming the file (other causes the user must fix: WriteError).
    """
    path = Path(path)
    try:
        with open(path, "a", encoding="utf-8", newline="") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        failure = write_error(e, path)
        if failure is e:
            raise
        raise failure from e


def write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> None:
    """Write `payload` as indented JSON with a final newline, atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed JSON in `path`, or None when there is no such file.

    Raises UnreadableFileError (naming the file) when it exists but cannot be read or
    parsed: a torn or hand-edited file is never silently taken for "absent".
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UnreadableFileError(f"{path} is unreadable ({e})") from e


def remove_temporaries(folder: str | os.PathLike, names: tuple[str, ...] = ()) -> None:
    """Delete the temporary files a killed writer left in `folder`.

    names: only temporaries of these target names; empty: every hidden temporary file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    patterns = [f"{TEMPORARY_PREFIX}{name}.*" for name in names] or [f"{TEMPORARY_PREFIX}*"]
    for pattern in patterns:
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
