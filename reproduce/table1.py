"""Table 1 of the paper: FID and sharpness of VAE, WAE-MMD, WAE-GAN and true data on CelebA.

    python -m reproduce.table1 --data_dir=../shared/data/celeba_10k \\
        --inception_graph=/path/to/classify_image_graph_def.pb [--workdir=runs]

Trains (or reuses, the same runs as `reproduce.figure3`) the three models, then measures:

  FID        Fréchet distance of Inception pool_3 features (2048-d) between --num_samples
             (10,000) model samples and as many real 64x64 images; "true data": two disjoint
             real sets of --num_samples each (fewer when the data has fewer than twice that:
             then it is said). The paper's features are TTUR's reference graph
             (inception-2015-12-05, `classify_image_graph_def.pb`) [authors, wae issue #7];
             `--fid_features=keras_inception_v3` gives non-comparable numbers. Without the
             graph, FID entries are null with the reason, and the rest is still produced.
  sharpness  mean per-image variance of the 3x3 Laplacian of the grayscale image (VALID),
             images mapped to [0, 1] [code, compute_blurriness; `wae_tf.metrics.sharpness`].

Writes table1.md and table1.json to --out_dir: ours beside the paper's numbers (FID 63 / 55 /
42 / 2, sharpness 3e-3 / 6e-3 / 6e-3 / 2e-2), the scale and the provenance (epochs, sizes,
seeds, git commit, machine, time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from absl import app, flags

from reproduce import common

DATASET = "celeba"
NAME = "table1"
ROWS = ("true_data", *common.MODELS)  # the paper's row order
ROW_LABELS = {"true_data": "true data", **common.MODEL_LABELS}


def markdown(payload: dict[str, Any]) -> str:
    ours_tag = "ours, REDUCED SCALE" if payload["scale"]["reduced"] else "ours"
    rows = []
    for key in ROWS:
        ours, paper = payload["rows"][key], common.PAPER_TABLE1[key]
        rows.append(
            [
                ROW_LABELS[key],
                common.fmt(ours["fid"], ".1f"),
                common.fmt(paper["fid"], ".0f"),
                common.fmt(ours["sharpness"], ".1e"),
                common.fmt(paper["sharpness"], ".0e"),
            ]
        )
    fid, real = payload["fid"], payload["real_images"]
    if "reason" in fid:
        fid_note = f"- **FID: n/a** -- {fid['reason']}"
    else:
        if fid["comparable_to_paper"]:
            fid_note = (
                f"- FID features: pool_3 of the graph `{fid['graph']}` (the paper's protocol "
                "when it is TTUR's inception-2015-12-05 classify_image_graph_def.pb)."
            )
        else:
            fid_note = f"- FID features: {fid['features']} (NOT comparable to the paper's numbers)."
    prov = payload["provenance"]
    models = payload["models"]
    epochs = ", ".join(
        f"{common.MODEL_LABELS[n]} {models[n]['epochs']} (paper {models[n]['paper_epochs']})"
        for n in common.MODELS
    )
    return "\n".join(
        [
            "# Table 1 (CelebA 64x64): FID and sharpness",
            "",
            f"**{payload['scale']['description']}**",
            "",
            common.markdown_table(
                [
                    "model",
                    f"FID ({ours_tag})",
                    "FID (paper)",
                    f"sharpness ({ours_tag})",
                    "sharpness (paper)",
                ],
                rows,
            ),
            "",
            fid_note,
            f"- Samples per model: {payload['num_samples']:,} (seed {payload['seeds']['samples']}); "
            f"real images: {real['source']}; models' FID reference: "
            f"{real['reference_size']:,} real images; true data: "
            f"{real['true_data_set_sizes'][0]:,} vs {real['true_data_set_sizes'][1]:,}.",
            "- Sharpness: mean over images of the variance of the 3x3 Laplacian of the "
            "grayscale image (VALID), images mapped to [0, 1] (`wae_tf.metrics.sharpness`).",
            f"- Training: epochs {epochs}; {models['vae']['train_size']:,} train images; "
            f"training seed {payload['seeds']['training']}; runs in "
            f"`{prov['runs_dir']}`.",
            f"- Provenance: commit {prov['git']['commit']}"
            f"{' (local changes)' if prov['git']['dirty'] else ''}, {prov['machine']['platform']}, "
            f"{prov['machine']['cpu_count']} CPUs, GPUs {prov['machine'].get('gpus')}, "
            f"started {prov['started_at']}, {prov['wall_time_s']} s; `{prov['command_line']}`.",
            "",
        ]
    )


def make_table1(options: common.Options) -> dict[str, Any]:
    """Train/reuse, measure, then write table1.md and table1.json. Returns the JSON payload."""
    start = time.time()
    common.check_out_dir(options.out_dir)
    extractor, fid_info = common.make_fid_extractor(options)  # before training: warns early
    runs = common.train_models(options)
    scale = common.describe_scale(options, runs)
    real = common.load_celeba_real_images(options, options.num_samples)
    rows = common.sample_metrics(
        runs, real, extractor, fid_info, options.num_samples, options.seed + 1
    )
    payload = {
        "table": NAME,
        "dataset": DATASET,
        "scale": scale.to_dict(),
        "rows": rows,
        "paper": common.PAPER_TABLE1,
        "fid": fid_info,
        "real_images": real.to_dict(),
        "num_samples": options.num_samples,
        "models": {name: run.summary() for name, run in runs.items()},
        "split": common.split_rule_text(options),
        "seeds": {"training": options.seed, "samples": options.seed + 1},
        "provenance": common.provenance(options, start),
    }
    names = [f"{NAME}.md", f"{NAME}.json"]
    payload["files"] = [str(options.out_dir / name) for name in names]
    common.write_outputs(
        options.out_dir,
        {names[0]: markdown(payload), names[1]: common.json_bytes(payload)},
    )
    return payload


def run_with_args(argv: Sequence[str]) -> dict[str, Any]:
    """`python -m reproduce.table1 ARGS` in-process (own FlagValues): for tests."""
    return make_table1(common.parse_args(argv, DATASET, fid=True))


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    options = common.options_from_flags(flags.FLAGS, DATASET)
    payload = common.exit_on_error(NAME, lambda: make_table1(options))
    print(f"{NAME}: {payload['scale']['description']}; wrote {', '.join(payload['files'])}")


if __name__ == "__main__":
    common.define_flags(flags.FLAGS, fid=True)
    app.run(main)
