"""The training runs behind a figure: their configs and folders, training them, what they say.

`train_model` trains one model with the paper's preset (shrunk by --width, --epochs,
--quick) through `wae_tf.trainer.train`, or reuses its finished run, in
<workdir>/<run_group>/<model>, and returns a `TrainedRun`: the model and what its run
folder records (`wae_tf.rundir.RunPaths` names the files). Also here: the train images
as training reads them and the test images the reported numbers use
(`load_train_images`, `load_test_images`), and the one line that names the data split.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from reproduce.options import MODEL_LABELS, Options, ReproError, quick_settings
from wae_tf import configs, fileio
from wae_tf.rundir import RunPaths, read_history


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


def train_settings(options: Options, config) -> dict[str, Any]:
    """The keyword arguments of `wae_tf.trainer.train` besides config and workdir."""
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
    from wae_tf import trainer

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
    model = trainer.train(config, workdir, **train_settings(options, config))
    logging.info("%s ready (%.1f s)", MODEL_LABELS[name], time.time() - start)
    paths = RunPaths(workdir)
    return TrainedRun(
        name=name,
        model=model,
        workdir=workdir,
        config=config,
        record=_read_run_file(paths.config),
        done=_read_run_file(paths.done),
        history=read_history(paths.history),
    )


def _read_run_file(path: Path) -> dict[str, Any]:
    """A JSON record of a finished run; missing or unreadable: ReproError."""
    try:
        payload = fileio.read_json(path)
    except fileio.UnreadableFileError as e:
        raise ReproError(f"{e}; rerun the training") from e
    if payload is None:
        raise ReproError(f"{path} is missing; rerun the training")
    return payload


def split_rule_of(options: Options) -> str:
    """--split_rule, else the paper preset's (configs.DATASET_SPLIT_RULES, first entry)."""
    return options.split_rule or configs.DATASET_SPLIT_RULES[options.dataset][0]


def load_train_images(options: Options) -> np.ndarray:
    """The train split (uint8) as training reads it: its first --train_examples images."""
    from wae_tf import data

    try:
        return data.load_uint8(
            options.dataset,
            options.data_dir,
            "train",
            num_examples=options.train_examples,
            num_examples_name="--train_examples",  # errors name the flag
            split_rule=split_rule_of(options),
        )
    except data.DataError as e:
        if options.train_examples is None or "--train_examples=" not in str(e):
            raise
        # Not bad data: keep `checked_data` from adding "fix the data or pass another --data_dir".
        raise ReproError(
            f"{e}; pass a smaller --train_examples, or none for the whole split"
        ) from e


def load_test_images(options: Options) -> np.ndarray:
    """The test split (uint8), its first --eval_examples images when given."""
    from wae_tf import data

    test = data.load_uint8(
        options.dataset, options.data_dir, "test", split_rule=split_rule_of(options)
    )
    if options.eval_examples is not None:
        if options.eval_examples > len(test):
            raise ReproError(
                f"--eval_examples={options.eval_examples} but the {options.dataset} test split "
                f"has {len(test):,} images"
            )
        test = test[: options.eval_examples]
    return test


def split_rule_text(options: Options) -> str:
    """The train / test split the runs and numbers use, in words."""
    from wae_tf import data

    rule = data.describe_split(options.dataset, options.data_dir, split_rule_of(options))
    if options.dataset == "celeba":
        return f"CelebA split rule: {rule}"
    return f"MNIST split rule: {rule}"
