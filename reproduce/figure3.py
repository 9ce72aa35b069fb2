"""Figure 3 of the paper: VAE | WAE-MMD | WAE-GAN on CelebA 64x64, with numbers.

    python -m reproduce.figure3 --data_dir=../shared/data/celeba_10k [--workdir=runs] \\
        [--inception_graph=/path/to/classify_image_graph_def.pb]
    python -m reproduce.figure3 --data_dir=../shared/data/celeba_10k --quick --out_dir=/tmp/fig3

Trains the three models with the paper's CelebA configs (or reuses finished runs in
<workdir>/celeba[_tags]/<model>; `reproduce.table1` uses the same runs), then writes to
--out_dir:

  figure3.png                  the paper's layout (see `reproduce.figure2`); its title states the
                               scale, its caption the data and the split rule
                               (`wae_tf.data.celeba_split_rule`)
  figure3.json, figure3.md     per model: test reconstruction cost c = 0.05 ||x - G(Q(x))||^2
                               [code], sample sharpness, FID (null with the reason when no
                               Inception graph is given), epochs, sizes, time; provenance
  figure3_training_curves.png  per-model curves from each run's history.csv
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from reproduce import common

DATASET = "celeba"
NAME = "figure3"


def celeba_sample_numbers(
    options: common.Options,
    runs: dict[str, common.TrainedRun],
    extractor: Any | None,
    fid_info: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Per-model FID and sharpness; the real images are loaded only when FID can be computed."""
    real = None
    if extractor is not None:
        real = common.load_celeba_real_images(options, options.num_samples)
        fid_info["real_images"] = real.to_dict()
    return common.sample_metrics(
        runs, real, extractor, fid_info, options.num_samples, options.seed + 1
    )


def markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name in common.MODELS:
        m = payload["models"][name]
        rows.append(
            [
                common.MODEL_LABELS[name],
                common.fmt(m["test_reconstruction_cost"]),
                common.fmt(m["fid"]),
                common.fmt(m["sharpness"], ".2e"),
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
        f"real images: {fid['real_images']['source']}."
    )
    prov = payload["provenance"]
    return "\n".join(
        [
            "# Figure 3 (CelebA 64x64): VAE vs WAE-MMD vs WAE-GAN",
            "",
            f"**{payload['scale']['description']}**",
            "",
            "![Figure 3](figure3.png)",
            "",
            common.markdown_table(
                [
                    "model",
                    "test reconstruction cost c",
                    "FID",
                    "sharpness",
                    "epochs (ours / paper)",
                    "train images",
                    "test images",
                    "s / epoch",
                ],
                rows,
            ),
            "",
            f"- Data: {payload['split']}. Real test images' sharpness: "
            f"{common.fmt(payload['test_images_sharpness'], '.2e')}.",
            "- c(x, y) = 0.05 ||x - y||^2 summed over pixels (images in [-1, 1]), averaged over "
            "the test images [code, l2sq]; the VAE reconstructs from its posterior mean.",
            f"- Sharpness: mean Laplacian variance of {payload['num_samples']:,} samples, "
            "images mapped to [0, 1] (`wae_tf.metrics.sharpness`; paper, Table 1: VAE 3e-3, "
            "WAEs 6e-3, true data 2e-2).",
            fid_note,
            "- Training curves: [figure3_training_curves.png](figure3_training_curves.png).",
            f"- Provenance: commit {prov['git']['commit']}"
            f"{' (local changes)' if prov['git']['dirty'] else ''}, {prov['machine']['platform']}, "
            f"{prov['machine']['cpu_count']} CPUs, GPUs {prov['machine'].get('gpus')}, "
            f"started {prov['started_at']}, {prov['wall_time_s']} s; `{prov['command_line']}`.",
            "",
        ]
    )


def make_figure3(options: common.Options) -> dict[str, Any]:
    """Train/reuse, compute, then write every output file. Returns the JSON payload."""
    from wae_tf import metrics

    start = time.time()
    common.check_out_dir(options.out_dir)
    extractor, fid_info = common.make_fid_extractor(options)  # before training: warns early
    result = common.compute_figure(options)
    rows = celeba_sample_numbers(options, result.runs, extractor, fid_info)
    for name in common.MODELS:
        result.numbers[name].update(rows[name])
    payload = {
        "figure": NAME,
        "dataset": DATASET,
        "scale": result.scale.to_dict(),
        "models": result.numbers,
        "num_samples": options.num_samples,
        "test_images_sharpness": metrics.mean_sharpness(result.test_images, (0.0, 255.0)),
        "fid": fid_info,
        "split": common.split_rule_text(options),
        "seeds": {
            "training": options.seed,
            "panels": options.seed + common.PANEL_SEED_OFFSET,
            "panel_samples": options.seed + common.SAMPLE_SEED_OFFSET,
            "metric_samples": options.seed + 1,
        },
        "provenance": common.provenance(options, start),
    }
    title = "Figure 3 (CelebA 64x64): VAE | WAE-MMD | WAE-GAN"
    caption = common.figure_caption(options, result, 3)
    figure_png, _ = common.render_figure(
        result.panels, title, result.scale, caption, magnification=1
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
    """`python -m reproduce.figure3 ARGS` in-process (own FlagValues): for tests."""
    return make_figure3(common.parse_args(argv, DATASET, fid=True))


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = common.options_from_flags(flags.FLAGS, DATASET)
    payload = common.exit_on_error(NAME, lambda: make_figure3(options))
    print(f"{NAME}: {payload['scale']['description']}; wrote {', '.join(payload['files'])}")


if __name__ == "__main__":
    common.define_flags(flags.FLAGS, fid=True)
    app.run(main)
