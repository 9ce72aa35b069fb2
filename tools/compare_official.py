"""Our WAE beside the official TF1 code (tolstikhin/wae @ 6351565), step for step.

    python -m tools.compare_official --model=wae_mmd --steps=3 --width=16

The official graph is built by the code's own files, in Python 2.7 with TF 1.15
(tools/official_env.py, tools/official_code.py), at a reduced width: `--width` is the code's
e_num_filters = g_num_filters = d_num_filters knob (a multiple of 8), so its encoder has
width/8, width/4, width/2, width filters (models.py:113-116) and its decoder a width-wide
FC layer followed by width/2, width/4 (, width/8) filters (models.py:220-230). It runs the
code's loop (WAE.train, wae.py:498) while tools/official_driver_py2.py records each step's
batch, prior sample and input noise; our model (the `official_code` preset at the same
widths) starts from the code's initial variables and replays exactly those draws. The
table lists both sides' losses per step and the largest variable difference at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from absl import flags

from tools import official_code, official_env
from wae_tf.errors import WaeError

DRIVER = Path(__file__).with_name("official_driver_py2.py")
OFFICIAL_DATASET = {"mnist": "mnist", "celeba": "celebA"}


class OfficialUnavailable(WaeError, RuntimeError):
    """Python 2.7, its environment or the official files are missing (one-line reason)."""


# --- The same reduced nets on both sides ---------------------------------------------------
def reduced_config(dataset: str, model: str, width: int, batch_size: int = 100):
    """Our `official_code` preset with the code's layer widths for num_filters = `width`."""
    from wae_tf import configs

    if width % 8 or width <= 0:
        raise ValueError(f"--width must be a positive multiple of 8, got {width}")
    config = configs.get_config(dataset, model, "official_code")
    decoder_blocks = len(config.decoder_filters)
    return config.replace(
        encoder_filters=tuple(width // 2**k for k in (3, 2, 1, 0)),  # models.py:113-116
        decoder_dense_filters=width,  # models.py:220-222
        decoder_filters=tuple(width // 2 ** (k + 1) for k in range(decoder_blocks)),
        adversary_units=width,  # models.py:330-338
        batch_size=batch_size,
        pretrain_batch_size=batch_size,
        # The comparison runs the code for one epoch (epoch_num 1), and its manual_smooth
        # schedule decays over epoch_num (wae.py:550-552): so does ours here.
        epochs=1,
        lr_decay_epochs=1,
    )


def official_opts(config, width: int, epochs: int = 1) -> dict:
    """The overrides of the code's configs.py that give its graph `config`'s reduced nets."""
    return {
        "z_test": config.penalty,  # "mmd" | "gan", as run.py --z_test sets it
        "e_num_filters": width,
        "g_num_filters": width,
        "d_num_filters": width,
        "batch_size": config.batch_size,
        "e_pretrain_sample_size": config.pretrain_batch_size,
        "epoch_num": epochs,
    }


def random_images(config, count: int, seed: int) -> np.ndarray:
    """`count` images in the config's pixel range: smooth random blobs, float32."""
    rng = np.random.default_rng(seed)
    h, w, c = config.image_shape
    coarse = rng.random((count, h // 4, w // 4, c))
    images = coarse.repeat(4, axis=1).repeat(4, axis=2)
    if config.pixel_range == "symmetric":
        images = 2.0 * images - 1.0
    return images.astype("float32")


# --- Running the official side ------------------------------------------------------------
def locate_official() -> tuple[str, Path, Path]:
    """(python2, environment folder, code folder); raises OfficialUnavailable with a reason."""
    python2 = official_env.find_python2()
    if python2 is None:
        raise OfficialUnavailable("no Python 2.7 (set WAE_TF_PYTHON2 or pyenv install 2.7.18)")
    env = official_env.env_dir()
    if not official_env.is_built(env):
        raise OfficialUnavailable(
            f"the Python 2.7 environment is not built at {env} (python -m tools.official_env)"
        )
    code = official_code.locate()
    if code is None and os.environ.get("WAE_TF_OFFICIAL_CODE"):
        raise OfficialUnavailable(
            f"$WAE_TF_OFFICIAL_CODE={os.environ['WAE_TF_OFFICIAL_CODE']} does not hold the "
            f"official files with their pinned sha256"
        )
    if code is None:
        raise OfficialUnavailable(
            "the official files are not materialised (python -m tools.official_code, "
            "or set WAE_TF_OFFICIAL_CODE)"
        )
    return python2, env, code


def run_official(jobs: list[dict], workdir: Path, timeout: float = 600) -> list[dict]:
    """Run `jobs` in the official code (one Python 2.7 process); their records, in order."""
    python2, env, code = locate_official()
    for i, job in enumerate(jobs):
        job.setdefault("out", str(workdir / f"job{i}.npz"))
        job.setdefault("work_dir", str(workdir / f"job{i}_workdir"))
    spec = workdir / "spec.json"
    spec.write_text(json.dumps({"code_dir": str(code), "jobs": jobs}))
    result = subprocess.run(
        [python2, str(DRIVER), str(spec)],
        env=official_env.python2_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the official code failed:\n{result.stderr[-3000:]}")
    records = []
    for job in jobs:
        with np.load(job["out"]) as f:
            records.append({k: f[k] for k in f.files})
    return records


def training_job(config, width: int, steps: int, images_path: Path, seed: int = 0) -> dict:
    return {
        "kind": "train",
        "dataset": OFFICIAL_DATASET[config.dataset],
        "opts": dict(official_opts(config, width), e_pretrain=False),
        "images": str(images_path),
        "seed": seed,
    }


def pretraining_job(config, width: int, steps: int, images_path: Path, seed: int = 0) -> dict:
    return {
        "kind": "pretrain",
        "dataset": OFFICIAL_DATASET[config.dataset],
        "opts": dict(official_opts(config, width), e_pretrain=True),
        "images": str(images_path),
        "seed": seed,
        "max_steps": steps,
    }


# --- Our side: the same variables, the same draws -----------------------------------------
def our_variable(model, official_name: str):
    """Our variable for an official variable name ("encoder/h0_conv/filter:0"), or None
    for variables with no counterpart (optimizer slots, beta powers)."""
    parts = official_name.split(":")[0].split("/")
    if len(parts) != 3:
        return None
    scope, layer, leaf = parts
    attribute = {
        "filter": "kernel",
        "W": "kernel",
        "b": "bias",
        "beta": "beta",
        "gamma": "gamma",
        "moving_mean": "moving_mean",
        "moving_variance": "moving_variance",
    }.get(leaf)
    if attribute is None:
        return None
    kind, index = layer.split("_")[1], layer.split("_")[0][1:]
    if scope == "encoder":
        net = model.encoder
        name = "codes" if index == "final" else f"conv{int(index) + 1}"
        name += "_bn" if kind == "bn" else ""
    elif scope == "generator":
        net = model.decoder
        if kind == "lin":
            name = "fc"
        elif index == "final":
            name = "deconv_out"
        else:
            name = f"deconv{int(index) + 1}" + ("_bn" if kind == "bn" else "")
    elif scope == "z_adversary" and model.adversary is not None:
        net = model.adversary
        name = "logits" if index == "final" else f"fc{index}"
    else:
        return None
    return getattr(net.get_layer(name), attribute)


def variable_pairs(model, record: dict, phase: str) -> list[tuple[str, object, np.ndarray]]:
    """[(official name, our variable, official value)] for every mapped variable."""
    prefix = f"var/{phase}/"
    pairs = []
    for key, value in record.items():
        if key.startswith(prefix):
            variable = our_variable(model, key[len(prefix) :])
            if variable is not None:
                pairs.append((key[len(prefix) :], variable, value))
    return pairs


def _replayed_wae_class():
    import keras

    from wae_tf import models

    class ReplayedWAE(models.WAE):
        """A WAE whose prior draws and input noise come from recorded stacks, in order.

        Overrides the public `sample_prior` and `input_noise`; the stacks live in
        keras.Variables read at a moving index, so the replay also works inside the
        tf.function of the pretraining step.
        """

        def load_draws(self, priors: np.ndarray, noises: np.ndarray) -> None:
            self.__dict__["_draws"] = {
                "prior": keras.Variable(priors, trainable=False, name="replay_prior"),
                "noise": keras.Variable(noises, trainable=False, name="replay_noise"),
                "prior_at": keras.Variable(0, dtype="int32", trainable=False),
                "noise_at": keras.Variable(0, dtype="int32", trainable=False),
            }

        def _next(self, which: str):
            draws = self.__dict__["_draws"]
            at = draws[f"{which}_at"]
            value = keras.ops.take(draws[which], at, axis=0)
            at.assign(at + 1)
            return value

        def sample_prior(self, n, seed=None):
            if seed is not None or "_draws" not in self.__dict__:
                return super().sample_prior(n, seed=seed)
            return self._next("prior")

        def input_noise(self, images):
            return images + self._next("noise")

    return ReplayedWAE


def build_replayed_model(config, record: dict, steps_per_epoch: int):
    """Our WAE with the official initial variables, compiled like the training CLI."""
    import keras

    model = _replayed_wae_class()(config)
    model(keras.ops.zeros((1, *config.image_shape)))
    model.compile(steps_per_epoch=steps_per_epoch)
    pairs = variable_pairs(model, record, "init")
    if not pairs:
        raise RuntimeError("the official record holds no initial variables")
    for name, variable, value in pairs:
        if tuple(variable.shape) != value.shape:
            raise RuntimeError(f"{name}: official shape {value.shape}, ours {variable.shape}")
        variable.assign(value)
    return model, pairs


@dataclass
class Comparison:
    """Per-step values of both sides and the variables after the last step."""

    official: list[dict] = field(default_factory=list)
    ours: list[dict] = field(default_factory=list)
    variables: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    initial: dict[str, np.ndarray] = field(default_factory=dict)  # the code's, before
    mapped: int = 0
    official_parameters: int = 0
    our_parameters: int = 0


def replay_training(config, record: dict) -> Comparison:
    """Our train steps on the code's batches, prior samples and input noise."""
    import keras

    steps = sum(1 for k in record if k.startswith("ae/") and k.endswith("/images"))
    gan = config.penalty == "gan"
    noises = []
    for i in range(steps):
        noises.append(record[f"ae/{i}/noise"])
        if gan:
            noises.append(record[f"adversary/{i}/noise"])
    model, pairs = build_replayed_model(config, record, steps_per_epoch=steps)
    model.load_draws(np.stack([record[f"ae/{i}/prior"] for i in range(steps)]), np.stack(noises))
    out = Comparison(mapped=len(pairs))
    for i in range(steps):
        if gan:  # the adversary step reuses the AE step's batch and prior (wae.py:605-611)
            np.testing.assert_array_equal(record[f"adversary/{i}/images"], record[f"ae/{i}/images"])
            np.testing.assert_array_equal(record[f"adversary/{i}/prior"], record[f"ae/{i}/prior"])
        model.reset_metrics()
        logs = model.train_step(keras.ops.convert_to_tensor(record[f"ae/{i}/images"]))
        ours = {k: float(v) for k, v in logs.items()}
        official = {k: float(record[f"ae/{i}/{k}"]) for k in ("loss", "reconstruction", "penalty")}
        if gan:
            official["adversary_loss"] = float(record[f"adversary/{i}/loss"])
        out.ours.append(ours)
        out.official.append(official)
    for name, variable, value in variable_pairs(model, record, "final"):
        out.variables[name] = (value, keras.ops.convert_to_numpy(variable))
        out.initial[name] = record[f"var/init/{name}"]
    out.official_parameters = int(record["autoencoder_parameters"])
    out.our_parameters = sum(int(np.prod(v.shape)) for v in model.autoencoder_variables)
    return out


def replay_pretraining(config, record: dict, images: np.ndarray) -> Comparison:
    """Our encoder pretraining on the code's prior samples and input noise.

    Each of the code's pretraining batches is all `images` in its own random order
    (np.random.choice without replacement, wae.py:435); ours is `images` in order. The
    matching loss and BN statistics do not depend on the order, but each image's noise
    does: it is moved along with its image.
    """
    steps = sum(1 for k in record if k.startswith("pretrain/") and k.endswith("/images"))
    rows = {images[i].tobytes(): i for i in range(len(images))}
    noises = []
    for i in range(steps):
        order = [rows[row.tobytes()] for row in record[f"pretrain/{i}/images"]]
        noise = np.empty_like(record[f"pretrain/{i}/noise"])
        noise[order] = record[f"pretrain/{i}/noise"]
        noises.append(noise)
    model, pairs = build_replayed_model(config, record, steps_per_epoch=1)
    model.load_draws(
        np.stack([record[f"pretrain/{i}/prior"] for i in range(steps)]), np.stack(noises)
    )
    history = model.pretrain_encoder(images, steps=steps, batch_size=len(images), verbose=0)
    out = Comparison(mapped=len(pairs))
    out.official = [{"loss": float(record[f"pretrain/{i}/loss"])} for i in range(steps)]
    out.ours = [{"loss": loss} for loss in history]
    import keras

    for name, variable, value in variable_pairs(model, record, "final"):
        if name.startswith("encoder/"):
            out.variables[name] = (value, keras.ops.convert_to_numpy(variable))
            out.initial[name] = record[f"var/init/{name}"]
    return out


def schedule_decays(record: dict) -> list[float]:
    """The decay the code fed at the first step of each epoch (wae.py:542-552, 583)."""
    steps = sum(1 for k in record if k.startswith("ae/") and k.endswith("/decay"))
    return [float(record[f"ae/{i}/decay"]) for i in range(steps)]


def our_learning_rates(config, epochs: int, name: str = "autoencoder_adam") -> list[float]:
    """The learning rate of our optimizer `name` in each epoch (1 step per epoch)."""
    from wae_tf import optimizers

    optimizer = optimizers.sub_optimizer(optimizers.make_optimizer(config, 1), name)
    rates = []
    for epoch in range(epochs):
        optimizer.iterations.assign(epoch)
        rates.append(float(optimizer.learning_rate))
    return rates


# --- The command ---------------------------------------------------------------------------
def format_table(comparison: Comparison) -> str:
    names = list(comparison.official[0])
    header = f"{'step':>4}  " + "  ".join(f"{n + ' (code)':>24}{n + ' (ours)':>24}" for n in names)
    lines = [header]
    for i, (off, ours) in enumerate(zip(comparison.official, comparison.ours, strict=True)):
        lines.append(f"{i:>4}  " + "  ".join(f"{off[n]:>24.9g}{ours[n]:>24.9g}" for n in names))
    worst = max(
        ((float(np.max(np.abs(a - b))), n) for n, (a, b) in comparison.variables.items()),
        default=(0.0, "-"),
    )
    lines.append(
        f"{len(comparison.variables)} variables compared after the last step; largest "
        f"difference {worst[0]:.3g} ({worst[1]})"
    )
    return "\n".join(lines)


PROGRAM = "python -m tools.compare_official"
FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "mnist", ["mnist", "celeba"], "Nets and image shape.")
flags.DEFINE_enum("model", "wae_mmd", ["wae_mmd", "wae_gan"], "The WAE to compare.")
flags.DEFINE_integer("steps", 3, "Training steps (>= 1).")
flags.DEFINE_integer("width", 16, "The code's num_filters knob: a positive multiple of 8.")
flags.DEFINE_integer("batch_size", 100, "Images per step (>= 2).")
flags.DEFINE_bool("pretraining", False, "Compare the encoder pretraining steps instead.")


def main(argv):
    del argv  # console.run_cli refuses stray arguments
    if FLAGS.steps < 1 or FLAGS.batch_size < 2:
        print(f"{PROGRAM}: error: --steps must be >= 1 and --batch_size >= 2", file=sys.stderr)
        sys.exit(1)
    try:
        config = reduced_config(FLAGS.dataset, FLAGS.model, FLAGS.width, FLAGS.batch_size)
        locate_official()
    except ValueError as e:  # a bad --width / --dataset; a WaeError: console.run_cli
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        sys.exit(1)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="wae_official_") as tmp:
        workdir = Path(tmp)
        count = FLAGS.batch_size * (1 if FLAGS.pretraining else FLAGS.steps)
        images = random_images(config, count, seed=0)
        np.save(workdir / "images.npy", images)
        make_job = pretraining_job if FLAGS.pretraining else training_job
        (record,) = run_official(
            [make_job(config, FLAGS.width, FLAGS.steps, workdir / "images.npy")], workdir
        )
        if FLAGS.pretraining:
            comparison = replay_pretraining(config, record, images)
        else:
            comparison = replay_training(config, record)
    print(format_table(comparison))


if __name__ == "__main__":
    from wae_tf import console

    console.run_cli(main, PROGRAM)
