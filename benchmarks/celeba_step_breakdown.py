"""Where the CelebA train step's time goes on JAX, layer by layer, beside PyTorch (issue 6).

Times forward + backward (gradients for the weights and the input, as in training) of every
convolution / transposed convolution of the CelebA paper nets [paper, App. C] at batch 100,
float32, in Keras-on-JAX (the layers our models use, jitted) and in PyTorch (cuDNN, the same
shapes), and the two whole networks. Prints milliseconds and the ratio jax/torch.

    KERAS_BACKEND=jax python benchmarks/celeba_step_breakdown.py [--iters=20] [--width=N]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.gpu_train_step import _SameConv, _up_conv  # noqa: E402 (also --batch_size)
from wae_tf import configs, networks  # noqa: E402
from wae_tf.configs import get_config  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("iters", 20, "Timed iterations per measurement.", lower_bound=1)
flags.DEFINE_integer("width", None, "Every layer this wide (default: the paper's).")


def _time_jax(layer_or_model, x) -> float:
    trainable = [v.value for v in layer_or_model.trainable_variables]
    non_trainable = [v.value for v in layer_or_model.non_trainable_variables]

    def loss(trainable, x):
        kwargs = {"training": True} if isinstance(layer_or_model, keras.Model) else {}
        y, _ = layer_or_model.stateless_call(trainable, non_trainable, x, **kwargs)
        return keras.ops.sum(keras.ops.square(y))

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    jax.block_until_ready(step(trainable, x))
    jax.block_until_ready(step(trainable, x))
    t0 = time.perf_counter()
    for _ in range(FLAGS.iters):
        out = step(trainable, x)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / FLAGS.iters * 1e3


def _time_torch(module, x) -> float:
    device = x.device
    x = x.detach().requires_grad_(True)

    def once():
        module.zero_grad(set_to_none=True)
        (module(x) ** 2).sum().backward()

    once()
    once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(FLAGS.iters):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / FLAGS.iters * 1e3


def _torch_twin(layer, device):
    """The PyTorch layer of the same shape (weights random: speed only)."""
    cin = layer.input.shape[-1]
    size = layer.input.shape[1]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        if layer.strides == (1, 1):
            module = torch.nn.Conv2d(cin, layer.filters, layer.kernel_size[0], padding="same")
        else:
            module = _up_conv(cin, layer.filters, layer.kernel_size[0])
    else:
        module = _SameConv(cin, layer.filters, layer.kernel_size[0], layer.strides[0], size)
    return module.to(device)


def main(argv) -> None:
    del argv
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = get_config("celeba", "wae_mmd")
    if FLAGS.width:
        config = configs.with_width(config, FLAGS.width)
    encoder = networks.build_encoder(config)
    decoder = networks.build_decoder(config)
    rng = np.random.default_rng(0)
    rows = []
    for net in (encoder, decoder):
        for layer in net.layers:
            if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
                continue
            shape = (FLAGS.batch_size, *layer.input.shape[1:])
            x = rng.standard_normal(shape).astype("float32")
            ms_jax = _time_jax(layer, keras.ops.convert_to_tensor(x))
            xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)
            ms_torch = _time_torch(_torch_twin(layer, device), xt)
            rows.append(
                (f"{net.name}/{layer.name} {tuple(shape[1:])}->{layer.filters}", ms_jax, ms_torch)
            )
            print(
                f"{rows[-1][0]:55s} jax {ms_jax:8.2f} ms  torch {ms_torch:8.2f} ms  "
                f"jax/torch {ms_jax / ms_torch:5.2f}",
                flush=True,
            )
    for net in (encoder, decoder):
        shape = (FLAGS.batch_size, *net.input.shape[1:])
        x = rng.standard_normal(shape).astype("float32")
        ms_jax = _time_jax(net, keras.ops.convert_to_tensor(x))
        print(f"{'whole ' + net.name:55s} jax {ms_jax:8.2f} ms", flush=True)
    print(
        f"sum of conv layers: jax {sum(r[1] for r in rows):.2f} ms, "
        f"torch {sum(r[2] for r in rows):.2f} ms"
    )


if __name__ == "__main__":
    app.run(main)
