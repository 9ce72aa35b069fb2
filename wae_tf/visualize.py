"""Image grids for progress samples and the paper's figures (numpy + Pillow only).

Conventions: images are NHWC. Model outputs are floats in the config's pixel range,
"unit" = [0, 1] (MNIST, sigmoid decoder) or "symmetric" = [-1, 1] (CelebA, tanh decoder)
[paper, App. C]; `to_uint8` maps either to uint8 in [0, 255]. A grid is one uint8 array
(H, W, C) with C = 1 (grey) or 3 (RGB), cells separated by `pad` pixels of `pad_value`.

The reconstruction panels of Figures 2 and 3 alternate rows: odd rows (1st, 3rd, ...)
are real test points, even rows their reconstructions [paper, Fig. 2-3 captions];
`reconstruction_grid` draws one (`interleave_rows` produces that order for `image_grid`),
for the training run's progress grids and for the figures alike.

No TensorFlow or Keras import: anything with `__array__` (numpy, Keras tensors) is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wae_tf import fileio
from wae_tf.configs import PIXEL_RANGES, PixelRange, pixel_bounds


def to_uint8(images, pixel_range: PixelRange) -> np.ndarray:
    """Floats in [0, 1] ("unit") or [-1, 1] ("symmetric") -> uint8 in [0, 255], same shape.

    Values outside the range are clipped (a decoder output can overshoot by rounding);
    uint8 input is returned unchanged.
    """
    if pixel_range not in PIXEL_RANGES:
        raise ValueError(f"pixel_range must be 'unit' or 'symmetric', got {pixel_range!r}")
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    low, high = pixel_bounds(pixel_range)
    x = (x.astype(np.float32) - low) / (high - low)  # exactly x for "unit", (x + 1) / 2 else
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def image_grid(images, rows: int, cols: int, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tile N <= rows * cols uint8 images (N, h, w, C) row by row into one (H, W, C) array.

    H = rows * h + (rows - 1) * pad and W = cols * w + (cols - 1) * pad; cells without an
    image (N < rows * cols) and the `pad`-pixel gutters are filled with `pad_value`.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"image_grid needs uint8 images (see to_uint8), got {x.dtype}")
    if x.ndim == 3:  # (N, h, w): grey images without a channel axis
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, h, w, 1|3), got shape {x.shape}")
    if rows < 1 or cols < 1 or pad < 0:
        raise ValueError(f"need rows, cols >= 1 and pad >= 0, got {rows}, {cols}, {pad}")
    n, h, w, c = x.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit in a {rows}x{cols} grid")
    height, width = rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad
    grid = np.full((height, width, c), pad_value, dtype=np.uint8)
    for i in range(n):
        top, left = (i // cols) * (h + pad), (i % cols) * (w + pad)
        grid[top : top + h, left : left + w] = x[i]
    return grid


def interleave_rows(real, reconstructed, cols: int) -> np.ndarray:
    """Rows of `cols` images: real row 1, its reconstructions, real row 2, ... [paper, Fig. 2].

    real, reconstructed: (N, h, w, C) with the same shape and N a multiple of `cols`.
    Returns (2N, h, w, C) to be tiled by `image_grid(..., rows=2 * N // cols, cols=cols)`.
    """
    real, reconstructed = np.asarray(real), np.asarray(reconstructed)
    if real.shape != reconstructed.shape:
        raise ValueError(
            f"real {real.shape} and reconstructed {reconstructed.shape} differ in shape"
        )
    if cols < 1 or len(real) % cols:
        raise ValueError(f"{len(real)} images do not fill rows of {cols}")
    rows = len(real) // cols
    pairs = np.stack(
        [
            real.reshape(rows, cols, *real.shape[1:]),
            reconstructed.reshape(rows, cols, *real.shape[1:]),
        ],
        axis=1,
    )  # (rows, 2, cols, h, w, C)
    return pairs.reshape(2 * len(real), *real.shape[1:])


def reconstruction_grid(
    real_uint8: np.ndarray, reconstructed, pixel_range: PixelRange, cols: int
) -> np.ndarray:
    """The reconstruction panel [paper, Fig. 2-3]: rows of `cols` real uint8 images (N, h, w,
    C) (odd rows) above their reconstructions (even rows), one uint8 grid.

    `reconstructed`: the model's outputs for `real_uint8`, floats in `pixel_range`; N must
    be a multiple of `cols`.
    """
    rows = interleave_rows(real_uint8, to_uint8(reconstructed, pixel_range), cols)
    return image_grid(rows, 2 * len(real_uint8) // cols, cols)


def save_png(path: str | os.PathLike, grid) -> Path:
    """Write a uint8 (H, W), (H, W, 1) or (H, W, 3) array as a PNG, atomically.

    The image goes to a temporary file in the same folder first and is renamed into place
    (`fileio.atomic_path`), so a reader (or a run killed mid-write) never sees a truncated
    PNG; a full disk raises `fileio.DiskFullError` naming the file. Returns the path.
    """
    from PIL import Image

    array = np.asarray(grid)
    if array.dtype != np.uint8:
        raise ValueError(f"save_png needs a uint8 array, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"save_png needs (H, W), (H, W, 1) or (H, W, 3), got {array.shape}")
    path = Path(path)
    with fileio.atomic_path(path, suffix=".png") as tmp, open(tmp, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")
    return path
