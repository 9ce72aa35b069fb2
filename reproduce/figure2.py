"""Figure 2 of the paper: VAE | WAE-MMD | WAE-GAN on MNIST, with numbers.

    python -m reproduce.figure2 --quick        # ~1 min on CPU; MNIST fetched into the cache
    python -m reproduce.figure2 --data_dir=PATH/mnist [--workdir=runs] [--out_dir=runs/figure2]

    # one model per machine / sitting, then the figure from the three bundles:
    python -m reproduce.figure2 --data_dir=... --models=wae_gan --out_dir=out_gpu1
    python -m reproduce.figure2 --assemble=out_a/bundles/figure2_vae,... --out_dir=results/figure2

Trains the models with the paper's MNIST configs (or reuses finished runs in
<workdir>/mnist[_tags]/<model>), writes one bundle per model to
<out_dir>/bundles/figure2_<model>/, and, with all three models (or --assemble), draws to
--out_dir: figure2.png (the paper's layout: test interpolations, test reconstructions, random
samples; its title states the scale), figure2.md / figure2.json (per model: the test
reconstruction cost c = 0.05 ||x - G(Q(x))||^2 [code], our MNIST Fréchet score of LeNet
features on 10,000 samples -- the paper reports no number here --, epochs, sizes, time;
provenance) and figure2_training_curves.png. Bundles from different machines train their
own LeNet (cached in <workdir>/mnist_classifier): copy that folder between machines, or the
bundles disagree on the classifier and are refused.
"""

from collections.abc import Sequence

from reproduce import cli, pipeline
from reproduce.specs import FIGURE2
from wae_tf import console


def main(argv: Sequence[str]) -> None:
    pipeline.main(argv, FIGURE2)


if __name__ == "__main__":
    cli.define_script_flags(FIGURE2.name)
    console.run_cli(main, FIGURE2.name)  # --help exits 0; a bad flag or error is one line
