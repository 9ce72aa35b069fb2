"""wae-tf: Wasserstein Auto-Encoders (Tolstikhin et al., ICLR 2018) in Keras 3.

Loading a `.keras` file of a wae_tf model (a run's final.keras, an exported .keras file):

    import wae_tf
    model = wae_tf.load_model("runs/mnist/wae_mmd/final.keras")

or, with Keras's own loader, after `import wae_tf.models` (which registers WAE, VAE, their
optimizer and layers with Keras):

    import keras
    import wae_tf.models  # noqa: F401
    model = keras.saving.load_model("runs/mnist/wae_mmd/final.keras")

The package import itself stays light: `import wae_tf` (and wae_tf.configs, wae_tf.data,
...) imports neither Keras nor TensorFlow; `load_model` imports them when it is called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

__version__ = "0.1.0"


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    """The model of the `.keras` file `path` (a WAE or VAE of this package):
    `keras.saving.load_model(path, compile=compile)` once `wae_tf.models` has registered
    the classes. For a training run folder (its final.keras, or a run still in progress),
    and one-line errors for a damaged file, see `wae_tf.trainer.load_trained_model` and
    `wae_tf.trainer.load_keras_file`.
    """
    import keras

    import wae_tf.models  # noqa: F401  (registers WAE, VAE, MultiOptimizer, the layers)

    return keras.saving.load_model(path, compile=compile)
