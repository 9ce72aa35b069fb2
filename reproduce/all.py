"""Everything the paper shows, in one command: Figure 2, Figure 3 and Table 1.

    python -m reproduce.all --quick            # every output, small: minutes on a CPU
    python -m reproduce.all [--data_root=DIR] [--inception_graph=PB] [--workdir=runs]

The data: DIR (default $WAE_TF_DATA_DIR) holds mnist/ (else MNIST is downloaded into the
cache) and celeba/ or celeba_10k/ (img_align_celeba/ inside). Prints one time estimate up
front, then trains the six runs (or reuses them) and writes <out_dir>/figure2/,
<out_dir>/figure3/ and <out_dir>/table1/ (default out_dir: runs/all), each as its own script
would (`reproduce.figure2` etc.; their flags but --data_dir, --models and --assemble);
Figure 3 and Table 1 share the CelebA runs and bundles. Every check (folders, both
datasets, the Inception graph) runs before anything is trained. Interrupted, the same command resumes: training continues from the last
checkpoint, and finished bundles of the same code and settings are reused.
"""

from collections.abc import Sequence

from reproduce import cli, pipeline
from wae_tf import console


def main(argv: Sequence[str]) -> None:
    pipeline.main_all(argv)


if __name__ == "__main__":
    cli.define_script_flags("all")
    console.run_cli(main, "all")  # --help exits 0; a bad flag or error is one line
