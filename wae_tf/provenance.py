"""What produced a result: library versions, the code version (git commit, local
changes, a hash of the sources), the machine and the command line.

Nothing here imports TensorFlow on the JAX backend (versions are read from the installed
package metadata), and nothing here may fail a run: what cannot be found is None.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import wae_tf


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` found, without importing it."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def library_versions() -> dict[str, str | None]:
    """Python, wae_tf, Keras (and its backend), TensorFlow, JAX, NumPy and absl versions."""
    import keras  # here, not at the top: `import reproduce` and wae_tf.rundir stay light

    return {
        "python": platform.python_version(),
        "wae_tf": wae_tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": package_version("tensorflow", "tensorflow-cpu", "tensorflow-gpu"),
        "jax": package_version("jax"),
        "numpy": np.__version__,
        "absl-py": package_version("absl-py"),
    }


REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("wae_tf", "reproduce")  # the code whose version results record


def git_state() -> dict[str, Any]:
    """{"commit": HEAD, "dirty": bool, "modified": [paths]} of the checkout holding this code.

    "dirty" counts modified tracked files only: untracked outputs (a run folder, a figure)
    do not make the code a different version. All None outside a git checkout.
    """
    try:
        commit = _git("rev-parse", "HEAD").strip()
        status = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None, "modified": None}
    modified = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"commit": commit, "dirty": bool(modified), "modified": modified}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """{"git": git_state(), "source_sha256": sha256 of every .py file under wae_tf/ and
    reproduce/ (relative path and bytes, in sorted order)}.

    The source hash covers local changes and needs no .git (a copied working tree on
    another machine has the same hash). Read once per process and kept, since the running
    process keeps the code it imported even if the files are edited later.
    """
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return {"git": git_state(), "source_sha256": digest.hexdigest()}


def machine() -> dict[str, Any]:
    """Platform, CPU and GPUs of this machine (what the numbers were computed on)."""
    versions = library_versions()
    backend = versions["keras_backend"]
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "keras": versions["keras"],
        "keras_backend": backend,
        backend: versions.get(backend),
    }
    try:
        if backend == "jax":
            import jax

            info["gpus"] = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
        else:
            import tensorflow as tf

            info["gpus"] = [
                tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                for gpu in tf.config.list_physical_devices("GPU")
            ]
    except Exception as e:  # noqa: BLE001 - provenance must never fail a run
        info["gpus"] = f"unknown ({e})"
    return info


def command_line(argv: Sequence[str] | None = None) -> str:
    """argv (default sys.argv) as a shell command, with `python -m package.module` for a
    module of this project run as a script (e.g. `python -m wae_tf.train ...`)."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        path = Path(argv[0])
        if path.suffix == ".py" and path.parent.name in SOURCE_PACKAGES:
            argv = ["python", "-m", f"{path.parent.name}.{path.stem}", *argv[1:]]
    return shlex.join(argv)
