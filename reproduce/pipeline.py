"""The one pipeline behind every output: runs -> per-model bundles -> figure / table files.

`make(spec, options)` produces the output that `spec` (`reproduce.specs`) declares:

1. Checks, before anything is announced or trained (`checked_folders`, `checked_data`):
   the output folders writable, the data found (MNIST may be downloaded,
   `wae_tf.data.resolve_data_dir`) and readable, and for CelebA the FID network loaded
   (`reproduce.evaluation.sample_scores`) when one is asked for.
2. Each model of --models (`compute_bundles`): train it with the paper config, or reuse its
   finished run (`train_model`), draw its column of panels, compute its numbers
   (`reproduce.evaluation`) and write its bundle (`reproduce.bundles`), so that a later
   failure keeps the bundles already written.
3. With all three models, or --assemble's bundles from anywhere: read the bundles back from
   disk, check that they belong together, and `assemble` the output: its JSON (the entries
   `spec.entries` names), its markdown (`reproduce.report.markdown`) and, for a figure,
   the PNGs (`reproduce.render`). From the first write to the last, --out_dir is locked.

`main(argv, spec)` is a script's command line around `make`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags, logging

from reproduce import bundles, render, report
from reproduce.bundles import BundleSet
from reproduce.cli import (
    DATASET_LABELS,
    MODEL_LABELS,
    MODELS,
    Options,
    ReproError,
    check_writable,
    exit_on_error,
    options_from_flags,
)
from reproduce.evaluation import (
    choose_panel_inputs,
    model_panels,
    reconstruction_costs,
    sample_scores,
)
from reproduce.report import OutDirLock
from reproduce.specs import (
    CPU_SECONDS_PER_STEP,
    DATASET_OUTPUTS,
    PAPER_TABLE1,
    SHARED_METRICS,
    SHARPNESS_DEFINITIONS,
    OutputSpec,
    Scale,
    TrainedRun,
    run_config,
    run_dir,
    split_rule_of,
)
from wae_tf import console, fileio
from wae_tf.rundir import RunPaths, read_history
from wae_tf.streams import to_model_range

# ======================================================================================
# Checks before any work
# ======================================================================================


def checked_folders(options: Options) -> Options:
    """Before anything is announced or trained: --out_dir and --workdir are writable and
    the data folder is found (--data_dir, $WAE_TF_DATA_DIR/<name>, else MNIST is fetched
    into the cache: `wae_tf.data.resolve_data_dir`). Returns the options with the resolved
    --data_dir, so that nothing is looked up (or fetched) twice. Errors name the flag."""
    from wae_tf import data

    check_writable(options.out_dir, "--out_dir")
    check_writable(options.workdir, "--workdir")
    root = data.resolve_data_dir(options.dataset, options.data_dir, options.data_root)
    return dataclasses.replace(options, data_dir=root)


def checked_data(options: Options) -> np.ndarray:
    """Both splits read as training and the numbers read them (CelebA: decoded into the
    cache), from the --data_dir `checked_folders` resolved. Returns the test images (uint8,
    the first --eval_examples). Errors name --data_dir."""
    from wae_tf import data

    try:
        # Read (and for CelebA decode into the cache) what training will read, then drop it.
        load_train_images(options)
        return load_test_images(options)
    except data.DataError as e:
        if "--data_dir" in str(e):
            raise
        raise data.DataError(f"{e}; fix the data or pass another --data_dir") from e


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


# ======================================================================================
# Runs and bundles
# ======================================================================================


def train_model(options: Options, name: str) -> TrainedRun:
    """Train (or reuse the finished run of) one model, in <workdir>/<run_group>/<name>."""
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
    model = trainer.train(config, workdir, train_settings(options, config))
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


def train_settings(options: Options, config):
    """The `wae_tf.trainer.TrainSettings` of a run: the data, and the cadence flags."""
    from wae_tf.run_settings import TrainSettings

    sample_every = options.sample_every
    return TrainSettings(
        data_dir=options.data_dir,
        train_examples=options.train_examples,
        sample_every=max(1, config.epochs // 10) if sample_every is None else sample_every,
        checkpoint_every=options.checkpoint_every,
        validate_every=options.validate_every,
        verbose=options.verbose,
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


def compute_bundles(options: Options, lock: OutDirLock) -> list[Path]:
    """After the checks, take --out_dir's `lock`, then for each model of --models, in
    turn: train it (or reuse its finished run), draw its column of panels, compute the test
    reconstruction cost and the sample scores, and write its bundle (`reproduce.bundles`).
    Returns the bundle folders."""
    options = checked_folders(options)
    scores = sample_scores(options)  # CelebA: the FID network, loaded before the long decode
    test = checked_data(options)
    if scores.fid_reason:
        logging.warning("FID will be null: %s (sharpness is still measured)", scores.fid_reason)
    lock.acquire()  # before anything is trained or written: a second run is refused here
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
        numbers = {**numbers, "test_size": len(test), **scores.evaluate(run, test)}
        written.append(bundles.write_bundle(options, run, panels, numbers, start))
    return written


def bundles_to_assemble(
    spec: OutputSpec, options: Options, lock: OutDirLock
) -> tuple[BundleSet | None, list[Path]]:
    """(the checked `reproduce.bundles.BundleSet` to assemble, or None, and the bundle
    folders this run wrote). --assemble: its folders, nothing computed. Otherwise the
    bundles of --models are computed; with all three, they are read back from disk and
    assembled (the one-shot run takes the same path as --assemble), with fewer there is
    nothing to assemble (None)."""
    written: list[Path] = []
    if options.assemble:
        check_writable(options.out_dir, "--out_dir")
        paths = list(options.assemble)
    else:
        paths = written = compute_bundles(options, lock)
        if not options.one_shot:
            return None, written
    bundle_set = bundles.load_bundles(
        paths,
        spec.bundle_kind,
        allow_mixed=options.allow_mixed_bundles,
        allow_partial=options.allow_partial_bundles,
    )
    lock.acquire()  # --assemble: after the checks (a refused assembly creates nothing)
    return bundle_set, written


# ======================================================================================
# Assembling an output from its bundles
# ======================================================================================


def make(spec: OutputSpec, options: Options) -> dict[str, Any]:
    """Compute the bundles of --models (or take --assemble's), then, with all three models,
    assemble and write the output `spec`. Returns its JSON payload; for fewer than three
    models, the bundles written."""
    start = time.time()
    with OutDirLock(options.out_dir) as lock:
        bundle_set, written = bundles_to_assemble(spec, options, lock)
        if bundle_set is None:
            return {
                "bundles": [str(p) for p in written],
                "files": [str(p) for p in written],
                "assembled": False,
                "next": "assemble three bundles with --assemble=DIR1,DIR2,DIR3",
            }
        return assemble(spec, options, bundle_set, start)


def assemble(
    spec: OutputSpec, options: Options, bundle_set: BundleSet, start: float
) -> dict[str, Any]:
    """Write the output's files to --out_dir from checked bundles: <name>.json (the payload,
    returned), <name>.md and, for a figure, <name>.png and <name>_training_curves.png."""
    payload = {
        "figure" if spec.is_figure else "table": spec.name,
        "dataset": spec.dataset,
        "scale": bundle_set.scale(options.out_dir).to_dict(),
        "labels": bundle_set.labels(),
        "missing_models": list(bundle_set.missing),
        "bundle_differences": bundle_set.differences,
        **{entry: _entry(entry, spec, bundle_set) for entry in spec.entries},
        "provenance": {
            **report.provenance(options, start),
            "bundles": bundle_set.provenance(),
        },
    }
    files: dict[str, bytes | str] = {}
    if spec.is_figure:
        files[f"{spec.name}.png"], files[f"{spec.name}_training_curves.png"] = _figure_pngs(
            spec, bundle_set, Scale.from_dict(payload["scale"])
        )
    names = [*files, f"{spec.name}.md", f"{spec.name}.json"]
    payload["files"] = [str(options.out_dir / name) for name in names]
    files[f"{spec.name}.md"] = report.markdown(spec, payload)
    files[f"{spec.name}.json"] = report.json_bytes(payload)
    report.write_outputs(options.out_dir, files)
    return payload


def _entry(name: str, spec: OutputSpec, bundle_set: BundleSet) -> Any:
    """The JSON entry `name` of an output (`OutputSpec.entries`), from its bundles."""
    first = bundle_set.first
    if name == "models":
        shared = SHARED_METRICS[spec.dataset]
        return {m: b.numbers(exclude=shared) for m, b in bundle_set.bundles.items()}
    if name == "rows":  # Table 1: the true-data row, then one row per model
        keys = ("sharpness", "sharpness_code", "num_samples", "fid", "fid_reason")
        rows = {"true_data": {**first.metrics["true_data"], "from_bundle_of": first.model}}
        for model, b in bundle_set.bundles.items():
            rows[model] = {k: b.metrics[k] for k in keys if k in b.metrics}
        return rows
    if name == "paper":
        return PAPER_TABLE1
    if name == "sharpness_definitions":
        return SHARPNESS_DEFINITIONS
    if name == "num_samples":
        return first.settings["num_samples"]
    if name == "split":
        return first.config["split"]
    if name == "seeds":
        return {key: first.config["seeds"][seed] for key, seed in spec.seeds}
    if name == "fid":
        return first.metrics["fid_info"]
    return first.metrics[name]  # shared by all bundles: mnist_classifier, real_images, ...


def _figure_pngs(spec: OutputSpec, bundle_set: BundleSet, scale: Scale) -> tuple[bytes, bytes]:
    """The figure (panels, titled, PARTIAL when models are missing, captioned) and the
    training curves, as PNG bytes."""
    partial = [label for label in bundle_set.labels() if label.startswith("PARTIAL")]
    title = " -- ".join([*partial, spec.figure_title])
    column_labels = {
        m: MODEL_LABELS[m] + (" (missing)" if m in bundle_set.missing else "") for m in MODELS
    }
    figure_png, _ = render.render_figure(
        bundles.blank_panels(bundle_set),
        title,
        scale,
        figure_caption(bundle_set, spec.figure_number),
        magnification=spec.magnification,
        column_labels=column_labels,
    )
    curves_png = render.render_training_curves(
        {m: b.history for m, b in bundle_set.bundles.items()},
        f"{title}: training curves",
        scale,
    )
    return figure_png, curves_png


def figure_caption(bundle_set: BundleSet, figure_number: int) -> list[str]:
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


# ======================================================================================
# Every output in one command (`reproduce.all`)
# ======================================================================================


def make_all(options_by_dataset: dict[str, Options]) -> list[dict[str, Any]]:
    """Every output of `specs.DATASET_OUTPUTS`, each into <out_dir>/<name>: per dataset, the
    first output computes the bundles of the three models (or reuses those an earlier,
    interrupted call finished: `finished_bundles`), the others are assembled from them.
    Training runs resume where they stopped (`wae_tf.trainer`). Returns the payloads."""
    payloads = []
    for dataset, options in options_by_dataset.items():
        first, *others = DATASET_OUTPUTS[dataset]
        first_options = dataclasses.replace(options, out_dir=options.out_dir / first.name)
        done = finished_bundles(first, first_options)
        if done:
            logging.info(
                "%s: reusing the finished bundles %s", first.name, ", ".join(map(str, done))
            )
        payloads.append(make(first, dataclasses.replace(first_options, assemble=done)))
        paths = tuple(
            bundles.bundle_dir(first_options.out_dir, first.bundle_kind, m) for m in MODELS
        )
        for spec in others:
            out_dir = options.out_dir / spec.name
            payloads.append(
                make(spec, dataclasses.replace(options, out_dir=out_dir, assemble=paths))
            )
    return payloads


def finished_bundles(spec: OutputSpec, options: Options) -> tuple[Path, ...]:
    """The three bundles in --out_dir when each was made by this code (same sources) with
    these settings, the same FID network (CelebA) and from a run of the target epochs, else
    () (they are computed again)."""
    from wae_tf import provenance

    sources = provenance.code_version().get("source_sha256")
    settings = report.json_bytes(bundles.settings_of(options))
    paths = tuple(bundles.bundle_dir(options.out_dir, spec.bundle_kind, m) for m in MODELS)
    try:
        found = [bundles.read_bundle(path) for path in paths]
    except ReproError:
        return ()
    for model, bundle in zip(MODELS, found, strict=True):
        if (
            report.json_bytes(bundle.settings) != settings
            or bundle.provenance.get("source_sha256") != sources
            or bundle.epochs != run_config(options, model).epochs
        ):
            return ()
    if spec.dataset == "celeba":  # e.g. a first call without --inception_graph: FID null
        fid = sample_scores(options).fid_info["identity"]
        if any(b.metrics["fid_info"]["identity"] != fid for b in found):
            return ()
    return paths


def checked_all(options_by_dataset: dict[str, Options]) -> dict[str, Options]:
    """`reproduce.all`'s checks, for every dataset before anything is trained (as a script
    checks its one): folders, data (read, CelebA decoded into the cache) and the FID
    network. Returns the options with each resolved --data_dir."""
    checked = {}
    for dataset, options in options_by_dataset.items():
        checked[dataset] = checked_folders(options)
        sample_scores(checked[dataset])  # an unusable --inception_graph stops here
        checked_data(checked[dataset])
    return checked


def time_estimate(options_by_dataset: dict[str, Options]) -> str:
    """One line per dataset and a total: the training steps still to run (finished epochs
    of existing runs are not counted) times `specs.CPU_SECONDS_PER_STEP`. The options are
    `checked_all`'s (their --data_dir resolved)."""
    import math

    lines, total = [], 0.0
    for dataset, options in options_by_dataset.items():
        train_size = options.train_examples or _train_split_size(options)
        steps = 0
        for model in MODELS:
            config = run_config(options, model)
            done = read_history(RunPaths(run_dir(options, model)).history)
            steps += max(0, config.epochs - len(done)) * math.ceil(train_size / config.batch_size)
        seconds = steps * _seconds_per_step(dataset, options.width)
        total += seconds
        outputs = " and ".join(spec.name for spec in DATASET_OUTPUTS[dataset])
        lines.append(f"{outputs}: {steps:,} training steps to run, ~{_duration(seconds)}")
    lines.append(
        f"in all ~{_duration(total)} of training on a 2-core CPU (our measurements; a GPU is "
        "far faster), plus evaluation"
    )
    return "\n".join(lines)


def _train_split_size(options: Options) -> int:
    from wae_tf import data

    if options.dataset == "celeba":
        return len(data.celeba_split_names(options.data_dir, "train", split_rule_of(options)))
    return 60_000  # MNIST, both split rules [paper; code datahandler.py:437-470]


def _seconds_per_step(dataset: str, width: int | None) -> float:
    measured = CPU_SECONDS_PER_STEP[dataset]
    if width in measured:
        return measured[width]
    nearest = min((w for w in measured if w is not None), key=lambda w: abs(w - width))
    return min(measured[nearest] * (width / nearest) ** 2, measured[None])


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ======================================================================================
# The command lines
# ======================================================================================


def main(argv: Sequence[str], spec: OutputSpec) -> None:
    """A script's `main` under `wae_tf.console.run_cli` (--help exits 0, a stray argument is
    one line): the parsed global flags -> Options -> `make(spec, options)`; a known error is
    one line on stderr (`exit_on_error`), success one line on stdout."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    console.quiet_tensorflow_startup()  # Keras now, its start-up lines once at most
    with exit_on_error(spec.name):
        payload = make(spec, options_from_flags(flags.FLAGS, spec.dataset))
    print(report.done_message(spec.name, payload))


def main_all(argv: Sequence[str]) -> None:
    """`reproduce.all`'s `main`: the options of both datasets from the same flags, every
    check (`checked_all`), one time estimate, then every output (`make_all`); one line per
    output at the end."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    console.quiet_tensorflow_startup()  # Keras now, its start-up lines once at most
    with exit_on_error("all"):
        options = checked_all({d: options_from_flags(flags.FLAGS, d) for d in DATASET_OUTPUTS})
        print(f"all: {time_estimate(options)}", flush=True)
        payloads = make_all(options)
    names = [spec.name for outputs in DATASET_OUTPUTS.values() for spec in outputs]
    for name, payload in zip(names, payloads, strict=True):
        print(report.done_message(name, payload))
