"""SubPixelConv2DTranspose computes the same function as keras.layers.Conv2DTranspose
(strides 2, "same"): outputs and gradients, on TensorFlow here and on JAX in a subprocess.

Tolerance: both sides sum the same k*k*C_in products in float32, in different orders;
with inputs and weights ~N(0, 1) and C_in = 6 the sums are ~sqrt(150) ~ 12 in size, and a
reordered float32 sum differs by a few ulps of that (1e-6 relative): 1e-5 absolute on
outputs of that size leaves margin, while any wrong tap or parity gives O(1) differences.
Gradients sum over the batch and every output pixel too (up to ~600 more terms): 1e-4.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import run_python

from wae_tf.layers import SubPixelConv2DTranspose, gathered_flops_ratio, subpixel_taps

CASES = [(k, h, w) for k in (4, 5) for (h, w) in ((3, 4), (4, 4), (7, 7), (8, 5))]
ATOL = 1e-5


def _pair(k: int, channels_in: int = 6, filters: int = 5, seed: int = 0):
    import keras

    plain = keras.layers.Conv2DTranspose(filters, k, strides=2, padding="same")
    subpixel = SubPixelConv2DTranspose(filters, k, strides=2, padding="same")
    plain.build((None, None, None, channels_in))
    subpixel.build((None, None, None, channels_in))
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in plain.get_weights()]
    plain.set_weights(weights)
    subpixel.set_weights(weights)
    return plain, subpixel


@pytest.mark.parametrize("k, h, w", CASES)
def test_outputs_and_gradients_equal_conv2d_transpose_on_tensorflow(k, h, w):
    import tensorflow as tf

    plain, subpixel = _pair(k)
    x = tf.constant(np.random.default_rng(1).standard_normal((2, h, w, 6)).astype("float32"))
    upstream = tf.constant(
        np.random.default_rng(2).standard_normal((2, 2 * h, 2 * w, 5)), "float32"
    )
    results = []
    for layer in (plain, subpixel):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        results.append([y, *grads])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=ATOL * 10)
    np.testing.assert_allclose(np.asarray(results[1][0]), np.asarray(results[0][0]), atol=ATOL)


def test_same_variables_as_conv2d_transpose_and_other_settings_fall_back():
    plain, subpixel = _pair(5)
    assert [v.path.split("/")[-1] for v in subpixel.weights] == ["kernel", "bias"]
    assert [v.shape for v in subpixel.weights] == [v.shape for v in plain.weights]
    stride_one = SubPixelConv2DTranspose(3, 5, strides=1, padding="same")
    x = np.ones((1, 4, 4, 2), "float32")
    assert tuple(stride_one(x).shape) == (1, 4, 4, 3)  # the parent's path


def test_taps_per_parity_and_the_zero_overhead():
    # k=4: each parity uses two taps, at different offsets -> a 3-wide window, one zero each.
    assert subpixel_taps(4) == (3, 1, [[3, 1, None], [None, 2, 0]])
    # k=5: parity 0 uses taps 3, 1; parity 1 uses taps 4, 2, 0.
    assert subpixel_taps(5) == (3, 1, [[3, 1, None], [4, 2, 0]])
    assert gathered_flops_ratio(4) == pytest.approx(9 * 4 / 16)
    assert gathered_flops_ratio(5) == pytest.approx(9 * 4 / 25)


JAX_SCRIPT = """
import json, sys
import numpy as np, jax, keras
sys.path.insert(0, "tests")
from test_layers import CASES, _pair
worst = 0.0
for k, h, w in CASES:
    plain, subpixel = _pair(k)
    x = np.random.default_rng(1).standard_normal((2, h, w, 6)).astype("float32")
    upstream = np.random.default_rng(2).standard_normal((2, 2 * h, 2 * w, 5)).astype("float32")
    outs = []
    for layer in (plain, subpixel):
        def loss(x, weights):
            y, _ = layer.stateless_call(weights, [], x)
            return (y * upstream).sum(), y
        (value, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            x, [v.value for v in layer.trainable_variables])
        outs.append([y, grads[0], *grads[1]])
    for a, b in zip(*outs):
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
print(json.dumps({"worst": worst, "backend": keras.backend.backend()}))
"""


@pytest.mark.slow  # a subprocess that imports Keras on JAX
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_outputs_and_gradients_equal_conv2d_transpose_on_jax():
    result = run_python("-c", JAX_SCRIPT, KERAS_BACKEND="jax", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert report["worst"] < ATOL * 10, report


def test_decoder_form_follows_the_measurements_and_the_override(monkeypatch):
    from wae_tf import networks

    monkeypatch.delenv(networks.TRANSPOSED_CONV_ENV, raising=False)
    assert networks.transposed_conv_form(4, backend="tensorflow") == "plain"
    assert networks.transposed_conv_form(5, backend="tensorflow") == "plain"
    monkeypatch.setenv(networks.TRANSPOSED_CONV_ENV, "subpixel")
    assert networks.transposed_conv_class(4) is SubPixelConv2DTranspose
    monkeypatch.setenv(networks.TRANSPOSED_CONV_ENV, "fast")
    with pytest.raises(ValueError, match="auto, plain or subpixel"):
        networks.transposed_conv_form(4)


@pytest.mark.parametrize("kind", ["wae_mmd", "wae_gan"])
def test_one_train_step_with_either_form_gives_the_same_weights(kind, monkeypatch):
    """Same init, same batch, same prior draws: one train step with the decoder's FSConv
    layers in either form changes every weight the same way.

    SGD (lr 0.1), so that a weight's change is its gradient (Adam's first step,
    lr * g / |g|, would turn rounding noise into full steps). Each change agrees to 3e-4 of
    its variable's largest change, or of the model's for variables whose exact gradient is
    zero (conv biases followed by BN: pure rounding noise), as in tests/test_distribute.py.
    """
    import keras

    from wae_tf import configs, models, networks, optimizers

    config = configs.with_width(configs.get_config("mnist", kind), 8).replace(
        batch_size=16, lr_schedule="constant", init_stddev=0.3
    )
    images = np.random.default_rng(0).random((16, 28, 28, 1), "float32")
    deltas = {}
    for form in ("plain", "subpixel"):
        monkeypatch.setenv(networks.TRANSPOSED_CONV_ENV, form)
        model = models.build_model(config)
        autoencoder = keras.optimizers.SGD(0.1, name=optimizers.AUTOENCODER)
        optimizer = autoencoder
        if kind == "wae_gan":
            adversary = keras.optimizers.SGD(0.1, name=optimizers.ADVERSARY)
            optimizer = keras.optimizers.MultiOptimizer(
                keras.optimizers.OptimizerMap(autoencoder, {optimizers.ADVERSARY_PATHS: adversary})
            )
        model.compile(optimizer=optimizer)
        subpixel = [isinstance(layer, SubPixelConv2DTranspose) for layer in model.decoder.layers]
        assert any(subpixel) == (form == "subpixel")
        before = [np.array(v.numpy()) for v in model.trainable_weights]
        model.train_step(images)
        after = [np.array(v.numpy()) for v in model.trainable_weights]
        deltas[form] = [a - b for a, b in zip(after, before, strict=True)]
    model_scale = max(float(np.abs(d).max()) for d in deltas["plain"])
    assert model_scale > 1e-3
    for want, got in zip(deltas["plain"], deltas["subpixel"], strict=True):
        own = float(np.abs(want).max())
        scale = own if own > 1e-3 * model_scale else model_scale
        assert float(np.abs(want - got).max()) <= 3e-4 * scale


def test_keras_files_load_across_the_two_forms(tmp_path, monkeypatch):
    """A .keras file saved with plain FSConv layers loads into a decoder built with the
    sub-pixel form (and back), giving the same images: the files are interchangeable."""
    import keras

    from wae_tf import configs, models, networks

    config = configs.with_width(configs.get_config("mnist", "wae_mmd"), 8)
    z = np.random.default_rng(0).standard_normal((4, config.z_dim)).astype("float32")
    for saved, loaded in (("plain", "subpixel"), ("subpixel", "plain")):
        monkeypatch.setenv(networks.TRANSPOSED_CONV_ENV, saved)
        model = models.build_model(config.replace(seed=3))
        path = tmp_path / f"{saved}.keras"
        model.save(path)
        monkeypatch.setenv(networks.TRANSPOSED_CONV_ENV, loaded)
        restored = keras.saving.load_model(path, compile=False)
        forms = [isinstance(layer, SubPixelConv2DTranspose) for layer in restored.decoder.layers]
        assert any(forms) == (loaded == "subpixel")
        np.testing.assert_allclose(
            np.asarray(restored.decode(z)), np.asarray(model.decode(z)), atol=1e-6
        )
