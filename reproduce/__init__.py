"""One command per figure / table of Tolstikhin et al., "Wasserstein Auto-Encoders" (ICLR 2018).

    python -m reproduce.figure2 --quick                                # toy Figure 2, ~1 min on CPU
    python -m reproduce.figure2 --data_dir=PATH/mnist                  # Figure 2 (MNIST)
    python -m reproduce.figure3 --data_dir=PATH/celeba                 # Figure 3 (CelebA)
    python -m reproduce.table1  --data_dir=PATH/celeba \\
        --inception_graph=/path/to/classify_image_graph_def.pb        # Table 1 (FID, sharpness)
    python -m reproduce.all --quick --data_root=PATH                   # all three

Each script trains VAE, WAE-MMD and WAE-GAN with the paper's configs (or reuses finished runs
in `--workdir`, see `wae_tf.trainer`), then writes its figure / table with the numbers and the
run's provenance to `--out_dir` (default `runs/<script>/`, git-ignored like the runs; the
tracked `results/` only when asked for, `--out_dir=results/...`). Without `--data_dir` the
data is `$WAE_TF_DATA_DIR/<dataset>`, else MNIST is downloaded into the cache
(`wae_tf.data.resolve_data_dir`); every check that can fail (data, Inception graph, output
folders) runs before anything is trained. `--quick` trains tiny nets on a few thousand
images; every output states its scale ("REDUCED SCALE: ..." or "paper scale"), so a reduced
result cannot be mistaken for a paper-scale one. Every model also leaves a small bundle
(`reproduce.bundles`): `--models=wae_gan` computes one model's, `--assemble=DIR1,DIR2,DIR3`
draws the figure / table from three, made anywhere.

Each output is data (`reproduce.specs.OutputSpec`) run by one pipeline
(`reproduce.pipeline.make`); the modules, each importing only those before it: `cli` (flags
-> Options), `specs` (the outputs, panels, runs, the scale line), `evaluation` (a model's
panels and numbers), `report` (markdown, JSON, provenance, files) and `render` (PNG),
`bundles` (one model's results on disk), `pipeline`; the scripts on top.

`import reproduce` (and every module here) imports neither Keras nor TensorFlow: a module
imports them inside the functions that need them, so --help and a flag error answer at
once; each script imports Keras right after parsing its flags, through
`wae_tf.console.quiet_tensorflow_startup` (TensorFlow's start-up lines once at most).
"""
