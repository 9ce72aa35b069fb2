"""Paper scale or reduced: the paper's sizes, and the one line every output shows.

`describe_scale` compares what was run with the paper's presets (epochs, train images,
widths, samples per metric) and says, e.g., "REDUCED SCALE: 1 epoch (paper: 100), 300 train
images (paper: 60,000), width 8 (paper: 128-1024 filters), ..." -- printed in red on the
figures and at the top of every table, so a reduced result cannot pass for the paper's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from reproduce.options import DEFAULT_NUM_SAMPLES, MODEL_LABELS, Options
from wae_tf import configs

# Training-set sizes of a paper-scale run. MNIST: the standard 60k train split [paper].
# CelebA: the code holds out 20,000 of 202,599 -> 182,599 [code]; the official partition
# file's train split has 162,770. Either counts as paper scale; fewer images do not.
PAPER_TRAIN_SIZES = {"mnist": 60_000, "celeba": 162_770}
PAPER_TRAIN_SIZE_TEXT = {"mnist": "60,000", "celeba": "162,770-182,599"}
PAPER_WIDTH_TEXT = "128-1024 filters"  # [paper, App. C]


class RunSize(Protocol):
    """What `describe_scale` reads of a run: a `reproduce.runs.TrainedRun` or a
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
