"""WAE-MMD, WAE-GAN and VAE: training on real MNIST, optimizer separation, save/load, seeds."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from wae_tf import optimizers
from wae_tf.configs import get_config, with_width
from wae_tf.models import VAE, WAE, build_model

KINDS = ["wae_mmd", "wae_gan", "vae"]


def _config(model: str, **overrides):
    return with_width(get_config("mnist", model), 16).replace(**{"seed": 3, **overrides})


def _weights(variables):
    return [np.array(v.numpy()) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("model_name", KINDS)
def test_training_lowers_reconstruction_and_mmd(model_name, mnist_images):
    model = build_model(_config(model_name, lr_schedule="constant"))
    model.compile()
    # 40 steps. Compare training-mode epoch means: with the paper's tiny initial weights,
    # BN's moving variance (decay 0.9) needs ~100 steps to forget its initial 1.0, so
    # inference-mode metrics are not yet meaningful this early.
    history = model.fit(mnist_images, batch_size=50, epochs=5, shuffle=True, verbose=0).history
    assert history["reconstruction"][-1] < 0.6 * history["reconstruction"][0]
    if model_name == "wae_mmd":
        assert history["penalty"][-1] < 0.6 * history["penalty"][0]
    assert all(np.isfinite(v[-1]) for v in history.values())


@pytest.mark.slow
def test_wae_gan_updates_each_network_only_with_its_own_optimizer(mnist_images):
    model = build_model(_config("wae_gan", lr_schedule="constant"))
    model.compile()
    ae_opt = optimizers.sub_optimizer(model.optimizer, optimizers.AUTOENCODER)
    adv_opt = optimizers.sub_optimizer(model.optimizer, optimizers.ADVERSARY)
    assert ae_opt is not adv_opt
    assert ae_opt.learning_rate.numpy() == pytest.approx(1e-3)
    assert adv_opt.learning_rate.numpy() == pytest.approx(5e-4)

    # Freeze one sub-optimizer at a time (lr 0): only the other network may move.
    for frozen, moving in [(ae_opt, model.adversary), (adv_opt, model.encoder)]:
        frozen.learning_rate.assign(0.0)
        other = model.adversary if moving is model.encoder else model.encoder
        moving_before = _weights(moving.trainable_variables)
        other_before = _weights(other.trainable_variables)
        model.fit(mnist_images[:100], batch_size=50, epochs=1, verbose=0)
        assert all(_changed(moving_before, moving.trainable_variables))
        assert not any(_changed(other_before, other.trainable_variables))
        frozen.learning_rate.assign(1e-3)
    # One training step = one AE sub-step + one adversary sub-step.
    assert int(ae_opt.iterations.numpy()) == int(adv_opt.iterations.numpy()) == 4
    assert int(model.optimizer.iterations.numpy()) == 4


def test_schedule_needs_steps_per_epoch():
    model = build_model(_config("wae_mmd"))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.compile()


@pytest.mark.slow
@pytest.mark.parametrize("model_name", KINDS)
def test_save_load_round_trip_gives_identical_outputs(model_name, mnist_images, tmp_path):
    model = build_model(_config(model_name))
    model.compile(steps_per_epoch=2)
    model.fit(mnist_images[:100], batch_size=50, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, VAE if model_name == "vae" else WAE)
    assert loaded.config == model.config
    x = mnist_images[:8]
    np.testing.assert_array_equal(np.asarray(loaded.encode(x)), np.asarray(model.encode(x)))
    np.testing.assert_array_equal(
        np.asarray(loaded.reconstruct(x)), np.asarray(model.reconstruct(x))
    )
    np.testing.assert_array_equal(
        np.asarray(loaded.sample(4, seed=5)), np.asarray(model.sample(4, seed=5))
    )
    # Optimizer state (moments, iterations) travels too, so training can continue.
    loaded_state = [np.asarray(v) for v in loaded.optimizer.variables]
    state = [np.asarray(v) for v in model.optimizer.variables]
    assert len(loaded_state) == len(state) and int(loaded.optimizer.iterations.numpy()) == 2
    for a, b in zip(loaded_state, state, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["wae_mmd", "wae_gan"])
def test_same_seed_repeats_a_training_run_exactly(model_name, mnist_images):
    def run(seed):
        model = build_model(_config(model_name, seed=seed))
        model.compile(steps_per_epoch=2)
        model.fit(mnist_images[:100], batch_size=50, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_input_noise_is_truncated_small_and_only_in_training(mnist_images):
    model = build_model(_config("wae_mmd"))
    x = mnist_images[:50]
    noise = np.asarray(model.input_noise(keras.ops.convert_to_tensor(x))) - x
    assert 0 < np.abs(noise).max() <= 2 * 0.01 + 1e-6
    assert noise.std() == pytest.approx(0.01 * 0.88, rel=0.1)  # std of N(0,1) cut at 2: 0.88
    # Inference is deterministic: no noise on encode().
    np.testing.assert_array_equal(np.asarray(model.encode(x)), np.asarray(model.encode(x)))


def test_prior_draws_have_the_configured_scale():
    model = build_model(_config("wae_mmd", pz_scale=2.0))
    z = np.asarray(model.sample_prior(20000))
    assert z.shape == (20000, 8)
    assert z.std() == pytest.approx(2.0, rel=0.02)
    assert np.array_equal(np.asarray(model.sample(3, seed=1)), np.asarray(model.sample(3, seed=1)))


@pytest.mark.slow
def test_encoder_pretraining_matches_prior_moments_and_stops_early(mnist_images):
    config = with_width(get_config("mnist", "wae_mmd"), 32).replace(seed=1, pretrain_batch_size=256)
    model = build_model(config)
    history = model.pretrain_encoder(mnist_images, verbose=False)
    # Starts far from P_Z (codes ~ 0, so cov mismatch ~ 1/d_z) and stops once below 0.1.
    assert history[0] > 0.12
    assert history[-1] < config.pretrain_threshold <= min(history[:-1])
    assert len(history) < config.pretrain_steps


def test_vae_refuses_encoder_pretraining_with_one_clear_error(mnist_images):
    model = build_model(_config("vae"))
    with pytest.raises(ValueError, match="encoder pretraining is for WAEs"):
        model.pretrain_encoder(mnist_images[:100], verbose=False)


@pytest.mark.slow
def test_pretraining_stops_below_the_threshold(mnist_images):
    model = build_model(_config("wae_mmd", pretrain_batch_size=100, pretrain_threshold=10.0))
    assert len(model.pretrain_encoder(mnist_images, verbose=False)) == 1


def test_vae_encode_is_the_posterior_mean_and_test_step_is_deterministic(mnist_images):
    model = build_model(_config("vae"))
    model.compile(steps_per_epoch=2)
    mean, log_var = model.posterior(mnist_images[:4])
    np.testing.assert_array_equal(np.asarray(model.encode(mnist_images[:4])), np.asarray(mean))
    assert log_var.shape == mean.shape == (4, 8)
    a = model.evaluate(mnist_images[:100], batch_size=50, verbose=0, return_dict=True)
    b = model.evaluate(mnist_images[:100], batch_size=50, verbose=0, return_dict=True)
    assert a == b and set(a) == {"loss", "nll", "kl", "reconstruction"}


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="dataset"):
        get_config("cifar", "wae_mmd")
    with pytest.raises(ValueError, match="model"):
        get_config("mnist", "wae")
    with pytest.raises(ValueError, match="official_code"):
        get_config("mnist", "vae", "official_code")
    with pytest.raises(ValueError, match="decoder_initial_size"):
        get_config("mnist", "wae_mmd").replace(decoder_initial_size=8)
    with pytest.raises(ValueError, match="mmd_kernel"):
        get_config("mnist", "wae_mmd").replace(mmd_kernel="gauss")
