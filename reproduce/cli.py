"""What a reproduce script is asked to do: its flags, resolved into `Options`.

The scripts (`figure2`, `figure3`, `table1`, `all`) share one set of flags (`define_flags`;
figure3, table1 and all add the FID ones; `define_script_flags` makes them the script's key
flags, so its `--help` lists them). `options_from_flags` resolves the parsed flags into a
frozen `Options` (with `--quick`'s values filling the flags left unset), `parse_args` does
the same from a command line on a fresh FlagValues, `check_writable` is the up-front check
of an output folder, and `exit_on_error` turns a known error into one line on stderr. Also
here, at the bottom of reproduce/: the names every other module uses (the three models in
the figure's column order, their labels) and `ReproError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from absl import flags

from wae_tf import cli_flags, console
from wae_tf import provenance as provenance_lib
from wae_tf.errors import WaeError

MODELS = ("vae", "wae_mmd", "wae_gan")  # the figure's columns, left to right [paper, Fig. 2-3]
MODEL_LABELS = {"vae": "VAE", "wae_mmd": "WAE-MMD", "wae_gan": "WAE-GAN"}
DATASET_LABELS = {"mnist": "MNIST", "celeba": "CelebA 64x64"}
FID_FEATURES = ("ttur", "keras_inception_v3")
# The protocol of the paper's FID: 10,000 samples vs 10,000 real images [authors, wae issue #7].
DEFAULT_NUM_SAMPLES = 10_000
# The dataset of each script ("all": both, one output after the other).
SCRIPT_DATASETS = {"figure2": "mnist", "figure3": "celeba", "table1": "celeba", "all": None}
# The training flags the scripts share with wae_tf.train: defined once, in wae_tf.cli_flags,
# with the scripts' own defaults and, where they mean more here, their own help sentences.
SHARED_FLAGS = (
    "workdir",
    "data_dir",
    "seed",
    "epochs",
    "train_examples",
    "eval_examples",
    "width",
    "sample_every",
    "checkpoint_every",
    "validate_every",
    "split_rule",
)
SHARED_FLAG_DEFAULTS = {"workdir": "runs", "seed": 0, "sample_every": None}
SHARED_FLAG_HELPS = {
    "workdir": "Training runs: <workdir>/<dataset>[_tags]/<model>.",
    "data_dir": "Dataset folder (MNIST: the four IDX files; CelebA: img_align_celeba/). Default: "
    "$WAE_TF_DATA_DIR/<dataset> (mnist, fashion_mnist, celeba or celeba_10k); else MNIST "
    "is downloaded into the cache ($WAE_TF_CACHE_DIR, default ~/.cache/wae_tf).",
    "seed": "Seed of training and of the figure's draws.",
    "epochs": "Epochs for every model (default: the paper's).",
    "train_examples": "Train on the first N images (default: all).",
    "eval_examples": "Test images for the reported numbers (default: the whole test split).",
    "width": "Every layer this wide (reduced scale; default: the paper's).",
    "sample_every": "wae_tf.trainer: epochs between sample PNGs in the run folder (0: none; "
    "default max(1, epochs // 10)).",
    "checkpoint_every": "wae_tf.trainer: epochs between checkpoints.",
    "validate_every": "wae_tf.trainer: epochs between validations (0: none).",
    "split_rule": "Train / test split (default: the paper preset's). MNIST: standard or "
    "official_code; CelebA: official_code (the code's shuffle, default) or partition_file "
    "(list_eval_partition.txt).",
}


@dataclasses.dataclass(frozen=True)
class QuickSettings:
    """`--quick`: the smallest run that still shows the paper's story on a CPU --
    recognisable reconstructions and samples, three different sample scores -- in about
    45 s (MNIST) or 2 minutes (CelebA) on 2 cores (README). Explicit flags still win."""

    width: int
    train_examples: int
    epochs: int
    eval_examples: int = 200
    num_samples: int = 200
    pretrain_steps: int = 10  # [code] uses up to 200; enough to exercise the path
    classifier_epochs: int = 1  # the MNIST Fréchet classifier (paper scale: 5 epochs, 60k)
    classifier_train_examples: int = 2000

    def text(self) -> str:
        return (
            f"width {self.width}, {self.train_examples:,} train images, {self.epochs} epochs, "
            f"{self.num_samples} samples"
        )


# Measured on 2 busy CPU cores (README): with 1 epoch on 300 images (3 steps) every sample
# was the same grey. MNIST: 3 epochs of width 16 on 6,000 images (180 steps per model) give
# recognisable digits, blurrier VAE samples, three different Fréchet scores. CelebA: 6
# epochs of width 8 on 4,000 images (240 steps; width 16 costs ~1.5x a step for no visible
# gain) give blurry faces as WAE-MMD samples and face-shaped reconstructions from all three;
# the VAE's samples are faint face-shaped blobs and the WAE-GAN's are not faces yet (its
# adversary, weighted 1 [paper], needs far more steps to match 64-d codes to P_Z: 400 steps
# did not either). The encoder pretraining keeps the code's 200 steps (it stops early).
QUICK_SETTINGS = {
    "mnist": QuickSettings(width=16, train_examples=6000, epochs=3),
    "celeba": QuickSettings(width=8, train_examples=4000, epochs=6, pretrain_steps=200),
}


def quick_settings(dataset: str) -> QuickSettings:
    """`--quick`'s values for `dataset` ("mnist" or "celeba")."""
    return QUICK_SETTINGS[dataset]


class ReproError(WaeError, RuntimeError):
    """A reproduce script cannot run; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a reproduce script needs, resolved from the flags (quick defaults applied)."""

    dataset: str
    workdir: Path
    data_dir: Path | None
    out_dir: Path
    quick: bool
    seed: int
    epochs: int | None  # None: the paper's epochs per model
    train_examples: int | None  # None: the whole train split
    eval_examples: int | None  # test images for the reported numbers; None: the whole split
    width: int | None  # None: the paper's widths
    num_samples: int  # model samples (and real images) for the sample metrics
    inception_graph: Path | None = None
    fid_features: str = "ttur"
    verbose: int = 2  # wae_tf.trainer.train: 2 = one line per epoch, 0 = quiet
    command_line: str = ""
    models: tuple[str, ...] = MODELS  # --models: train / evaluate these, one bundle each
    assemble: tuple[Path, ...] = ()  # --assemble: bundle folders to assemble (no training)
    allow_mixed_bundles: bool = False
    allow_partial_bundles: bool = False
    # Passed straight to wae_tf.trainer.TrainSettings. sample_every None: max(1, epochs // 10).
    sample_every: int | None = None
    checkpoint_every: int = 1
    validate_every: int = 1
    split_rule: str | None = None  # None: the paper preset's (wae_tf.configs.Config.split_rule)
    data_root: Path | None = None  # reproduce.all: holds mnist/, celeba/ (else $WAE_TF_DATA_DIR)

    @property
    def one_shot(self) -> bool:
        """All three models in this process: the figure / table is assembled at the end."""
        return not self.assemble and set(self.models) == set(MODELS)


def default_out_dir(name: str) -> str:
    """A script's default --out_dir: runs/<name>, git-ignored like the training runs (the
    tracked results/ folder is written only when asked for, --out_dir=results/...)."""
    return f"runs/{name}"


def define_flags(flag_values: flags.FlagValues, *, name: str) -> list[str]:
    """Define script `name`'s flags on `flag_values` (a fresh FlagValues in tests); returns
    their names (the script declares them key flags, so that its --help lists them).

    name: "figure2", "figure3", "table1" or "all". --out_dir defaults to runs/<name>; the
    CelebA scripts and "all" add --inception_graph and --fid_features; "all" has no
    --data_dir (each dataset's folder is found by the data-folder rule, under --data_root),
    --models or --assemble (it makes every output of all three models in one process).
    """
    fid = name != "figure2"
    one_output = name != "all"
    dataset = SCRIPT_DATASETS[name]
    quick_text = (
        quick_settings(dataset).text()
        if dataset
        else "; ".join(f"{d}: {quick_settings(d).text()}" for d in ("mnist", "celeba"))
    )
    before = set(flag_values)
    fv = dict(flag_values=flag_values)
    shared = [n for n in SHARED_FLAGS if one_output or n != "data_dir"]
    cli_flags.define_flags(
        flag_values,
        shared,
        defaults=SHARED_FLAG_DEFAULTS,
        helps={n: h for n, h in SHARED_FLAG_HELPS.items() if n in shared},
    )
    if not one_output:
        flags.DEFINE_string(
            "data_root",
            None,
            "Folder holding mnist/ and celeba/ (or celeba_10k/), as $WAE_TF_DATA_DIR does "
            "(the default); without one, MNIST is downloaded into the cache.",
            **fv,
        )
    flags.DEFINE_string(
        "out_dir",
        default_out_dir(name),
        "Where the figure / table files and the bundles are written.",
        **fv,
    )
    flags.DEFINE_boolean(
        "quick",
        False,
        f"Small run that shows the paper's story in minutes on a CPU: "
        f"{quick_text} (explicit flags win).",
        **fv,
    )
    flags.DEFINE_integer(
        "num_samples",
        None,
        f"Model samples for the sample metrics (default {DEFAULT_NUM_SAMPLES:,}; "
        f"--quick: {quick_settings(dataset or 'mnist').num_samples}).",
        lower_bound=2,
        **fv,
    )
    if one_output:
        flags.DEFINE_list(
            "models",
            list(MODELS),
            "Train / evaluate only these models (comma list of vae, wae_mmd, wae_gan) and write "
            "one bundle each to <out_dir>/bundles/; with all three, also assemble the outputs.",
            **fv,
        )
        flags.DEFINE_list(
            "assemble",
            None,
            "Bundle folders (comma list): assemble the outputs from them, no training or data.",
            **fv,
        )
        flags.DEFINE_boolean(
            "allow_mixed_bundles",
            False,
            "--assemble bundles whose data, scale or code version differ (labelled MIXED BUNDLES).",
            **fv,
        )
        flags.DEFINE_boolean(
            "allow_partial_bundles",
            False,
            "--assemble fewer than three models (labelled PARTIAL: missing ...).",
            **fv,
        )
    if fid:
        flags.DEFINE_string(
            "inception_graph",
            None,
            "TTUR's classify_image_graph_def.pb (file or folder) for FID, loaded before any "
            "training (an unreadable one is an error); without it FID is null.",
            **fv,
        )
        flags.DEFINE_enum(
            "fid_features",
            "ttur",
            FID_FEATURES,
            "FID features: the TTUR graph (the paper's), or Keras InceptionV3 (NOT comparable).",
            **fv,
        )
    return [n for n in flag_values if n not in before]


def options_from_flags(flag_values: flags.FlagValues, dataset: str) -> Options:
    """Resolve the parsed flags into Options; --quick fills the values left unset."""
    fv = flag_values
    quick = fv.quick
    settings = quick_settings(dataset)

    def pick(value: Any, quick_value: Any, default: Any = None) -> Any:
        if value is not None:
            return value
        return quick_value if quick else default

    has_fid = "inception_graph" in fv
    one_output = "models" in fv  # "all" has no --data_dir, --models, --assemble, --allow_*
    data_dir = fv.data_dir if one_output else None
    _check_split_rule(fv.split_rule, dataset)
    return Options(
        dataset=dataset,
        workdir=Path(fv.workdir).expanduser(),
        data_dir=None if data_dir is None else Path(data_dir).expanduser(),
        out_dir=Path(fv.out_dir).expanduser(),
        quick=quick,
        seed=fv.seed,
        epochs=pick(fv.epochs, settings.epochs),
        train_examples=pick(fv.train_examples, settings.train_examples),
        eval_examples=pick(fv.eval_examples, settings.eval_examples),
        width=pick(fv.width, settings.width),
        num_samples=pick(fv.num_samples, settings.num_samples, DEFAULT_NUM_SAMPLES),
        inception_graph=(
            Path(fv.inception_graph).expanduser() if has_fid and fv.inception_graph else None
        ),
        fid_features=fv.fid_features if has_fid else "ttur",
        verbose=0 if quick else 2,
        command_line=provenance_lib.command_line(),
        models=_parse_models(fv.models, assemble=bool(fv.assemble)) if one_output else MODELS,
        assemble=tuple(Path(p).expanduser() for p in fv.assemble or ()) if one_output else (),
        allow_mixed_bundles=one_output and fv.allow_mixed_bundles,
        allow_partial_bundles=one_output and fv.allow_partial_bundles,
        sample_every=fv.sample_every,
        checkpoint_every=fv.checkpoint_every,
        validate_every=fv.validate_every,
        split_rule=fv.split_rule,
        data_root=None if one_output or not fv.data_root else Path(fv.data_root).expanduser(),
    )


def _check_split_rule(split_rule: str | None, dataset: str) -> None:
    from wae_tf import configs

    allowed = configs.DATASET_SPLIT_RULES[dataset]
    if split_rule is not None and split_rule not in allowed:
        raise ReproError(
            f"--split_rule={split_rule} does not apply to {dataset}; choose from "
            f"{', '.join(allowed)}"
        )


def _parse_models(names: Sequence[str], *, assemble: bool) -> tuple[str, ...]:
    """--models as a tuple in the figure's column order; unknown or none: ReproError."""
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ReproError(
            f"--models: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)})"
        )
    if not names:
        raise ReproError("--models is empty")
    if assemble and set(names) != set(MODELS):
        raise ReproError("--models and --assemble exclude each other (assembling trains nothing)")
    return tuple(n for n in MODELS if n in names)


def check_writable(folder: Path, flag: str) -> None:
    """ReproError naming `flag` (e.g. "--out_dir") unless `folder` is, or can be created
    as, a writable folder. Creates nothing."""
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        raise ReproError(f"{flag}={folder} is not writable ({target} is not a writable folder)")


def parse_args(argv: Sequence[str], name: str) -> Options:
    """The Options of script `name` ("figure2", "figure3", "table1") from a command line
    (argv[0] = program name), on a fresh FlagValues: nothing global is touched. Bad flags
    raise ReproError."""
    dataset = SCRIPT_DATASETS[name]
    flag_values = flags.FlagValues()
    define_flags(flag_values, name=name)
    try:
        rest = flag_values(list(argv))
    except flags.Error as e:
        raise ReproError(str(e)) from e
    if len(rest) > 1:
        raise ReproError(f"unexpected arguments: {' '.join(rest[1:])}")
    options = options_from_flags(flag_values, dataset)
    return dataclasses.replace(options, command_line=provenance_lib.command_line(argv))


@contextlib.contextmanager
def exit_on_error(program: str) -> Iterator[None]:
    """A known error (a `wae_tf.errors.WaeError`: a bad flag or folder, bad data, a failed
    training run, a full disk, a missing Inception graph, ...) inside the block becomes one
    line on stderr, "<program>: error: ...", and exit status 1."""
    try:
        yield
    except WaeError as e:
        print(f"{program}: error: {console.one_line(e)}", file=sys.stderr)
        sys.exit(1)


def define_script_flags(name: str) -> None:
    """A script's `__main__`: its flags (`define_flags`) on the global FlagValues, declared
    its key flags (its --help lists them). Nothing imports Keras before the flags are parsed,
    so --help and a flag error answer at once (`reproduce.pipeline.main` imports it then)."""
    for flag in define_flags(flags.FLAGS, name=name):
        # declare_key_flag would make them key flags of this module; --help lists the
        # key flags of the main module, which absl names by sys.argv[0].
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[flag])
