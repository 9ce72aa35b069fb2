"""How a training run is carried out, apart from its Config: `TrainSettings`.

    TrainSettings(data_dir=..., sample_every=0, ...)   the run settings of `trainer.train`
    Cadence                                          when the per-epoch extras are due

A `Config` says what is trained (the paper's hyperparameters; recorded in config.json and
compared when a run resumes); `TrainSettings` says where the data is, how often files are
written, on which devices and how verbosely -- nothing that changes the trained weights
except `pretrain`, `train_examples` and the data (recorded in config.json's "data"
record), and the device settings (its "settings" record). Both are frozen dataclasses;
invalid settings raise ValueError when the object is made.

Imports no Keras or TensorFlow: the command lines read the defaults from here before
they parse their flags (`wae_tf.cli_flags`).
"""

from __future__ import annotations

import dataclasses
import os

from wae_tf.configs import DISTRIBUTIONS, PRECISIONS

# How many of the newest checkpoints stay on disk: the latest and one before it, in case
# the latest is damaged (wae_tf.checkpoints.prune).
DEFAULT_KEEP = 2
# Validation metrics are computed on the first min(1000, N_test) test images by default:
# enough to watch progress at a small cost per epoch. Figures and FID use the full set.
DEFAULT_EVAL_EXAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Cadence:
    """How often (in epochs) the loop does its per-epoch extras; none changes the math.

    Each extra also happens after the run's last epoch. 0 turns samples or validation off.
    `keep_checkpoints`: how many of the newest checkpoints stay on disk (>= 1).
    """

    sample_every: int = 1
    checkpoint_every: int = 1
    validate_every: int = 1
    keep_checkpoints: int = DEFAULT_KEEP

    @staticmethod
    def due(every: int, completed: int, last_epoch: int) -> bool:
        """Whether an extra done every `every` epochs runs after epoch `completed` (1-based)."""
        return every > 0 and (completed % every == 0 or completed == last_epoch)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The run settings of `wae_tf.trainer.train` (everything but the Config and workdir).

    Attributes:
      data_dir, data_source: where the images are (`wae_tf.data.load_uint8`).
      train_examples: keep the first N training images (smoke runs); default all.
      eval_examples: validation on the first N test images; default min(1000, N_test).
      pretrain: run the encoder pretraining [code] on a fresh start when the config asks
        for it (WAE presets do, VAE presets do not).
      sample_every: write sample/reconstruction PNGs every this many epochs and after the
        last one; 0 disables them.
      checkpoint_every: write a checkpoint every this many epochs and after the last one
        (>= 1). An interrupted run resumes from the latest checkpoint, so it repeats at
        most `checkpoint_every - 1` completed epochs; the math is unchanged (data order and
        RNG state are part of the checkpoint).
      validate_every: evaluate on the test images every this many epochs and after the
        last one; 0 disables validation. history.csv leaves the val_ cells of the other
        epochs empty.
      keep_checkpoints: how many of the newest checkpoints stay on disk (>= 1). A damaged
        latest one is moved aside (`<name>.corrupt`) and the run resumes from the one
        before it.
      distribution, num_gpus, precision: "none" | "mirrored" | "multi_worker", the number
        of GPUs (None: all visible), and "float32" | "mixed_bfloat16" | "mixed_float16";
        non-defaults go through `wae_tf.distribute` (TensorFlow).
      verbose: Keras's progress bar (1), one line per epoch (2) or none (0).

    Raises ValueError naming the first invalid setting.
    """

    data_dir: str | os.PathLike | None = None
    data_source: str = "files"
    train_examples: int | None = None
    eval_examples: int | None = None
    pretrain: bool = True
    sample_every: int = 1
    checkpoint_every: int = 1
    validate_every: int = 1
    keep_checkpoints: int = DEFAULT_KEEP
    distribution: str = "none"
    num_gpus: int | None = None
    precision: str = "float32"
    verbose: int = 1

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.sample_every < 0:
            raise ValueError(
                f"sample_every must be >= 0 (0: no sample grids), got {self.sample_every}"
            )
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.validate_every < 0:
            raise ValueError(
                f"validate_every must be >= 0 (0: no validation), got {self.validate_every}"
            )
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")

    @property
    def cadence(self) -> Cadence:
        """When the loop samples, checkpoints and validates."""
        return Cadence(
            self.sample_every, self.checkpoint_every, self.validate_every, self.keep_checkpoints
        )

    def replace(self, **changes) -> TrainSettings:
        return dataclasses.replace(self, **changes)
