"""Per-model bundles: one model's panels, numbers, history and provenance, small enough to travel.

A paper-scale run need not happen in one sitting on one machine. `--models=wae_gan` trains
(or reuses) and evaluates only WAE-GAN and writes its bundle; `--assemble=DIR1,DIR2,DIR3`
draws the figure / table from three bundles, anywhere, without data, weights or training.
A one-shot run goes the same way: it writes the three bundles, reads them back from disk and
assembles them (`reproduce.pipeline.make`).

Layout of `<out_dir>/bundles/<kind>_<model>/` (kind "figure2": MNIST; kind "figure3_table1":
CelebA, one bundle serving both Figure 3 and Table 1):

    panels.npz       this model's column of the figure: the uint8 grids exactly as drawn,
                     "interpolations", "reconstructions", "samples" (H, W, C); C = 1 or 3
    metrics.json     the numbers: test reconstruction cost c and ||x - G(Q(x))||^2, test size;
                     figure2: the MNIST Fréchet score and the LeNet's identity; figure3_table1:
                     sharpness both ways, FID (or null and why), the true-data row, real images
    history.csv      the run's per-epoch metrics (copied from its workdir)
    config.json      what the bundle is: format, kind, model, dataset, the reproduce settings
                     (scale), the run's summary and data record, split, seeds, training config
    provenance.json  code version (git commit, local changes, sha256 of the sources), machine
                     and GPUs, command line, start time, wall time, training time

No weights. Size: the panels are the only arrays and their shapes do not depend on the scale
(`reproduce.specs.panel_shapes`); `size_bound` bounds a bundle from them and the number of epochs: a
paper-scale MNIST bundle (100 epochs) is at most ~0.3 MB, a CelebA one ~2.1 MB, far below
MAX_BUNDLE_BYTES (16 MiB).

Assembly (`check_bundles`) refuses, with one error that lists every difference: a folder that
is not a bundle of the expected kind, two bundles for one model, fewer than three models
(unless --allow_partial_bundles: then labelled "PARTIAL: missing ..."), and bundles whose
data, scale, settings, code version or metric network disagree (unless
--allow_mixed_bundles: then labelled "MIXED BUNDLES" with the differences). See `identity`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from reproduce.cli import MODEL_LABELS, MODELS, Options, ReproError
from reproduce.report import json_bytes, process_provenance
from reproduce.specs import (
    BUNDLE_KINDS,
    PANEL_ROWS,
    Scale,
    TrainedRun,
    describe_scale,
    panel_shapes,
    seeds_of,
    split_rule_text,
)
from wae_tf import fileio
from wae_tf.rundir import read_history_rows

BUNDLE_FORMAT = 1
# A bundle's own files (not a run folder's: that is `wae_tf.rundir.RunPaths`).
FILES = ("panels.npz", "metrics.json", "history.csv", "config.json", "provenance.json")
PANELS, METRICS, HISTORY, CONFIG, PROVENANCE = FILES
MAX_BUNDLE_BYTES = 16 * 2**20
# Bounds for `size_bound`: a history.csv row has ~15 numbers of <= 25 characters; the JSON
# files are a few KiB (the training config and the LeNet / Inception descriptions).
HISTORY_ROW_BYTES = 1024
JSON_BYTES = 64 * 1024
# Zip and .npy headers of three arrays, and deflate's worst case on incompressible data
# (5 bytes per 16 KiB block: < 1 KiB for CelebA's 2 MB of panels).
NPZ_OVERHEAD_BYTES = 4096
# The fields of a run's data record (config.json "data", `wae_tf.rundir`) that say which
# images it trained and validated on; the record's data_dir is a path, which may differ.
RUN_DATA_IDENTITY = ("source", "split_rule", "train_split", "eval_split", "train_size", "eval_size")


def bundle_dir(out_dir: Path, kind: str, model: str) -> Path:
    return Path(out_dir) / "bundles" / f"{kind}_{model}"


# ======================================================================================
# Size
# ======================================================================================


def size_bound(dataset: str, epochs: int) -> int:
    """Upper bound in bytes of a bundle of a run of `epochs` epochs: the panels as raw
    uint8 plus the npz overhead, the history rows, the JSON files."""
    panels = sum(int(np.prod(shape)) for shape in panel_shapes(dataset).values())
    return panels + NPZ_OVERHEAD_BYTES + (epochs + 1) * HISTORY_ROW_BYTES + JSON_BYTES


def bundle_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


# ======================================================================================
# Writing
# ======================================================================================


def settings_of(options: Options) -> dict[str, Any]:
    """The reproduce flags that shape the numbers (None = the paper's / the whole split),
    and the training cadence (which does not)."""
    return {
        "quick": options.quick,
        "seed": options.seed,
        "epochs": options.epochs,
        "train_examples": options.train_examples,
        "eval_examples": options.eval_examples,
        "width": options.width,
        "num_samples": options.num_samples,
        "fid_features": options.fid_features if options.dataset == "celeba" else None,
        "sample_every": options.sample_every,
        "checkpoint_every": options.checkpoint_every,
        "validate_every": options.validate_every,
    }


def write_bundle(
    options: Options,
    run: TrainedRun,
    panels: dict[str, np.ndarray],
    metrics: dict[str, Any],
    start_time: float,
) -> Path:
    """Write `run`'s bundle to <out_dir>/bundles/<kind>_<model>/ (replacing an older one):
    all files into a temporary folder first, then one rename, so a folder named like a
    bundle is always complete. Returns the folder."""
    kind = BUNDLE_KINDS[options.dataset]
    summary = run.summary()
    timing = {k: summary.pop(k) for k in ("workdir", "train_time_s", "seconds_per_epoch")}
    data_record = dict(run.record.get("data", {}))
    data_dir = data_record.pop("data_dir", None)
    config = {
        "bundle_format": BUNDLE_FORMAT,
        "kind": kind,
        "model": run.name,
        "dataset": options.dataset,
        "settings": settings_of(options),
        "run": summary,
        "data": data_record,
        "split": split_rule_text(options),
        "seeds": seeds_of(options.seed),
        "scale": describe_scale(options, {run.name: run}).to_dict(),
        "train_config": run.record.get("config"),
    }
    provenance = {
        **process_provenance(options.command_line, start_time),
        "run": {
            **timing,
            "data_dir": data_dir,
            "epochs": run.epochs,
            "finished_at": run.done.get("finished_at"),
            # history.csv's epoch_time_s: steps + validation of each epoch (None for
            # runs written before that column existed).
            "epoch_times_s": [row.get("epoch_time_s") for row in run.history] or None,
            "training_command_lines": [
                i.get("command_line") for i in run.record.get("invocations", [])
            ],
        },
    }
    shapes = {k: v.shape for k, v in panels.items()}
    if shapes != panel_shapes(options.dataset) or any(v.dtype != np.uint8 for v in panels.values()):
        raise ValueError(f"panels must be uint8 grids of {panel_shapes(options.dataset)}: {shapes}")
    target = bundle_dir(options.out_dir, kind, run.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        with fileio.atomic_path(tmp / PANELS, suffix=".npz") as npz:
            np.savez_compressed(npz, **panels)
        fileio.write_bytes(tmp / METRICS, json_bytes(metrics))
        fileio.write_bytes(tmp / CONFIG, json_bytes(config))
        fileio.write_bytes(tmp / PROVENANCE, json_bytes(provenance))
        history = run.paths.history
        fileio.write_bytes(tmp / HISTORY, history.read_bytes() if history.is_file() else b"")
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = bundle_bytes(target)
    logging.info("wrote bundle %s (%.1f KiB)", target, size / 1024)
    if size > MAX_BUNDLE_BYTES:
        logging.warning("bundle %s is %d bytes, over %d", target, size, MAX_BUNDLE_BYTES)
    return target


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` onto `target`; an existing `target` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ======================================================================================
# Reading
# ======================================================================================


@dataclasses.dataclass
class Bundle:
    """A bundle read back from disk."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    panels: dict[str, np.ndarray]
    history: list[dict[str, float]]

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def settings(self) -> dict[str, Any]:
        return self.config["settings"]

    # What `reproduce.specs.describe_scale` reads of a run:
    @property
    def epochs(self) -> int:
        return int(self.config["run"]["epochs"])

    @property
    def train_size(self) -> int:
        return int(self.config["run"]["train_size"])

    def numbers(self, exclude: Sequence[str] = ()) -> dict[str, Any]:
        """The model's row of an assembled output: run summary, timing and metrics (less
        `exclude`, the entries shared by all bundles that the output shows once)."""
        timing = self.provenance["run"]
        metrics = {k: v for k, v in self.metrics.items() if k not in exclude}
        return {
            **self.config["run"],
            "workdir": timing["workdir"],
            "train_time_s": timing["train_time_s"],
            "seconds_per_epoch": timing["seconds_per_epoch"],
            **metrics,
        }


def read_bundle(path: Path) -> Bundle:
    """Read one bundle folder; a missing or unreadable file is a ReproError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise ReproError(f"bundle {path} is not a folder")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise ReproError(f"{path} is not a bundle: {', '.join(missing)} missing")
    try:
        config, metrics, provenance = (
            fileio.read_json(path / name) for name in (CONFIG, METRICS, PROVENANCE)
        )
    except (OSError, ValueError) as e:
        raise ReproError(f"bundle {path} is unreadable ({e})") from e
    panels = read_panels(path / PANELS)
    if config.get("bundle_format") != BUNDLE_FORMAT:
        raise ReproError(
            f"bundle {path} has format {config.get('bundle_format')!r}; this code reads "
            f"format {BUNDLE_FORMAT}: remake it with this version"
        )
    if set(panels) != set(PANEL_ROWS):
        raise ReproError(f"bundle {path}: {PANELS} holds {sorted(panels)}")
    return Bundle(path, config, metrics, provenance, panels, read_bundle_history(path / HISTORY))


def read_panels(path: Path) -> dict[str, np.ndarray]:
    """A bundle's panels.npz; a damaged one (a flipped byte, truncated: zip or deflate
    errors, a bad .npy header) is a ReproError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ReproError(
            f"{path} is damaged ({type(e).__name__}: {e}); copy the bundle again or remake it"
        ) from e


def read_bundle_history(path: Path) -> list[dict[str, float]]:
    """A bundle's history.csv as `wae_tf.rundir.read_history` rows ([] for an empty file:
    a run without one). A file that is not a wae_tf history -- not text, another first
    column, a line that is not a row of numbers -- is a ReproError naming it: write_bundle
    copies the history of a finished run whole, so garbage means a damaged copy, and
    every other unreadable bundle file is an error too (the curves would otherwise
    silently say "no history.csv")."""
    try:
        header, rows = read_history_rows(path)
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not header:
            return []
        if header[0] != "epoch":
            problem = f"its first column is {header[0][:40]!r}, not 'epoch'"
        elif len(rows) != len(lines) - 1:
            problem = f"{len(lines) - 1 - len(rows)} of its {len(lines) - 1} lines are not rows"
        else:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in rows]
    except (OSError, ValueError) as e:  # UnicodeDecodeError, a cell that is not a number
        problem = f"{type(e).__name__}: {str(e)[:80]}"
    raise ReproError(
        f"{path} is unreadable: not a wae_tf history ({problem}); copy the bundle again or "
        "remake it"
    )


# ======================================================================================
# Checking and assembling
# ======================================================================================


def identity(bundle: Bundle) -> dict[str, Any]:
    """What must agree between the bundles of one figure / table, "group.field" -> value.

    data      dataset, the run's data record (RUN_DATA_IDENTITY: source, split rule, train
              and validation sizes; not the folder), the split text, the test images of the numbers, the
              real images of FID / sharpness (CelebA)
    scale     --quick, --width, --num_samples, --epochs (None: the paper's, whether given
              or not); --train_examples and --eval_examples act through the sizes above
    settings  --seed
    code      sha256 of the sources (wae_tf/, reproduce/), and the git commit where both
              bundles recorded one (a copied tree without .git records none)
    metric    the network behind the sample score: the LeNet's weights (MNIST Fréchet score:
              each machine trains its own unless the cache is copied), or FID's features
    Training cadence (--checkpoint_every etc.), machine, times and paths may differ.
    """
    settings, data_record = bundle.settings, bundle.config.get("data", {})
    fields = {"data.dataset": bundle.config["dataset"], "data.split": bundle.config["split"]}
    fields |= {f"data.run_{k}": data_record.get(k) for k in RUN_DATA_IDENTITY}
    fields["data.test_size"] = bundle.metrics.get("test_size")
    real = bundle.metrics.get("real_images")
    if real is not None:
        fields["data.real_images"] = real.get("source")
    for key in ("quick", "width", "num_samples"):
        fields[f"scale.{key}"] = settings.get(key)
    epochs = settings.get("epochs")
    fields["scale.epochs"] = None if epochs == bundle.config["run"]["paper_epochs"] else epochs
    fields["settings.seed"] = settings.get("seed")
    fields["code.source_sha256"] = bundle.provenance.get("source_sha256")
    fields["code.git_commit"] = bundle.provenance.get("git", {}).get("commit")
    classifier = bundle.metrics.get("mnist_classifier")
    if classifier is not None:
        fields["metric.mnist_classifier_sha256"] = classifier.get("weights_sha256")
    fid = bundle.metrics.get("fid_info")
    if fid is not None:
        fields["metric.fid_features"] = fid.get("identity")
    return fields


def _shown(value: Any) -> str:
    """A value for an error message; sha256 and git hashes shortened."""
    if isinstance(value, str) and len(value) in (40, 64) and set(value) <= set("0123456789abcdef"):
        return value[:12]
    return str(value)


def differences(found: dict[str, Bundle]) -> list[str]:
    """One line per identity field on which the bundles disagree, e.g.
    "scale.width: VAE 8 / WAE-MMD 8 / WAE-GAN 16"."""
    ids = {name: identity(b) for name, b in found.items()}
    keys = sorted({k for fields in ids.values() for k in fields})
    lines = []
    for key in keys:
        values = {name: fields.get(key) for name, fields in ids.items()}
        compared = {v for v in values.values() if not (key == "code.git_commit" and v is None)}
        if len({json.dumps(v, sort_keys=True) for v in compared}) > 1:
            shown = " / ".join(f"{MODEL_LABELS[n]} {_shown(v)}" for n, v in values.items())
            lines.append(f"{key}: {shown}")
    return lines


@dataclasses.dataclass
class BundleSet:
    """The checked bundles of one figure / table, in the figure's column order."""

    kind: str
    bundles: dict[str, Bundle]  # model -> bundle; only the models present
    missing: tuple[str, ...]
    differences: list[str]

    @property
    def first(self) -> Bundle:
        return next(iter(self.bundles.values()))

    def labels(self) -> list[str]:
        """The labels "PARTIAL: missing ..." and "MIXED BUNDLES ..." that apply (or none)."""
        out = []
        if self.missing:
            out.append("PARTIAL: missing " + ", ".join(MODEL_LABELS[m] for m in self.missing))
        if self.differences:
            out.append("MIXED BUNDLES, they differ in " + "; ".join(self.differences))
        return out

    def options(self, out_dir: Path) -> Options:
        """Options as the (first) bundle was made with, for the scale line and captions."""
        s = self.first.settings
        return Options(
            dataset=self.first.config["dataset"],
            workdir=Path(self.first.provenance["run"]["workdir"]).parent.parent,
            data_dir=None,
            out_dir=out_dir,
            quick=s["quick"],
            seed=s["seed"],
            epochs=s["epochs"],
            train_examples=s["train_examples"],
            eval_examples=s["eval_examples"],
            width=s["width"],
            num_samples=s["num_samples"],
            fid_features=s.get("fid_features") or "ttur",
        )

    def scale(self, out_dir: Path) -> Scale:
        """The scale line; with mixed bundles, it starts with "MIXED BUNDLES" and names the
        differing fields (each bundle's own scale is in its config.json)."""
        scale = describe_scale(
            self.options(out_dir),
            self.bundles,
            widths={m: b.settings.get("width") for m, b in self.bundles.items()},
            num_samples={m: b.settings["num_samples"] for m, b in self.bundles.items()},
        )
        if not self.differences:
            return scale
        fields = ", ".join(dict.fromkeys(d.split(":")[0] for d in self.differences))
        reduced = scale.reduced or any(b.config["scale"]["reduced"] for b in self.bundles.values())
        return Scale(reduced, f"MIXED BUNDLES (differ in {fields}) | {scale.text}")

    def commit(self) -> str:
        commits = {b.provenance.get("git", {}).get("commit") for b in self.bundles.values()}
        known = commits - {None}
        return "unknown" if not known else (known.pop() if len(known) == 1 else "mixed")

    def provenance(self) -> dict[str, dict[str, Any]]:
        return {name: {"path": str(b.path), **b.provenance} for name, b in self.bundles.items()}


def check_bundles(
    found: Sequence[Bundle], kind: str, *, allow_mixed: bool, allow_partial: bool
) -> BundleSet:
    """Check bundles for one figure / table of `kind` (see the module docstring)."""
    wrong = [f"{b.path} is a {b.kind!r} bundle" for b in found if b.kind != kind]
    if wrong:
        raise ReproError(f"expected {kind!r} bundles: {'; '.join(wrong)}")
    by_model: dict[str, list[Bundle]] = {}
    for b in found:
        by_model.setdefault(b.model, []).append(b)
    twice = [
        f"{MODEL_LABELS[m]}: {', '.join(str(b.path) for b in bs)}"
        for m, bs in by_model.items()
        if len(bs) > 1
    ]
    if twice:
        raise ReproError(f"more than one bundle per model ({'; '.join(twice)})")
    bundles = {m: by_model[m][0] for m in MODELS if m in by_model}
    missing = tuple(m for m in MODELS if m not in by_model)
    if not bundles:
        raise ReproError("no bundles to assemble")
    if missing and not allow_partial:
        raise ReproError(
            f"no bundle for {', '.join(MODEL_LABELS[m] for m in missing)}: a figure / "
            "table needs all three models (--allow_partial_bundles assembles it labelled "
            "PARTIAL)"
        )
    diff = differences(bundles)
    if diff and not allow_mixed:
        raise ReproError(
            "the bundles disagree (--allow_mixed_bundles assembles them labelled MIXED "
            f"BUNDLES): {'; '.join(diff)}"
        )
    return BundleSet(kind, bundles, missing, diff)


def load_bundles(
    paths: Sequence[Path], kind: str, *, allow_mixed: bool = False, allow_partial: bool = False
) -> BundleSet:
    """Read and check the bundle folders `paths`."""
    return check_bundles(
        [read_bundle(p) for p in paths],
        kind,
        allow_mixed=allow_mixed,
        allow_partial=allow_partial,
    )


def blank_panels(bundle_set: BundleSet) -> dict[str, dict[str, np.ndarray]]:
    """Every model's panels; a missing model's column is white (labelled by the caller)."""
    present = bundle_set.first.panels
    panels = {m: b.panels for m, b in bundle_set.bundles.items()}
    for m in bundle_set.missing:
        panels[m] = {k: np.full_like(v, 255) for k, v in present.items()}
    return {m: panels[m] for m in MODELS}
