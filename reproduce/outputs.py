"""Writing results: JSON and markdown in memory, then every file atomically, with provenance.

Every output is rendered in memory first and written only after every number has been
computed (`write_outputs`, through `wae_tf.fileio`), so a failed run leaves no
half-written results. `provenance` records what produced them (`wae_tf.provenance`: code
version, machine, command line) and when.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from reproduce.options import MODEL_LABELS, Options, ReproError
from reproduce.runs import run_group
from wae_tf import fileio
from wae_tf import provenance as provenance_lib


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def json_bytes(payload: dict[str, Any]) -> bytes:
    """Indented JSON with a final newline; NumPy numbers as Python's, NaN / inf as null."""
    return (json.dumps(_jsonable(payload), indent=2) + "\n").encode()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any, spec: str = ".4g") -> str:
    """A number for a markdown cell; "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float, np.floating)):
        return format(float(value), spec)
    return str(value)


def label_lines(labels: Sequence[str]) -> list[str]:
    """The PARTIAL / MIXED BUNDLES labels as bold markdown lines (nothing when whole)."""
    return [line for label in labels for line in (f"**{label}**", "")]


class OutDirLock:
    """An exclusive lock on <out_dir>/.lock, taken by `acquire` before a run writes anything
    to --out_dir (its bundles, then its figure / table) and held until `release`: a second
    run on the same --out_dir is refused before it can replace the first's bundles. The OS
    releases it when the holder exits, however it exits. `acquire` creates --out_dir, so
    the scripts call it only after their up-front checks (which create nothing)."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self._file = None

    def acquire(self) -> None:
        """Take the lock (again: nothing); ReproError naming --out_dir when another process
        holds it."""
        if self._file is not None:
            return
        import fcntl

        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.out_dir / ".lock", "a+")  # held until release
        except OSError as e:
            raise ReproError(f"cannot create --out_dir {self.out_dir} ({e.strerror or e})") from e
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise ReproError(
                f"--out_dir={self.out_dir} is in use by another reproduce run (pid {holder}); "
                "wait for it to finish or choose another --out_dir"
            ) from e
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._file = lock

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None

    def __enter__(self) -> OutDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_outputs(out_dir: Path, files: dict[str, bytes | str]) -> list[str]:
    """Write files already rendered in memory (name -> content), each atomically, so a
    failure while computing leaves nothing half-written. Returns the paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReproError(f"cannot create --out_dir {out_dir} ({e.strerror or e})") from e
    written = []
    for name, content in files.items():
        path = out_dir / name
        if isinstance(content, str):
            fileio.write_text(path, content)
        else:
            fileio.write_bytes(path, content)
        written.append(str(path))
        logging.info("wrote %s", path)
    return written


def process_provenance(command_line: str, start_time: float) -> dict[str, Any]:
    """What this process is: its command line, the code version, the machine, when it
    started and how long it has run."""
    return {
        "command_line": command_line,
        **provenance_lib.code_version(),
        "machine": provenance_lib.machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start_time)),
        "wall_time_s": round(time.time() - start_time, 1),
    }


def provenance(options: Options, start_time: float) -> dict[str, Any]:
    """An output's provenance: this process's, its seed and its runs' folder (none when
    it only assembled bundles)."""
    return {
        **process_provenance(options.command_line, start_time),
        "seed": None if options.assemble else options.seed,
        "runs_dir": None if options.assemble else str(options.workdir / run_group(options)),
    }


def provenance_lines(payload: dict[str, Any]) -> list[str]:
    """The markdown "## Provenance" section: the assembly, then one line per bundle. (All
    that legitimately differs between two assemblies of the same numbers is in here.)"""
    prov = payload["provenance"]

    def line(p: dict[str, Any]) -> str:
        git, host = p.get("git", {}), p.get("machine", {})
        return (
            f"commit {git.get('commit')}{' (local changes)' if git.get('dirty') else ''}, "
            f"sources sha256 {str(p.get('source_sha256'))[:12]}, {host.get('platform')}, "
            f"{host.get('cpu_count')} CPUs, GPUs {host.get('gpus')}, started "
            f"{p.get('started_at')}, {p.get('wall_time_s')} s; `{p.get('command_line')}`"
        )

    lines = ["## Provenance", "", f"- Assembled by: {line(prov)}."]
    for name, p in prov["bundles"].items():
        lines.append(f"- {MODEL_LABELS[name]} bundle `{p['path']}`: {line(p)}.")
    return [*lines, ""]


def done_message(name: str, payload: dict[str, Any]) -> str:
    """The line a script prints when it is done."""
    if payload.get("assembled") is False:
        return f"{name}: wrote the bundle(s) {', '.join(payload['bundles'])}; {payload['next']}"
    labels = "".join(f"{label}; " for label in payload.get("labels", []))
    return f"{name}: {labels}{payload['scale']['description']}; wrote {', '.join(payload['files'])}"
