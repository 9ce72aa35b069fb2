"""Image grids (`wae_tf.visualize`): both pixel ranges to uint8, row-by-row tiling with
gutters, the paper's alternating real/reconstructed rows, and atomic PNG writes with the
usual file mode. No Keras: runs in well under a second.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import fill_disk
from PIL import Image

from wae_tf import fileio, visualize


def test_to_uint8_maps_both_pixel_ranges_and_clips():
    np.testing.assert_array_equal(
        visualize.to_uint8(np.array([0.0, 0.5, 1.0, 1.2]), "unit"), [0, 128, 255, 255]
    )
    np.testing.assert_array_equal(
        visualize.to_uint8(np.array([-1.5, -1.0, 0.0, 1.0]), "symmetric"), [0, 0, 128, 255]
    )
    with pytest.raises(ValueError, match="pixel_range"):
        visualize.to_uint8(np.zeros(3), "0-255")


def test_image_grid_places_images_row_by_row_with_gutters():
    images = np.arange(1, 6, dtype=np.uint8)[:, None, None, None] * np.ones((5, 2, 3, 1), np.uint8)
    grid = visualize.image_grid(images, rows=2, cols=3, pad=1, pad_value=0)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2, 1)
    assert grid[0, 0, 0] == 1 and grid[0, 4, 0] == 2 and grid[3, 0, 0] == 4
    assert grid[3, 4, 0] == 5 and grid[3, 8, 0] == 0  # image 5, then an empty cell
    assert grid[2, :, 0].max() == 0  # the gutter row
    with pytest.raises(ValueError, match="do not fit"):
        visualize.image_grid(images, rows=1, cols=3)


def test_interleave_rows_alternates_real_and_reconstructed_rows():
    real = np.arange(6)[:, None, None, None] * np.ones((6, 1, 1, 1))
    out = visualize.interleave_rows(real, real + 100, cols=3)
    assert out[:, 0, 0, 0].tolist() == [0, 1, 2, 100, 101, 102, 3, 4, 5, 103, 104, 105]
    with pytest.raises(ValueError, match="rows of 4"):
        visualize.interleave_rows(real, real, cols=4)


def test_reconstruction_grid_puts_real_rows_above_their_reconstructions():
    real = np.arange(1, 5, dtype=np.uint8)[:, None, None, None] * np.ones((4, 2, 2, 1), np.uint8)
    outputs = np.array([-1.0, 0.0, 1.0, 1.5])[:, None, None, None] * np.ones((4, 2, 2, 1))
    grid = visualize.reconstruction_grid(real, outputs, "symmetric", cols=2)
    assert grid.shape == (4 * 2 + 3, 2 * 2 + 1, 1) and grid.dtype == np.uint8
    cells = [[int(grid[3 * row, 3 * col, 0]) for col in range(2)] for row in range(4)]
    assert cells == [[1, 2], [0, 128], [3, 4], [255, 255]]  # real, reconstructed, real, ...
    with pytest.raises(ValueError, match="rows of 3"):
        visualize.reconstruction_grid(real, outputs, "symmetric", cols=3)


def test_save_png_round_trips_and_leaves_no_temporary_file(tmp_path):
    grid = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = visualize.save_png(tmp_path / "sub" / "grid.png", grid)
    with Image.open(path) as png:
        np.testing.assert_array_equal(np.asarray(png), grid)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    grey = visualize.save_png(tmp_path / "grey.png", grid[..., :1])
    with Image.open(grey) as png:
        assert png.mode == "L"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["grey.png", "grid.png", "sub"]


def test_save_png_on_a_full_disk_names_the_file_and_leaves_nothing(small_tmpfs):
    fill_disk(small_tmpfs)
    path = small_tmpfs / "samples" / "samples_epoch_0003.png"
    grid = np.random.default_rng(0).integers(0, 256, (229, 229, 3), dtype=np.uint8)
    with pytest.raises(fileio.DiskFullError) as caught:
        visualize.save_png(path, grid)
    assert str(caught.value) == f"no space left to write {path}"
    assert list(path.parent.iterdir()) == []
