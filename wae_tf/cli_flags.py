"""The command-line flags the programs share, each defined here and nowhere else.

    FLAG_SPECS        name -> FlagSpec: type, default, help, bounds, choices
    CONFIG_FLAGS      the `Config` fields with a flag of the same name: every field but
                      those chosen by --dataset / --model / --config
    DATASET_FIELDS    the Config fields a flag may not change (they follow --dataset)
    define_flags(flag_values, names, *, defaults=None, helps=None) -> names

A program picks the flags it uses by name, may give any of them its own default (e.g. the
reproduce scripts' --workdir=runs) and, where the flag means something else there, its
own help sentence; the type, bounds and choices are the table's. `python -m
wae_tf.train` takes every flag here, `python -m wae_tf.export` --workdir only.

One flag per Config field, generated from the dataclass: a Literal field is an enum of
its choices, a bool a boolean flag, an int or float field a number (with the bounds
of _CONFIG_BOUNDS), a tuple field a comma list (`--encoder_filters=64,128`). Their default is
None: "the preset's value" (`wae_tf.train.config_from_flags` applies only the flags
given); `wae_tf.train` runs the fields' own checks (`Config.__post_init__`) when it
parses its flags, so a bad combination is a flag error.

Imports no Keras or TensorFlow: --help and a flag error answer at once.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from absl import flags

from wae_tf import configs, data
from wae_tf.configs import Config
from wae_tf.run_settings import DEFAULT_EVAL_EXAMPLES, TrainSettings

# The DEFINE_* calls below are attributed to the module that calls define_flags, so that
# its --help lists them as its own flags (absl: flags.disclaim_key_flags).
flags.disclaim_key_flags()

FlagType = Literal["string", "integer", "float", "boolean", "enum", "int_list", "float_list"]


@dataclasses.dataclass(frozen=True)
class FlagSpec:
    """One shared flag: what `define_flags` passes to absl's DEFINE_<type>."""

    name: str
    type: FlagType
    default: Any
    help: str
    lower_bound: float | None = None
    upper_bound: float | None = None
    choices: tuple[str, ...] = ()  # enum only


_SETTINGS = TrainSettings()  # the defaults of the run-setting flags

# --- The flags that are not Config fields ---------------------------------------------------
_PROGRAM_FLAGS = (
    FlagSpec("dataset", "enum", None, "Dataset.", choices=configs.DATASETS),
    FlagSpec("model", "enum", None, "Model: WAE-MMD, WAE-GAN or the VAE.", choices=configs.MODELS),
    FlagSpec(
        "config",
        "enum",
        "paper",
        "Preset: the paper's settings, or the official code's (CelebA WAEs only).",
        choices=configs.VARIANTS,
    ),
    FlagSpec("workdir", "string", None, "Run folder: checkpoints, logs, samples."),
    FlagSpec(
        "data_dir",
        "string",
        None,
        "Dataset folder (MNIST: the four IDX files; CelebA: img_align_celeba/). "
        f"Default: ${data.DATA_DIR_ENV}/<dataset>, else MNIST / Fashion-MNIST are downloaded "
        "into the cache (wae_tf.data.resolve_data_dir).",
    ),
    FlagSpec(
        "data_source", "enum", _SETTINGS.data_source, "Read files, or tfds.", choices=data.SOURCES
    ),
    FlagSpec("train_examples", "integer", None, "Use the first N training images.", lower_bound=1),
    FlagSpec(
        "eval_examples",
        "integer",
        None,
        "Validate on the first N test images of a fixed random order (wae_tf.data.eval_order; "
        f"default min({DEFAULT_EVAL_EXAMPLES}, all)).",
        lower_bound=1,
    ),
    FlagSpec(
        "width",
        "integer",
        None,
        "Make every layer this wide (tiny nets for smoke runs).",
        lower_bound=1,
    ),
    FlagSpec(
        "pretrain", "boolean", _SETTINGS.pretrain, "Encoder pretraining on a fresh start (WAEs)."
    ),
    FlagSpec(
        "sample_every",
        "integer",
        _SETTINGS.sample_every,
        "Epochs between sample PNGs (0: none).",
        lower_bound=0,
    ),
    FlagSpec(
        "checkpoint_every",
        "integer",
        _SETTINGS.checkpoint_every,
        "Epochs between checkpoints (and after the last); a resumed run repeats at most "
        "N-1 epochs.",
        lower_bound=1,
    ),
    FlagSpec(
        "keep_checkpoints",
        "integer",
        _SETTINGS.keep_checkpoints,
        "How many of the newest checkpoints to keep (a damaged latest one falls back to "
        "the one before).",
        lower_bound=1,
    ),
    FlagSpec(
        "validate_every",
        "integer",
        _SETTINGS.validate_every,
        "Epochs between validations on the test images (and after the last; 0: none).",
        lower_bound=0,
    ),
    FlagSpec(
        "distribution",
        "enum",
        _SETTINGS.distribution,
        "tf.distribute strategy.",
        choices=configs.DISTRIBUTIONS,
    ),
    FlagSpec(
        "num_gpus",
        "integer",
        None,
        "GPUs for --distribution=mirrored (default: all visible; 0: the CPU).",
        lower_bound=0,
    ),
    FlagSpec(
        "precision",
        "enum",
        _SETTINGS.precision,
        "Keras dtype policy.",
        choices=configs.PRECISIONS,
    ),
    FlagSpec(
        "verbose",
        "integer",
        None,
        "1: Keras's progress bar, 2: a line per epoch, 0: quiet (default: 1 when stdout is "
        "a terminal, else 2: redirected logs get no carriage returns or colour codes).",
        lower_bound=0,
    ),
)

# --- One flag per Config field ---------------------------------------------------------------
# Chosen by --dataset, --model and --config (the preset), not by a flag of their own.
PRESET_FIELDS = ("dataset", "model", "variant")
# The dataset's images: 28x28x1 in [0, 1] (MNIST), 64x64x3 in [-1, 1] (CelebA). Their flags
# exist only to refuse a value with one line that says why (wae_tf.train).
DATASET_FIELDS = ("image_shape", "pixel_range")

# Help sentences of the Config flags that had one before the flags were generated.
_CONFIG_HELPS = {
    "epochs": "Target number of epochs (default: the preset's).",
    "batch_size": "Batch size (default 100).",
    "seed": "Seed of init, data order and noise.",
    "penalty_weight": "lambda.",
    "learning_rate": "Encoder/decoder Adam lr.",
    "adversary_learning_rate": "Adversary Adam lr (WAE-GAN).",
    "z_dim": "Latent dimension d_z.",
    "pz_scale": "sigma_z of P_Z = N(0, sigma_z^2 I).",
    "mmd_kernel": "MMD kernel (WAE-MMD).",
    "pretrain_learning_rate": (
        "Adam lr of the encoder pretraining (default: --learning_rate, as the code)."
    ),
    "pretrain_input_noise": "Input noise during encoder pretraining (default: on, as the code).",
    "split_rule": (
        "Train / test split. MNIST: standard (the distributed files, default) or official_code "
        "(the code's pooled shuffle); CelebA: official_code (the code's shuffle of the folder's "
        "files, default) or partition_file (list_eval_partition.txt)."
    ),
    "batch_order": (
        "epoch_permutation: each epoch one permutation (paper preset); independent_draws: "
        "every step draws its own batch, as the official code."
    ),
    "adversary_fresh_input_noise": (
        "WAE-GAN: the adversary step draws fresh input noise, as the official code "
        "(default: the preset's)."
    ),
    "sync_batch_norm": (
        "Config.sync_batch_norm (default: the preset's; always on with more than one replica)."
    ),
    "image_shape": "Config.image_shape: follows --dataset; giving it is an error.",
    "pixel_range": "Config.pixel_range: follows --dataset; giving it is an error.",
}
# (lower, upper) bounds checked when the flag is parsed; for a list flag, the lower bound
# of every item.
# The first group are the bounds the hand-written flags had; Config.__post_init__ checks
# more (e.g. learning_rate > 0) when the flags are resolved.
_CONFIG_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "epochs": (1, None),
    "batch_size": (1, None),
    "seed": (0, None),
    "penalty_weight": (0.0, None),
    "learning_rate": (0.0, None),
    "adversary_learning_rate": (0.0, None),
    "z_dim": (1, None),
    "pz_scale": (0.0, None),
    "pretrain_learning_rate": (0.0, None),
    # sizes and counts
    "kernel_size": (1, None),
    "encoder_filters": (1, None),
    "decoder_filters": (1, None),
    "decoder_dense_filters": (1, None),
    "decoder_initial_size": (1, None),
    "adversary_units": (1, None),
    "adversary_layers": (0, None),
    "lr_boundaries": (0, None),
    "lr_decay_epochs": (1, None),
    "pretrain_steps": (0, None),
    "pretrain_batch_size": (1, None),
    # scales, rates and decays
    "bn_epsilon": (0.0, None),
    "bn_momentum": (0.0, 1.0),
    "adam_beta1": (0.0, 1.0),
    "adam_beta2": (0.0, 1.0),
    "reconstruction_scale": (0.0, None),
    "vae_gaussian_variance": (0.0, None),
    "lr_factors": (0.0, None),
    "input_noise_stddev": (0.0, None),
}


def _config_flag(field: dataclasses.Field, annotation: Any) -> FlagSpec:
    """The flag of one Config field, from its type annotation."""
    name = field.name
    help_text = _CONFIG_HELPS.get(name, f"Config.{name} (default: the preset's).")
    lower, upper = _CONFIG_BOUNDS.get(name, (None, None))
    spec = dict(name=name, default=None, help=help_text, lower_bound=lower, upper_bound=upper)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return FlagSpec(type="enum", choices=args, **spec)
    if origin is tuple:
        return FlagSpec(type="int_list" if args[0] is int else "float_list", **spec)
    number = [a for a in (args or (annotation,)) if a is not type(None)]  # float | None
    kinds = {bool: "boolean", int: "integer", float: "float"}
    if len(number) != 1 or number[0] not in kinds:
        raise TypeError(f"Config.{name}: no flag type for {annotation!r}")
    return FlagSpec(type=kinds[number[0]], **spec)


def _config_flags() -> tuple[FlagSpec, ...]:
    hints = typing.get_type_hints(Config)
    return tuple(
        _config_flag(f, hints[f.name])
        for f in dataclasses.fields(Config)
        if f.name not in PRESET_FIELDS
    )


_CONFIG_SPECS = _config_flags()
FLAG_SPECS: dict[str, FlagSpec] = {s.name: s for s in (*_PROGRAM_FLAGS, *_CONFIG_SPECS)}
CONFIG_FLAGS: tuple[str, ...] = tuple(s.name for s in _CONFIG_SPECS)


# --- Defining them --------------------------------------------------------------------------
class _NumberListParser(flags.ArgumentParser):
    """A comma list of ints or floats, e.g. "64,128", as a tuple; each item >= lower_bound."""

    def __init__(self, item: type, lower_bound: float | None):
        self.item, self.lower_bound = item, lower_bound
        kind = "integers" if item is int else "numbers"
        self.syntactic_help = f"a comma-separated list of {kind}"

    def parse(self, argument: Any) -> tuple:
        if isinstance(argument, list | tuple):
            parts = list(argument)
        else:
            parts = [p.strip() for p in str(argument).split(",") if p.strip()]
        try:
            values = tuple(self.item(p) for p in parts)
        except (TypeError, ValueError):
            raise ValueError(f"expected {self.syntactic_help}, e.g. 64,128") from None
        if self.lower_bound is not None and any(v < self.lower_bound for v in values):
            raise ValueError(f"every item must be >= {self.lower_bound}")
        return values

    def flag_type(self) -> str:
        return "list"


def _define(spec: FlagSpec, flag_values: flags.FlagValues, default: Any, help_text: str) -> None:
    fv = dict(flag_values=flag_values)
    bounds = dict(lower_bound=spec.lower_bound, upper_bound=spec.upper_bound)
    if spec.type == "string":
        flags.DEFINE_string(spec.name, default, help_text, **fv)
    elif spec.type == "boolean":
        flags.DEFINE_boolean(spec.name, default, help_text, **fv)
    elif spec.type == "enum":
        flags.DEFINE_enum(spec.name, default, spec.choices, help_text, **fv)
    elif spec.type == "integer":
        flags.DEFINE_integer(spec.name, default, help_text, **bounds, **fv)
    elif spec.type == "float":
        flags.DEFINE_float(spec.name, default, help_text, **bounds, **fv)
    else:
        item = int if spec.type == "int_list" else float
        parser = _NumberListParser(item, spec.lower_bound)
        serializer = flags.CsvListSerializer(",")
        flags.DEFINE(parser, spec.name, default, help_text, serializer=serializer, **fv)


def define_flags(
    flag_values: flags.FlagValues,
    names: Iterable[str],
    *,
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str] | None = None,
) -> list[str]:
    """Define the shared flags `names` on `flag_values`; returns the names, in order.

    defaults: {name: default} for this program (e.g. {"workdir": "runs", "seed": 0});
    helps: {name: help sentence} where the flag means something else in this program.
    Both may name only flags in `names`. The flags are attributed to the calling module:
    its --help lists them. ValueError for a name that is not in FLAG_SPECS.
    """
    names = list(names)
    defaults, helps = dict(defaults or {}), dict(helps or {})
    unknown = [n for n in names if n not in FLAG_SPECS]
    if unknown:
        raise ValueError(f"no shared flag {', '.join(unknown)} (see wae_tf.cli_flags.FLAG_SPECS)")
    stray = sorted((set(defaults) | set(helps)) - set(names))
    if stray:
        raise ValueError(f"defaults / helps for flags not defined here: {', '.join(stray)}")
    for name in names:
        spec = FLAG_SPECS[name]
        _define(spec, flag_values, defaults.get(name, spec.default), helps.get(name, spec.help))
    return names
