"""The paper's encoder, decoder and latent adversary as plain functional Keras models.

Architectures follow [paper, App. C] and the official code's models.py [code]; read
top to bottom, each builder is the appendix's layer list:

  Encoder  (Conv_k - BN - ReLU) x 4, flatten, FC d_z          (VAE: FC 2 d_z)
  Decoder  FC s*s*1024 - ReLU, (FSConv_k - BN - ReLU) x 2|3, FSConv_channels stride 1,
           sigmoid (MNIST, pixels in [0,1]) | tanh (CelebA, pixels in [-1,1])
  Adversary (FC512 - ReLU) x 4, FC1  (logit of "z came from P_Z")

Conv_k: k filters, 4x4 (MNIST) or 5x5 (CelebA) kernel, stride 2, SAME padding.
FSConv_k: transposed conv with the same kernel, stride 2 (SAME); the last one stride 1.
Everything here is backend-agnostic Keras.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from wae_tf.configs import Config
from wae_tf.layers import SubPixelConv2DTranspose


class _Initializers:
    """Kernel initialisers [code], each seeded from config.seed so that builds repeat.

    Every layer gets its own seed (config.seed, network offset, layer index): no global
    random state is read or changed.
    """

    def __init__(self, config: Config, offset: int):
        self.stddev = config.init_stddev
        self.base = config.seed * 1000 + offset
        self.count = 0

    def _seed(self) -> int:
        self.count += 1
        return self.base + self.count

    def conv(self) -> keras.initializers.Initializer:
        # [code] ops.conv2d: truncated normal, stddev 0.0099999.
        return keras.initializers.TruncatedNormal(stddev=self.stddev, seed=self._seed())

    def dense(self) -> keras.initializers.Initializer:
        # [code] ops.linear and ops.deconv2d: random normal, stddev 0.0099999.
        return keras.initializers.RandomNormal(stddev=self.stddev, seed=self._seed())


def _batch_norm(config: Config, name: str) -> layers.Layer:
    # [code] ops.batch_norm: epsilon 1e-5, moving-average decay 0.9, learned scale/offset.
    return layers.BatchNormalization(
        epsilon=config.bn_epsilon,
        momentum=config.bn_momentum,
        synchronized=config.sync_batch_norm,
        name=name,
    )


def _norm_relu(x, config: Config, name: str):
    if config.batch_norm:
        x = _batch_norm(config, f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_encoder(config: Config, name: str = "encoder") -> keras.Model:
    """Images (B, H, W, C) in the config's pixel range -> codes (B, d_z).

    For the VAE the output is (B, 2 d_z): the posterior mean and log-variance.
    """
    init = _Initializers(config, offset=0)
    inputs = keras.Input(shape=config.image_shape, name="images")
    x = inputs
    for i, filters in enumerate(config.encoder_filters):
        x = layers.Conv2D(
            filters,
            config.kernel_size,
            strides=2,
            padding="same",
            kernel_initializer=init.conv(),
            bias_initializer="zeros",
            name=f"conv{i + 1}",
        )(x)
        x = _norm_relu(x, config, f"conv{i + 1}")
    x = layers.Flatten(name="flatten")(x)
    out_dim = 2 * config.z_dim if config.model == "vae" else config.z_dim
    codes = layers.Dense(
        out_dim, kernel_initializer=init.dense(), bias_initializer="zeros", name="codes"
    )(x)
    # Outputs stay float32 under mixed precision: the losses and the MMD are float32.
    codes = layers.Activation("linear", dtype="float32", name="codes_float32")(codes)
    return keras.Model(inputs, codes, name=name)


TRANSPOSED_CONV_ENV = "WAE_TF_TRANSPOSED_CONV"  # "auto" (default), "plain" or "subpixel"


def transposed_conv_form(kernel_size: int, backend: str | None = None) -> str:
    """How the decoder computes its stride-2 FSConv layers: "plain" (Keras's
    Conv2DTranspose) or "subpixel" (`wae_tf.layers`, the same function). Both give the
    same outputs; the choice is speed only, from measurements (README "Benchmarks"):

    - TensorFlow: plain (on 2 CPU cores the sub-pixel form was 0.3-0.7x as fast).
    - JAX on CPU: sub-pixel (XLA's kernel gradient of the plain form was 7-21x slower).
    - JAX on GPU: sub-pixel for 5x5 kernels (CelebA; about 2x the plain form on an H100),
      plain for 4x4 (MNIST; the sub-pixel form's 3x3 window made the H100 step slower).
    ${TRANSPOSED_CONV_ENV} = "plain" or "subpixel" overrides the choice.
    """
    override = os.environ.get(TRANSPOSED_CONV_ENV, "auto")
    if override not in ("auto", "plain", "subpixel"):
        raise ValueError(
            f"${TRANSPOSED_CONV_ENV} must be auto, plain or subpixel, got {override!r}"
        )
    if override != "auto":
        return override
    if (backend or keras.backend.backend()) != "jax":
        return "plain"
    import jax

    if jax.default_backend() == "cpu":
        return "subpixel"
    return "subpixel" if kernel_size == 5 else "plain"


def transposed_conv_class(kernel_size: int) -> type[layers.Conv2DTranspose]:
    """The layer class of the decoder's stride-2 FSConv layers (`transposed_conv_form`)."""
    if transposed_conv_form(kernel_size) == "subpixel":
        return SubPixelConv2DTranspose
    return layers.Conv2DTranspose


def build_decoder(config: Config, name: str = "decoder") -> keras.Model:
    """Codes (B, d_z) -> images (B, H, W, C) in the config's pixel range."""
    init = _Initializers(config, offset=100)
    size, channels = config.decoder_initial_size, config.image_shape[-1]
    inputs = keras.Input(shape=(config.z_dim,), name="z")
    x = layers.Dense(
        size * size * config.decoder_dense_filters,
        kernel_initializer=init.dense(),
        bias_initializer="zeros",
        name="fc",
    )(inputs)
    x = layers.Reshape((size, size, config.decoder_dense_filters), name="reshape")(x)
    x = layers.ReLU(name="fc_relu")(x)  # no BN after the first dense layer [paper]
    fsconv = transposed_conv_class(config.kernel_size)
    for i, filters in enumerate(config.decoder_filters):
        x = fsconv(
            filters,
            config.kernel_size,
            strides=2,
            padding="same",
            kernel_initializer=init.dense(),
            bias_initializer="zeros",
            name=f"deconv{i + 1}",
        )(x)
        x = _norm_relu(x, config, f"deconv{i + 1}")
    x = layers.Conv2DTranspose(
        channels,
        config.kernel_size,
        strides=1,  # the last layer keeps the resolution [paper, App. C]
        padding="same",
        kernel_initializer=init.dense(),
        bias_initializer="zeros",
        name="deconv_out",
    )(x)
    activation = "sigmoid" if config.pixel_range == "unit" else "tanh"
    images = layers.Activation(activation, dtype="float32", name=activation)(x)
    return keras.Model(inputs, images, name=name)


def build_adversary(config: Config, name: str = "adversary") -> keras.Model:
    """Codes (B, d_z) -> logits (B, 1) that the code was drawn from P_Z (WAE-GAN)."""
    init = _Initializers(config, offset=200)
    inputs = keras.Input(shape=(config.z_dim,), name="z")
    x = inputs
    for i in range(config.adversary_layers):
        x = layers.Dense(
            config.adversary_units,
            kernel_initializer=init.dense(),
            bias_initializer="zeros",
            name=f"fc{i + 1}",
        )(x)
        x = layers.ReLU(name=f"fc{i + 1}_relu")(x)
    logits = layers.Dense(
        1, kernel_initializer=init.dense(), bias_initializer="zeros", name="logits"
    )(x)
    logits = layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
    return keras.Model(inputs, logits, name=name)
