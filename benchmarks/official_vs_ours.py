"""ms per training step: ours (Keras 3 / TF 2, `fit`) vs the official TF1 code, same nets.

Both sides train the same reduced nets (tools/compare_official.py: the code's num_filters
knob = --width) on the same machine, one after the other, in one run; the official code runs
its own loop (WAE.train) in Python 2.7 / TF 1.15 and is timed per session call (AE step +
adversary step), ours per step of `fit` after a warm-up epoch (tracing excluded); --rounds alternate the two
sides and the medians are reported. Adds its row to
results/benchmarks/official_vs_ours.json (one entry per dataset, model and width).

    python benchmarks/official_vs_ours.py [--model=wae_mmd] [--width=128] [--steps=20]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from tools import compare_official  # noqa: E402

PROGRAM = "benchmarks/official_vs_ours.py"
FLAGS = flags.FLAGS  # --dataset, --model, --width, --steps, --batch_size: tools.compare_official's
FLAGS.set_default("width", 128)
FLAGS.set_default("steps", 20)
flags.DEFINE_integer("rounds", 3, "Alternating rounds; the medians are reported.", lower_bound=1)
OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "official_vs_ours.json"


def main(argv):
    del argv
    import keras

    from wae_tf import models

    config = compare_official.reduced_config(
        FLAGS.dataset, FLAGS.model, FLAGS.width, FLAGS.batch_size
    )
    images = compare_official.random_images(config, FLAGS.batch_size * FLAGS.steps, seed=0)
    model = models.build_model(config)
    model.compile(steps_per_epoch=FLAGS.steps)
    model.fit(images, batch_size=FLAGS.batch_size, epochs=1, verbose=0)  # traces
    official_rounds, our_rounds = [], []
    # Rounds alternate the two sides, so that other work on the machine hits both alike.
    for _ in range(FLAGS.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "images.npy", images)
            job = compare_official.training_job(
                config, FLAGS.width, FLAGS.steps, Path(tmp) / "images.npy"
            )
            (record,) = compare_official.run_official([job], Path(tmp))
        per_step = [
            float(record[f"ae/{i}/seconds"]) + float(record.get(f"adversary/{i}/seconds", 0.0))
            for i in range(FLAGS.steps)
        ]
        official_rounds.append(1000 * float(np.median(per_step[1:])))  # step 0: warm-up
        start = time.perf_counter()
        model.fit(images, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
        our_rounds.append(1000 * (time.perf_counter() - start) / FLAGS.steps)
    official_ms, ours_ms = float(np.median(official_rounds)), float(np.median(our_rounds))
    result = {
        "what": "ms per training step (median of rounds), same reduced nets, same machine, one run",
        "dataset": FLAGS.dataset,
        "model": FLAGS.model,
        "width": FLAGS.width,
        "batch_size": FLAGS.batch_size,
        "steps": FLAGS.steps,
        "autoencoder_parameters": int(record["autoencoder_parameters"]),
        "official_ms_per_step": round(official_ms, 1),
        "ours_ms_per_step": round(ours_ms, 1),
        "official_over_ours": round(official_ms / ours_ms, 2),
        "official_ms_per_round": [round(v, 1) for v in official_rounds],
        "ours_ms_per_round": [round(v, 1) for v in our_rounds],
        "ours": f"Keras {keras.__version__}, backend {keras.backend.backend()}, fit",
        "official": "tolstikhin/wae@6351565, TF 1.15.0, Python 2.7, WAE.train",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other work on the cores
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(OUT.read_text()) if OUT.is_file() else {}
    runs[f"{FLAGS.dataset}_{FLAGS.model}_width{FLAGS.width}"] = result
    OUT.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from wae_tf import console

    console.run_cli(main, PROGRAM)
