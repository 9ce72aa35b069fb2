"""Train a WAE-MMD, WAE-GAN or VAE on MNIST, Fashion-MNIST or CelebA, resumably.

Command line (absl flags; `--helpfull` lists them all):

    python -m wae_tf.train --dataset=mnist --model=wae_mmd --data_dir=PATH/mnist \\
        --workdir=runs/mnist_wae_mmd

Rerunning the same command after an interruption (even `kill -9` mid-epoch) continues from
the last completed epoch with the same weights, optimizer state, learning-rate schedule
position, RNG stream and data order, and ends with the same weights as an uninterrupted
run (bit for bit on CPU: tests/test_train.py for TensorFlow; checked by hand on JAX).
A larger `--epochs` extends a run; a finished run is not retrained. A full disk stops
the run with one line naming the file; the checkpoints are intact, and rerunning the same
command after freeing space resumes. This module is only the command line; the library is
`wae_tf.trainer` (`train(config, workdir, settings)`, `load_trained_model(workdir)`).

What a workdir holds:

    config.json        the resolved Config, data provenance (sizes, split rule), the command
                       line of every invocation, library versions
    history.csv        one row per completed epoch: epoch (1, 2, ...), then the training and
                       validation metrics and the learning rates used in that epoch
    checkpoints/epoch_NNNN.npz
                       every variable of the model (weights, BN statistics, the seed
                       generator's state) and of the optimizer (Adam moments, step counters,
                       hence the schedule position) after epoch NNNN; written atomically
                       every --checkpoint_every epochs and after the last; the newest
                       --keep_checkpoints (2) are kept. A damaged one (truncated, a flipped
                       byte) is moved aside as epoch_NNNN.npz.corrupt and the run resumes
                       from the one before
    samples/samples_epoch_NNNN.png          decoded fixed prior draws (the same z each time)
    samples/reconstructions_epoch_NNNN.png  test images (odd rows) and their reconstructions
                                            (even rows), the paper's Fig. 2-3 layout
    tensorboard/       TensorBoard logs (TensorFlow backend, `tensorboard` package installed)
    final.keras        the trained model, without optimizer (`load_trained_model`), and
    DONE.json          written last: epochs trained and the total training time

Backends: TensorFlow is imported only for `--distribution` / `--precision`
(`wae_tf.distribute`) and Keras's TensorBoard callback on the TensorFlow backend, so
`KERAS_BACKEND=jax python -m wae_tf.train` works wherever the models support JAX.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from wae_tf import console

# Before anything below imports Keras: TensorFlow's start-up lines once at most (they came
# twice), C++ INFO lines off unless $TF_CPP_MIN_LOG_LEVEL says otherwise.
console.quiet_tensorflow_startup()

from wae_tf import checkpoints, configs, data, trainer  # noqa: E402
from wae_tf.configs import Config  # noqa: E402

# Flags that override a field of the preset Config (flag name = field name).
_OVERRIDES = (
    "epochs",
    "batch_size",
    "seed",
    "penalty_weight",
    "learning_rate",
    "adversary_learning_rate",
    "z_dim",
    "pz_scale",
    "mmd_kernel",
    "pretrain_learning_rate",
    "pretrain_input_noise",
    "split_rule",
    "batch_order",
    "adversary_fresh_input_noise",
)

# Flags read by some models only: refused for the others, instead of being recorded in
# config.json without any effect. The VAE has no penalty weight (its KL term has weight
# 1) and no encoder pretraining; only the WAE-GAN has an adversary.
_MODEL_ONLY_FLAGS = {
    "penalty_weight": ("wae_mmd", "wae_gan"),
    "mmd_kernel": ("wae_mmd",),
    "adversary_learning_rate": ("wae_gan",),
    "adversary_fresh_input_noise": ("wae_gan",),
    "pretrain_learning_rate": ("wae_mmd", "wae_gan"),
    "pretrain_input_noise": ("wae_mmd", "wae_gan"),
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define the CLI's flags on `flag_values` (called by `main`, not at import time, so
    that importing this module from other absl programs defines no flags)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, configs.DATASETS, "Dataset.", **fv)
    flags.DEFINE_enum("model", None, configs.MODELS, "Model: WAE-MMD, WAE-GAN or the VAE.", **fv)
    flags.DEFINE_enum(
        "config",
        "paper",
        configs.VARIANTS,
        "Preset: the paper's settings, or the official code's (CelebA WAEs only).",
        **fv,
    )
    flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, samples.", **fv)
    flags.DEFINE_string(
        "data_dir",
        None,
        "Dataset folder (MNIST: the four IDX files; CelebA: img_align_celeba/). "
        f"Default: ${data.DATA_DIR_ENV}/<dataset>, else MNIST / Fashion-MNIST are downloaded "
        "into the cache (wae_tf.data.resolve_data_dir).",
        **fv,
    )
    flags.DEFINE_enum("data_source", "files", data.SOURCES, "Read files, or tfds.", **fv)
    flags.DEFINE_integer(
        "epochs", None, "Target number of epochs (default: the preset's).", lower_bound=1, **fv
    )
    flags.DEFINE_integer("batch_size", None, "Batch size (default 100).", lower_bound=1, **fv)
    flags.DEFINE_integer("seed", None, "Seed of init, data order and noise.", lower_bound=0, **fv)
    flags.DEFINE_integer(
        "train_examples", None, "Use the first N training images.", lower_bound=1, **fv
    )
    flags.DEFINE_integer(
        "eval_examples",
        None,
        "Validate on the first N test images of a fixed random order (wae_tf.data.eval_order; "
        f"default min({trainer.DEFAULT_EVAL_EXAMPLES}, all)).",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_float("penalty_weight", None, "lambda.", lower_bound=0.0, **fv)
    flags.DEFINE_float("learning_rate", None, "Encoder/decoder Adam lr.", lower_bound=0.0, **fv)
    flags.DEFINE_float(
        "adversary_learning_rate", None, "Adversary Adam lr (WAE-GAN).", lower_bound=0.0, **fv
    )
    flags.DEFINE_integer("z_dim", None, "Latent dimension d_z.", lower_bound=1, **fv)
    flags.DEFINE_float(
        "pz_scale", None, "sigma_z of P_Z = N(0, sigma_z^2 I).", lower_bound=0.0, **fv
    )
    flags.DEFINE_enum("mmd_kernel", None, ("imq", "rbf"), "MMD kernel (WAE-MMD).", **fv)
    flags.DEFINE_integer(
        "width", None, "Make every layer this wide (tiny nets for smoke runs).", lower_bound=1, **fv
    )
    flags.DEFINE_boolean("pretrain", True, "Encoder pretraining on a fresh start (WAEs).", **fv)
    flags.DEFINE_float(
        "pretrain_learning_rate",
        None,
        "Adam lr of the encoder pretraining (default: --learning_rate, as the code).",
        lower_bound=0.0,
        **fv,
    )
    flags.DEFINE_boolean(
        "pretrain_input_noise",
        None,
        "Input noise during encoder pretraining (default: on, as the code).",
        **fv,
    )
    flags.DEFINE_enum(
        "split_rule",
        None,
        configs.SPLIT_RULES,
        "Train / test split. MNIST: standard (the distributed files, default) or official_code "
        "(the code's pooled shuffle); CelebA: official_code (the code's shuffle of the folder's "
        "files, default) or partition_file (list_eval_partition.txt).",
        **fv,
    )
    flags.DEFINE_enum(
        "batch_order",
        None,
        configs.BATCH_ORDERS,
        "epoch_permutation: each epoch one permutation (paper preset); independent_draws: "
        "every step draws its own batch, as the official code.",
        **fv,
    )
    flags.DEFINE_boolean(
        "adversary_fresh_input_noise",
        None,
        "WAE-GAN: the adversary step draws fresh input noise, as the official code "
        "(default: the preset's).",
        **fv,
    )
    flags.DEFINE_integer(
        "sample_every", 1, "Epochs between sample PNGs (0: none).", lower_bound=0, **fv
    )
    flags.DEFINE_integer(
        "checkpoint_every",
        1,
        "Epochs between checkpoints (and after the last); a resumed run repeats at most "
        "N-1 epochs.",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_integer(
        "keep_checkpoints",
        checkpoints.DEFAULT_KEEP,
        "How many of the newest checkpoints to keep (a damaged latest one falls back to "
        "the one before).",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_integer(
        "validate_every",
        1,
        "Epochs between validations on the test images (and after the last; 0: none).",
        lower_bound=0,
        **fv,
    )
    flags.DEFINE_enum(
        "distribution", "none", configs.DISTRIBUTIONS, "tf.distribute strategy.", **fv
    )
    flags.DEFINE_integer(
        "num_gpus",
        None,
        "GPUs for --distribution=mirrored (default: all visible; 0: the CPU).",
        lower_bound=0,
        **fv,
    )
    flags.DEFINE_enum("precision", "float32", configs.PRECISIONS, "Keras dtype policy.", **fv)
    flags.DEFINE_integer(
        "verbose",
        None,
        "1: Keras's progress bar, 2: a line per epoch, 0: quiet (default: 1 when stdout is "
        "a terminal, else 2: redirected logs get no carriage returns or colour codes).",
        lower_bound=0,
        **fv,
    )
    flags.mark_flags_as_required(["dataset", "model", "workdir"], **fv)
    names = ["dataset", "model", "config", "width", *_OVERRIDES]
    flags.register_multi_flags_validator(names, _validate_config_flags, **fv)
    flags.register_multi_flags_validator(["distribution", "num_gpus"], _validate_device_flags, **fv)


def config_from_flags(values: dict[str, Any] | flags.FlagValues) -> Config:
    """The resolved Config: the preset, `width` (tiny nets), then the field overrides."""
    get = values.__getitem__ if isinstance(values, dict) else lambda name: values[name].value
    config = configs.get_config(get("dataset"), get("model"), get("config"))
    if get("width") is not None:
        config = configs.with_width(config, get("width"))
    overrides = {name: get(name) for name in _OVERRIDES if get(name) is not None}
    return config.replace(**overrides)


def settings_from_flags(values: dict[str, Any] | flags.FlagValues) -> trainer.TrainSettings:
    """The TrainSettings of the flags (flag name = field name); --verbose unset: 1 on a
    terminal, else 2 (`console.default_verbose`)."""
    get = values.__getitem__ if isinstance(values, dict) else lambda name: values[name].value
    settings = {f.name: get(f.name) for f in dataclasses.fields(trainer.TrainSettings)}
    if settings["verbose"] is None:
        settings["verbose"] = console.default_verbose()
    return trainer.TrainSettings(**settings)


def _validate_config_flags(values: dict[str, Any]) -> bool:
    if values["dataset"] is None or values["model"] is None:
        return True  # reported by the required-flag check
    model, variant = values["model"], values["config"]
    for name, models in _MODEL_ONLY_FLAGS.items():
        if values[name] is not None and model not in models:
            raise flags.ValidationError(
                f"--{name} has no effect on the {model} (only on {', '.join(models)}): drop it"
            )
    try:
        configs.get_config(values["dataset"], model, variant)
    except ValueError as e:
        raise flags.ValidationError(f"--config={variant}: {e}") from e
    try:
        config_from_flags(values)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from e
    return True


def _validate_device_flags(values: dict[str, Any]) -> bool:
    if values["num_gpus"] is not None and values["distribution"] == "none":
        raise flags.ValidationError(
            "--num_gpus has no effect without --distribution=mirrored (or multi_worker): add "
            "one, or drop --num_gpus"
        )
    return True


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:  # run() reports these as one line before main
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    config = config_from_flags(FLAGS)
    try:
        trainer.train(config, FLAGS.workdir, settings_from_flags(FLAGS))
    except KeyboardInterrupt:
        message = "wae_tf.train: interrupted; rerun the same command to resume from the last "
        message += "checkpoint"
    else:
        return
    # A WaeError (a failed write inside fit arrives as trainer.NoSpaceError) is one line by
    # console.run_cli. Here, outside the except block, as there: the interruption's frames,
    # which hold the model and its tf.data iterators, are released and collected while
    # Python can still run their finalizers (else TensorFlow adds "Error occurred when
    # finalizing GeneratorDataset iterator" at exit).
    gc.collect()
    print(message, file=sys.stderr)
    sys.exit(130)


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m wae_tf.train`."""
    define_flags()
    console.run_cli(main, "wae_tf.train", argv)


if __name__ == "__main__":
    run()
