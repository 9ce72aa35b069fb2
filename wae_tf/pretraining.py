"""Encoder pretraining [code, e_pretrain; paper, App. C]: before the WAE is trained,
up to 200 Adam steps on the encoder alone make Q_Z's mean and covariance match P_Z's,
on batches of 1000 (MNIST) / 256 (CelebA) images and as many prior draws. It stops
early once the matching loss is below 0.1.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from absl import logging

from wae_tf import losses


def _optimizer(config):
    return keras.optimizers.Adam(
        learning_rate=config.pretrain_learning_rate, beta_1=config.adam_beta1, name="pretrain_adam"
    )


def _tensorflow_step_fn(model, optimizer):
    import tensorflow as tf

    variables = model.encoder.trainable_variables

    @tf.function
    def step(images, pz):
        with tf.GradientTape() as tape:
            loss = losses.moment_matching_loss(model.encoder(images, training=True), pz)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def pretrain_encoder(model, images, steps=None, batch_size=None, verbose: bool = True):
    """Run the pretraining on `images` (N, H, W, C) in the model's pixel range.

    Returns the per-step losses (a list of floats, at most `steps` long).
    """
    config = model.config
    if config.model == "vae":
        # [code] pretrains the WAE's deterministic encoder; the VAE's outputs (mean,
        # log-variance) are not codes whose moments could be matched to P_Z.
        raise ValueError("encoder pretraining is for WAEs; the VAE baseline does not use it")
    steps = config.pretrain_steps if steps is None else steps
    batch_size = min(config.pretrain_batch_size if batch_size is None else batch_size, len(images))
    if batch_size < 2:
        raise ValueError("encoder pretraining needs at least 2 images for a covariance")
    optimizer = _optimizer(config)
    optimizer.build(model.encoder.trainable_variables)
    if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
        from wae_tf import jax_steps

        step = jax_steps.pretrain_step_fn(model, optimizer)
    else:
        step = _tensorflow_step_fn(model, optimizer)
    # Batches drawn with replacement across steps, as the code does; seeded by config.seed.
    rng = np.random.default_rng(config.seed)
    history: list[float] = []
    start = time.time()
    for i in range(steps):
        index = rng.choice(len(images), size=batch_size, replace=False)
        batch = keras.ops.convert_to_tensor(np.asarray(images[np.sort(index)], dtype="float32"))
        pz = model.sample_prior(batch_size)
        loss = float(step(batch, pz))
        history.append(loss)
        if verbose and (i % 20 == 0 or loss < config.pretrain_threshold):
            logging.info("encoder pretraining step %d: matching loss %.4f", i, loss)
        if loss < config.pretrain_threshold:
            break
    if verbose:
        logging.info(
            "encoder pretraining: %d steps, final loss %.4f, %.1f s",
            len(history),
            history[-1] if history else float("nan"),
            time.time() - start,
        )
    return history
