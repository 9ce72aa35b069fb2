"""The paper's outputs as data, and the facts about runs and panels every module shares.

An output (`OutputSpec`: `FIGURE2`, `FIGURE3`, `TABLE1`) is declared here, not coded:
its dataset, whether it draws the figure of panels, the rows and columns of its table,
the notes under the table and the entries of its JSON. `reproduce.pipeline.make(spec,
options)` trains or loads the runs, evaluates them into per-model bundles and assembles
any output from them; `reproduce.report` and `reproduce.render` write what a spec says.

Also here, below everything that uses them: the figure's panel geometry and seeds, the
runs behind an output (`TrainedRun`, `run_config`, `run_group`: the folder of one scale),
and the one line that says how a run differs from the paper's (`describe_scale`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from reproduce.cli import DEFAULT_NUM_SAMPLES, MODEL_LABELS, MODELS, Options, quick_settings
from wae_tf import configs
from wae_tf.rundir import RunPaths

# ======================================================================================
# The outputs
# ======================================================================================

BUNDLE_KINDS = {"mnist": "figure2", "celeba": "figure3_table1"}  # dataset -> bundle kind
ROW_LABELS = {"true_data": "true data", **MODEL_LABELS}
# Table 1 of the paper (CelebA): FID (smaller is better) and sharpness [paper, Table 1].
PAPER_TABLE1 = {
    "true_data": {"fid": 2.0, "sharpness": 2e-2},
    "vae": {"fid": 63.0, "sharpness": 3e-3},
    "wae_mmd": {"fid": 55.0, "sharpness": 6e-3},
    "wae_gan": {"fid": 42.0, "sharpness": 6e-3},
}
# In every bundle's metrics, the same for all models: an output shows them once.
SHARED_METRICS = {
    "mnist": ("mnist_classifier",),
    "celeba": (
        "fid_info",
        "real_images",
        "true_data",
        "test_images_sharpness",
        "test_images_sharpness_code",
    ),
}
# The two sharpness statistics reported side by side (Table 1, Figure 3).
SHARPNESS_DEFINITIONS = {
    "sharpness": "ours: mean over all samples of the per-image Laplacian variance, pixels in "
    "[0, 1] (wae_tf.metrics.mean_sharpness)",
    "sharpness_code": "the official code's: minimum over a batch of 30 (the first 30 samples; "
    "real: the first 30 training images) of the per-image Laplacian variance, pixels in "
    "[-1, 1] (wae_tf.metrics.code_sharpness)",
}


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of an output's table. A cell is `template.format(**numbers)` when there is
    a template, else `reproduce.report.fmt(numbers[key], spec)`; `source="paper"` reads the
    paper's numbers (PAPER_TABLE1) instead of ours, and is shown even for a missing model.
    Headers may say "{ours}": "ours", or "ours, REDUCED SCALE"."""

    header: str
    key: str = ""
    spec: str = ".4g"
    template: str = ""
    source: Literal["ours", "paper"] = "ours"


COST = Column("test reconstruction cost c", "test_reconstruction_cost")
EPOCHS = Column("epochs (ours / paper)", template="{epochs} / {paper_epochs}")
SIZES = (
    Column("train images", template="{train_size:,}"),
    Column("test images", template="{test_size:,}"),
    Column("s / epoch", "seconds_per_epoch", ".3g"),
)


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One output of the paper, as data (see the module docstring)."""

    name: str  # the script and the files: <name>.md, <name>.json (a figure: <name>.png)
    dataset: Literal["mnist", "celeba"]
    heading: str  # the markdown's title
    figure_title: str  # the figure's title ("" for a table)
    figure_number: int | None  # None: a table, no panels and no curves
    magnification: int  # screen pixels per image pixel in the figure
    rows: tuple[str, ...]  # the table's rows: models, and "true_data" (Table 1)
    row_numbers: Literal["models", "rows"]  # the JSON entry a row's numbers come from
    columns: tuple[Column, ...]  # after the "model" column
    notes: tuple[str, ...]  # the lines under the table, by name (`reproduce.report`)
    entries: tuple[str, ...]  # the JSON's entries after its header (`reproduce.pipeline`)
    seeds: tuple[tuple[str, str], ...]  # the JSON's "seeds": (name, the bundle's seed)

    @property
    def is_figure(self) -> bool:
        return self.figure_number is not None

    @property
    def bundle_kind(self) -> str:
        return BUNDLE_KINDS[self.dataset]


PANEL_SEEDS = (("training", "training"), ("panels", "panels"), ("panel_samples", "panel_samples"))

FIGURE2 = OutputSpec(
    name="figure2",
    dataset="mnist",
    heading="Figure 2 (MNIST): VAE vs WAE-MMD vs WAE-GAN",
    figure_title="Figure 2 (MNIST): VAE | WAE-MMD | WAE-GAN",
    figure_number=2,
    magnification=2,
    rows=MODELS,
    row_numbers="models",
    columns=(COST, Column("MNIST Fréchet score", "mnist_frechet_score"), EPOCHS, *SIZES),
    notes=("cost_mnist", "mnist_frechet", "curves"),
    entries=("models", "mnist_classifier", "split", "seeds"),
    seeds=(*PANEL_SEEDS, ("frechet_samples", "metric_samples")),
)
FIGURE3 = OutputSpec(
    name="figure3",
    dataset="celeba",
    heading="Figure 3 (CelebA 64x64): VAE vs WAE-MMD vs WAE-GAN",
    figure_title="Figure 3 (CelebA 64x64): VAE | WAE-MMD | WAE-GAN",
    figure_number=3,
    magnification=1,
    rows=MODELS,
    row_numbers="models",
    columns=(
        COST,
        Column("FID", "fid"),
        Column("sharpness (ours: mean, [0, 1])", "sharpness", ".2e"),
        Column("sharpness (code's: min of 30, [-1, 1])", "sharpness_code", ".2e"),
        EPOCHS,
        *SIZES,
    ),
    notes=("data_celeba", "cost_celeba", "sharpness", "fid_figure", "curves"),
    entries=(
        "models",
        "num_samples",
        "sharpness_definitions",
        "test_images_sharpness",
        "test_images_sharpness_code",
        "fid",
        "real_images",
        "split",
        "seeds",
    ),
    seeds=(*PANEL_SEEDS, ("metric_samples", "metric_samples")),
)
TABLE1 = OutputSpec(
    name="table1",
    dataset="celeba",
    heading="Table 1 (CelebA 64x64): FID and sharpness",
    figure_title="",
    figure_number=None,
    magnification=1,
    rows=("true_data", *MODELS),  # the paper's row order
    row_numbers="rows",
    columns=(
        Column("FID ({ours})", "fid", ".1f"),
        Column("FID (paper)", "fid", ".0f", source="paper"),
        Column("sharpness ({ours}: mean, [0, 1])", "sharpness", ".1e"),
        Column("sharpness ({ours}, code's statistic: min of 30, [-1, 1])", "sharpness_code", ".1e"),
        Column("sharpness (paper)", "sharpness", ".0e", source="paper"),
    ),
    notes=("fid_table", "samples_table", "sharpness", "training_table"),
    entries=(
        "rows",
        "paper",
        "sharpness_definitions",
        "fid",
        "real_images",
        "num_samples",
        "models",
        "split",
        "seeds",
    ),
    seeds=(("training", "training"), ("samples", "metric_samples")),
)
OUTPUTS = {spec.name: spec for spec in (FIGURE2, FIGURE3, TABLE1)}
# What `reproduce.all` makes, per dataset: the first output computes the three bundles, the
# others are assembled from them (Figure 3 and Table 1 share the CelebA runs and bundles).
DATASET_OUTPUTS = {"mnist": (FIGURE2,), "celeba": (FIGURE3, TABLE1)}
# Seconds per training step (batch 100, float32, validation included where it says epochs)
# on our 2-core CPU, by width (None: the paper's), for `reproduce.all`'s time estimate.
#   MNIST  16: 0.12, the epochs of `reproduce.all --quick` (2026-12-07; the cores shared
#              with other jobs, load ~6); 32: 0.12, results/figure2_cpu_w32 (69-77 s per epoch
#              of 600 steps); paper: 3.76, results/benchmarks/cpu_precision_mnist.json.
#   CelebA  8: 0.26, the same --quick run (40 steps per epoch); 32: 0.67,
#              results/figure3_cpu_w32 (50-62 s per epoch of 90 steps); paper: 20.5,
#              results/benchmarks/cpu_precision_celeba.json (cores shared, load ~3).
# Other widths: scaled from the nearest measured one by (width ratio)^2, at most the paper's.
CPU_SECONDS_PER_STEP: dict[str, dict[int | None, float]] = {
    "mnist": {16: 0.12, 32: 0.12, None: 3.76},
    "celeba": {8: 0.26, 32: 0.67, None: 20.5},
}

# ======================================================================================
# The figure's panels: one column per model [paper, Fig. 2-3]
# ======================================================================================

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
IMAGE_SHAPES = {"mnist": (28, 28, 1), "celeba": (64, 64, 3)}  # [paper, App. C]
# Offsets of the fixed seeds of the figure's random choices from --seed.
SAMPLE_SEED_OFFSET = 2018
PANEL_SEED_OFFSET = 17


def panel_shapes(dataset: str) -> dict[str, tuple[int, int, int]]:
    """The (H, W, C) of each panel grid (1-pixel gutters, `wae_tf.visualize.image_grid`)."""
    h, w, c = IMAGE_SHAPES[dataset]
    rows = {
        "interpolations": INTERPOLATION_ROWS,
        "reconstructions": 2 * RECONSTRUCTION_PAIRS,
        "samples": SAMPLE_ROWS,
    }
    return {k: (r * (h + 1) - 1, PANEL_COLS * (w + 1) - 1, c) for k, r in rows.items()}


def seeds_of(seed: int) -> dict[str, int]:
    """Every seed an output uses, from --seed: training, the panels' test images, the
    panels' samples and the samples behind the metrics."""
    return {
        "training": seed,
        "panels": seed + PANEL_SEED_OFFSET,
        "panel_samples": seed + SAMPLE_SEED_OFFSET,
        "metric_samples": seed + 1,
    }


# ======================================================================================
# The runs behind an output
# ======================================================================================


@dataclasses.dataclass
class TrainedRun:
    """A finished training run: the model and what its workdir says about it."""

    name: str  # "vae" | "wae_mmd" | "wae_gan"
    model: Any  # keras.Model with encode / decode / reconstruct / sample_prior
    workdir: Path
    config: Any  # wae_tf.configs.Config
    record: dict[str, Any]  # the run record (RunPaths.config)
    done: dict[str, Any]  # the end-of-training record (RunPaths.done)
    history: list[dict[str, float]]  # the per-epoch rows (RunPaths.history)

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.workdir)

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
        seconds_per_epoch = self.seconds_per_epoch
        return {
            "label": MODEL_LABELS[self.name],
            "workdir": str(self.workdir),
            "epochs": self.epochs,
            "paper_epochs": configs.get_config(self.config.dataset, self.name).epochs,
            "train_size": self.train_size,
            "split_rule": data_record.get("split_rule"),
            "width": _width_of(self.config),
            "seed": self.config.seed,
            "train_time_s": self.train_seconds,
            "seconds_per_epoch": None if seconds_per_epoch is None else round(seconds_per_epoch, 3),
            "final_metrics": self.history[-1] if self.history else None,
        }


def _width_of(config) -> str:
    widths = sorted({*config.encoder_filters, *config.decoder_filters})
    return str(widths[0]) if len(widths) == 1 else f"{widths[0]}-{widths[-1]}"


def run_config(options: Options, model: str):
    """The Config a script trains: the paper preset, shrunk by --width, with overrides."""
    config = configs.get_config(options.dataset, model)  # the paper preset
    if options.width is not None:
        config = configs.with_width(config, options.width)
    overrides: dict[str, Any] = {"seed": options.seed, "split_rule": split_rule_of(options)}
    if options.epochs is not None:
        overrides["epochs"] = options.epochs
    if options.quick:
        overrides["pretrain_steps"] = quick_settings(options.dataset).pretrain_steps
    return config.replace(**overrides)


def run_group(options: Options) -> str:
    """The folder under --workdir for this scale: "mnist" at paper scale, else tagged.

    Every setting that makes a run different (other than the epochs, which
    `wae_tf.trainer.train` may extend) is in the name, so runs of different scales never
    collide: e.g. "mnist", "mnist_w32_n20000", "celeba_quick_w8_n300",
    "celeba_w32_partition_file" (a --split_rule other than the preset's).
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
    if split_rule_of(options) != configs.get_config(options.dataset, "wae_mmd").split_rule:
        parts.append(split_rule_of(options))
    return "_".join(parts)


def run_dir(options: Options, model: str) -> Path:
    return options.workdir / run_group(options) / model


def split_rule_of(options: Options) -> str:
    """--split_rule, else the paper preset's (configs.DATASET_SPLIT_RULES, first entry)."""
    return options.split_rule or configs.DATASET_SPLIT_RULES[options.dataset][0]


def split_rule_text(options: Options) -> str:
    """The train / test split the runs and numbers use, in words."""
    from wae_tf import data

    rule = data.describe_split(options.dataset, options.data_dir, split_rule_of(options))
    if options.dataset == "celeba":
        return f"CelebA split rule: {rule}"
    return f"MNIST split rule: {rule}"


# ======================================================================================
# Paper scale or reduced: the one line every output shows
# ======================================================================================

# Training-set sizes of a paper-scale run. MNIST: the standard 60k train split [paper].
# CelebA: the code holds out 20,000 of 202,599 -> 182,599 [code]; the official partition
# file's train split has 162,770. Either counts as paper scale; fewer images do not.
PAPER_TRAIN_SIZES = {"mnist": 60_000, "celeba": 162_770}
PAPER_TRAIN_SIZE_TEXT = {"mnist": "60,000", "celeba": "162,770-182,599"}
PAPER_WIDTH_TEXT = "128-1024 filters"  # [paper, App. C]


class RunSize(Protocol):
    """What `describe_scale` reads of a run: a `TrainedRun` or a
    `reproduce.bundles.Bundle`."""

    @property
    def epochs(self) -> int: ...

    @property
    def train_size(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class Scale:
    reduced: bool
    text: str  # "REDUCED SCALE: ..." or "paper scale: ..."

    def to_dict(self) -> dict[str, Any]:
        return {"reduced": self.reduced, "description": self.text}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Scale:
        """The inverse of `to_dict` (an output's "scale" entry)."""
        return cls(bool(payload["reduced"]), str(payload["description"]))


def describe_scale(
    options: Options,
    runs: Mapping[str, RunSize],
    widths: Mapping[str, int | None] | None = None,
    num_samples: Mapping[str, int] | None = None,
) -> Scale:
    """One line that says how this run differs from the paper's, e.g.
    "REDUCED SCALE: 1 epoch (paper: 100), 300 train images (paper: 60,000), width 8 ...".

    widths, num_samples: per model, where they may differ (mixed bundles): then each
    model's own value is stated, e.g. "VAE/WAE-MMD/WAE-GAN widths 16/8/8"; by default
    --width and --num_samples of `options`, the same for all."""
    dataset = options.dataset
    widths = dict(widths or {name: options.width for name in runs})
    num_samples = dict(num_samples or {name: options.num_samples for name in runs})
    labels = "/".join(MODEL_LABELS[n] for n in runs)
    epochs = {name: run.epochs for name, run in runs.items()}
    paper_epochs = {name: configs.get_config(dataset, name).epochs for name in runs}
    train_size = min(run.train_size for run in runs.values())
    reduced_epochs = any(epochs[n] < paper_epochs[n] for n in runs)
    reduced_data = train_size < PAPER_TRAIN_SIZES[dataset]
    reduced_width = any(w is not None for w in widths.values())
    reduced_samples = any(n < DEFAULT_NUM_SAMPLES for n in num_samples.values())
    reduced = options.quick or reduced_epochs or reduced_data or reduced_width or reduced_samples

    if len(set(epochs.values())) == 1 and len(set(paper_epochs.values())) == 1:
        (e,), (p,) = set(epochs.values()), set(paper_epochs.values())
        epoch_text = f"{e} epoch{'s' if e != 1 else ''} (paper: {p})"
    else:
        ours = "/".join(str(epochs[n]) for n in runs)
        paper = "/".join(str(paper_epochs[n]) for n in runs)
        epoch_text = f"{labels} epochs {ours} (paper: {paper})"
    data_text = f"{train_size:,} train images (paper: {PAPER_TRAIN_SIZE_TEXT[dataset]})"
    if len(set(widths.values())) > 1:
        ours = "/".join("paper" if widths[n] is None else str(widths[n]) for n in runs)
        width_text = f"{labels} widths {ours} (paper: {PAPER_WIDTH_TEXT})"
    elif reduced_width:
        width_text = f"width {next(iter(widths.values()))} (paper: {PAPER_WIDTH_TEXT})"
    else:
        width_text = "paper widths"
    parts = [epoch_text, data_text, width_text]
    if len(set(num_samples.values())) > 1:
        ours = "/".join(f"{num_samples[n]:,}" for n in runs)
        parts.append(f"{labels} samples per metric {ours} (paper: {DEFAULT_NUM_SAMPLES:,})")
    elif reduced_samples:
        n = next(iter(num_samples.values()))
        parts.append(f"{n:,} samples per metric (paper: {DEFAULT_NUM_SAMPLES:,})")
    if options.quick:
        parts.append("--quick run")
    head = "REDUCED SCALE" if reduced else "paper scale"
    return Scale(reduced, f"{head}: {', '.join(parts)}")
