"""What produced a result: library versions, read without importing the libraries (so
that provenance never imports TensorFlow on the JAX backend)."""

from __future__ import annotations

import importlib.metadata
import platform

import keras
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
