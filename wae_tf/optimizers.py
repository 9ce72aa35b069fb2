"""Adam optimizers and the paper's per-epoch learning-rate schedules.

The WAE-GAN has two optimizers (encoder/decoder and latent adversary [paper,
Algorithm 1]). They live in one `keras.optimizers.MultiOptimizer`, so that `fit`,
checkpoints and the JAX train state see a single optimizer; the train step applies
each sub-optimizer to its own variables, in the order of the official code.
"""

from __future__ import annotations

import re

import keras
from keras import ops

from wae_tf.configs import Config

AUTOENCODER = "autoencoder_adam"
ADVERSARY = "adversary_adam"
ADVERSARY_PATHS = "adversary/.*"  # variable paths routed to the adversary's Adam


@keras.saving.register_keras_serializable(package="wae_tf")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that changes once per epoch.

    kind="paper": lr * factor_k after boundary_k epochs [paper, App. C: /2 after 30,
      /5 more after 50, /10 more after 100 -> factors 0.5, 0.1, 0.01].
    kind="official_code": lr * 100^(-min(e + 1, D) / D) in epoch e (0-based), D =
      decay_epochs: the code's "manual_smooth" schedule [code] wae.py:549-552 divides the
      lr by 100^(1/epoch_num) at the start of every epoch, epoch 0 included, before that
      epoch's steps; so epoch 0 already runs at lr * 100^(-1/D) and epoch D - 1 at lr / 100.
      The code never runs past epoch_num = D; here epochs e >= D stay at lr / 100 (the
      decay's stated end point) instead of decaying further.
    kind="constant": lr.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        steps_per_epoch: int,
        kind: str = "paper",
        boundaries: tuple[int, ...] = (30, 50, 100),
        factors: tuple[float, ...] = (0.5, 0.1, 0.01),
        decay_epochs: int = 50,
    ):
        if steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        if kind not in ("paper", "official_code", "constant"):
            raise ValueError(f"unknown learning-rate schedule {kind!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.kind = kind
        self.boundaries = tuple(int(b) for b in boundaries)
        self.factors = tuple(float(f) for f in factors)
        self.decay_epochs = int(decay_epochs)

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch)
        factor = ops.ones_like(epoch)
        if self.kind == "paper":
            for boundary, value in zip(self.boundaries, self.factors, strict=True):
                factor = ops.where(epoch >= boundary, value, factor)
        elif self.kind == "official_code":
            progress = ops.minimum(epoch + 1.0, self.decay_epochs) / self.decay_epochs
            factor = ops.power(100.0, -progress)
        return self.initial_learning_rate * factor

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "kind": self.kind,
            "boundaries": list(self.boundaries),
            "factors": list(self.factors),
            "decay_epochs": self.decay_epochs,
        }


def _adam(config: Config, learning_rate: float, steps_per_epoch: int | None, name: str):
    if config.lr_schedule != "constant":
        if steps_per_epoch is None:
            raise ValueError(
                f"the {config.lr_schedule!r} learning-rate schedule changes once per epoch: "
                "pass steps_per_epoch (= training examples // batch size) to compile(), "
                "or use lr_schedule='constant'"
            )
        learning_rate = EpochSchedule(
            learning_rate,
            steps_per_epoch,
            kind=config.lr_schedule,
            boundaries=config.lr_boundaries,
            factors=config.lr_factors,
            decay_epochs=config.lr_decay_epochs,
        )
    return keras.optimizers.Adam(
        learning_rate=learning_rate,
        beta_1=config.adam_beta1,  # 0.5 [paper, App. C]
        beta_2=config.adam_beta2,
        epsilon=1e-8,  # TF1's AdamOptimizer default, used by the code
        name=name,
    )


def make_optimizer(config: Config, steps_per_epoch: int | None) -> keras.optimizers.Optimizer:
    """The paper's optimizer(s) for `config`: Adam, or Adam + Adam for the WAE-GAN."""
    autoencoder = _adam(config, config.learning_rate, steps_per_epoch, AUTOENCODER)
    if config.penalty != "gan":
        return autoencoder
    adversary = _adam(config, config.adversary_learning_rate, steps_per_epoch, ADVERSARY)
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(autoencoder, {ADVERSARY_PATHS: adversary}),
        name="wae_gan_optimizers",
    )


def sub_optimizer(optimizer: keras.optimizers.Optimizer, name: str) -> keras.optimizers.Optimizer:
    """The sub-optimizer called `name` (AUTOENCODER or ADVERSARY) of a MultiOptimizer."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # unwrap LossScaleOptimizer
    if not isinstance(inner, keras.optimizers.MultiOptimizer):
        if name == AUTOENCODER:
            return optimizer
        raise ValueError("a WAE-GAN needs a MultiOptimizer with an adversary optimizer")
    for opt in inner.optimizers:
        if opt.name == name:
            return opt
    raise ValueError(f"no sub-optimizer named {name!r} in {[o.name for o in inner.optimizers]}")


def loss_scaled_sub_optimizers(
    optimizer: keras.optimizers.Optimizer, variables: list
) -> dict[str, keras.optimizers.Optimizer]:
    """{sub-optimizer name: LossScaleOptimizer around it} for a loss-scaled MultiOptimizer.

    Under the mixed_float16 policy Keras's compile() wraps the whole optimizer in one
    LossScaleOptimizer. The WAE-GAN's train step applies its two sub-optimizers one after
    the other (Algorithm 1), which would bypass that wrapper: no loss scaling, no skipped
    non-finite steps. Each sub-optimizer therefore gets its own dynamic loss scale, built
    here on its own `variables` (Keras forbids a LossScaleOptimizer inside a
    MultiOptimizer). These scales restart at 2^15 when a run is resumed. Returns {} for
    any other optimizer.
    """
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return {}
    inner = optimizer.inner_optimizer
    if not isinstance(inner, keras.optimizers.MultiOptimizer):
        return {}
    scaled = {}
    for opt in inner.optimizers:
        is_adversary = opt.name == ADVERSARY
        own = [v for v in variables if bool(re.fullmatch(ADVERSARY_PATHS, v.path)) == is_adversary]
        wrapper = keras.optimizers.LossScaleOptimizer(
            opt,
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=f"{opt.name}_loss_scale",
        )
        if own:
            wrapper.build(own)
        scaled[opt.name] = wrapper
    return scaled
