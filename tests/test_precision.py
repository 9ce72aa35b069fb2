"""Mixed precision: every model kind trains under every dtype policy, losses stay float32,
and the float16 loss scaling is applied *and* undone, also for the WAE-GAN's two
sub-optimizers. Every test restores the global dtype policy. Runtime: about 60 s on 2
shared CPU cores (tiny nets, 10 steps per policy and model kind).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from wae_tf import configs, distribute, models, optimizers

KINDS = ("wae_mmd", "wae_gan", "vae")
STEPS = 10  # float16: the VAE's first steps overflow until the loss scale has halved enough
BATCH = 8


def _tiny(kind: str):
    return configs.with_width(configs.get_config("mnist", kind), 4).replace(lr_schedule="constant")


@pytest.fixture(autouse=True)
def float32_after_each_test():
    yield
    assert keras.mixed_precision.dtype_policy().name == "float32", "policy leaked"


@pytest.fixture(scope="module")
def images(mnist_images) -> np.ndarray:
    return mnist_images[: STEPS * BATCH]


def _all_finite(variables) -> bool:
    return all(np.all(np.isfinite(np.asarray(v.numpy(), dtype="float32"))) for v in variables)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("policy", distribute.PRECISIONS)
def test_tiny_model_trains_without_non_finite_values(policy, kind, images):
    with distribute.precision(policy):
        model = models.build_model(_tiny(kind))
        model.compile()
        before = [np.array(v.numpy()) for v in model.trainable_variables]
        history = model.fit(images, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)

    compute_dtype = {"float32": "float32", "mixed_bfloat16": "bfloat16"}.get(policy, "float16")
    assert model.encoder.get_layer("conv1").compute_dtype == compute_dtype
    # Variables, BN statistics and everything the losses read stay float32.
    assert all(v.dtype == "float32" for v in model.weights)
    x = images[:4]
    assert model.encode(x).dtype == "float32" and model(x).dtype == "float32"
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), (name, values)
    assert _all_finite(model.variables + model.optimizer.variables)
    changed = [
        not np.array_equal(b, v.numpy())
        for b, v in zip(before, model.trainable_variables, strict=True)
    ]
    assert any(changed), "no step was applied"
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    else:
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.slow
def test_wae_gan_sub_optimizers_each_get_a_dynamic_loss_scale_under_float16(images):
    with distribute.precision("mixed_float16"):
        model = models.build_model(_tiny("wae_gan"))
        model.compile()
        model.fit(images[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)
    for name in (optimizers.AUTOENCODER, optimizers.ADVERSARY):
        scaled = model.step_optimizer(name)
        assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
        assert scaled.inner_optimizer is optimizers.sub_optimizer(model.optimizer, name)
        # Each of the 2 steps either counted as finite or halved the scale: the wrapper ran.
        ran = int(scaled.step_counter.numpy()) + np.log2(2.0**15 / float(scaled.dynamic_scale))
        assert ran == 2, name


def _sgd_optimizer(config):
    sgd = keras.optimizers.SGD(0.1, name=optimizers.AUTOENCODER)
    if config.penalty != "gan":
        return sgd
    adversary = keras.optimizers.SGD(0.1, name=optimizers.ADVERSARY)
    return keras.optimizers.MultiOptimizer(
        keras.optimizers.OptimizerMap(sgd, {optimizers.ADVERSARY_PATHS: adversary})
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_loss_scaling_is_undone_exactly(kind, images):
    """float32 compute, SGD (whose step is proportional to the gradient), loss scale 2^15:
    scaling by a power of two is exact, so the step must equal the unscaled one bit for
    bit; a missing or doubled unscaling would change it by a factor 2^15."""
    config = _tiny(kind)
    results = []
    for wrap in (False, True):
        model = models.build_model(config)
        optimizer = _sgd_optimizer(config)
        if wrap:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer)
        model.fit(images[:BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        results.append([np.array(v.numpy()) for v in model.trainable_variables])
        if wrap:
            scaled = model.step_optimizer(optimizers.AUTOENCODER)
            assert int(scaled.step_counter.numpy()) == 1, "the loss scale was bypassed"
    for plain, scaled in zip(*results, strict=True):
        np.testing.assert_array_equal(plain, scaled)


def test_set_precision_rejects_unknown_policies_and_precision_restores():
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        distribute.set_precision("float16")
    with distribute.precision("mixed_bfloat16"):
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.dtype_policy().name == "float32"
