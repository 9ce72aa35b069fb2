"""Test helpers shared by several test modules (not a test module; no fixtures here).

- `write_standin_inception_graph`: one tiny GraphDef with the TTUR Inception graph's
  interface, used by tests/test_metrics.py (the loader) and tests/test_reproduce.py
  (Table 1's numeric FIDs) instead of a real 95 MB download.
- `run_script`: `python -m reproduce.<script> ARGS` in-process, on its own flag values.
"""

from __future__ import annotations

from collections.abc import Sequence
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
