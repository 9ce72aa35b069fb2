"""Train, test and pretraining steps for the JAX backend.

On JAX, Keras calls `train_step(state, data)` as a pure function (jitted by `fit`):

  state = (trainable_variables, non_trainable_variables,
           optimizer_variables, metrics_variables)

each a list of arrays in the order of `model.trainable_variables`,
`model.non_trainable_variables`, `model.optimizer.variables` and
`model.metrics_variables`; the step returns `(logs, new_state)`. The steps below are
the same algorithms as the TensorFlow path in `wae_tf.models` [paper, Algorithms 1-2]
and reuse the model's public, backend-agnostic objective (`autoencoder_terms`,
`adversary_terms`, `vae_terms`, `evaluation_terms`, `sample_prior`, `input_noise`,
`reparameterize`): that code runs unchanged inside a `keras.StatelessScope` that maps
every model variable to its value in `state`, and the scope hands back whatever it
assigned (batch-norm statistics, the seed generator).

This module does not import `wae_tf.models` (which imports it on JAX): every function
takes the model as an argument and uses only its public methods and attributes.

Where things live in the state:
- The model's `SeedGenerator` state (prior draws, input noise, the VAE's epsilon) is one
  of `non_trainable_variables`: it is threaded through every step, so a run repeats
  for a given `config.seed` and draws change from step to step.
- WAE-GAN: `model.optimizer` is a `MultiOptimizer`; its variables are its own
  `iterations` followed by each sub-optimizer's variables. Each sub-step applies one
  sub-optimizer (`stateless_apply`) to its slice, located by variable identity.

Importing this module needs JAX; TensorFlow is never imported on this path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import keras

from wae_tf import losses, optimizers

State = tuple[list, list, list, list]


# --- Variable bookkeeping -----------------------------------------------------------------
def _positions(subset: Sequence[keras.Variable], full: Sequence[keras.Variable]) -> list[int]:
    """Index in `full` of each variable of `subset` (by identity)."""
    index = {id(v): i for i, v in enumerate(full)}
    try:
        return [index[id(v)] for v in subset]
    except KeyError as missing:
        raise ValueError(f"variable {missing} is not in the expected variable list") from None


def _gather(values: Sequence[Any], positions: Sequence[int]) -> list:
    return [values[p] for p in positions]


def _scatter(values: Sequence[Any], positions: Sequence[int], new: Sequence[Any]) -> list:
    out = list(values)
    for p, v in zip(positions, new, strict=True):
        out[p] = v
    return out


def _optimizer_targets(optimizer: keras.optimizers.Optimizer) -> list[keras.Variable]:
    """The model variables `optimizer` was built on, in the order `stateless_apply` wants.

    Keras keeps them in the private `_trainable_variables` (set by `Optimizer.build`);
    `apply(grads)` without variables and `stateless_apply` both use that order.
    """
    targets = getattr(optimizer, "_trainable_variables", None)
    if not optimizer.built or targets is None:
        raise ValueError(
            f"optimizer {optimizer.name!r} is not built: compile the model after building it "
            "(wae_tf.models.build_model), or call fit, before the JAX train step runs"
        )
    return list(targets)


def _stateless(
    model: keras.Model,
    trainable: Sequence[Any],
    non_trainable: Sequence[Any],
    fn: Callable[[], Any],
) -> tuple[Any, list]:
    """Run `fn()` with the model's variables bound to these values, without side effects.

    Returns fn's result and the non-trainable values after it ran (batch-norm moving
    statistics and the seed generator's state, if fn used them).
    """
    mapping = list(zip(model.trainable_variables, trainable, strict=True))
    mapping += list(zip(model.non_trainable_variables, non_trainable, strict=True))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        out = fn()
    return out, [scope.get_current_value(v) for v in model.non_trainable_variables]


# --- One gradient step of one (sub-)optimizer --------------------------------------------
def _gradient_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    objective: Callable[[], dict],
    trainable: list,
    non_trainable: list,
    optimizer_variables: list,
) -> tuple[dict, list, list, list]:
    """Differentiate objective()["loss"] w.r.t. `optimizer`'s variables and apply it.

    The JAX twin of the TensorFlow step in `wae_tf.models`. Only the variables `optimizer`
    was built on move; `optimizer` may be `model.optimizer` or one of its sub-optimizers.
    Returns (terms, trainable, non_trainable, optimizer_variables), all updated.
    """
    targets = _positions(_optimizer_targets(optimizer), model.trainable_variables)
    slots = _positions(optimizer.variables, model.optimizer.variables)
    own_variables = _gather(optimizer_variables, slots)
    # scale_loss reads the loss-scale variable of a LossScaleOptimizer, if any.
    optimizer_mapping = list(zip(model.optimizer.variables, optimizer_variables, strict=True))

    def loss_and_updates(selected):
        values = _scatter(trainable, targets, selected)
        terms, updated = _stateless(model, values, non_trainable, objective)
        with keras.StatelessScope(state_mapping=optimizer_mapping):
            loss = optimizer.scale_loss(terms["loss"])
        return loss, (terms, updated)

    (_, (terms, non_trainable)), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(
        _gather(trainable, targets)
    )
    new_values, own_variables = optimizer.stateless_apply(
        own_variables, grads, _gather(trainable, targets)
    )
    trainable = _scatter(trainable, targets, new_values)
    optimizer_variables = _scatter(optimizer_variables, slots, own_variables)
    return terms, trainable, non_trainable, optimizer_variables


def _update_trackers(model: keras.Model, metrics_variables: list, terms: dict):
    """Update `model.metrics` (Mean trackers named like the terms) statelessly.

    Returns (logs, metrics_variables), as the TensorFlow step's tracker update does.
    """
    logs, updated, start = {}, [], 0
    for tracker in model.metrics:
        count = len(tracker.variables)
        values = tracker.stateless_update_state(
            metrics_variables[start : start + count], terms[tracker.name]
        )
        logs[tracker.name] = tracker.stateless_result(values)
        updated += values
        start += count
    return logs, updated


# --- Algorithms 1 and 2, and the VAE -----------------------------------------------------
def wae_train_step(model, state: State, data) -> tuple[dict, State]:
    """One WAE-MMD (Algorithm 2) or WAE-GAN (Algorithm 1) step: `WAE.train_step` on JAX."""
    if model.adversary is not None and any(
        isinstance(model.step_optimizer(name), keras.optimizers.LossScaleOptimizer)
        for name in (optimizers.AUTOENCODER, optimizers.ADVERSARY)
    ):
        # models.py gives each sub-optimizer its own LossScaleOptimizer under
        # mixed_float16; their scales are not in model.optimizer.variables, so they cannot
        # be carried in the JAX train state. Refuse rather than train without scaling.
        raise ValueError(
            "WAE-GAN with the mixed_float16 policy is not supported on JAX (its two dynamic "
            "loss scales live outside the train state): use mixed_bfloat16 or float32"
        )
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # unsupervised: x only
    batch = images.shape[0]
    # Fresh prior draws and input noise, in the order of the TensorFlow step.
    (pz, noisy), non_trainable = _stateless(
        model,
        trainable,
        non_trainable,
        lambda: (model.sample_prior(batch), model.input_noise(images)),
    )

    def autoencoder_objective():
        qz = model.encode(noisy, training=True)
        return model.autoencoder_terms(images, model.decode(qz, training=True), qz, pz)

    terms, trainable, non_trainable, optimizer_variables = _gradient_step(
        model,
        model.step_optimizer(optimizers.AUTOENCODER),
        autoencoder_objective,
        trainable,
        non_trainable,
        optimizer_variables,
    )
    if model.adversary is not None:
        # [code] the adversary step follows, on the same batch and prior draws, with codes
        # recomputed by the updated encoder (`trainable` now holds its new weights); with
        # adversary_fresh_input_noise, new input noise as in the code (wae.py:605-611).
        if model.config.adversary_fresh_input_noise:
            noisy, non_trainable = _stateless(
                model, trainable, non_trainable, lambda: model.input_noise(images)
            )
        adversary_terms, trainable, non_trainable, optimizer_variables = _gradient_step(
            model,
            model.step_optimizer(optimizers.ADVERSARY),
            lambda: model.adversary_terms(model.encode(noisy, training=True), pz),
            trainable,
            non_trainable,
            optimizer_variables,
        )
        terms["adversary_loss"] = adversary_terms["loss"]
        # One training step, two sub-steps: the MultiOptimizer's own counter moves once.
        (slot,) = _positions([model.optimizer.iterations], model.optimizer.variables)
        optimizer_variables = _scatter(optimizer_variables, [slot], [optimizer_variables[slot] + 1])
    logs, metrics_variables = _update_trackers(model, metrics_variables, terms)
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def vae_train_step(model, state: State, data) -> tuple[dict, State]:
    """One step on the VAE's negative ELBO: `VAE.train_step` on JAX."""
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    images, _, _ = keras.utils.unpack_x_y_sample_weight(data)

    def negative_elbo():
        mean, log_variance = model.posterior(images, training=True)
        z = model.reparameterize(mean, log_variance)
        return model.vae_terms(images, mean, log_variance, model.decode(z, training=True))

    terms, trainable, non_trainable, optimizer_variables = _gradient_step(
        model, model.optimizer, negative_elbo, trainable, non_trainable, optimizer_variables
    )
    logs, metrics_variables = _update_trackers(model, metrics_variables, terms)
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)


def test_step(model, state: tuple[list, list, list], data) -> tuple[dict, tuple[list, list, list]]:
    """Evaluation terms on one batch (inference-mode networks): `test_step` on JAX.

    state = (trainable_variables, non_trainable_variables, metrics_variables).
    """
    trainable, non_trainable, metrics_variables = state
    images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    terms, non_trainable = _stateless(
        model, trainable, non_trainable, lambda: model.evaluation_terms(images)
    )
    logs, metrics_variables = _update_trackers(model, metrics_variables, terms)
    return logs, (trainable, non_trainable, metrics_variables)


# --- Encoder pretraining [code, e_pretrain] ----------------------------------------------
def pretrain_step_fn(
    model, optimizer: keras.optimizers.Optimizer, draw_inputs: Callable[[Any], tuple[Any, Any]]
) -> Callable:
    """A callable images -> matching loss that takes one Adam step on the encoder.

    The JAX twin of the TensorFlow step in `wae_tf.pretraining`, which passes
    `draw_inputs`: images (B, H, W, C) -> (prior draws (B, d_z), the encoder's input),
    drawn from `model.seed_generator`. `optimizer` must be built on
    `model.encoder.trainable_variables`. The step itself is a jitted pure function: like
    `wae_train_step`, it calls `draw_inputs` inside a `keras.StatelessScope` that binds
    the model's SeedGenerator state, and returns the advanced state. The returned
    wrapper reads the encoder's, the optimizer's and the seed generator's variables,
    runs the step and writes the new values back.
    """
    encoder = model.encoder
    seed_state = model.seed_generator.state

    @jax.jit
    def step(trainable, non_trainable, optimizer_variables, seed, images):
        with keras.StatelessScope(state_mapping=[(seed_state, seed)]) as scope:
            pz, inputs = draw_inputs(images)
        seed = scope.get_current_value(seed_state)

        def loss_and_updates(trainable):
            qz, updated = encoder.stateless_call(trainable, non_trainable, inputs, training=True)
            return losses.moment_matching_loss(qz, pz), updated

        (loss, non_trainable), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(trainable)
        trainable, optimizer_variables = optimizer.stateless_apply(
            optimizer_variables, grads, trainable
        )
        return loss, trainable, non_trainable, optimizer_variables, seed

    def run(images):
        variable_lists = (
            encoder.trainable_variables,
            encoder.non_trainable_variables,
            optimizer.variables,
        )
        loss, *new_values, seed = step(
            *([v.value for v in vs] for vs in variable_lists), seed_state.value, images
        )
        for variables, values in zip(variable_lists, new_values, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        seed_state.assign(seed)
        return loss

    return run
