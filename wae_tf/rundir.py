"""A run folder: where each of its files lives.

`RunPaths(root)` is the one place that names a run's files; the trainer, the export and
the reproduce scripts ask it instead of spelling the names again. What each file holds
is described in `wae_tf.train`'s module docstring.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

CHECKPOINT_PREFIX = "epoch_"


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its files (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def final_model(self) -> Path:
        return self.root / "final.keras"

    @property
    def done(self) -> Path:
        return self.root / "DONE.json"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{epoch:04d}.npz"
