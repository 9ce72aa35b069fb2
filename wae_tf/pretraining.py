"""Encoder pretraining [code, e_pretrain; paper, App. C]: before the WAE is trained,
up to 200 Adam steps on the encoder alone make Q_Z's mean and covariance match P_Z's,
on batches of 1000 (MNIST) / 256 (CelebA) images and as many prior draws. It stops
early once the matching loss is below 0.1.

As in the code, by default each step
  * uses Adam at the autoencoder's learning rate, without its schedule ([code] wae.py:379
    lr = opts['lr'] and wae.py:406 self.optimizer(lr): decay left at 1);
  * runs the encoder in training mode, input noise included ([code] wae.py:445 feeds
    is_training=True, which turns on models.py:8-16 add_noise: truncated normal, std 0.01).
`Config.pretrain_learning_rate` (a float) and `Config.pretrain_input_noise=False` give
the former behaviour (a fixed lr, clean inputs).

Randomness: each step draws the prior samples and then the input noise from the model's
SeedGenerator, in the order of the train step (`models.WAE.train_step`); on JAX the
generator's state is threaded through the jitted step (`jax_steps.pretrain_step_fn`).
The batch indices come from a NumPy generator seeded by config.seed.

`model` is any built WAE (duck-typed: `config`, `encoder`, `sample_prior`,
`input_noise`); this module does not import `wae_tf.models`, which imports it.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from absl import logging

from wae_tf import console, losses
from wae_tf.configs import Config

# Progress: after the first PROJECTION_STEPS steps that follow step 0 (which includes
# tracing), one line with the measured time per step and the projected time of the phase;
# without a progress bar, a line every LOG_EVERY_STEPS steps or LOG_EVERY_S seconds.
PROJECTION_STEPS = 3
LOG_EVERY_STEPS = 20
LOG_EVERY_S = 10.0


def pretrain_learning_rate(config: Config) -> float:
    """The Adam lr of the pretraining steps: `pretrain_learning_rate`, or if that is None
    the autoencoder's `learning_rate` (the code's choice, wae.py:406)."""
    if config.pretrain_learning_rate is None:
        return config.learning_rate
    return config.pretrain_learning_rate


def make_pretrain_optimizer(config: Config) -> keras.optimizers.Adam:
    """The pretraining Adam: lr `pretrain_learning_rate(config)`, beta1 0.5 [code], eps 1e-8
    (TF1's AdamOptimizer default, as for training)."""
    return keras.optimizers.Adam(
        learning_rate=pretrain_learning_rate(config),
        beta_1=config.adam_beta1,
        beta_2=config.adam_beta2,
        epsilon=1e-8,
        name="pretrain_adam",
    )


def draw_pretraining_inputs(model, images, batch_size: int):
    """Prior draws (batch_size, d_z) and the encoder's input for one pretraining step.

    The input is `images` plus the model's training input noise (`model.input_noise`,
    the same code as the train step) when `config.pretrain_input_noise`, else `images`.
    Both draws advance the model's SeedGenerator; call it where that is allowed (eagerly,
    inside a tf.function, or inside a keras.StatelessScope on JAX).
    """
    pz = model.sample_prior(batch_size)
    if model.config.pretrain_input_noise:
        images = model.input_noise(images)
    return pz, images


def _tensorflow_step_fn(model, optimizer):
    import tensorflow as tf

    variables = model.encoder.trainable_variables

    @tf.function
    def step(images):
        pz, inputs = draw_pretraining_inputs(model, images, images.shape[0])
        with tf.GradientTape() as tape:
            loss = losses.moment_matching_loss(model.encoder(inputs, training=True), pz)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


class _Progress:
    """The pretraining's log lines (absl INFO) and, on a terminal, Keras's progress bar."""

    def __init__(self, steps: int, threshold: float, verbose: int):
        self.steps, self.threshold, self.verbose = steps, threshold, verbose
        self.bar = None
        if verbose == 1 and console.default_verbose() == 1:  # drawn on a terminal only
            self.bar = keras.utils.Progbar(steps, stateful_metrics=["matching_loss"])
        self.start = self.last_log = time.time()
        self.first_step_done: float | None = None  # when step 0 (with tracing) ended

    def step(self, i: int, loss: float) -> None:
        if not self.verbose:
            return
        now = time.time()
        if i == 0:
            self.first_step_done = now
        elif i == PROJECTION_STEPS and self.first_step_done is not None:
            per_step = (now - self.first_step_done) / PROJECTION_STEPS
            logging.info(
                "encoder pretraining: %s, up to %d steps: ~%s on this machine (it stops "
                "early once the matching loss is below %g)",
                console.format_step_time(per_step),
                self.steps,
                console.format_duration(per_step * self.steps),
                self.threshold,
            )
        if self.bar is not None:
            stop = loss < self.threshold or i + 1 == self.steps  # its last update
            self.bar.update(i + 1, [("matching_loss", loss)], finalize=stop)
        elif (
            i % LOG_EVERY_STEPS == 0 or loss < self.threshold or now - self.last_log >= LOG_EVERY_S
        ):
            logging.info("encoder pretraining step %d: matching loss %.4f", i, loss)
            self.last_log = now

    def finish(self, history: list[float]) -> None:
        if self.verbose:
            logging.info(
                "encoder pretraining: %d steps, final loss %.4f, %.1f s",
                len(history),
                history[-1] if history else float("nan"),
                time.time() - self.start,
            )


def pretrain_encoder(model, images, steps=None, batch_size=None, verbose: int | bool = True):
    """Run the pretraining on `images` (N, H, W, C) in the model's pixel range.

    verbose: 1 (True) Keras's progress bar where stdout is a terminal (else as 2); 2 a log
    line every 20 steps or 10 s; either way one line with the measured time per step and
    the projected time of the phase after the first steps, and one at the end; 0 silent.
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
    optimizer = make_pretrain_optimizer(config)
    optimizer.build(model.encoder.trainable_variables)
    if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
        from wae_tf import jax_steps

        step = jax_steps.pretrain_step_fn(
            model, optimizer, lambda x: draw_pretraining_inputs(model, x, x.shape[0])
        )
    else:
        step = _tensorflow_step_fn(model, optimizer)
    # Batches drawn with replacement across steps, as the code does; seeded by config.seed.
    rng = np.random.default_rng(config.seed)
    history: list[float] = []
    progress = _Progress(steps, config.pretrain_threshold, int(verbose))
    for i in range(steps):
        index = rng.choice(len(images), size=batch_size, replace=False)
        batch = keras.ops.convert_to_tensor(np.asarray(images[np.sort(index)], dtype="float32"))
        loss = float(step(batch))
        history.append(loss)
        progress.step(i, loss)
        if loss < config.pretrain_threshold:
            break
    progress.finish(history)
    return history
