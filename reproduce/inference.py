"""A trained model's outputs in batches, as NumPy: codes, images, prior samples, the cost.

Images in and out are floats NHWC in the model's pixel range ("unit" = [0, 1] for MNIST,
"symmetric" = [-1, 1] for CelebA [paper, App. C]); `wae_tf.streams.to_model_range` maps
uint8 [0, 255] images into it.
"""

from __future__ import annotations

import numpy as np

GENERATION_BATCH = 500  # images decoded / encoded per call


def _numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def decode(model, z: np.ndarray) -> np.ndarray:
    """Codes (N, d_z) -> images (N, H, W, C) in the model's pixel range, batched."""
    out = [
        _numpy(model.decode(z[i : i + GENERATION_BATCH]))
        for i in range(0, len(z), GENERATION_BATCH)
    ]
    return np.concatenate(out).astype(np.float32)


def encode(model, images: np.ndarray) -> np.ndarray:
    """Images in the model's pixel range -> codes (the VAE: its posterior mean), batched."""
    out = [
        _numpy(model.encode(images[i : i + GENERATION_BATCH]))
        for i in range(0, len(images), GENERATION_BATCH)
    ]
    return np.concatenate(out).astype(np.float32)


def reconstruct(model, images: np.ndarray) -> np.ndarray:
    return decode(model, encode(model, images))


def generate_samples(model, n: int, seed: int) -> np.ndarray:
    """n images G(z), z ~ P_Z drawn with the integer `seed` (the same z for a given seed)."""
    z = _numpy(model.sample_prior(n, seed=seed)).astype(np.float32)
    return decode(model, z)


def reconstruction_costs(model, images: np.ndarray) -> dict[str, float]:
    """The WAE cost on test images (in the model's pixel range), averaged over images.

    "test_reconstruction_cost": c(x, G(Q(x))) = 0.05 * ||x - G(Q(x))||^2 [code, l2sq], the
      training objective's first term (the VAE uses its posterior mean as the code);
    "test_squared_l2": ||x - G(Q(x))||^2 summed over pixels (c without the 0.05).
    """
    scale = float(model.config.reconstruction_scale)
    squared = []
    for i in range(0, len(images), GENERATION_BATCH):
        batch = images[i : i + GENERATION_BATCH]
        diff = reconstruct(model, batch).astype(np.float64) - batch
        squared.append(np.sum(diff**2, axis=(1, 2, 3)))
    l2 = float(np.mean(np.concatenate(squared)))
    return {"test_reconstruction_cost": scale * l2, "test_squared_l2": l2}
