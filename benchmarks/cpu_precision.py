"""float32 vs mixed_bfloat16 on a CPU: seconds per paper-width train step, side by side.

Builds the same preset twice, once under each Keras dtype policy (`--precision` of the
training CLI, `wae_tf.distribute.precision`), and times `model.fit` steps on the same
in-memory batches, alternating the two in rounds so that machine load hits both alike.
Prints one row per precision (best round: noise only ever adds time) and the ratio, and
writes them as JSON.

    python benchmarks/cpu_precision.py                              # MNIST WAE-MMD, batch 100
    python benchmarks/cpu_precision.py --net=celeba --steps=2 --out=results/benchmarks/x.json

bfloat16 pays off on CPUs with bfloat16 matrix units (Intel AMX, e.g. Sapphire Rapids):
oneDNN runs the convolutions and matmuls in bfloat16 there; elsewhere it may be slower.
"""

from __future__ import annotations

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from wae_tf import distribute  # noqa: E402
from wae_tf.configs import DATASETS, MODELS, get_config  # noqa: E402
from wae_tf.models import build_model  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("net", "mnist", [d for d in DATASETS if d != "fashion_mnist"], "Paper net.")
flags.DEFINE_enum("model", "wae_mmd", list(MODELS), "Model to time.")
flags.DEFINE_integer("steps", 4, "Timed steps per round.", lower_bound=1)
flags.DEFINE_integer("warmup", 2, "Untimed steps before timing (tracing, oneDNN set-up).")
flags.DEFINE_integer("rounds", 2, "Alternating rounds of float32 / mixed_bfloat16.")
flags.DEFINE_string("out", None, "Write the rows and the environment as JSON here.")

PRECISIONS = ("float32", "mixed_bfloat16")


def _seconds_per_step(model: keras.Model, dataset, steps: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - start) / steps


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return sorted(f for f in line.split() if f.startswith(("amx", "avx512_bf16")))
    except OSError:
        pass
    return []


def main(argv):
    del argv
    config = get_config(FLAGS.net, FLAGS.model)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(4 * config.batch_size, *config.image_shape))
    if config.pixel_range == "symmetric":
        images = 2 * images - 1
    dataset = (
        tf.data.Dataset.from_tensor_slices(images.astype("float32"))
        .batch(config.batch_size)
        .cache()
        .repeat()
    )
    models = {}
    for policy in PRECISIONS:
        with distribute.precision(policy):
            models[policy] = build_model(config)
            models[policy].compile(steps_per_epoch=600)
            _seconds_per_step(models[policy], dataset, FLAGS.warmup)
    rounds = {policy: [] for policy in PRECISIONS}
    for _ in range(FLAGS.rounds):
        for policy in PRECISIONS:
            with distribute.precision(policy):
                rounds[policy].append(_seconds_per_step(models[policy], dataset, FLAGS.steps))
    best = {policy: float(np.min(rounds[policy])) for policy in PRECISIONS}
    ratio = best["float32"] / best["mixed_bfloat16"]
    print(f"{FLAGS.net} {FLAGS.model}, paper widths, batch {config.batch_size}, CPU")
    print(f"{'precision':16} {'s/step':>8}")
    for policy in PRECISIONS:
        print(f"{policy:16} {best[policy]:8.3f}")
    print(f"float32 / mixed_bfloat16 = {ratio:.2f}x")
    if FLAGS.out:
        record = {
            "command": "python benchmarks/cpu_precision.py "
            + " ".join(
                f"--{k}={FLAGS[k].value}" for k in ("net", "model", "steps", "warmup", "rounds")
            ),
            "net": FLAGS.net,
            "model": FLAGS.model,
            "batch_size": config.batch_size,
            "seconds_per_step_best": best,
            "seconds_per_step_rounds": rounds,
            "float32_over_bfloat16": round(ratio, 3),
            "machine": {
                "cpus": os.cpu_count(),
                "processor_flags": _cpu_flags(),
                "platform": platform.platform(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
        }
        with open(FLAGS.out, "w") as handle:
            json.dump(record, handle, indent=1)
            handle.write("\n")


if __name__ == "__main__":
    app.run(main)
