"""wae-tf: Wasserstein Auto-Encoders (Tolstikhin et al., ICLR 2018) in Keras 3.

Importing the package (any module of it) makes its `.keras` files loadable with a plain
`keras.saving.load_model(path)`: the classes registered with Keras (`wae_tf.models`, which
imports the others) are imported as soon as Keras is, whether Keras was imported before
or after this package. The package import itself stays light: `import wae_tf.data` (or
configs, fileio, visualize, ...) imports neither Keras nor TensorFlow.

How: until the registration has happened, a finder at the front of `sys.meta_path` wraps
the loaders of `keras` and of this package's modules; when one of them has finished
loading, Keras is loaded and no module of this package is half-imported (models.py's own
imports must not meet a partly executed module), it imports `wae_tf.models` and goes away.
"""

from __future__ import annotations

import importlib.abc
import sys

__version__ = "0.1.0"

_executing = 0  # modules of this package whose code is running right now (nested imports)


def _register_keras_objects() -> None:
    """Import wae_tf.models (WAE, VAE, MultiOptimizer, the custom layers) once Keras is
    loaded and nothing of this package is mid-import; then stop watching imports."""
    if _executing == 0 and "keras" in sys.modules and "wae_tf.models" not in sys.modules:
        import wae_tf.models  # noqa: F401
    if "wae_tf.models" in sys.modules:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Watcher)]


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds `keras` and `wae_tf.*` as the other finders do, with `_ThenRegister` loaders."""

    def find_spec(self, name, path, target=None):
        if name != "keras" and not name.startswith(f"{__name__}."):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenRegister(spec.loader, ours=name != "keras")
                return spec
        return None


class _ThenRegister(importlib.abc.Loader):
    """The module's own loader, then `_register_keras_objects`."""

    def __init__(self, loader, ours: bool):
        self._loader, self._ours = loader, ours

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        global _executing
        _executing += self._ours
        try:
            self._loader.exec_module(module)
        finally:
            _executing -= self._ours
        _register_keras_objects()

    def __getattr__(self, name):  # get_code, get_resource_reader, ...: the module's loader
        return getattr(self._loader, name)


_register_keras_objects()
if "wae_tf.models" not in sys.modules and not any(isinstance(f, _Watcher) for f in sys.meta_path):
    sys.meta_path.insert(0, _Watcher())
