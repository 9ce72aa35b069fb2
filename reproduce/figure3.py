"""Figure 3 of the paper: VAE | WAE-MMD | WAE-GAN on CelebA 64x64, with numbers.

    python -m reproduce.figure3 --data_dir=PATH/celeba [--workdir=runs] \\
        [--inception_graph=/path/to/classify_image_graph_def.pb]
    python -m reproduce.figure3 --data_dir=PATH/celeba --quick --out_dir=/tmp/fig3

    # one model per machine / sitting, then the figure from the three bundles:
    python -m reproduce.figure3 --data_dir=... --models=vae --out_dir=out_a
    python -m reproduce.figure3 --assemble=out_a/bundles/figure3_table1_vae,... \
        --out_dir=results/figure3

Trains the models with the paper's CelebA configs (or reuses finished runs in
<workdir>/celeba[_tags]/<model>; `reproduce.table1` uses the same runs) and writes one bundle
per model to <out_dir>/bundles/figure3_table1_<model>/ (`reproduce.bundles`; Table 1 is
assembled from the same bundles). With all three models (the default) or with --assemble, it
then draws, from the bundles read back from disk, to --out_dir (default runs/figure3):

  figure3.png                  the paper's layout (see `reproduce.figure2`); its title states the
                               scale, its caption the data and the split rule
                               (`wae_tf.data.celeba_split_rule`)
  figure3.json, figure3.md     per model: test reconstruction cost c = 0.05 ||x - G(Q(x))||^2
                               [code], sample sharpness both ways (ours: mean, pixels in [0, 1];
                               the official code's: min over 30, pixels in [-1, 1]), FID (null
                               with the reason when no Inception graph is given), epochs, sizes,
                               time; provenance
  figure3_training_curves.png  per-model curves from each run's history.csv
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from absl import flags

from reproduce import bundles, figure
from reproduce.bundles import BundleSet
from reproduce.options import MODEL_LABELS, MODELS, Options, define_flags
from reproduce.outputs import fmt, label_lines, markdown_table, provenance_lines
from reproduce.sample_metrics import CELEBA_SHARED, SHARPNESS_DEFINITIONS, sharpness_note
from wae_tf import console

DATASET = "celeba"
NAME = "figure3"
KIND = bundles.KINDS[DATASET]


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name in MODELS:
        m = payload["models"].get(name)
        if m is None:
            rows.append([MODEL_LABELS[name], *["missing"] * 8])
            continue
        rows.append(
            [
                MODEL_LABELS[name],
                fmt(m["test_reconstruction_cost"]),
                fmt(m["fid"]),
                fmt(m["sharpness"], ".2e"),
                fmt(m["sharpness_code"], ".2e"),
                f"{m['epochs']} / {m['paper_epochs']}",
                f"{m['train_size']:,}",
                f"{m['test_size']:,}",
                fmt(m["seconds_per_epoch"], ".3g"),
            ]
        )
    fid = payload["fid"]
    fid_note = (
        f"- FID: null ({fid['reason']})."
        if "reason" in fid
        else f"- FID: {fid['features']} features"
        f"{'' if fid['comparable_to_paper'] else ' (NOT comparable to the paper)'}; "
        f"real images: {payload['real_images']['source']}."
    )
    return "\n".join(
        [
            "# Figure 3 (CelebA 64x64): VAE vs WAE-MMD vs WAE-GAN",
            "",
            f"**{payload['scale']['description']}**",
            "",
            *label_lines(payload["labels"]),
            "![Figure 3](figure3.png)",
            "",
            markdown_table(
                [
                    "model",
                    "test reconstruction cost c",
                    "FID",
                    "sharpness (ours: mean, [0, 1])",
                    "sharpness (code's: min of 30, [-1, 1])",
                    "epochs (ours / paper)",
                    "train images",
                    "test images",
                    "s / epoch",
                ],
                rows,
            ),
            "",
            f"- Data: {payload['split']}. Real test images' sharpness: ours "
            f"{fmt(payload['test_images_sharpness'], '.2e')}, code's "
            f"{fmt(payload['test_images_sharpness_code'], '.2e')}.",
            "- c(x, y) = 0.05 ||x - y||^2 summed over pixels (images in [-1, 1]), averaged over "
            "the test images [code, l2sq]; the VAE reconstructs from its posterior mean.",
            sharpness_note(payload["num_samples"]),
            fid_note,
            "- Training curves: [figure3_training_curves.png](figure3_training_curves.png).",
            "",
            *provenance_lines(payload),
        ]
    )


def assemble(options: Options, bundle_set: BundleSet, start: float) -> dict[str, Any]:
    """Figure 3, its table and the training curves from checked bundles; writes them."""
    first = bundle_set.first
    seeds = first.config["seeds"]
    payload = {
        **figure.assembly_header("figure", NAME, DATASET, options, bundle_set),
        "models": {m: b.numbers(exclude=CELEBA_SHARED) for m, b in bundle_set.bundles.items()},
        "num_samples": first.settings["num_samples"],
        "sharpness_definitions": SHARPNESS_DEFINITIONS,
        "test_images_sharpness": first.metrics["test_images_sharpness"],
        "test_images_sharpness_code": first.metrics["test_images_sharpness_code"],
        "fid": first.metrics["fid_info"],
        "real_images": first.metrics["real_images"],
        "split": first.config["split"],
        "seeds": {
            "training": seeds["training"],
            "panels": seeds["panels"],
            "panel_samples": seeds["panel_samples"],
            "metric_samples": seeds["metric_samples"],
        },
        "provenance": figure.assembly_provenance(options, bundle_set, start),
    }
    return figure.write_figure(
        options,
        bundle_set,
        payload,
        title="Figure 3 (CelebA 64x64): VAE | WAE-MMD | WAE-GAN",
        figure_number=3,
        magnification=1,
        markdown=markdown,
    )


def make_figure3(options: Options) -> dict[str, Any]:
    """Compute the bundles of --models (or take --assemble's), then, with all three models,
    assemble and write the outputs. Returns the JSON payload (or, for fewer than three
    models, the bundles written)."""
    return figure.make(options, KIND, figure.celeba_bundles, assemble)


def main(argv: Sequence[str]) -> None:
    figure.main(argv, name=NAME, dataset=DATASET, make=make_figure3)


if __name__ == "__main__":
    console.quiet_tensorflow_startup()  # TensorFlow's start-up lines once at most
    for flag in define_flags(flags.FLAGS, fid=True, name=NAME):
        flags.declare_key_flag(flag)  # --help lists this script's flags
    # --help exits 0; a bad flag, a stray argument or a known error is one line
    console.run_cli(main, NAME)
