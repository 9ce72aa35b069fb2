"""Table 1 of the paper: FID and sharpness of VAE, WAE-MMD, WAE-GAN and true data on CelebA.

    python -m reproduce.table1 --data_dir=PATH/celeba \\
        --inception_graph=/path/to/classify_image_graph_def.pb [--workdir=runs]
    python -m reproduce.table1 --assemble=DIR1,DIR2,DIR3 --out_dir=results/table1   # bundles

Trains (or reuses, the same runs as `reproduce.figure3`) the models and writes one CelebA
bundle per model to <out_dir>/bundles/figure3_table1_<model>/ -- the same bundles as
`reproduce.figure3`'s, so either script assembles the other's. The numbers:

  FID        Fréchet distance of Inception pool_3 features (2048-d) between --num_samples
             (10,000) model samples and as many real 64x64 images; "true data": two disjoint
             real sets of --num_samples each (fewer when the data has fewer than twice that:
             then it is said). The paper's features are TTUR's reference graph
             (inception-2015-12-05, `classify_image_graph_def.pb`) [authors, wae issue #7];
             `--fid_features=keras_inception_v3` gives non-comparable numbers. Without the
             graph, FID entries are null with the reason, and the rest is still produced.
  sharpness  the per-image variance of the 3x3 Laplacian of the grayscale image (VALID)
             [code, compute_blurriness], two statistics side by side: ours, the mean over the
             samples with images mapped to [0, 1] (`wae_tf.metrics.mean_sharpness`), and the
             official code's, the minimum over a batch of 30 with images in [-1, 1]
             (`wae_tf.metrics.code_sharpness`).

Writes table1.md and table1.json to --out_dir (default runs/table1; with all three models,
or --assemble): ours beside the paper's numbers (FID 63 / 55 / 42 / 2, sharpness 3e-3 /
6e-3 / 6e-3 / 2e-2), the scale and the provenance (epochs, sizes, seeds, git commit,
machine, time). An --inception_graph that is missing or not the TTUR graph is an error
before any training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from absl import flags

from reproduce import bundles, figure
from reproduce.bundles import BundleSet
from reproduce.options import MODEL_LABELS, MODELS, Options, define_flags
from reproduce.outputs import (
    fmt,
    json_bytes,
    label_lines,
    markdown_table,
    provenance_lines,
    write_outputs,
)
from reproduce.sample_metrics import CELEBA_SHARED, SHARPNESS_DEFINITIONS, sharpness_note
from wae_tf import console

DATASET = "celeba"
NAME = "table1"
KIND = bundles.KINDS[DATASET]
ROWS = ("true_data", *MODELS)  # the paper's row order
ROW_LABELS = {"true_data": "true data", **MODEL_LABELS}
# Table 1 of the paper (CelebA): FID (smaller is better) and sharpness [paper, Table 1].
PAPER_TABLE1 = {
    "true_data": {"fid": 2.0, "sharpness": 2e-2},
    "vae": {"fid": 63.0, "sharpness": 3e-3},
    "wae_mmd": {"fid": 55.0, "sharpness": 6e-3},
    "wae_gan": {"fid": 42.0, "sharpness": 6e-3},
}


def markdown(payload: dict[str, Any]) -> str:
    ours_tag = "ours, REDUCED SCALE" if payload["scale"]["reduced"] else "ours"
    rows = []
    for key in ROWS:
        ours, paper = payload["rows"].get(key), PAPER_TABLE1[key]
        if ours is None:
            rows.append([ROW_LABELS[key], "missing", fmt(paper["fid"], ".0f")])
            rows[-1] += ["missing", "missing", fmt(paper["sharpness"], ".0e")]
            continue
        rows.append(
            [
                ROW_LABELS[key],
                fmt(ours["fid"], ".1f"),
                fmt(paper["fid"], ".0f"),
                fmt(ours["sharpness"], ".1e"),
                fmt(ours["sharpness_code"], ".1e"),
                fmt(paper["sharpness"], ".0e"),
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
    models = payload["models"]
    epochs = ", ".join(
        f"{MODEL_LABELS[n]} {models[n]['epochs']} (paper {models[n]['paper_epochs']})"
        for n in models
    )
    train_sizes = sorted({f"{m['train_size']:,}" for m in models.values()})
    return "\n".join(
        [
            "# Table 1 (CelebA 64x64): FID and sharpness",
            "",
            f"**{payload['scale']['description']}**",
            "",
            *label_lines(payload["labels"]),
            markdown_table(
                [
                    "model",
                    f"FID ({ours_tag})",
                    "FID (paper)",
                    f"sharpness ({ours_tag}: mean, [0, 1])",
                    f"sharpness ({ours_tag}, code's statistic: min of 30, [-1, 1])",
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
            sharpness_note(payload["num_samples"]),
            f"- Training: epochs {epochs}; {' / '.join(train_sizes)} train images; "
            f"training seed {payload['seeds']['training']}.",
            "",
            *provenance_lines(payload),
        ]
    )


def assemble(options: Options, bundle_set: BundleSet, start: float) -> dict[str, Any]:
    """Table 1 from checked CelebA bundles; writes table1.md and table1.json."""
    first = bundle_set.first
    row_keys = ("sharpness", "sharpness_code", "num_samples", "fid", "fid_reason")
    rows = {"true_data": {**first.metrics["true_data"], "from_bundle_of": first.model}}
    for name, b in bundle_set.bundles.items():
        rows[name] = {k: b.metrics[k] for k in row_keys if k in b.metrics}
    payload = {
        **figure.assembly_header("table", NAME, DATASET, options, bundle_set),
        "rows": rows,
        "paper": PAPER_TABLE1,
        "sharpness_definitions": SHARPNESS_DEFINITIONS,
        "fid": first.metrics["fid_info"],
        "real_images": first.metrics["real_images"],
        "num_samples": first.settings["num_samples"],
        "models": {m: b.numbers(exclude=CELEBA_SHARED) for m, b in bundle_set.bundles.items()},
        "split": first.config["split"],
        "seeds": {
            "training": first.config["seeds"]["training"],
            "samples": first.config["seeds"]["metric_samples"],
        },
        "provenance": figure.assembly_provenance(options, bundle_set, start),
    }
    names = [f"{NAME}.md", f"{NAME}.json"]
    payload["files"] = [str(options.out_dir / name) for name in names]
    write_outputs(
        options.out_dir,
        {names[0]: markdown(payload), names[1]: json_bytes(payload)},
    )
    return payload


def make_table1(options: Options) -> dict[str, Any]:
    """Compute the CelebA bundles of --models (or take --assemble's, e.g. figure3's), then,
    with all three models, write table1.md and table1.json. Returns the JSON payload (or,
    for fewer than three models, the bundles written)."""
    return figure.make(options, KIND, figure.celeba_bundles, assemble)


def main(argv: Sequence[str]) -> None:
    figure.main(argv, name=NAME, dataset=DATASET, make=make_table1)


if __name__ == "__main__":
    console.quiet_tensorflow_startup()  # TensorFlow's start-up lines once at most
    for flag in define_flags(flags.FLAGS, fid=True, name=NAME):
        flags.declare_key_flag(flag)  # --help lists this script's flags
    # --help exits 0; a bad flag, a stray argument or a known error is one line
    console.run_cli(main, NAME)
