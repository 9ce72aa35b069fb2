"""Figure 2 of the paper: VAE | WAE-MMD | WAE-GAN on MNIST, with numbers.

    python -m reproduce.figure2 --data_dir=../shared/data/mnist [--workdir=runs] [--out_dir=results]
    python -m reproduce.figure2 --data_dir=../shared/data/mnist --quick --out_dir=/tmp/fig2

    # one model per machine / sitting, then the figure from the three bundles:
    python -m reproduce.figure2 --data_dir=... --models=wae_gan --out_dir=out_gpu1
    python -m reproduce.figure2 --assemble=out_a/bundles/figure2_vae,... --out_dir=results

Trains the models with the paper's MNIST configs (or reuses finished runs in
<workdir>/mnist[_tags]/<model>, see `reproduce.common.run_group`) and writes one bundle per
model to <out_dir>/bundles/figure2_<model>/ (`reproduce.bundles`: panels, numbers, history,
config, provenance; no weights). With all three models (the default) or with --assemble, it
then draws, from the bundles read back from disk, to --out_dir:

  figure2.png                  the paper's layout: columns VAE | WAE-MMD | WAE-GAN; rows test
                               interpolations, test reconstructions (odd rows real, even rows
                               reconstructed), random samples; its title states the scale
  figure2.json, figure2.md     per model: test reconstruction cost c = 0.05 ||x - G(Q(x))||^2
                               [code], the MNIST Fréchet score (LeNet features, 10,000 samples vs
                               10,000 test images; `wae_tf.mnist_classifier`), epochs, train/test
                               sizes, training time; plus scale and provenance (the assembly's
                               and each bundle's)
  figure2_training_curves.png  per-model curves from each run's history.csv

The paper reports no number for Figure 2; the Fréchet score is ours (not an Inception FID).
Bundles from different machines train their own LeNet (cached in <workdir>/mnist_classifier):
copy that folder between machines, or the bundles disagree on the classifier and are refused.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags, logging

from reproduce import bundles, common

DATASET = "mnist"
NAME = "figure2"
KIND = bundles.KINDS[DATASET]
SHARED = ("mnist_classifier",)  # in every bundle's metrics; once in the output
CLASSIFIER_EPOCHS = 5  # 99.06% test accuracy (wae_tf.mnist_classifier docstring)


def weights_sha256(model) -> str:
    """sha256 of a Keras model's weights (dtype, shape and bytes of each, in order)."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.dtype.str}{w.shape}".encode() + w.tobytes())
    return digest.hexdigest()


def mnist_evaluator(options: common.Options):
    """`evaluate(run, test_uint8)` for figure2 bundles: the model's MNIST Fréchet score and
    the classifier's description (its weights' sha256 is its identity). The classifier is
    loaded (or trained and cached) once per process, when first needed."""
    from wae_tf import data, mnist_classifier

    cache: dict[str, Any] = {}

    def setup() -> None:
        logging.info(
            "MNIST Fréchet score: classifier (cached in %s)", options.workdir / "mnist_classifier"
        )
        classifier = mnist_classifier.get_or_train_classifier(
            options.workdir / "mnist_classifier",
            options.data_dir,
            epochs=common.QUICK.classifier_epochs if options.quick else CLASSIFIER_EPOCHS,
            num_train=common.QUICK.classifier_train_examples if options.quick else None,
        )
        test = data.load_uint8(DATASET, options.data_dir, "test")
        reference = common.to_model_range(test[: options.num_samples], "unit")
        info = {
            "path": str(classifier.path),
            "weights_sha256": weights_sha256(classifier.model),
            "test_accuracy": classifier.info.get("test_accuracy"),
            "train_images": classifier.info.get("num_train"),
            "epochs": classifier.info.get("epochs"),
            "num_samples": options.num_samples,
            "num_reference_test_images": len(reference),
            "sample_seed": options.seed + 1,
        }
        if (info["test_accuracy"] or 0.0) < 0.985:
            info["warning"] = (
                "classifier below 98.5% test accuracy (quick run): scores are indicative"
            )
        cache.update(classifier=classifier, reference=reference, info=info)

    def evaluate(run: common.TrainedRun, test: np.ndarray) -> dict[str, Any]:
        if not cache:
            setup()
        n = options.num_samples
        logging.info("%s: Fréchet score of %d samples", common.MODEL_LABELS[run.name], n)
        samples = common.generate_samples(run.model, n, options.seed + 1)
        score = mnist_classifier.mnist_frechet_score(
            cache["classifier"], samples, cache["reference"], pixel_range=(0.0, 1.0)
        )
        return {"mnist_frechet_score": score, "mnist_classifier": cache["info"]}

    return evaluate


def bundle_computation(options: common.Options) -> list[Path]:
    """Compute and write the MNIST bundles of --models."""
    return common.compute_bundles(options, mnist_evaluator(options))


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name in common.MODELS:
        m = payload["models"].get(name)
        if m is None:
            rows.append([common.MODEL_LABELS[name], *["missing"] * 6])
            continue
        rows.append(
            [
                common.MODEL_LABELS[name],
                common.fmt(m["test_reconstruction_cost"]),
                common.fmt(m["mnist_frechet_score"]),
                f"{m['epochs']} / {m['paper_epochs']}",
                f"{m['train_size']:,}",
                f"{m['test_size']:,}",
                common.fmt(m["seconds_per_epoch"], ".3g"),
            ]
        )
    classifier = payload["mnist_classifier"]
    return "\n".join(
        [
            "# Figure 2 (MNIST): VAE vs WAE-MMD vs WAE-GAN",
            "",
            f"**{payload['scale']['description']}**",
            "",
            *common.label_lines(payload["labels"]),
            "![Figure 2](figure2.png)",
            "",
            common.markdown_table(
                [
                    "model",
                    "test reconstruction cost c",
                    "MNIST Fréchet score",
                    "epochs (ours / paper)",
                    "train images",
                    "test images",
                    "s / epoch",
                ],
                rows,
            ),
            "",
            "- c(x, y) = 0.05 ||x - y||^2 summed over pixels, averaged over the test images "
            "[code, l2sq]; the VAE reconstructs from its posterior mean. Lower is better.",
            f"- MNIST Fréchet score (ours; the paper has no MNIST FID): Fréchet distance of "
            f"LeNet penultimate features, {classifier['num_samples']:,} samples vs "
            f"{classifier['num_reference_test_images']:,} test images; classifier test accuracy "
            f"{common.fmt(classifier['test_accuracy'], '.4f')} "
            f"({classifier['epochs']} epochs on {classifier['train_images']:,} images; weights "
            f"sha256 {classifier['weights_sha256'][:12]}). "
            "Lower is better; 0 for two halves of the test set up to sampling noise.",
            "- Training curves: [figure2_training_curves.png](figure2_training_curves.png).",
            "",
            *common.provenance_lines(payload),
        ]
    )


def assemble(
    options: common.Options, bundle_set: bundles.BundleSet, start: float
) -> dict[str, Any]:
    """Figure 2, its table and the training curves from checked bundles; writes them."""
    first = bundle_set.first
    scale = bundle_set.scale(options.out_dir)
    seeds = first.config["seeds"]
    payload = {
        "figure": NAME,
        "dataset": DATASET,
        "scale": scale.to_dict(),
        "labels": bundle_set.labels(),
        "missing_models": list(bundle_set.missing),
        "bundle_differences": bundle_set.differences,
        "models": {m: b.numbers(exclude=SHARED) for m, b in bundle_set.bundles.items()},
        "mnist_classifier": first.metrics["mnist_classifier"],
        "split": first.config["split"],
        "seeds": {
            "training": seeds["training"],
            "panels": seeds["panels"],
            "panel_samples": seeds["panel_samples"],
            "frechet_samples": seeds["metric_samples"],
        },
        "provenance": common.assembly_provenance(options, bundle_set, start),
    }
    title = common.assembled_title("Figure 2 (MNIST): VAE | WAE-MMD | WAE-GAN", bundle_set)
    figure_png, _ = common.render_figure(
        bundles.blank_panels(bundle_set),
        title,
        scale,
        common.figure_caption(bundle_set, 2),
        magnification=2,
        column_labels=common.column_labels(bundle_set),
    )
    curves_png = common.render_training_curves(
        {m: b.history for m, b in bundle_set.bundles.items()},
        f"{title}: training curves",
        scale,
    )
    names = [f"{NAME}.png", f"{NAME}_training_curves.png", f"{NAME}.md", f"{NAME}.json"]
    payload["files"] = [str(options.out_dir / name) for name in names]
    contents = [figure_png, curves_png, markdown(payload), common.json_bytes(payload)]
    common.write_outputs(options.out_dir, dict(zip(names, contents, strict=True)))
    return payload


def make_figure2(options: common.Options) -> dict[str, Any]:
    """Compute the bundles of --models (or take --assemble's), then, with all three models,
    assemble and write the outputs. Returns the JSON payload (or, for fewer than three
    models, the bundles written)."""
    start = time.time()
    bundle_set, written = common.bundles_to_assemble(options, KIND, bundle_computation)
    if bundle_set is None:
        return common.bundles_only_payload(written)
    return assemble(options, bundle_set, start)


def run_with_args(argv: Sequence[str]) -> dict[str, Any]:
    """`python -m reproduce.figure2 ARGS` in-process (own FlagValues): for tests."""
    return make_figure2(common.parse_args(argv, DATASET, fid=False))


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    payload = common.exit_on_error(
        NAME, lambda: make_figure2(common.options_from_flags(flags.FLAGS, DATASET))
    )
    print(common.done_message(NAME, payload))


if __name__ == "__main__":
    common.define_flags(flags.FLAGS, fid=False)
    app.run(main)
