"""Figure 3 of the paper: VAE | WAE-MMD | WAE-GAN on CelebA 64x64, with numbers.

    python -m reproduce.figure3 --data_dir=PATH/celeba [--workdir=runs] \\
        [--inception_graph=/path/to/classify_image_graph_def.pb]
    python -m reproduce.figure3 --data_dir=PATH/celeba --quick --out_dir=/tmp/fig3

    # one model per machine / sitting, then the figure from the three bundles:
    python -m reproduce.figure3 --data_dir=... --models=vae --out_dir=out_a
    python -m reproduce.figure3 --assemble=out_a/bundles/figure3_table1_vae,... \\
        --out_dir=results/figure3

Trains the models with the paper's CelebA configs (or reuses finished runs in
<workdir>/celeba[_tags]/<model>; `reproduce.table1` uses the same runs and bundles), writes
one bundle per model to <out_dir>/bundles/figure3_table1_<model>/, and, with all three models
(or --assemble), draws to --out_dir: figure3.png (the paper's layout; its caption names the
data split), figure3.md / figure3.json (per model: the test reconstruction cost c, sample
sharpness both ways -- ours: mean, pixels in [0, 1]; the official code's: min over 30, pixels
in [-1, 1] --, FID, or null with the reason when no Inception graph is given; epochs, sizes,
time; provenance) and figure3_training_curves.png.
"""

from collections.abc import Sequence

from reproduce import cli, pipeline
from reproduce.specs import FIGURE3
from wae_tf import console


def main(argv: Sequence[str]) -> None:
    pipeline.main(argv, FIGURE3)


if __name__ == "__main__":
    cli.define_script_flags(FIGURE3.name)
    console.run_cli(main, FIGURE3.name)  # --help exits 0; a bad flag or error is one line
