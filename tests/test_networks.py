"""The paper's networks [paper, App. C]: exact parameter counts and layer-by-layer topology."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from wae_tf import networks
from wae_tf.configs import get_config, with_width

# Trainable parameter counts of the paper nets (paper_spec.md, from the official code).
PAPER_COUNTS = {
    "mnist": {"encoder": 11_050_632, "decoder": 10_943_745, "adversary": 793_089},
    "celeba": {"encoder": 18_267_200, "decoder": 21_475_331, "adversary": 821_761},
}


def _trainable(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "celeba"])
@pytest.mark.parametrize("model", ["wae_mmd", "wae_gan"])
def test_paper_nets_have_the_exact_parameter_counts(dataset, model):
    config = get_config(dataset, model)
    expected = PAPER_COUNTS[dataset]
    assert _trainable(networks.build_encoder(config)) == expected["encoder"]
    assert _trainable(networks.build_decoder(config)) == expected["decoder"]
    if model == "wae_gan":
        assert _trainable(networks.build_adversary(config)) == expected["adversary"]


def test_vae_encoder_outputs_mean_and_log_variance():
    config = get_config("mnist", "vae")
    encoder = networks.build_encoder(config)
    # Only the last dense layer differs from the WAE encoder: (2 d_z) outputs.
    assert encoder.output.shape == (None, 2 * config.z_dim)
    assert _trainable(encoder) == PAPER_COUNTS["mnist"]["encoder"] + (2 * 2 * 1024) * 8 + 8


@pytest.mark.parametrize("dataset", ["mnist", "celeba"])
def test_encoder_halves_the_resolution_four_times_with_same_padding(dataset):
    config = with_width(get_config(dataset, "wae_mmd"), 8)
    encoder = networks.build_encoder(config)
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    size = config.image_shape[0]
    assert len(convs) == 4
    for conv in convs:
        assert conv.kernel_size == (config.kernel_size,) * 2
        assert conv.strides == (2, 2) and conv.padding == "same"
        size = -(-size // 2)  # SAME padding: ceil(size / 2)
        assert conv.output.shape[1] == size
    bns = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 4
    assert all(bn.epsilon == 1e-5 and bn.momentum == 0.9 and bn.center and bn.scale for bn in bns)


@pytest.mark.parametrize("dataset", ["mnist", "celeba"])
def test_decoder_ends_with_stride_one_layer_and_range_activation(dataset):
    config = with_width(get_config(dataset, "wae_mmd"), 8)
    decoder = networks.build_decoder(config)
    deconvs = [layer for layer in decoder.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [d.strides for d in deconvs] == [(2, 2)] * len(config.decoder_filters) + [(1, 1)]
    assert deconvs[-1].filters == config.image_shape[-1]
    assert decoder.output.shape[1:] == config.image_shape
    # No batch norm between the first dense layer and its ReLU [paper].
    names = [layer.name for layer in decoder.layers]
    assert names.index("fc_relu") == names.index("reshape") + 1
    out = np.asarray(decoder(np.random.default_rng(0).normal(size=(4, config.z_dim)) * 100))
    if config.pixel_range == "unit":
        assert out.min() >= 0.0 and out.max() <= 1.0
    else:
        assert out.min() >= -1.0 and out.max() <= 1.0 and out.min() < 0.0


def test_initialisers_follow_the_official_code():
    config = get_config("mnist", "wae_gan")
    encoder, decoder = networks.build_encoder(config), networks.build_decoder(config)
    conv = encoder.get_layer("conv2").kernel.numpy()
    # Truncated normal: nothing beyond 2 std, std below the untruncated 0.01.
    assert np.abs(conv).max() <= 2 * 0.0099999 + 1e-7
    assert 0.0085 < conv.std() < 0.0095
    deconv = decoder.get_layer("deconv1").kernel.numpy()
    assert np.abs(deconv).max() > 2 * 0.0099999  # plain normal: tails beyond 2 std exist
    assert abs(deconv.std() - 0.0099999) < 2e-4
    assert all(not np.any(v.numpy()) for v in encoder.weights if v.name == "bias")


@pytest.mark.slow
def test_tiny_override_keeps_the_topology():
    paper, small = get_config("celeba", "wae_gan"), with_width(get_config("celeba", "wae_gan"), 4)
    for build in (networks.build_encoder, networks.build_decoder, networks.build_adversary):
        a, b = build(paper), build(small)
        assert [type(layer) for layer in a.layers] == [type(layer) for layer in b.layers]
        assert a.output.shape == b.output.shape


def test_same_seed_builds_identical_weights_and_other_seeds_differ():
    config = with_width(get_config("mnist", "wae_mmd"), 8)
    a = networks.build_encoder(config).get_weights()
    b = networks.build_encoder(config).get_weights()
    c = networks.build_encoder(config.replace(seed=1)).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
