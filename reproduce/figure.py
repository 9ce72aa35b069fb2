"""The pipeline Figures 2-3 and Table 1 share: bundles in, figure / table files out.

Every check that can fail runs first, before anything is announced or trained
(`checked_data`: the output folders writable, the data found -- MNIST may be downloaded,
`wae_tf.data.resolve_data_dir` -- and readable; for CelebA the Inception graph when one
is asked for). Then each model goes through `compute_bundles`: train it with the paper config (or reuse its
finished run, `reproduce.runs`), draw its panels (`reproduce.panels`), compute its numbers
(`reproduce.inference`, `reproduce.sample_metrics`), write its bundle (`reproduce.bundles`).
The figure / table is then assembled from the bundles read back from disk -- the three
just written (one-shot run), or three made elsewhere (`--assemble`) -- by the script's
`assemble`, which renders (`reproduce.render`) and writes (`reproduce.outputs`) its files.
`make` is that whole path for one script.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags, logging

from reproduce import bundles, outputs, render
from reproduce.bundles import BundleSet
from reproduce.inference import reconstruction_costs
from reproduce.options import (
    DATASET_LABELS,
    MODEL_LABELS,
    MODELS,
    Options,
    check_writable,
    exit_on_error,
    options_from_flags,
)
from reproduce.outputs import OutDirLock
from reproduce.panels import choose_panel_inputs, model_panels
from reproduce.runs import load_test_images, load_train_images, train_model
from reproduce.sample_metrics import (
    Evaluator,
    celeba_evaluator,
    make_fid_extractor,
    mnist_evaluator,
)
from reproduce.scale import Scale
from wae_tf.streams import to_model_range

Assemble = Callable[[Options, BundleSet, float], dict[str, Any]]


def checked_folders(options: Options) -> Options:
    """Before anything is announced or trained: --out_dir and --workdir are writable and
    the data folder is found (--data_dir, $WAE_TF_DATA_DIR/<name>, else MNIST is fetched
    into the cache: `wae_tf.data.resolve_data_dir`). Returns the options with the resolved
    --data_dir, so that nothing is looked up (or fetched) twice. Errors name the flag."""
    from wae_tf import data

    check_writable(options.out_dir, "--out_dir")
    check_writable(options.workdir, "--workdir")
    root = data.resolve_data_dir(options.dataset, options.data_dir)
    return dataclasses.replace(options, data_dir=root)


def checked_data(options: Options) -> tuple[Options, np.ndarray]:
    """`checked_folders`, then both splits read as training and the numbers read them
    (CelebA: decoded into the cache). Returns the options with the resolved --data_dir
    and the test images (uint8, the first --eval_examples). Errors name --data_dir."""
    from wae_tf import data

    options = checked_folders(options)
    try:
        # Read (and for CelebA decode into the cache) what training will read, then drop it.
        load_train_images(options)
        test = load_test_images(options)
    except data.DataError as e:
        if "--data_dir" in str(e):
            raise
        raise data.DataError(f"{e}; fix the data or pass another --data_dir") from e
    return options, test


def compute_bundles(
    options: Options, test: np.ndarray, evaluate: Evaluator, lock: OutDirLock
) -> list[Path]:
    """Take --out_dir's `lock`, then for each model of --models, in turn: train it (or
    reuse its finished run), draw its column of panels, compute the test reconstruction
    cost on `test` (uint8, from `checked_data`) and `evaluate(run, test)`'s numbers, and
    write its bundle (`reproduce.bundles`), so that a later failure keeps the bundles
    already written. Returns the bundle folders."""
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
        numbers = {**numbers, "test_size": len(test), **evaluate(run, test)}
        written.append(bundles.write_bundle(options, run, panels, numbers, start))
    return written


def mnist_bundles(options: Options, lock: OutDirLock) -> list[Path]:
    """Compute and write the MNIST bundles of --models (Figure 2)."""
    options, test = checked_data(options)
    return compute_bundles(options, test, mnist_evaluator(options), lock)


def celeba_bundles(options: Options, lock: OutDirLock) -> list[Path]:
    """Compute and write the CelebA bundles of --models (Figure 3 and Table 1 share them).
    An --inception_graph (or --fid_features=keras_inception_v3) that cannot be loaded is
    an error here, before any training."""
    options = checked_folders(options)
    extractor, fid_info = make_fid_extractor(options)  # loaded before the (long) decode
    options, test = checked_data(options)
    if extractor is None:
        logging.warning("FID will be null: %s (sharpness is still measured)", fid_info["reason"])
    return compute_bundles(options, test, celeba_evaluator(options, extractor, fid_info), lock)


Compute = Callable[[Options, OutDirLock], list[Path]]


def bundles_to_assemble(
    options: Options, kind: str, compute: Compute, lock: OutDirLock
) -> tuple[BundleSet | None, list[Path]]:
    """(the checked `reproduce.bundles.BundleSet` to assemble, or None, and the bundle
    folders this run wrote). --assemble: its folders, nothing computed. Otherwise
    `compute(options)` writes the bundles of --models; with all three, they are read back
    from disk and assembled (the one-shot run takes the same path as --assemble), with
    fewer there is nothing to assemble (None). --out_dir's `lock` is taken before
    anything is written there."""
    written: list[Path] = []
    if options.assemble:
        check_writable(options.out_dir, "--out_dir")
        paths = list(options.assemble)
    else:
        paths = written = compute(options, lock)
        if not options.one_shot:
            return None, written
    bundle_set = bundles.load_bundles(
        paths,
        kind,
        allow_mixed=options.allow_mixed_bundles,
        allow_partial=options.allow_partial_bundles,
    )
    lock.acquire()  # --assemble: after the checks (a refused assembly creates nothing)
    return bundle_set, written


def bundles_only_payload(written: Sequence[Path]) -> dict[str, Any]:
    """What a --models run of fewer than three models returns: its bundles, no figure."""
    return {
        "bundles": [str(p) for p in written],
        "files": [str(p) for p in written],
        "assembled": False,
        "next": "assemble three bundles with --assemble=DIR1,DIR2,DIR3",
    }


def make(options: Options, kind: str, compute: Compute, assemble: Assemble) -> dict[str, Any]:
    """Compute the bundles of --models with `compute` (or take --assemble's), then, with all
    three models, `assemble(options, bundle_set, start_time)` the outputs. Returns the JSON
    payload (or, for fewer than three models, the bundles written). From the first write
    to the last, --out_dir is locked (`reproduce.outputs.OutDirLock`)."""
    start = time.time()
    with OutDirLock(options.out_dir) as lock:
        bundle_set, written = bundles_to_assemble(options, kind, compute, lock)
        if bundle_set is None:
            return bundles_only_payload(written)
        return assemble(options, bundle_set, start)


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


def assembled_title(title: str, bundle_set: BundleSet) -> str:
    """`title`, prefixed with "PARTIAL: missing ..." when models are missing."""
    partial = [label for label in bundle_set.labels() if label.startswith("PARTIAL")]
    return " -- ".join([*partial, title])


def column_labels(bundle_set: BundleSet) -> dict[str, str]:
    return {m: MODEL_LABELS[m] + (" (missing)" if m in bundle_set.missing else "") for m in MODELS}


def assembly_header(
    what: str, name: str, dataset: str, options: Options, bundle_set: BundleSet
) -> dict[str, Any]:
    """The keys every assembled output's JSON starts with: what it is ({what: name}), the
    dataset, its scale, the column labels, missing models and how its bundles differ."""
    return {
        what: name,
        "dataset": dataset,
        "scale": bundle_set.scale(options.out_dir).to_dict(),
        "labels": bundle_set.labels(),
        "missing_models": list(bundle_set.missing),
        "bundle_differences": bundle_set.differences,
    }


def assembly_provenance(options: Options, bundle_set: BundleSet, start_time: float) -> dict:
    """The assembly's own provenance (this process) and, per model, its bundle's."""
    return {**outputs.provenance(options, start_time), "bundles": bundle_set.provenance()}


def write_figure(
    options: Options,
    bundle_set: BundleSet,
    payload: dict[str, Any],
    *,
    title: str,
    figure_number: int,
    magnification: int,
    markdown: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Render figure<N>.png (the panels, titled `title`, PARTIAL when models are missing),
    figure<N>_training_curves.png, figure<N>.md (`markdown(payload)`) and figure<N>.json
    (`payload`, with "files" added), and write the four to --out_dir. Returns the payload."""
    name = f"figure{figure_number}"
    scale = Scale.from_dict(payload["scale"])
    title = assembled_title(title, bundle_set)
    figure_png, _ = render.render_figure(
        bundles.blank_panels(bundle_set),
        title,
        scale,
        figure_caption(bundle_set, figure_number),
        magnification=magnification,
        column_labels=column_labels(bundle_set),
    )
    curves_png = render.render_training_curves(
        {m: b.history for m, b in bundle_set.bundles.items()},
        f"{title}: training curves",
        scale,
    )
    names = [f"{name}.png", f"{name}_training_curves.png", f"{name}.md", f"{name}.json"]
    payload["files"] = [str(options.out_dir / n) for n in names]
    contents = [figure_png, curves_png, markdown(payload), outputs.json_bytes(payload)]
    outputs.write_outputs(options.out_dir, dict(zip(names, contents, strict=True)))
    return payload


def main(
    argv: Sequence[str], *, name: str, dataset: str, make: Callable[[Options], dict[str, Any]]
) -> None:
    """A script's `main` under `wae_tf.console.run_cli` (--help exits 0, a stray argument is
    one line): the parsed global flags -> Options ->
    `make(options)`; a known error is one line on stderr (`exit_on_error`), success one
    line on stdout (`reproduce.outputs.done_message`)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    payload = exit_on_error(name, lambda: make(options_from_flags(flags.FLAGS, dataset)))
    print(outputs.done_message(name, payload))
