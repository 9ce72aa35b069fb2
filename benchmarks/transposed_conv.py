"""Forward + backward time of the decoders' stride-2 transposed convolutions: Keras's
Conv2DTranspose vs the same function in sub-pixel form (wae_tf.layers), side by side.

    python benchmarks/transposed_conv.py [--batch=100] [--iters=5] [--rounds=3]
    KERAS_BACKEND=jax python benchmarks/transposed_conv.py

Each round times every layer both ways, interleaved; the best round is printed with the
ratio plain / sub-pixel (> 1: sub-pixel is faster). The shapes are the paper's decoder
layers (MNIST: 4x4 kernels; CelebA: 5x5), at --batch images.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np

from wae_tf import provenance
from wae_tf.layers import SubPixelConv2DTranspose

# (name, input H=W, C_in, C_out, kernel) of the paper's decoders [paper, App. C]
LAYERS = (
    ("mnist_deconv1", 7, 1024, 512, 4),
    ("mnist_deconv2", 14, 512, 256, 4),
    ("celeba_deconv1", 8, 1024, 512, 5),
    ("celeba_deconv2", 16, 512, 256, 5),
    ("celeba_deconv3", 32, 256, 128, 5),
)


def step_fn(layer, x, upstream):
    """A compiled forward + backward (input and kernel gradients) of `layer` on `x`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(weights, x):
            y, _ = layer.stateless_call(weights, [], x)
            return (y * upstream).sum()

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        weights = [v.value for v in layer.trainable_variables]
        return lambda: jax.block_until_ready(grad(weights, x))
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * upstream)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return lambda: [g.numpy() for g in step()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", default=",".join(name for name, *_ in LAYERS))
    parser.add_argument("--json_out", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    chosen = [spec for spec in LAYERS if spec[0] in args.layers.split(",")]
    fns = {}
    for name, size, c_in, c_out, k in chosen:
        x = keras.ops.convert_to_tensor(
            rng.standard_normal((args.batch, size, size, c_in)), "float32"
        )
        up = keras.ops.convert_to_tensor(
            rng.standard_normal((args.batch, 2 * size, 2 * size, c_out)), "float32"
        )
        plain = keras.layers.Conv2DTranspose(c_out, k, strides=2, padding="same")
        subpixel = SubPixelConv2DTranspose(c_out, k, strides=2, padding="same")
        plain.build(x.shape)
        subpixel.build(x.shape)
        subpixel.set_weights(plain.get_weights())
        fns[name] = {"plain": step_fn(plain, x, up), "subpixel": step_fn(subpixel, x, up)}
        for fn in fns[name].values():
            fn()  # compile / warm up
    best: dict[str, dict[str, float]] = {name: {} for name in fns}
    for _ in range(args.rounds):
        for name, pair in fns.items():
            for kind, fn in pair.items():
                start = time.perf_counter()
                for _ in range(args.iters):
                    fn()
                ms = (time.perf_counter() - start) / args.iters * 1e3
                best[name][kind] = min(best[name].get(kind, float("inf")), ms)
    print(
        f"backend {keras.backend.backend()}, batch {args.batch}, best of {args.rounds} rounds "
        f"x {args.iters} iterations, forward + backward, ms"
    )
    print(f"{'layer':16s} {'plain':>10s} {'sub-pixel':>10s} {'plain/sub':>10s}")
    for name, times in best.items():
        ratio = times["plain"] / times["subpixel"]
        print(f"{name:16s} {times['plain']:10.2f} {times['subpixel']:10.2f} {ratio:10.2f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            record = {
                "backend": keras.backend.backend(),
                "args": vars(args),
                "ms": best,
                "machine": provenance.machine(),
                "versions": provenance.library_versions(),
            }
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
