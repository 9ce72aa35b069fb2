"""Figure 2 of the paper: VAE | WAE-MMD | WAE-GAN on MNIST, with numbers.

    python -m reproduce.figure2 --data_dir=../shared/data/mnist [--workdir=runs] [--out_dir=results]
    python -m reproduce.figure2 --data_dir=../shared/data/mnist --quick --out_dir=/tmp/fig2

Trains the three models with the paper's MNIST configs (or reuses finished runs in
<workdir>/mnist[_tags]/<model>, see `reproduce.common.run_group`), then writes to --out_dir:

  figure2.png                  the paper's layout: columns VAE | WAE-MMD | WAE-GAN; rows test
                               interpolations, test reconstructions (odd rows real, even rows
                               reconstructed), random samples; its title states the scale
  figure2.json, figure2.md     per model: test reconstruction cost c = 0.05 ||x - G(Q(x))||^2
                               [code], the MNIST Fréchet score (LeNet features, 10,000 samples vs
                               10,000 test images; `wae_tf.mnist_classifier`), epochs, train/test
                               sizes, training time; plus scale and provenance
  figure2_training_curves.png  per-model curves from each run's history.csv

The paper reports no number for Figure 2; the Fréchet score is ours (not an Inception FID).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags, logging

from reproduce import common

DATASET = "mnist"
NAME = "figure2"
CLASSIFIER_EPOCHS = 5  # 99.06% test accuracy (wae_tf.mnist_classifier docstring)


def mnist_frechet_scores(options: common.Options, runs: dict[str, common.TrainedRun]) -> dict:
    """Per-model Fréchet scores and the classifier's description."""
    from wae_tf import data, mnist_classifier

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
    scores = {}
    for name, run in runs.items():
        logging.info(
            "%s: Fréchet score of %d samples", common.MODEL_LABELS[name], options.num_samples
        )
        samples = common.generate_samples(run.model, options.num_samples, options.seed + 1)
        scores[name] = mnist_classifier.mnist_frechet_score(
            classifier, samples, reference, pixel_range=(0.0, 1.0)
        )
    info = {
        "path": str(classifier.path),
        "test_accuracy": classifier.info.get("test_accuracy"),
        "train_images": classifier.info.get("num_train"),
        "epochs": classifier.info.get("epochs"),
        "num_samples": options.num_samples,
        "num_reference_test_images": len(reference),
        "sample_seed": options.seed + 1,
    }
    if (info["test_accuracy"] or 0.0) < 0.985:
        info["warning"] = "classifier below 98.5% test accuracy (quick run): scores are indicative"
    return {"scores": scores, "classifier": info}


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name in common.MODELS:
        m = payload["models"][name]
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
    prov = payload["provenance"]
    return "\n".join(
        [
            "# Figure 2 (MNIST): VAE vs WAE-MMD vs WAE-GAN",
            "",
            f"**{payload['scale']['description']}**",
            "",
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
            f"({classifier['epochs']} epochs on {classifier['train_images']:,} images). "
            "Lower is better; 0 for two halves of the test set up to sampling noise.",
            "- Training curves: [figure2_training_curves.png](figure2_training_curves.png).",
            f"- Provenance: commit {prov['git']['commit']}"
            f"{' (local changes)' if prov['git']['dirty'] else ''}, {prov['machine']['platform']}, "
            f"{prov['machine']['cpu_count']} CPUs, GPUs {prov['machine'].get('gpus')}, "
            f"started {prov['started_at']}, {prov['wall_time_s']} s; `{prov['command_line']}`.",
            "",
        ]
    )


def make_figure2(options: common.Options) -> dict[str, Any]:
    """Train/reuse, compute, then write every output file. Returns the JSON payload."""
    start = time.time()
    result = common.compute_figure(options)
    frechet = mnist_frechet_scores(options, result.runs)
    for name, score in frechet["scores"].items():
        result.numbers[name]["mnist_frechet_score"] = score
    payload = {
        "figure": NAME,
        "dataset": DATASET,
        "scale": result.scale.to_dict(),
        "models": result.numbers,
        "mnist_classifier": frechet["classifier"],
        "split": common.split_rule_text(options),
        "seeds": {
            "training": options.seed,
            "panels": options.seed + common.PANEL_SEED_OFFSET,
            "panel_samples": options.seed + common.SAMPLE_SEED_OFFSET,
            "frechet_samples": options.seed + 1,
        },
        "provenance": common.provenance(options, start),
    }
    title = "Figure 2 (MNIST): VAE | WAE-MMD | WAE-GAN"
    caption = common.figure_caption(options, result, 2)
    figure_png, _ = common.render_figure(
        result.panels, title, result.scale, caption, magnification=2
    )
    curves_png = common.render_training_curves(
        result.runs, f"{title}: training curves", result.scale
    )
    names = [f"{NAME}.png", f"{NAME}_training_curves.png", f"{NAME}.md", f"{NAME}.json"]
    payload["files"] = [str(options.out_dir / name) for name in names]
    contents = [figure_png, curves_png, markdown(payload), common.json_bytes(payload)]
    common.write_outputs(options.out_dir, dict(zip(names, contents, strict=True)))
    return payload


def run_with_args(argv: Sequence[str]) -> dict[str, Any]:
    """`python -m reproduce.figure2 ARGS` in-process (own FlagValues): for tests."""
    return make_figure2(common.parse_args(argv, DATASET, fid=False))


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = common.options_from_flags(flags.FLAGS, DATASET)
    payload = common.exit_on_error(NAME, lambda: make_figure2(options))
    print(f"{NAME}: {payload['scale']['description']}; wrote {', '.join(payload['files'])}")


if __name__ == "__main__":
    common.define_flags(flags.FLAGS, fid=False)
    app.run(main)
