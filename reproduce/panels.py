"""One model's column of Figures 2-3: test interpolations, test reconstructions, samples.

Each panel is a uint8 grid of PANEL_COLS images per row with 1-pixel gutters
(`wae_tf.visualize.image_grid`) [paper, Fig. 2-3]. The test images shown are chosen once
with a fixed seed (`choose_panel_inputs`) and are the same for the three models.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reproduce.inference import decode, encode, generate_samples, reconstruct
from reproduce.options import ReproError
from wae_tf.streams import to_model_range

PANEL_COLS = 10
INTERPOLATION_ROWS = 5  # pairs of test points; each row: real, 8 decoded steps, real
RECONSTRUCTION_PAIRS = 3  # rows of real test images, each followed by its reconstructions
SAMPLE_ROWS = 5
PANEL_ROWS = ("interpolations", "reconstructions", "samples")
PANEL_LABELS = {
    "interpolations": "test interpolations",
    "reconstructions": "test reconstructions",
    "samples": "random samples",
}
IMAGE_SHAPES = {"mnist": (28, 28, 1), "celeba": (64, 64, 3)}  # [paper, App. C]
# Offsets of the fixed seeds of the figure's random choices from --seed.
SAMPLE_SEED_OFFSET = 2018
PANEL_SEED_OFFSET = 17


def panel_shapes(dataset: str) -> dict[str, tuple[int, int, int]]:
    """The (H, W, C) of each panel grid (1-pixel gutters, `wae_tf.visualize.image_grid`)."""
    h, w, c = IMAGE_SHAPES[dataset]
    rows = {
        "interpolations": INTERPOLATION_ROWS,
        "reconstructions": 2 * RECONSTRUCTION_PAIRS,
        "samples": SAMPLE_ROWS,
    }
    return {k: (r * (h + 1) - 1, PANEL_COLS * (w + 1) - 1, c) for k, r in rows.items()}


@dataclasses.dataclass(frozen=True)
class PanelInputs:
    """The test images every column shows (the same for the three models), uint8."""

    interpolation_pairs: np.ndarray  # (INTERPOLATION_ROWS, 2, H, W, C)
    reconstruction_images: np.ndarray  # (RECONSTRUCTION_PAIRS * PANEL_COLS, H, W, C)
    sample_seed: int


def choose_panel_inputs(test_uint8: np.ndarray, seed: int) -> PanelInputs:
    """Fixed-seed random choice of distinct test images for the panels."""
    needed = 2 * INTERPOLATION_ROWS + RECONSTRUCTION_PAIRS * PANEL_COLS
    if len(test_uint8) < needed:
        raise ReproError(f"the figure needs >= {needed} test images, got {len(test_uint8)}")
    rng = np.random.default_rng(seed + PANEL_SEED_OFFSET)
    chosen = test_uint8[rng.choice(len(test_uint8), size=needed, replace=False)]
    pairs = chosen[: 2 * INTERPOLATION_ROWS].reshape(INTERPOLATION_ROWS, 2, *chosen.shape[1:])
    return PanelInputs(pairs, chosen[2 * INTERPOLATION_ROWS :], seed + SAMPLE_SEED_OFFSET)


def interpolation_panel(model, pairs_uint8: np.ndarray) -> np.ndarray:
    """Rows: real x_a, G(z) for z on the straight line from Q(x_a) to Q(x_b) (both ends
    included, PANEL_COLS - 2 points), real x_b [paper, Fig. 2-3 "test interpolations"]."""
    from wae_tf import visualize

    pixel_range = model.config.pixel_range
    steps = PANEL_COLS - 2
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = encode(model, to_model_range(pairs_uint8.reshape(-1, *pairs_uint8.shape[2:]), pixel_range))
    z_a, z_b = z[0::2, None, :], z[1::2, None, :]
    path = ((1.0 - t) * z_a + t * z_b).reshape(-1, z.shape[-1])  # (rows * steps, d_z)
    decoded = visualize.to_uint8(decode(model, path), pixel_range)
    decoded = decoded.reshape(len(pairs_uint8), steps, *decoded.shape[1:])
    rows = np.concatenate([pairs_uint8[:, :1], decoded, pairs_uint8[:, 1:]], axis=1)
    return visualize.image_grid(rows.reshape(-1, *rows.shape[2:]), len(pairs_uint8), PANEL_COLS)


def reconstruction_panel(model, images_uint8: np.ndarray) -> np.ndarray:
    """Odd rows: real test images; even rows: their reconstructions [paper, Fig. 2-3]."""
    from wae_tf import visualize

    pixel_range = model.config.pixel_range
    reconstructed = reconstruct(model, to_model_range(images_uint8, pixel_range))
    return visualize.reconstruction_grid(images_uint8, reconstructed, pixel_range, PANEL_COLS)


def sample_panel(model, seed: int) -> np.ndarray:
    """SAMPLE_ROWS x PANEL_COLS decoded draws z ~ P_Z (fixed seed) [paper, Fig. 2-3]."""
    from wae_tf import visualize

    samples = generate_samples(model, SAMPLE_ROWS * PANEL_COLS, seed)
    return visualize.image_grid(
        visualize.to_uint8(samples, model.config.pixel_range), SAMPLE_ROWS, PANEL_COLS
    )


def model_panels(model, inputs: PanelInputs) -> dict[str, np.ndarray]:
    return {
        "interpolations": interpolation_panel(model, inputs.interpolation_pairs),
        "reconstructions": reconstruction_panel(model, inputs.reconstruction_images),
        "samples": sample_panel(model, inputs.sample_seed),
    }
