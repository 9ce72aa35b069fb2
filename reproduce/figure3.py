"""Figure 3 of the paper: VAE | WAE-MMD | WAE-GAN on CelebA 64x64, with numbers.

    python -m reproduce.figure3 --data_dir=../shared/data/celeba_10k [--workdir=runs] \\
        [--inception_graph=/path/to/classify_image_graph_def.pb]
    python -m reproduce.figure3 --data_dir=../shared/data/celeba_10k --quick --out_dir=/tmp/fig3

    # one model per machine / sitting, then the figure from the three bundles:
    python -m reproduce.figure3 --data_dir=... --models=vae --out_dir=out_a
    python -m reproduce.figure3 --assemble=out_a/bundles/figure3_table1_vae,... --out_dir=results

Trains the models with the paper's CelebA configs (or reuses finished runs in
<workdir>/celeba[_tags]/<model>; `reproduce.table1` uses the same runs) and writes one bundle
per model to <out_dir>/bundles/figure3_table1_<model>/ (`reproduce.bundles`; Table 1 is
assembled from the same bundles). With all three models (the default) or with --assemble, it
then draws, from the bundles read back from disk, to --out_dir:

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

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import app, flags

from reproduce import bundles, common

DATASET = "celeba"
NAME = "figure3"
KIND = bundles.KINDS[DATASET]
# In every CelebA bundle's metrics, the same for all models: shown once in the outputs.
SHARED = (
    "fid_info",
    "real_images",
    "true_data",
    "test_images_sharpness",
    "test_images_sharpness_code",
)


def sharpness_note(num_samples: int) -> str:
    """The markdown note that defines both sharpness columns."""
    return (
        "- Sharpness, two statistics of the per-image variance of the 3x3 Laplacian of the "
        "grayscale image (VALID) [code, compute_blurriness]: **ours** = mean over "
        f"{num_samples:,} samples, pixels mapped to [0, 1] (`wae_tf.metrics.mean_sharpness`); "
        "**code's** = minimum over a batch of 30 (the first 30 samples; real: the first 30 "
        "real images), pixels in [-1, 1] as the official code measures CelebA "
        "(`wae_tf.metrics.code_sharpness`; wae.py:351-364, 533-536, 682-692 at 6351565), "
        "i.e. 4x ours for the same image. The paper's Table 1 (true data 2e-2, VAE 3e-3, "
        "WAEs 6e-3) does not say which statistic it reports."
    )


def bundle_computation(options: common.Options) -> list[Path]:
    """Compute and write the CelebA bundles of --models (`reproduce.common.compute_bundles`
    with `reproduce.common.celeba_evaluator`). Shared with `reproduce.table1`."""
    common.check_out_dir(options.out_dir)
    extractor, fid_info = common.make_fid_extractor(options)  # before training: warns early
    return common.compute_bundles(options, common.celeba_evaluator(options, extractor, fid_info))


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name in common.MODELS:
        m = payload["models"].get(name)
        if m is None:
            rows.append([common.MODEL_LABELS[name], *["missing"] * 8])
            continue
        rows.append(
            [
                common.MODEL_LABELS[name],
                common.fmt(m["test_reconstruction_cost"]),
                common.fmt(m["fid"]),
                common.fmt(m["sharpness"], ".2e"),
                common.fmt(m["sharpness_code"], ".2e"),
                f"{m['epochs']} / {m['paper_epochs']}",
                f"{m['train_size']:,}",
                f"{m['test_size']:,}",
                common.fmt(m["seconds_per_epoch"], ".3g"),
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
            *common.label_lines(payload["labels"]),
            "![Figure 3](figure3.png)",
            "",
            common.markdown_table(
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
            f"{common.fmt(payload['test_images_sharpness'], '.2e')}, code's "
            f"{common.fmt(payload['test_images_sharpness_code'], '.2e')}.",
            "- c(x, y) = 0.05 ||x - y||^2 summed over pixels (images in [-1, 1]), averaged over "
            "the test images [code, l2sq]; the VAE reconstructs from its posterior mean.",
            sharpness_note(payload["num_samples"]),
            fid_note,
            "- Training curves: [figure3_training_curves.png](figure3_training_curves.png).",
            "",
            *common.provenance_lines(payload),
        ]
    )


def assemble(
    options: common.Options, bundle_set: bundles.BundleSet, start: float
) -> dict[str, Any]:
    """Figure 3, its table and the training curves from checked bundles; writes them."""
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
        "num_samples": first.settings["num_samples"],
        "sharpness_definitions": common.SHARPNESS_DEFINITIONS,
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
        "provenance": common.assembly_provenance(options, bundle_set, start),
    }
    title = common.assembled_title("Figure 3 (CelebA 64x64): VAE | WAE-MMD | WAE-GAN", bundle_set)
    figure_png, _ = common.render_figure(
        bundles.blank_panels(bundle_set),
        title,
        scale,
        common.figure_caption(bundle_set, 3),
        magnification=1,
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


def make_figure3(options: common.Options) -> dict[str, Any]:
    """Compute the bundles of --models (or take --assemble's), then, with all three models,
    assemble and write the outputs. Returns the JSON payload (or, for fewer than three
    models, the bundles written)."""
    start = time.time()
    bundle_set, written = common.bundles_to_assemble(options, KIND, bundle_computation)
    if bundle_set is None:
        return common.bundles_only_payload(written)
    return assemble(options, bundle_set, start)


def run_with_args(argv: Sequence[str]) -> dict[str, Any]:
    """`python -m reproduce.figure3 ARGS` in-process (own FlagValues): for tests."""
    return make_figure3(common.parse_args(argv, DATASET, fid=True))


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    payload = common.exit_on_error(
        NAME, lambda: make_figure3(common.options_from_flags(flags.FLAGS, DATASET))
    )
    print(common.done_message(NAME, payload))


if __name__ == "__main__":
    common.define_flags(flags.FLAGS, fid=True)
    app.run(main)
