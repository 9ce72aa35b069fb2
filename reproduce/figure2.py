"""Figure 2 of the paper: VAE | WAE-MMD | WAE-GAN on MNIST, with numbers.

    python -m reproduce.figure2 --quick        # ~1 min on CPU; MNIST fetched into the cache
    python -m reproduce.figure2 --data_dir=PATH/mnist [--workdir=runs] \
        [--out_dir=runs/figure2]

    # one model per machine / sitting, then the figure from the three bundles:
    python -m reproduce.figure2 --data_dir=... --models=wae_gan --out_dir=out_gpu1
    python -m reproduce.figure2 --assemble=out_a/bundles/figure2_vae,... --out_dir=results/figure2

Trains the models with the paper's MNIST configs (or reuses finished runs in
<workdir>/mnist[_tags]/<model>, see `reproduce.runs.run_group`) and writes one bundle per
model to <out_dir>/bundles/figure2_<model>/ (`reproduce.bundles`: panels, numbers, history,
config, provenance; no weights). With all three models (the default) or with --assemble, it
then draws, from the bundles read back from disk, to --out_dir (default runs/figure2):

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

from collections.abc import Sequence
from typing import Any

from absl import flags

from reproduce import bundles, figure
from reproduce.bundles import BundleSet
from reproduce.options import MODEL_LABELS, MODELS, Options, define_flags
from reproduce.outputs import fmt, label_lines, markdown_table, provenance_lines
from reproduce.sample_metrics import MNIST_SHARED
from wae_tf import console

DATASET = "mnist"
NAME = "figure2"
KIND = bundles.KINDS[DATASET]


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name in MODELS:
        m = payload["models"].get(name)
        if m is None:
            rows.append([MODEL_LABELS[name], *["missing"] * 6])
            continue
        rows.append(
            [
                MODEL_LABELS[name],
                fmt(m["test_reconstruction_cost"]),
                fmt(m["mnist_frechet_score"]),
                f"{m['epochs']} / {m['paper_epochs']}",
                f"{m['train_size']:,}",
                f"{m['test_size']:,}",
                fmt(m["seconds_per_epoch"], ".3g"),
            ]
        )
    classifier = payload["mnist_classifier"]
    return "\n".join(
        [
            "# Figure 2 (MNIST): VAE vs WAE-MMD vs WAE-GAN",
            "",
            f"**{payload['scale']['description']}**",
            "",
            *label_lines(payload["labels"]),
            "![Figure 2](figure2.png)",
            "",
            markdown_table(
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
            f"{fmt(classifier['test_accuracy'], '.4f')} "
            f"({classifier['epochs']} epochs on {classifier['train_images']:,} images; weights "
            f"sha256 {classifier['weights_sha256'][:12]}). "
            "Lower is better; 0 for two halves of the test set up to sampling noise.",
            "- Training curves: [figure2_training_curves.png](figure2_training_curves.png).",
            "",
            *provenance_lines(payload),
        ]
    )


def assemble(options: Options, bundle_set: BundleSet, start: float) -> dict[str, Any]:
    """Figure 2, its table and the training curves from checked bundles; writes them."""
    first = bundle_set.first
    seeds = first.config["seeds"]
    payload = {
        **figure.assembly_header("figure", NAME, DATASET, options, bundle_set),
        "models": {m: b.numbers(exclude=MNIST_SHARED) for m, b in bundle_set.bundles.items()},
        "mnist_classifier": first.metrics["mnist_classifier"],
        "split": first.config["split"],
        "seeds": {
            "training": seeds["training"],
            "panels": seeds["panels"],
            "panel_samples": seeds["panel_samples"],
            "frechet_samples": seeds["metric_samples"],
        },
        "provenance": figure.assembly_provenance(options, bundle_set, start),
    }
    return figure.write_figure(
        options,
        bundle_set,
        payload,
        title="Figure 2 (MNIST): VAE | WAE-MMD | WAE-GAN",
        figure_number=2,
        magnification=2,
        markdown=markdown,
    )


def make_figure2(options: Options) -> dict[str, Any]:
    """Compute the bundles of --models (or take --assemble's), then, with all three models,
    assemble and write the outputs. Returns the JSON payload (or, for fewer than three
    models, the bundles written)."""
    return figure.make(options, KIND, figure.mnist_bundles, assemble)


def main(argv: Sequence[str]) -> None:
    figure.main(argv, name=NAME, dataset=DATASET, make=make_figure2)


if __name__ == "__main__":
    console.quiet_tensorflow_startup()  # TensorFlow's start-up lines once at most
    for flag in define_flags(flags.FLAGS, fid=False, name=NAME):
        flags.declare_key_flag(flag)  # --help lists this script's flags
    # --help exits 0; a bad flag, a stray argument or a known error is one line
    console.run_cli(main, NAME)
