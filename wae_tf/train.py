"""Train a WAE-MMD, WAE-GAN or VAE on MNIST, Fashion-MNIST or CelebA, resumably.

Command line (absl flags; `--helpfull` lists them all):

    python -m wae_tf.train --dataset=mnist --model=wae_mmd --data_dir=PATH/mnist \\
        --workdir=runs/mnist_wae_mmd

Every field of the preset's `wae_tf.configs.Config` is a flag of its name, e.g.
`--penalty_weight=3 --adam_beta1=0.7 --encoder_filters=64,128 --lr_schedule=constant`
(unset: the preset's value), except those that follow `--dataset` (image_shape,
pixel_range: refused); a flag that has no effect on the chosen `--model` is refused. The
flags are defined in `wae_tf.cli_flags`.

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

from wae_tf import cli_flags, configs, console
from wae_tf.configs import Config
from wae_tf.run_settings import TrainSettings

# The flags of this command line: the preset, the run folder and data, the run settings
# (wae_tf.run_settings.TrainSettings, flag name = field name), then one flag per Config
# field (cli_flags.CONFIG_FLAGS). All are defined in wae_tf.cli_flags.
_FLAGS = (
    "dataset",
    "model",
    "config",
    "workdir",
    *(f.name for f in dataclasses.fields(TrainSettings)),
    "width",
    *cli_flags.CONFIG_FLAGS,
)

_WAES = ("wae_mmd", "wae_gan")
# Flags read by some models only: refused for the others, instead of being recorded in
# config.json without any effect. The VAE has no penalty weight (its KL term has weight
# 1), no input noise (VAE.train_step never calls input_noise) and no encoder pretraining
# (trainer._resume_or_start runs it for the WAEs only); only the WAE-GAN has an adversary
# (networks.build_adversary, models.WAE.adversary_logits: the log-prior trick);
# only the WAE-MMD an MMD kernel, only the VAE a likelihood (models.VAE.vae_terms).
_MODEL_ONLY_FLAGS = {
    "penalty_weight": _WAES,
    "input_noise_stddev": _WAES,
    "pretrain_encoder": _WAES,
    "pretrain_steps": _WAES,
    "pretrain_batch_size": _WAES,
    "pretrain_threshold": _WAES,
    "pretrain_learning_rate": _WAES,
    "pretrain_input_noise": _WAES,
    "mmd_kernel": ("wae_mmd",),
    "adversary_learning_rate": ("wae_gan",),
    "adversary_fresh_input_noise": ("wae_gan",),
    "adversary_units": ("wae_gan",),
    "adversary_layers": ("wae_gan",),
    "log_prior_trick": ("wae_gan",),
    "log_prior_constant": ("wae_gan",),
    "vae_likelihood": ("vae",),
    "vae_gaussian_variance": ("vae",),
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define the CLI's flags on `flag_values` (called by `main`, not at import time, so
    that importing this module from other absl programs defines no flags)."""
    fv = dict(flag_values=flag_values)
    cli_flags.define_flags(flag_values, _FLAGS)
    flags.mark_flags_as_required(["dataset", "model", "workdir"], **fv)
    names = ["dataset", "model", "config", "width", *cli_flags.CONFIG_FLAGS]
    flags.register_multi_flags_validator(names, _validate_config_flags, **fv)
    flags.register_multi_flags_validator(["distribution", "num_gpus"], _validate_device_flags, **fv)


def config_from_flags(values: dict[str, Any] | flags.FlagValues) -> Config:
    """The resolved Config: the preset, `width` (tiny nets), then the field overrides."""
    get = values.__getitem__ if isinstance(values, dict) else lambda name: values[name].value
    config = configs.get_config(get("dataset"), get("model"), get("config"))
    if get("width") is not None:
        config = configs.with_width(config, get("width"))
    overrides = {name: get(name) for name in cli_flags.CONFIG_FLAGS if get(name) is not None}
    return config.replace(**overrides)


def settings_from_flags(values: dict[str, Any] | flags.FlagValues) -> TrainSettings:
    """The TrainSettings of the flags (flag name = field name); --verbose unset: 1 on a
    terminal, else 2 (`console.default_verbose`)."""
    get = values.__getitem__ if isinstance(values, dict) else lambda name: values[name].value
    settings = {f.name: get(f.name) for f in dataclasses.fields(TrainSettings)}
    if settings["verbose"] is None:
        settings["verbose"] = console.default_verbose()
    return TrainSettings(**settings)


def _validate_config_flags(values: dict[str, Any]) -> bool:
    if values["dataset"] is None or values["model"] is None:
        return True  # reported by the required-flag check
    model, variant = values["model"], values["config"]
    for name in cli_flags.DATASET_FIELDS:
        if values[name] is not None:
            preset = getattr(configs.get_config(values["dataset"], model), name)
            shown = ",".join(map(str, preset)) if isinstance(preset, tuple) else preset
            raise flags.ValidationError(
                f"--{name} follows --dataset ({values['dataset']}: {shown}) and cannot be "
                "overridden: drop it"
            )
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
    # Keras only now, after the flags were checked (--help and a flag error answer at once):
    # TensorFlow's start-up lines once at most (they came twice), C++ INFO lines off unless
    # $TF_CPP_MIN_LOG_LEVEL says otherwise.
    console.quiet_tensorflow_startup()
    from wae_tf import trainer

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
