"""Test helpers shared by several test modules (not a test module; no fixtures here).

- `write_standin_inception_graph`: one tiny GraphDef with the TTUR Inception graph's
  interface, used by tests/test_metrics.py (the loader) and tests/test_reproduce.py
  (Table 1's numeric FIDs) instead of a real 95 MB download.
- `run_script`: `python -m reproduce.<script> ARGS` in-process, on its own flag values.
- `run_together`: several subprocesses at once (each command line pays its own
  TensorFlow import, ~5-8 s of one core: started together they overlap).
- `tiny_mnist_run_flags`: the one spelling of a seconds-long `python -m wae_tf.train`
  command line (tests/conftest.py's `train_tiny_run` is the same run in-process).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest


def write_standin_inception_graph(path: Path) -> Path:
    """A tiny graph with the TTUR Inception graph's interface, written to `path`.

    Like classify_image_graph_def.pb: a single-image float input 'Cast' in [0, 255],
    'ExpandDims' adding a batch dim of 1 (shape [1, ?, ?, 3]), an internal bilinear resize,
    the (x - 128) / 128 rescaling, and 'pool_3' of shape [1, 1, 1, 2048] followed by a
    reshape hard-coded to [1, 2048]. Shapes are recorded in the GraphDef (_output_shapes)
    with that batch size of 1, as in the real file. Skips the test without TensorFlow.
    """
    tf = pytest.importorskip("tensorflow")
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="Cast")
        x = tf.expand_dims(image, 0, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, [10, 10], name="ResizeBilinear")
        x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        # 24 live channels; the others are dead ReLUs (constant 0), as some Inception
        # features nearly are. This keeps the 2048-d Fréchet distance cheap (see
        # frechet_distance_from_statistics) -- a full-rank 2048x2048 sqrtm takes minutes here.
        kernel = np.zeros((3, 3, 3, 2048), np.float32)
        kernel[..., :24] = np.random.default_rng(0).normal(0, 0.5, size=(3, 3, 3, 24))
        bias = np.full(2048, -1.0, np.float32)
        bias[:24] = 0.1
        x = tf.nn.conv2d(x, tf.constant(kernel), strides=[1, 1, 1, 1], padding="VALID")
        x = tf.nn.relu(tf.nn.bias_add(x, tf.constant(bias)), name="mixed_10/join")
        pool3 = tf.nn.avg_pool2d(x, [1, 8, 8, 1], [1, 1, 1, 1], "VALID", name="pool_3")
        logits = tf.reshape(pool3, [1, 2048], name="pool_3/_reshape")
        tf.nn.softmax(logits, name="softmax")
    graph_def = graph.as_graph_def(add_shapes=True)
    path.write_bytes(graph_def.SerializeToString())
    return path


def run_script(script: ModuleType, argv: Sequence[str]) -> dict[str, Any]:
    """`python -m reproduce.<script> ARGS` in-process (`script`: reproduce.figure2, figure3
    or table1; argv[0]: its name): the Options `reproduce.cli.parse_args` makes of `argv`
    on a fresh FlagValues (nothing global is touched), given to `reproduce.pipeline.make`
    with the script's spec, as its main does. A known error is raised, not turned into a
    line."""
    from reproduce import cli, pipeline, specs

    spec = specs.OUTPUTS[script.__name__.rsplit(".", 1)[-1]]
    return pipeline.make(spec, cli.parse_args(argv, spec.name))


def tiny_mnist_run_flags(
    mnist_dir: Path,
    workdir: Path,
    model: str = "wae_gan",
    *,
    epochs: int | None = None,
    pretrain: bool = True,
    verbose: int | None = 2,
) -> list[str]:
    """`python -m wae_tf.train` flags of a seconds-long run: 4-wide nets, 100 MNIST images
    (50 to evaluate), batches of 50 (25 per worker on two workers). With pretrain=False it
    is the run tests/conftest.py's `train_tiny_run(mnist_dir, workdir, model, epochs)`
    trains in-process, so the CLI can extend a run trained there. None leaves a flag at
    its default (verbose=None: what a redirected run shows)."""
    flags = [
        "--dataset=mnist",
        f"--model={model}",
        f"--data_dir={mnist_dir}",
        f"--workdir={workdir}",
        "--width=4",
        "--train_examples=100",
        "--eval_examples=50",
        "--batch_size=50",
    ]
    if epochs is not None:
        flags.append(f"--epochs={epochs}")
    if not pretrain:
        flags.append("--nopretrain")
    if verbose is not None:
        flags.append(f"--verbose={verbose}")
    return flags


def run_together(
    commands: Mapping[str, Sequence[str]],
    timeout: float = 300,
    most: int = 4,
    each: Mapping[str, Mapping[str, Any]] | None = None,
    **popen: Any,
) -> dict[str, subprocess.CompletedProcess]:
    """{name: the finished run of commands[name]}, up to `most` running at a time (the
    next starts when any one ends), each with each[name]'s Popen arguments (cwd, env,
    ...) over `popen`'s, and `timeout` seconds. Output is captured as text, decoded but
    not newline-translated: a '\r' a process writes stays visible (subprocess.run's
    text=True would turn it into '\n'). Whatever still runs when one fails is killed."""
    waiting, running, done = list(commands.items()), {}, {}
    try:
        while waiting or running:
            while waiting and len(running) < most:
                name, command = waiting.pop(0)
                out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
                own = {**popen, **(each or {}).get(name, {})}
                process = subprocess.Popen(command, stdout=out, stderr=err, **own)
                running[name] = process, out, err, time.monotonic()
            time.sleep(0.05)
            for name, (process, out, err, start) in list(running.items()):
                if process.poll() is None:
                    if time.monotonic() - start > timeout:
                        raise subprocess.TimeoutExpired(process.args, timeout)
                    continue
                del running[name]
                output = []
                for stream in (out, err):
                    stream.seek(0)
                    output.append(stream.read().decode())
                    stream.close()
                done[name] = subprocess.CompletedProcess(process.args, process.returncode, *output)
    finally:
        for process, out, err, _ in running.values():
            process.kill()
            process.wait()
            out.close()
            err.close()
    return {name: done[name] for name in commands}
