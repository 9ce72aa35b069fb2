"""Export a trained WAE / VAE as one SavedModel for TF Serving.

    python -m wae_tf.export --workdir runs/mnist_wae_mmd --export_dir models/wae_mnist/1

`--workdir` is a finished training run (its final.keras), a run in progress with
`--allow_unfinished` (its newest readable checkpoint), or a `.keras` file of a wae_tf model.

`--export_dir` is TF Serving's `<model base path>/<model name>/<version>` layout. An
existing version is refused unless `--overwrite`; the SavedModel is written to a hidden
temporary folder beside it and renamed into place, so neither TF Serving (which watches
the model folder for new numeric versions) nor a crash ever sees a half-written one.

Signatures (float32 images and codes, dynamic batch dimension B, inference mode:
BatchNormalization uses its moving statistics and no input noise is added):

  encode          images (B, H, W, C)  -> codes  (B, d_z)    deterministic encoder; the
                                                             VAE returns its posterior mean
  decode          z      (B, d_z)      -> images (B, H, W, C)
  reconstruct     images (B, H, W, C)  -> images (B, H, W, C) decode(encode(images))
  sample          count (), seed ()    -> images (count, H, W, C)
                  int32 scalars: decode of `count` draws z ~ P_Z = N(0, sigma_z^2 I),
                  the same for the same seed (stateless RNG): the draws of
                  `model.sample(count, seed)`
  serving_default = decode

Pixel range of `images`, in and out: [0, 1] for MNIST / Fashion-MNIST (sigmoid
decoder), [-1, 1] for CelebA (tanh decoder); `assets.extra/wae_tf.json` in the export
records it with the rest of the model's config. H, W, C, d_z: (28, 28, 1), 8 for MNIST;
(64, 64, 3), 64 for CelebA.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from wae_tf import console

if __name__ == "__main__":  # the command line: TensorFlow's start-up lines once at most
    console.quiet_tensorflow_startup()

import keras  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from wae_tf import cli_flags, fileio, trainer  # noqa: E402
from wae_tf.configs import Config  # noqa: E402
from wae_tf.errors import WaeError  # noqa: E402

PIXEL_RANGES = {"unit": "[0, 1]", "symmetric": "[-1, 1]"}
SIGNATURES = ("encode", "decode", "reconstruct", "sample", "serving_default")
METADATA_FILE = "assets.extra/wae_tf.json"  # TF Serving ignores assets.extra/


class ExportError(WaeError, RuntimeError):
    """Nothing to export, or the export cannot be written; the message says why."""


# --- Loading a trained model --------------------------------------------------------------


def load_model(workdir: str | Path, allow_unfinished: bool = False) -> keras.Model:
    """The trained model of a training run, or of a `.keras` file.

    A folder is a training run of `python -m wae_tf.train`: its `final.keras`, or with
    `allow_unfinished` for a run still in progress the model of its newest readable
    checkpoint (`wae_tf.trainer.load_trained_model`). Raises ExportError saying what was
    looked for when there is nothing to load.
    """
    path = Path(workdir).expanduser()
    if not path.exists():
        raise ExportError(f"workdir {path} does not exist")
    if path.is_file():
        if path.suffix != ".keras":
            raise ExportError(f"{path} is neither a training workdir nor a .keras model file")
        # wae_tf.models (imported with wae_tf.trainer) registers the model classes.
        try:
            return trainer.load_keras_file(path)
        except trainer.DamagedModelFileError as error:
            raise ExportError(
                f"{error}; export its training run folder instead (--workdir=<run>: its "
                "final.keras, or with --allow_unfinished its newest checkpoint)"
            ) from error
    if not any(path.iterdir()):
        raise ExportError(f"workdir {path} is empty: no trained model to export")
    try:
        return trainer.load_trained_model(path, allow_unfinished=allow_unfinished)
    except trainer.NoFinalModelError as error:
        state = "no checkpoint either"
        if error.latest_epoch is not None:
            state = (
                f"its latest checkpoint is epoch {error.latest_epoch}: pass --allow_unfinished "
                "to export that"
            )
        raise ExportError(
            f"nothing to export in {path}: no final model (rerun the training command to "
            f"finish the run); {state}"
        ) from error
    except trainer.TrainError as error:
        raise ExportError(f"nothing to export in {path}: {error}") from error


# --- The SavedModel -----------------------------------------------------------------------


def check_backend() -> None:
    """ExportError unless Keras runs on TensorFlow: a SavedModel is a TensorFlow graph."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ExportError(
            f"a SavedModel export needs the TensorFlow backend (this is KERAS_BACKEND={backend}): "
            f"rerun without KERAS_BACKEND={backend}; models trained on {backend.upper()} "
            "export too"
        )


def _config(model: keras.Model) -> Config:
    config = getattr(model, "config", None)
    if not isinstance(config, Config):
        raise TypeError(f"expected a wae_tf WAE or VAE model, got {type(model).__name__}")
    return config


def build_archive(model: keras.Model, include_sample: bool = True) -> keras.export.ExportArchive:
    """An ExportArchive with the module docstring's signatures (decode first: the default)."""
    check_backend()
    import tensorflow as tf

    config = _config(model)
    height, width, channels = config.image_shape
    pixel_range = PIXEL_RANGES[config.pixel_range]
    image_spec = tf.TensorSpec([None, height, width, channels], tf.float32, name="images")
    z_spec = tf.TensorSpec([None, config.z_dim], tf.float32, name="z")

    def checked(images):
        # Explicit run-time shape check: TF Serving feeds tensors without Python's
        # signature check; this fails with the expected shape in the message.
        return tf.ensure_shape(images, [None, height, width, channels])

    def decode(z):
        return {"images": model.decode(tf.ensure_shape(z, [None, config.z_dim]))}

    def encode(images):
        return {"codes": model.encode(checked(images))}

    def reconstruct(images):
        return {"images": model.reconstruct(checked(images))}

    decode.__doc__ = f"Codes z (B, {config.z_dim}) -> images (B, H, W, C) in {pixel_range}."
    encode.__doc__ = f"Images (B, {height}, {width}, {channels}) in {pixel_range} -> codes."
    reconstruct.__doc__ = f"Images in {pixel_range} -> their reconstructions."

    # No archive.track(model): the endpoints' variables are tracked automatically, and
    # tracking the model as well stored every variable twice (2x the SavedModel size).
    archive = keras.export.ExportArchive()
    # The first endpoint is also exported as "serving_default" [keras ExportArchive].
    archive.add_endpoint("decode", decode, input_signature=[z_spec])
    archive.add_endpoint("encode", encode, input_signature=[image_spec])
    archive.add_endpoint("reconstruct", reconstruct, input_signature=[image_spec])
    if include_sample:

        def sample(count, seed):
            """`count` images G(z), z ~ P_Z drawn with the stateless RNG from `seed`."""
            count = tf.ensure_shape(count, [])
            tf.debugging.assert_non_negative(count, message="count must be >= 0")
            # As keras.random.normal(seed=int) on TensorFlow: stateless, seed pair (s, 0)
            # reduced modulo 2^31 - 2 [keras backend/tensorflow/random.py].
            pair = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
            pair = tf.cast(tf.math.floormod(pair, tf.int32.max - 1), tf.int32)
            z = tf.random.stateless_normal([count, config.z_dim], seed=pair, stddev=config.pz_scale)
            return {"images": model.decode(z)}

        archive.add_endpoint(
            "sample",
            sample,
            input_signature=[
                tf.TensorSpec([], tf.int32, name="count"),
                tf.TensorSpec([], tf.int32, name="seed"),
            ],
        )
    return archive


def export_saved_model(
    model: keras.Model,
    export_dir: str | Path,
    overwrite: bool = False,
    include_sample: bool = True,
) -> Path:
    """Write `model` as a SavedModel to `export_dir` atomically; returns the path.

    Raises ExportError if `export_dir` exists and `overwrite` is False, or when the disk
    is full (nothing is exported then: the partial copy is removed).
    """
    config = _config(model)
    target = Path(export_dir).expanduser()
    if target.exists() and not overwrite:
        raise ExportError(
            f"{target} already exists: TF Serving versions are immutable; pick the next "
            "version number or pass --overwrite"
        )
    if not target.name.isdigit():
        logging.warning(
            "%s is not a numeric version folder: TF Serving expects <model>/<version>", target
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # A hidden, non-numeric name: TF Serving does not pick it up while it is written.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        saved = staging / "saved_model"
        logging.info("writing the SavedModel to %s", saved)
        build_archive(model, include_sample).write_out(str(saved), verbose=False)
        _write_metadata(saved, config, include_sample)
        _replace(saved, target)
    except Exception as error:
        if not _is_disk_full(error):
            raise
        raise ExportError(
            f"no space left to write the SavedModel to {target}; nothing was exported (the "
            "partial copy was removed). Free some space and rerun the same command"
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("exported %s (signatures %s)", target, ", ".join(_signatures(include_sample)))
    return target


def _is_disk_full(error: BaseException) -> bool:
    """A full disk, as Python (ENOSPC) or TensorFlow's file writer (an OpError) says it."""
    if fileio.is_disk_full(error):
        return True
    try:
        import tensorflow as tf
    except ImportError:
        return False
    full = ("No space left on device", "Disk quota exceeded")
    return isinstance(error, tf.errors.OpError) and any(m in str(error) for m in full)


def _signatures(include_sample: bool) -> list[str]:
    return [s for s in SIGNATURES if include_sample or s != "sample"]


def _write_metadata(saved: Path, config: Config, include_sample: bool) -> None:
    metadata = {
        "model": config.model,
        "dataset": config.dataset,
        "image_shape": list(config.image_shape),
        "z_dim": config.z_dim,
        "pixel_range": PIXEL_RANGES[config.pixel_range],
        "pz_scale": config.pz_scale,
        "signatures": _signatures(include_sample),
        "config": config.to_dict(),
    }
    fileio.write_json(saved / METADATA_FILE, metadata)


def _replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`, moving an existing `target` out of the way first."""
    if not target.exists():
        source.rename(target)
        return
    old = source.parent / "previous"
    target.rename(old)  # restored below if the final rename fails
    try:
        source.rename(target)
    except OSError:
        old.rename(target)
        raise


# --- Command line -------------------------------------------------------------------------


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The CLI's flags (defined by `run`, not at import, like wae_tf.train's)."""
    fv = dict(flag_values=flag_values)
    cli_flags.define_flags(
        flag_values, ["workdir"], helps={"workdir": "Training run folder, or a .keras model file."}
    )
    flags.DEFINE_string(
        "export_dir", None, "SavedModel folder: <model base path>/<name>/<version>.", **fv
    )
    flags.DEFINE_bool("overwrite", False, "Replace an existing export_dir.", **fv)
    flags.DEFINE_bool("sample", True, "Also export the `sample` signature.", **fv)
    flags.DEFINE_bool(
        "allow_unfinished",
        False,
        "Export a run still in progress (no final.keras yet): its newest readable checkpoint.",
        **fv,
    )
    flags.mark_flags_as_required(["workdir", "export_dir"], **fv)


def main(argv: list[str]) -> None:
    if len(argv) > 1:  # run() reports these as one line before main
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    values = flags.FLAGS
    # An ExportError (a WaeError) is one line on stderr and exit 1, by console.run_cli.
    check_backend()
    target = Path(values.export_dir)
    if target.exists() and not values.overwrite:  # before the slow model load
        raise ExportError(f"{target} already exists; pass --overwrite to replace it")
    model = load_model(values.workdir, allow_unfinished=values.allow_unfinished)
    logging.info("loaded %s: %s on %s", values.workdir, model.config.model, model.config.dataset)
    export_saved_model(model, target, overwrite=values.overwrite, include_sample=values.sample)
    print(f"exported {target}: signatures {', '.join(_signatures(values.sample))}")


def run(argv: list[str] | None = None) -> None:
    """Entry point of `python -m wae_tf.export`."""
    define_flags()
    console.run_cli(main, "wae_tf.export", argv)


if __name__ == "__main__":
    run()
