"""What Figures 2-3 and Table 1 share: flags, training runs, panels, the figure, FID, outputs.

The three scripts (`figure2`, `figure3`, `table1`) are thin. Each model goes through
`compute_bundles`: train it with the paper config (or reuse its finished run), draw its
panels, compute its numbers, write its bundle (`reproduce.bundles`). The figure / table is
then assembled from the bundles read back from disk -- the three just written (one-shot
run), or three made elsewhere (`--assemble`) -- and written with `write_outputs`.

Conventions: images are NHWC; model inputs/outputs are floats in the config's pixel range,
"unit" = [0, 1] (MNIST) or "symmetric" = [-1, 1] (CelebA) [paper, App. C]; uint8 images are
in [0, 255]. Every output file is written atomically (temporary file, then rename) and only
after every number has been computed, so a failed run leaves no half-written results; each
bundle is written (as a whole folder) as soon as its model's numbers are computed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags, logging

from wae_tf import provenance as provenance_lib

MODELS = ("vae", "wae_mmd", "wae_gan")  # the figure's columns, left to right [paper, Fig. 2-3]
MODEL_LABELS = {"vae": "VAE", "wae_mmd": "WAE-MMD", "wae_gan": "WAE-GAN"}
DATASET_LABELS = {"mnist": "MNIST", "celeba": "CelebA 64x64"}
FID_FEATURES = ("ttur", "keras_inception_v3")
# The protocol of the paper's FID: 10,000 samples vs 10,000 real images [authors, wae issue #7].
DEFAULT_NUM_SAMPLES = 10_000

# Training-set sizes of a paper-scale run. MNIST: the standard 60k train split [paper].
# CelebA: the code holds out 20,000 of 202,599 -> 182,599 [code]; the official partition
# file's train split has 162,770. Either counts as paper scale; fewer images do not.
PAPER_TRAIN_SIZES = {"mnist": 60_000, "celeba": 162_770}
PAPER_TRAIN_SIZE_TEXT = {"mnist": "60,000", "celeba": "162,770-182,599"}
PAPER_WIDTH_TEXT = "128-1024 filters"  # [paper, App. C]

# Table 1 of the paper (CelebA): FID (smaller is better) and sharpness [paper, Table 1].
PAPER_TABLE1 = {
    "true_data": {"fid": 2.0, "sharpness": 2e-2},
    "vae": {"fid": 63.0, "sharpness": 3e-3},
    "wae_mmd": {"fid": 55.0, "sharpness": 6e-3},
    "wae_gan": {"fid": 42.0, "sharpness": 6e-3},
}


@dataclasses.dataclass(frozen=True)
class QuickSettings:
    """`--quick`: tiny nets on a few hundred images, for smoke tests (minutes on a CPU)."""

    width: int = 8
    train_examples: int = 300
    epochs: int = 1
    eval_examples: int = 200
    num_samples: int = 200
    pretrain_steps: int = 10  # [code] uses up to 200; enough to exercise the path
    classifier_epochs: int = 1  # the MNIST Fréchet classifier (paper scale: 5 epochs, 60k)
    classifier_train_examples: int = 2000


QUICK = QuickSettings()

# Figure geometry: every panel has PANEL_COLS images per row [paper, Fig. 2-3 look].
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
# Offsets of the fixed seeds of the figure's random choices from --seed.
SAMPLE_SEED_OFFSET = 2018
PANEL_SEED_OFFSET = 17
REAL_SPLIT_SEED_OFFSET = 123
GENERATION_BATCH = 500  # images decoded / encoded per call


class ReproError(RuntimeError):
    """A reproduce script cannot run; the message says why and what to do."""


# ======================================================================================
# Options and flags
# ======================================================================================


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
    verbose: int = 2  # wae_tf.train: 2 = one line per epoch, 0 = quiet
    command_line: str = ""
    models: tuple[str, ...] = MODELS  # --models: train / evaluate these, one bundle each
    assemble: tuple[Path, ...] = ()  # --assemble: bundle folders to assemble (no training)
    allow_mixed_bundles: bool = False
    allow_partial_bundles: bool = False
    # Passed straight to wae_tf.train.train. sample_every None: max(1, epochs // 10).
    sample_every: int | None = None
    checkpoint_every: int = 1
    validate_every: int = 1

    @property
    def one_shot(self) -> bool:
        """All three models in this process: the figure / table is assembled at the end."""
        return not self.assemble and set(self.models) == set(MODELS)


def define_flags(flag_values: flags.FlagValues, *, fid: bool) -> None:
    """Define the scripts' flags on `flag_values` (a fresh FlagValues in tests).

    fid: also define --inception_graph and --fid_features (figure3, table1).
    """
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string(
        "workdir", "runs", "Training runs: <workdir>/<dataset>[_tags]/<model>.", **fv
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "Dataset folder (MNIST: the four IDX files; CelebA: img_align_celeba/). "
        "Default: $WAE_TF_DATA_DIR/<dataset>.",
        **fv,
    )
    flags.DEFINE_string("out_dir", "results", "Where the figure / table files are written.", **fv)
    flags.DEFINE_boolean(
        "quick",
        False,
        f"Tiny smoke run: width {QUICK.width}, {QUICK.train_examples} train images, "
        f"{QUICK.epochs} epoch, {QUICK.num_samples} samples (explicit flags still win).",
        **fv,
    )
    flags.DEFINE_integer(
        "seed", 0, "Seed of training and of the figure's draws.", lower_bound=0, **fv
    )
    flags.DEFINE_integer(
        "epochs", None, "Epochs for every model (default: the paper's).", lower_bound=1, **fv
    )
    flags.DEFINE_integer(
        "train_examples", None, "Train on the first N images (default: all).", lower_bound=1, **fv
    )
    flags.DEFINE_integer(
        "eval_examples",
        None,
        "Test images for the reported numbers (default: the whole test split).",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_integer(
        "width",
        None,
        "Every layer this wide (reduced scale; default: the paper's).",
        lower_bound=1,
        **fv,
    )
    flags.DEFINE_integer(
        "num_samples",
        None,
        f"Model samples for the sample metrics (default {DEFAULT_NUM_SAMPLES:,}; "
        f"--quick: {QUICK.num_samples}).",
        lower_bound=2,
        **fv,
    )
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
    flags.DEFINE_integer(
        "sample_every",
        None,
        "wae_tf.train: epochs between sample PNGs in the run folder (0: none; "
        "default max(1, epochs // 10)).",
        lower_bound=0,
        **fv,
    )
    flags.DEFINE_integer(
        "checkpoint_every", 1, "wae_tf.train: epochs between checkpoints.", lower_bound=1, **fv
    )
    flags.DEFINE_integer(
        "validate_every",
        1,
        "wae_tf.train: epochs between validations (0: none).",
        lower_bound=0,
        **fv,
    )
    if fid:
        flags.DEFINE_string(
            "inception_graph",
            None,
            "TTUR's classify_image_graph_def.pb (file or folder) for FID; without it FID is null.",
            **fv,
        )
        flags.DEFINE_enum(
            "fid_features",
            "ttur",
            FID_FEATURES,
            "FID features: the TTUR graph (the paper's), or Keras InceptionV3 (NOT comparable).",
            **fv,
        )


def options_from_flags(flag_values: flags.FlagValues, dataset: str) -> Options:
    """Resolve the parsed flags into Options; --quick fills the values left unset."""
    fv = flag_values
    quick = fv.quick

    def pick(value: Any, quick_value: Any, default: Any = None) -> Any:
        if value is not None:
            return value
        return quick_value if quick else default

    has_fid = "inception_graph" in fv
    return Options(
        dataset=dataset,
        workdir=Path(fv.workdir).expanduser(),
        data_dir=None if fv.data_dir is None else Path(fv.data_dir).expanduser(),
        out_dir=Path(fv.out_dir).expanduser(),
        quick=quick,
        seed=fv.seed,
        epochs=pick(fv.epochs, QUICK.epochs),
        train_examples=pick(fv.train_examples, QUICK.train_examples),
        eval_examples=pick(fv.eval_examples, QUICK.eval_examples),
        width=pick(fv.width, QUICK.width),
        num_samples=pick(fv.num_samples, QUICK.num_samples, DEFAULT_NUM_SAMPLES),
        inception_graph=(
            Path(fv.inception_graph).expanduser() if has_fid and fv.inception_graph else None
        ),
        fid_features=fv.fid_features if has_fid else "ttur",
        verbose=0 if quick else 2,
        command_line=provenance_lib.command_line(),
        models=_parse_models(fv.models, assemble=bool(fv.assemble)),
        assemble=tuple(Path(p).expanduser() for p in fv.assemble or ()),
        allow_mixed_bundles=fv.allow_mixed_bundles,
        allow_partial_bundles=fv.allow_partial_bundles,
        sample_every=fv.sample_every,
        checkpoint_every=fv.checkpoint_every,
        validate_every=fv.validate_every,
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


def check_out_dir(out_dir: Path) -> None:
    """Fail before any training if --out_dir cannot be created or written (creates nothing)."""
    target = out_dir
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        raise ReproError(f"--out_dir {out_dir} is not writable ({target} is not a writable folder)")


def parse_args(argv: Sequence[str], dataset: str, *, fid: bool) -> Options:
    """Options from a command line (argv[0] = program name), on a fresh FlagValues.

    For tests and programmatic use: nothing global is touched. Bad flags raise ReproError.
    """
    flag_values = flags.FlagValues()
    define_flags(flag_values, fid=fid)
    try:
        rest = flag_values(list(argv))
    except flags.Error as e:
        raise ReproError(str(e)) from e
    if len(rest) > 1:
        raise ReproError(f"unexpected arguments: {' '.join(rest[1:])}")
    options = options_from_flags(flag_values, dataset)
    return dataclasses.replace(options, command_line=provenance_lib.command_line(argv))


def exit_on_error(program: str, work: Callable[[], Any]) -> Any:
    """Run `work`; a known error becomes one line on stderr and exit status 1."""
    from wae_tf import data, train

    try:
        return work()
    except (ReproError, data.DataError, train.TrainError) as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(1)


# ======================================================================================
# Training runs
# ======================================================================================


@dataclasses.dataclass
class TrainedRun:
    """A finished training run: the model and what its workdir says about it."""

    name: str  # "vae" | "wae_mmd" | "wae_gan"
    model: Any  # keras.Model with encode / decode / reconstruct / sample_prior
    workdir: Path
    config: Any  # wae_tf.configs.Config
    record: dict[str, Any]  # config.json
    done: dict[str, Any]  # DONE.json
    history: list[dict[str, float]]  # history.csv rows

    @property
    def epochs(self) -> int:
        return int(self.done.get("epochs", self.config.epochs))

    @property
    def train_size(self) -> int:
        return int(self.record["data"]["train_size"])

    @property
    def train_seconds(self) -> float | None:
        value = self.done.get("total_train_time_s")
        return None if value is None else float(value)

    @property
    def seconds_per_epoch(self) -> float | None:
        seconds = self.train_seconds
        return None if seconds is None or self.epochs == 0 else seconds / self.epochs

    def summary(self) -> dict[str, Any]:
        """The run's provenance for the JSON outputs."""
        data_record = self.record.get("data", {})
        return {
            "label": MODEL_LABELS[self.name],
            "workdir": str(self.workdir),
            "epochs": self.epochs,
            "paper_epochs": paper_config(self.config.dataset, self.name).epochs,
            "train_size": self.train_size,
            "split_rule": data_record.get("split_rule"),
            "width": _width_of(self.config),
            "seed": self.config.seed,
            "train_time_s": self.train_seconds,
            "seconds_per_epoch": _round(self.seconds_per_epoch, 3),
            "final_metrics": self.history[-1] if self.history else None,
        }


def paper_config(dataset: str, model: str):
    """The paper's preset for (dataset, model)."""
    from wae_tf import configs

    return configs.get_config(dataset, model)


def run_config(options: Options, model: str):
    """The Config a script trains: the paper preset, shrunk by --width, with overrides."""
    from wae_tf import configs

    config = paper_config(options.dataset, model)
    if options.width is not None:
        config = configs.tiny(config, options.width)
    overrides: dict[str, Any] = {"seed": options.seed}
    if options.epochs is not None:
        overrides["epochs"] = options.epochs
    if options.quick:
        overrides["pretrain_steps"] = QUICK.pretrain_steps
    return config.replace(**overrides)


def run_group(options: Options) -> str:
    """The folder under --workdir for this scale: "mnist" at paper scale, else tagged.

    Every setting that makes a run different (other than the epochs, which `wae_tf.train`
    may extend) is in the name, so runs of different scales never collide:
    e.g. "mnist", "mnist_w32_n20000", "celeba_quick_w8_n300".
    """
    parts = [options.dataset]
    if options.quick:
        parts.append("quick")
    if options.width is not None:
        parts.append(f"w{options.width}")
    if options.train_examples is not None:
        parts.append(f"n{options.train_examples}")
    if options.seed:
        parts.append(f"s{options.seed}")
    return "_".join(parts)


def run_dir(options: Options, model: str) -> Path:
    return options.workdir / run_group(options) / model


def train_settings(options: Options, config) -> dict[str, Any]:
    """The keyword arguments of `wae_tf.train.train` besides config and workdir."""
    sample_every = options.sample_every
    return {
        "data_dir": options.data_dir,
        "train_examples": options.train_examples,
        "sample_every": max(1, config.epochs // 10) if sample_every is None else sample_every,
        "checkpoint_every": options.checkpoint_every,
        "validate_every": options.validate_every,
        "verbose": options.verbose,
    }


def train_model(options: Options, name: str) -> TrainedRun:
    """Train (or reuse the finished run of) one model."""
    from wae_tf import train

    config = run_config(options, name)
    workdir = run_dir(options, name)
    logging.info(
        "%s on %s: %d epoch(s) in %s (a finished run there is reused)",
        MODEL_LABELS[name],
        options.dataset,
        config.epochs,
        workdir,
    )
    start = time.time()
    model = train.train(config, workdir, **train_settings(options, config))
    logging.info("%s ready (%.1f s)", MODEL_LABELS[name], time.time() - start)
    return TrainedRun(
        name=name,
        model=model,
        workdir=workdir,
        config=config,
        record=_read_json(workdir / "config.json"),
        done=_read_json(workdir / "DONE.json"),
        history=read_history(workdir / "history.csv"),
    )


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv rows as floats (empty cells dropped); [] when there is no file."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReproError(f"{path} is missing or unreadable ({e}); rerun the training") from e


def _width_of(config) -> str:
    widths = sorted({*config.encoder_filters, *config.decoder_filters})
    return str(widths[0]) if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"


# ======================================================================================
# Scale: paper or reduced, said everywhere
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class Scale:
    reduced: bool
    text: str  # "REDUCED SCALE: ..." or "paper scale: ..."

    def to_dict(self) -> dict[str, Any]:
        return {"reduced": self.reduced, "description": self.text}


def describe_scale(options: Options, runs: dict[str, TrainedRun]) -> Scale:
    """One line that says how this run differs from the paper's, e.g.
    "REDUCED SCALE: 1 epoch (paper: 100), 300 train images (paper: 60,000), width 8 ..."."""
    dataset = options.dataset
    epochs = {name: run.epochs for name, run in runs.items()}
    paper_epochs = {name: paper_config(dataset, name).epochs for name in runs}
    train_size = min(run.train_size for run in runs.values())
    reduced_epochs = any(epochs[n] < paper_epochs[n] for n in runs)
    reduced_data = train_size < PAPER_TRAIN_SIZES[dataset]
    reduced_width = options.width is not None
    reduced_samples = options.num_samples < DEFAULT_NUM_SAMPLES
    reduced = options.quick or reduced_epochs or reduced_data or reduced_width or reduced_samples

    if len(set(epochs.values())) == 1 and len(set(paper_epochs.values())) == 1:
        (e,), (p,) = set(epochs.values()), set(paper_epochs.values())
        epoch_text = f"{e} epoch{'s' if e != 1 else ''} (paper: {p})"
    else:
        ours = "/".join(str(epochs[n]) for n in runs)
        paper = "/".join(str(paper_epochs[n]) for n in runs)
        labels = "/".join(MODEL_LABELS[n] for n in runs)
        epoch_text = f"{labels} epochs {ours} (paper: {paper})"
    data_text = f"{train_size:,} train images (paper: {PAPER_TRAIN_SIZE_TEXT[dataset]})"
    width_text = (
        f"width {options.width} (paper: {PAPER_WIDTH_TEXT})" if reduced_width else "paper widths"
    )
    parts = [epoch_text, data_text, width_text]
    if reduced_samples:
        parts.append(f"{options.num_samples:,} samples per metric (paper: {DEFAULT_NUM_SAMPLES:,})")
    if options.quick:
        parts.append("--quick smoke run")
    head = "REDUCED SCALE" if reduced else "paper scale"
    return Scale(reduced, f"{head}: {', '.join(parts)}")


# ======================================================================================
# Model evaluation helpers (batched, numpy out)
# ======================================================================================


def _numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def decode(model, z: np.ndarray) -> np.ndarray:
    """Codes (N, d_z) -> images (N, H, W, C) in the model's pixel range, batched."""
    out = [
        _numpy(model.decode(z[i : i + GENERATION_BATCH]))
        for i in range(0, len(z), GENERATION_BATCH)
    ]
    return np.concatenate(out).astype(np.float32)


def encode(model, images: np.ndarray) -> np.ndarray:
    """Images in the model's pixel range -> codes (the VAE: its posterior mean), batched."""
    out = [
        _numpy(model.encode(images[i : i + GENERATION_BATCH]))
        for i in range(0, len(images), GENERATION_BATCH)
    ]
    return np.concatenate(out).astype(np.float32)


def reconstruct(model, images: np.ndarray) -> np.ndarray:
    return decode(model, encode(model, images))


def generate_samples(model, n: int, seed: int) -> np.ndarray:
    """n images G(z), z ~ P_Z drawn with the integer `seed` (the same z for a given seed)."""
    z = _numpy(model.sample_prior(n, seed=seed)).astype(np.float32)
    return decode(model, z)


def to_model_range(images_uint8: np.ndarray, pixel_range: str) -> np.ndarray:
    from wae_tf import data

    return data.to_model_range(images_uint8, pixel_range)


def reconstruction_costs(model, images: np.ndarray) -> dict[str, float]:
    """The WAE cost on test images (in the model's pixel range), averaged over images.

    "test_reconstruction_cost": c(x, G(Q(x))) = 0.05 * ||x - G(Q(x))||^2 [code, l2sq], the
      training objective's first term (the VAE uses its posterior mean as the code);
    "test_squared_l2": ||x - G(Q(x))||^2 summed over pixels (c without the 0.05).
    """
    scale = float(model.config.reconstruction_scale)
    squared = []
    for i in range(0, len(images), GENERATION_BATCH):
        batch = images[i : i + GENERATION_BATCH]
        diff = reconstruct(model, batch).astype(np.float64) - batch
        squared.append(np.sum(diff**2, axis=(1, 2, 3)))
    l2 = float(np.mean(np.concatenate(squared)))
    return {"test_reconstruction_cost": scale * l2, "test_squared_l2": l2}


# ======================================================================================
# The figure's panels
# ======================================================================================


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
    rows = visualize.interleave_rows(
        images_uint8, visualize.to_uint8(reconstructed, pixel_range), PANEL_COLS
    )
    return visualize.image_grid(rows, 2 * len(images_uint8) // PANEL_COLS, PANEL_COLS)


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


# ======================================================================================
# Drawing the figure (matplotlib, Agg; exact pixel layout)
# ======================================================================================

DPI = 128  # a power of 2: sizes in pixels / DPI are exact floats, so the PNG is exactly W x H
LEFT_PX = 44  # row labels
GAP_PX = 24  # between panels
TOP_TITLE_PX = 30
TOP_SCALE_PX = 24
HEADER_PX = 30  # column titles
CAPTION_LINE_PX = 20
CAPTION_CHAR_PX = 7.6  # mean width of a 14 px DejaVu Sans character, for wrapping
MARGIN_PX = 12


def _points(pixels: float) -> float:
    """Font size in points that renders `pixels` tall at DPI."""
    return pixels * 72.0 / DPI


@dataclasses.dataclass(frozen=True)
class FigureLayout:
    """Pixel geometry of a figure of 3 columns x len(PANEL_ROWS) rows of panels."""

    panel_width: int  # displayed, i.e. grid width * magnification
    row_heights: tuple[int, ...]
    caption_lines: tuple[str, ...]

    @property
    def width(self) -> int:
        return LEFT_PX + len(MODELS) * self.panel_width + (len(MODELS) - 1) * GAP_PX + MARGIN_PX

    @property
    def panels_top(self) -> int:
        return MARGIN_PX + TOP_TITLE_PX + TOP_SCALE_PX + HEADER_PX

    @property
    def caption_top(self) -> int:
        rows = len(self.row_heights)
        return self.panels_top + sum(self.row_heights) + (rows - 1) * GAP_PX + MARGIN_PX

    @property
    def height(self) -> int:
        return self.caption_top + len(self.caption_lines) * CAPTION_LINE_PX + MARGIN_PX

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        return self.width, self.height

    def panel_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, width, height) in pixels from the figure's top-left corner."""
        left = LEFT_PX + col * (self.panel_width + GAP_PX)
        top = self.panels_top + sum(self.row_heights[:row]) + row * GAP_PX
        return left, top, self.panel_width, self.row_heights[row]


def figure_layout(
    panels: dict[str, dict[str, np.ndarray]], magnification: int, caption: Sequence[str]
) -> FigureLayout:
    """The layout of `draw_figure(panels, ...)`; caption lines are wrapped to the width."""
    first = panels[MODELS[0]]
    panel_width = first[PANEL_ROWS[0]].shape[1] * magnification
    row_heights = tuple(first[row].shape[0] * magnification for row in PANEL_ROWS)
    probe = FigureLayout(panel_width, row_heights, ())
    chars = max(40, int((probe.width - 2 * MARGIN_PX) / CAPTION_CHAR_PX))
    lines = tuple(wrapped for line in caption for wrapped in textwrap.wrap(line, chars) or [""])
    return FigureLayout(panel_width, row_heights, lines)


def render_figure(
    panels: dict[str, dict[str, np.ndarray]],
    title: str,
    scale: Scale,
    caption: Sequence[str],
    magnification: int,
    column_labels: dict[str, str] | None = None,
) -> tuple[bytes, FigureLayout]:
    """The paper's Figure 2/3 layout as PNG bytes (and its layout): columns VAE | WAE-MMD | WAE-GAN, rows
    test interpolations / test reconstructions / random samples; title, scale line (red when
    reduced) and caption. Each image pixel is `magnification` screen pixels (nearest).
    `column_labels`: the column titles (default the model names)."""
    from matplotlib.figure import Figure

    _check_panel_shapes(panels)
    layout = figure_layout(panels, magnification, caption)
    width, height = layout.size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")

    def frac(left: float, top: float, w: float = 0.0, h: float = 0.0):
        return left / width, 1.0 - (top + h) / height, w / width, h / height

    y = MARGIN_PX
    fig.text(*frac(width / 2, y + 22)[:2], title, ha="center", fontsize=_points(22), weight="bold")
    y += TOP_TITLE_PX
    fig.text(
        *frac(width / 2, y + 17)[:2],
        scale.text,
        ha="center",
        fontsize=_points(16),
        color="#b00000" if scale.reduced else "black",
        weight="bold" if scale.reduced else "normal",
    )
    for col, name in enumerate(MODELS):
        left, top, w, _ = layout.panel_box(0, col)
        fig.text(
            *frac(left + w / 2, top - 8)[:2],
            (column_labels or MODEL_LABELS)[name],
            ha="center",
            fontsize=_points(20),
            weight="bold",
        )
        for row, key in enumerate(PANEL_ROWS):
            box = layout.panel_box(row, col)
            ax = fig.add_axes(frac(*box))
            _show_grid(ax, panels[name][key])
    for row, key in enumerate(PANEL_ROWS):
        _, top, _, h = layout.panel_box(row, 0)
        fig.text(
            *frac(LEFT_PX / 2, top + h / 2)[:2],
            PANEL_LABELS[key],
            ha="center",
            va="center",
            rotation=90,
            fontsize=_points(16),
        )
    for i, line in enumerate(layout.caption_lines):
        top = layout.caption_top + (i + 1) * CAPTION_LINE_PX - 5
        fig.text(*frac(MARGIN_PX, top)[:2], line, ha="left", fontsize=_points(14))
    return png_bytes(fig, DPI), layout


def _check_panel_shapes(panels: dict[str, dict[str, np.ndarray]]) -> None:
    missing = [m for m in MODELS if m not in panels]
    if missing:
        raise ValueError(f"panels missing for {missing}")
    for key in PANEL_ROWS:
        shapes = {panels[m][key].shape for m in MODELS}
        if len(shapes) != 1:
            raise ValueError(f"{key} panels differ in shape across models: {shapes}")
    widths = {panels[MODELS[0]][key].shape[1] for key in PANEL_ROWS}
    if len(widths) != 1:
        raise ValueError(f"panels of one column differ in width: {widths}")


def _show_grid(ax, grid: np.ndarray) -> None:
    """Show a uint8 grid pixel for pixel (grey repeated to RGB: no colormap rounding)."""
    if grid.ndim == 3 and grid.shape[-1] == 1:
        grid = np.repeat(grid, 3, axis=-1)
    ax.imshow(grid, interpolation="nearest", aspect="auto")
    ax.set_axis_off()


def _plot_history(ax, history: list[dict[str, float]]) -> None:
    """c ("reconstruction") and the objective ("loss") per epoch; train solid, test dashed
    (wae_tf.train validates on the first min(1000, N) test images). Log y when positive."""
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    plotted = []
    for key, color in (("reconstruction", "tab:blue"), ("loss", "tab:orange")):
        for prefix, style, split in (("", "-", "train"), ("val_", "--", "test")):
            values = [row.get(prefix + key, np.nan) for row in history]
            if epochs and not np.all(np.isnan(values)):
                ax.plot(
                    epochs, values, style, color=color, marker="o", ms=3, label=f"{split} {key}"
                )
                plotted += values
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if not plotted:
        ax.text(0.5, 0.5, "no history.csv", ha="center", transform=ax.transAxes)
        return
    if np.nanmin(plotted) > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=7, handlelength=3)


def png_bytes(fig, dpi: int) -> bytes:
    """Render a matplotlib Figure (Agg) to PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def render_training_curves(
    histories: dict[str, list[dict[str, float]]], title: str, scale: Scale
) -> bytes:
    """One small panel per model (model -> its history.csv rows): the reconstruction cost c
    and the objective per epoch, training (solid) and validation (dashed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 3.8), dpi=100, facecolor="white")
    fig.suptitle(
        f"{title}\n{scale.text}", fontsize=9, color="#b00000" if scale.reduced else "black"
    )
    axes = fig.subplots(1, len(histories))
    for ax, (name, history) in zip(np.atleast_1d(axes), histories.items(), strict=True):
        _plot_history(ax, history)
        ax.set_title(MODEL_LABELS[name], fontsize=10)
    fig.subplots_adjust(top=0.78, bottom=0.14, left=0.05, right=0.98, wspace=0.25)
    return png_bytes(fig, 100)


# ======================================================================================
# CelebA: real images and sample metrics (FID, sharpness)
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class RealImages:
    """Real 64x64 images (uint8) for FID: a reference set and two disjoint halves."""

    reference: np.ndarray  # min(num_samples, N) images: the models' FID reference
    half_a: np.ndarray  # "true data": two disjoint sets of min(num_samples, N // 2)
    half_b: np.ndarray
    description: str
    requested: int

    @property
    def short(self) -> bool:
        return len(self.half_a) < self.requested

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested_per_set": self.requested,
            "reference_size": len(self.reference),
            "true_data_set_sizes": [len(self.half_a), len(self.half_b)],
            "fewer_than_requested": self.short,
            "source": self.description,
        }


def load_celeba_real_images(options: Options, num: int) -> RealImages:
    """The test split, then (if 2 * num are needed) the train split, shuffled with a fixed
    seed; the models' reference is the first min(num, N) of them, the "true data" row
    compares two disjoint sets of min(num, N // 2). Fewer than 2 * num is said, not hidden."""
    from wae_tf import data

    logging.info("loading real CelebA images for FID / sharpness (%d per set requested)", num)
    test = data.load_uint8("celeba", options.data_dir, "test")
    parts, text = [test], f"{len(test):,} test-split images"
    if len(test) < 2 * num:
        train = _first_train_images(options, 2 * num - len(test))
        parts.append(train)
        text += f" + the first {len(train):,} train-split images"
    pool = np.concatenate(parts)
    order = np.random.default_rng(options.seed + REAL_SPLIT_SEED_OFFSET).permutation(len(pool))
    pool = pool[order]
    half = min(num, len(pool) // 2)
    rule = data.celeba_split_rule(options.data_dir) if options.data_dir else "default data dir"
    description = (
        f"{text} (split rule: {rule}), shuffled with seed {options.seed + REAL_SPLIT_SEED_OFFSET}"
    )
    if half < num:
        description += (
            f"; ONLY {len(pool):,} real images available, so the true-data row compares "
            f"{half:,} vs {half:,} instead of {num:,} vs {num:,}"
        )
    return RealImages(
        pool[: min(num, len(pool))], pool[:half], pool[half : 2 * half], description, num
    )


def _first_train_images(options: Options, wanted: int) -> np.ndarray:
    """The first `wanted` CelebA train images, or all of them when there are fewer
    (decodes only what is needed: the full train split is 2 GB as uint8)."""
    from wae_tf import data

    try:
        return data.load_uint8("celeba", options.data_dir, "train", num_examples=wanted)
    except data.DataError:
        return data.load_uint8("celeba", options.data_dir, "train")


def make_fid_extractor(options: Options) -> tuple[Any | None, dict[str, Any]]:
    """(extractor or None, info with "features", "comparable_to_paper", "identity" (the
    network: "ttur graph sha256 ..." / "keras_inception_v3 imagenet, keras ..." / "none"),
    and "reason" when None)."""
    from wae_tf import inception

    info: dict[str, Any] = {"features": options.fid_features, "identity": "none"}
    if options.fid_features == "keras_inception_v3":
        info["comparable_to_paper"] = False
        try:
            extractor = inception.KerasInceptionV3Features(weights="imagenet")
        except Exception as e:  # noqa: BLE001 - no weights offline; FID becomes null
            info["reason"] = f"Keras InceptionV3 ImageNet weights unavailable ({e})"
            logging.warning("FID will be null: %s", info["reason"])
            return None, info
        import keras

        info["note"] = "Keras InceptionV3: NOT comparable to the paper's FID (TTUR graph)"
        info["identity"] = f"keras_inception_v3 imagenet, keras {keras.__version__}"
        return extractor, info
    info["comparable_to_paper"] = True
    if options.inception_graph is None:
        logging.warning("no --inception_graph: FID will be null (sharpness is still measured)")
        info["reason"] = (
            "no --inception_graph given: FID needs TTUR's classify_image_graph_def.pb "
            f"(from {inception.INCEPTION_URL})"
        )
        return None, info
    try:
        extractor = inception.TTURInception.from_graph_def(options.inception_graph)
    except (inception.InceptionGraphMissingError, ValueError, OSError) as e:
        logging.warning("FID will be null: %s", e)
        info["reason"] = str(e)
        return None, info
    info["graph"] = str(options.inception_graph)
    info["identity"] = f"ttur graph sha256 {file_sha256(Path(extractor.name))}"
    return extractor, info


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The two sharpness statistics reported side by side (Table 1, Figure 3).
SHARPNESS_DEFINITIONS = {
    "sharpness": "ours: mean over all samples of the per-image Laplacian variance, pixels in "
    "[0, 1] (wae_tf.metrics.mean_sharpness)",
    "sharpness_code": "the official code's: minimum over a batch of 30 (the first 30 samples) "
    "of the per-image Laplacian variance, pixels in [-1, 1] (wae_tf.metrics.code_sharpness)",
}


def sharpness_numbers(images: np.ndarray, pixel_range: tuple[float, float]) -> dict[str, float]:
    """{"sharpness": ours, "sharpness_code": the code's} (SHARPNESS_DEFINITIONS)."""
    from wae_tf import metrics

    return {
        "sharpness": metrics.mean_sharpness(images, pixel_range),
        "sharpness_code": metrics.code_sharpness(images, pixel_range),
    }


def celeba_evaluator(
    options: Options, extractor: Any | None, fid_info: dict[str, Any]
) -> Callable[[TrainedRun, np.ndarray], dict[str, Any]]:
    """`evaluate(run, test_uint8)` for CelebA bundles: on --num_samples samples G(z), z ~ P_Z
    (seed --seed + 1), both sharpness statistics and FID against the real reference set
    (null with the reason when there is no extractor); and, the same in every bundle, the
    "true data" row (the real reference set's sharpness, FID of its two disjoint halves) and
    the real test images' sharpness. The real images and their features are computed once
    per process."""
    cache: dict[str, Any] = {}

    def real_part(test: np.ndarray) -> dict[str, Any]:
        real = load_celeba_real_images(options, options.num_samples)
        feats = None
        if extractor is not None:
            logging.info("FID: features of %d real images", len(real.reference))
            feats = extractor.features(real.reference, pixel_range=(0, 255))
        logging.info("true data: %d vs %d real images", len(real.half_a), len(real.half_b))
        # half_a is a prefix of the reference set: its features are already computed.
        half_a_feats = None if feats is None else feats[: len(real.half_a)]
        true_data = {
            **sharpness_numbers(real.reference, (0.0, 255.0)),
            "num_samples": len(real.reference),
            "fid_set_sizes": [len(real.half_a), len(real.half_b)],
            **_fid_entry(extractor, fid_info, real.half_b, (0.0, 255.0), half_a_feats),
        }
        test_sharpness = sharpness_numbers(test, (0.0, 255.0))
        return {
            "feats": feats,
            "numbers": {
                "fid_info": fid_info,
                "real_images": real.to_dict(),
                "true_data": true_data,
                "test_images_sharpness": test_sharpness["sharpness"],
                "test_images_sharpness_code": test_sharpness["sharpness_code"],
            },
        }

    def evaluate(run: TrainedRun, test: np.ndarray) -> dict[str, Any]:
        if not cache:
            cache.update(real_part(test))
        n, seed = options.num_samples, options.seed + 1
        logging.info("%s: %d samples for FID / sharpness", MODEL_LABELS[run.name], n)
        samples = generate_samples(run.model, n, seed)
        return {
            **sharpness_numbers(samples, (-1.0, 1.0)),
            "num_samples": n,
            "sample_seed": seed,
            **_fid_entry(extractor, fid_info, samples, (-1.0, 1.0), cache["feats"]),
            **cache["numbers"],
        }

    return evaluate


def _fid_entry(
    extractor, fid_info: dict[str, Any], images: np.ndarray, pixel_range, other_feats
) -> dict[str, Any]:
    """{"fid": d(features of images, other_feats)}, or {"fid": None, "fid_reason": ...}."""
    from wae_tf import metrics

    if extractor is None:
        return {"fid": None, "fid_reason": fid_info["reason"]}
    feats = extractor.features(images, pixel_range=pixel_range)
    return {"fid": metrics.frechet_distance(feats, other_feats)}


# ======================================================================================
# Outputs and provenance
# ======================================================================================


class atomic_path:  # noqa: N801 - used like a function (a context manager)
    """`with atomic_path(p) as tmp:` write tmp; on success it is renamed onto p."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def provenance(options: Options, start_time: float) -> dict[str, Any]:
    return {
        "command_line": options.command_line,
        **provenance_lib.code_version(),
        "machine": provenance_lib.machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start_time)),
        "wall_time_s": round(time.time() - start_time, 1),
        "seed": None if options.assemble else options.seed,
        "runs_dir": None if options.assemble else str(options.workdir / run_group(options)),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any, spec: str = ".4g") -> str:
    """A number for a markdown cell; "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float, np.floating)):
        return format(float(value), spec)
    return str(value)


def json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(_jsonable(payload), indent=2) + "\n").encode()


def write_outputs(out_dir: Path, files: dict[str, bytes | str]) -> list[str]:
    """Write files already rendered in memory (name -> content), each atomically, so a
    failure while computing leaves nothing half-written. Returns the paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReproError(f"cannot create --out_dir {out_dir} ({e.strerror or e})") from e
    written = []
    for name, content in files.items():
        path = out_dir / name
        with atomic_path(path) as tmp:
            if isinstance(content, str):
                tmp.write_text(content)
            else:
                tmp.write_bytes(content)
        written.append(str(path))
        logging.info("wrote %s", path)
    return written


# ======================================================================================
# The shared figure pipeline (Figures 2 and 3)
# ======================================================================================


def load_test_images(options: Options) -> np.ndarray:
    """The test split (uint8), its first --eval_examples images when given."""
    from wae_tf import data

    test = data.load_uint8(options.dataset, options.data_dir, "test")
    if options.eval_examples is not None:
        if options.eval_examples > len(test):
            raise ReproError(
                f"--eval_examples={options.eval_examples} but the {options.dataset} test split "
                f"has {len(test):,} images"
            )
        test = test[: options.eval_examples]
    return test


def split_rule_text(options: Options) -> str:
    from wae_tf import data

    if options.dataset == "celeba":
        return f"CelebA split rule: {data.celeba_split_rule(options.data_dir)}"
    return "standard MNIST split: 60,000 train / 10,000 test"


def compute_bundles(
    options: Options, evaluate: Callable[[TrainedRun, np.ndarray], dict[str, Any]]
) -> list[Path]:
    """For each model of --models, in turn: train it (or reuse its finished run), draw its
    column of panels, compute the test reconstruction cost and `evaluate(run, test_uint8)`'s
    numbers, and write its bundle (`reproduce.bundles`), so that a later failure keeps the
    bundles already written. Returns the bundle folders."""
    from reproduce import bundles

    check_out_dir(options.out_dir)
    test = load_test_images(options)  # before any training: bad data fails early
    inputs = choose_panel_inputs(test, options.seed)
    written = []
    for i, name in enumerate(options.models, start=1):
        start = time.time()
        logging.info("[%d/%d] %s", i, len(options.models), MODEL_LABELS[name])
        run = train_model(options, name)
        logging.info(
            "%s: figure panels and test reconstruction cost on %d images",
            MODEL_LABELS[name],
            len(test),
        )
        panels = model_panels(run.model, inputs)
        numbers = reconstruction_costs(run.model, to_model_range(test, run.config.pixel_range))
        numbers = {**numbers, "test_size": len(test), **evaluate(run, test)}
        written.append(bundles.write_bundle(options, run, panels, numbers, start))
    return written


def bundles_to_assemble(
    options: Options, kind: str, compute: Callable[[Options], list[Path]]
) -> tuple[Any | None, list[Path]]:
    """(the checked `reproduce.bundles.BundleSet` to assemble, or None, and the bundle
    folders this run wrote). --assemble: its folders, nothing computed. Otherwise
    `compute(options)` writes the bundles of --models; with all three, they are read back
    from disk and assembled (the one-shot run takes the same path as --assemble), with
    fewer there is nothing to assemble (None)."""
    from reproduce import bundles

    written: list[Path] = []
    if options.assemble:
        check_out_dir(options.out_dir)
        paths = list(options.assemble)
    else:
        paths = written = compute(options)
        if not options.one_shot:
            return None, written
    bundle_set = bundles.load_bundles(
        paths,
        kind,
        allow_mixed=options.allow_mixed_bundles,
        allow_partial=options.allow_partial_bundles,
    )
    return bundle_set, written


def bundles_only_payload(written: Sequence[Path]) -> dict[str, Any]:
    """What a --models run of fewer than three models returns: its bundles, no figure."""
    return {
        "bundles": [str(p) for p in written],
        "files": [str(p) for p in written],
        "assembled": False,
        "next": "assemble three bundles with --assemble=DIR1,DIR2,DIR3",
    }


def figure_caption(bundle_set, figure_number: int) -> list[str]:
    """The caption under the panels: first the PARTIAL / MIXED BUNDLES labels in full (when
    they apply), then data, seeds, how to read the panels, the code version."""
    first = bundle_set.first
    dataset, seeds = first.config["dataset"], first.config["seeds"]
    train_size = min(b.train_size for b in bundle_set.bundles.values())
    return [
        *[f"{label}." for label in bundle_set.labels()],
        f"Data: {DATASET_LABELS[dataset]}, {train_size:,} train images; the panels and "
        f"numbers use {first.metrics['test_size']:,} test images ({first.config['split']}). "
        f"Seeds: training {seeds['training']}, panels {seeds['panels']}, "
        f"samples {seeds['panel_samples']}.",
        "Test interpolations: leftmost and rightmost columns are real test images; between them, "
        "decoded points on the straight line between their codes. Test reconstructions: odd rows "
        "are real test images, even rows their reconstructions. Random samples: G(z), z ~ P_Z.",
        f"Reproduction of Tolstikhin et al., Wasserstein Auto-Encoders (ICLR 2018), Figure "
        f"{figure_number}; wae-tf commit {bundle_set.commit()[:10]}.",
    ]


def assembled_title(title: str, bundle_set) -> str:
    """`title`, prefixed with "PARTIAL: missing ..." when models are missing."""
    partial = [label for label in bundle_set.labels() if label.startswith("PARTIAL")]
    return " -- ".join([*partial, title])


def column_labels(bundle_set) -> dict[str, str]:
    return {m: MODEL_LABELS[m] + (" (missing)" if m in bundle_set.missing else "") for m in MODELS}


def label_lines(labels: Sequence[str]) -> list[str]:
    """The PARTIAL / MIXED BUNDLES labels as bold markdown lines (nothing when whole)."""
    return [line for label in labels for line in (f"**{label}**", "")]


def done_message(name: str, payload: dict[str, Any]) -> str:
    """The line a script prints when it is done."""
    if payload.get("assembled") is False:
        return f"{name}: wrote the bundle(s) {', '.join(payload['bundles'])}; {payload['next']}"
    labels = "".join(f"{label}; " for label in payload.get("labels", []))
    return f"{name}: {labels}{payload['scale']['description']}; wrote {', '.join(payload['files'])}"


def assembly_provenance(options: Options, bundle_set, start_time: float) -> dict[str, Any]:
    """The assembly's own provenance (this process) and, per model, its bundle's."""
    return {**provenance(options, start_time), "bundles": bundle_set.provenance()}


def provenance_lines(payload: dict[str, Any]) -> list[str]:
    """The markdown "## Provenance" section: the assembly, then one line per bundle. (All
    that legitimately differs between two assemblies of the same numbers is in here.)"""
    prov = payload["provenance"]

    def line(p: dict[str, Any]) -> str:
        git, host = p.get("git", {}), p.get("machine", {})
        return (
            f"commit {git.get('commit')}{' (local changes)' if git.get('dirty') else ''}, "
            f"sources sha256 {str(p.get('source_sha256'))[:12]}, {host.get('platform')}, "
            f"{host.get('cpu_count')} CPUs, GPUs {host.get('gpus')}, started "
            f"{p.get('started_at')}, {p.get('wall_time_s')} s; `{p.get('command_line')}`"
        )

    lines = ["## Provenance", "", f"- Assembled by: {line(prov)}."]
    for name, p in prov["bundles"].items():
        lines.append(f"- {MODEL_LABELS[name]} bundle `{p['path']}`: {line(p)}.")
    return [*lines, ""]
