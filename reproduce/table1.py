"""Table 1 of the paper: FID and sharpness of VAE, WAE-MMD, WAE-GAN and true data on CelebA.

    python -m reproduce.table1 --data_dir=PATH/celeba \\
        --inception_graph=/path/to/classify_image_graph_def.pb [--workdir=runs]
    python -m reproduce.table1 --assemble=DIR1,DIR2,DIR3 --out_dir=results/table1   # bundles

Trains (or reuses: the same runs and bundles as `reproduce.figure3`, so either script
assembles the other's) the models, and writes table1.md and table1.json to --out_dir: ours
beside the paper's numbers (FID 63 / 55 / 42 / 2, sharpness 3e-3 / 6e-3 / 6e-3 / 2e-2), the
scale and the provenance. FID: the Fréchet distance of Inception pool_3 features between
--num_samples (10,000) samples and as many real 64x64 images; "true data" compares two
disjoint real sets (fewer when the data has fewer than twice that: then it is said). The
paper's features are TTUR's graph (inception-2015-12-05, classify_image_graph_def.pb)
[authors, wae issue #7]; --fid_features=keras_inception_v3 is NOT comparable; without a graph
FID is null with the reason. Sharpness: the per-image variance of the 3x3 Laplacian [code,
compute_blurriness], ours (mean, pixels in [0, 1]) beside the code's (min of 30, [-1, 1]).
An --inception_graph that is missing or not the TTUR graph is an error before any training.
"""

from collections.abc import Sequence

from reproduce import cli, pipeline
from reproduce.specs import TABLE1
from wae_tf import console


def main(argv: Sequence[str]) -> None:
    pipeline.main(argv, TABLE1)


if __name__ == "__main__":
    cli.define_script_flags(TABLE1.name)
    console.run_cli(main, TABLE1.name)  # --help exits 0; a bad flag or error is one line
