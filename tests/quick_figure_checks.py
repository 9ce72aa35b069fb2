"""What README's `--quick` figures must show: a figure that tells the paper's story.

Not a test module: tests/test_first_run.py (figure2 --quick, README's main job) and
tests/test_reproduce.py (figure3 --quick) call `assert_samples_vary` and
`assert_scores_differ` on what the run wrote. With 3 training steps per model (the old
--quick) every sample cell was the same grey and all three models had one Fréchet score.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from reproduce import bundles
from reproduce.cli import MODELS
from reproduce.specs import PANEL_COLS

# uint8 grey levels. A flat grey cell has a spread of ~0; MNIST digits ~40; blurry faces
# of the quick CelebA run ~10-40 (measured).
MIN_SPREAD_IN_A_SAMPLE = 3.0  # pixel std inside one sample: it is not a flat image
MIN_SPREAD_ACROSS_SAMPLES = 2.0  # pixel std across the samples: they are not all the same
MIN_RELATIVE_SCORE_GAP = 0.01


def sample_cells(grid: np.ndarray, image_size: int) -> np.ndarray:
    """The samples of a panel grid (1 px gutters, PANEL_COLS per row) as (N, H, W, C)."""
    step = image_size + 1
    rows = (grid.shape[0] + 1) // step
    return np.stack(
        [
            grid[r * step : r * step + image_size, c * step : c * step + image_size]
            for r in range(rows)
            for c in range(PANEL_COLS)
        ]
    ).astype(np.float64)


def assert_samples_vary(out_dir: Path, kind: str, image_size: int) -> None:
    """Each model's random samples (its bundle's panels) are neither flat nor all alike."""
    for model in MODELS:
        with np.load(bundles.bundle_dir(out_dir, kind, model) / "panels.npz") as npz:
            cells = sample_cells(npz["samples"], image_size)
        within = float(cells.std(axis=(1, 2, 3)).mean())
        across = float(cells.std(axis=0).mean())
        assert within > MIN_SPREAD_IN_A_SAMPLE, (model, "flat samples", within)
        assert across > MIN_SPREAD_ACROSS_SAMPLES, (model, "identical samples", across)


def assert_scores_differ(scores: dict[str, float]) -> None:
    """The three models' scores are pairwise different (by more than 1%)."""
    assert set(scores) == set(MODELS), scores
    for a, b in itertools.combinations(MODELS, 2):
        gap = abs(scores[a] - scores[b]) / max(abs(scores[a]), abs(scores[b]))
        assert gap > MIN_RELATIVE_SCORE_GAP, (a, b, scores)
