"""WAE-MMD, WAE-GAN and the VAE baseline as Keras models with custom train steps.

`train_step` reads like the paper's algorithms [paper, Sec. 3]:

  Algorithm 1 (WAE-GAN)                     Algorithm 2 (WAE-MMD)
  x ~ data, z ~ P_Z, z~ = Q(x + noise)      x ~ data, z ~ P_Z, z~ = Q(x + noise)
  AE step:  c(x, G(z~)) - lambda log D(z~)  AE step: c(x, G(z~)) + lambda MMD(z~, z)
  D step:   lambda [BCE(D(z), 1) + BCE(D(z~), 0)], z~ from the updated encoder [code]

The objective is public, backend-agnostic and built from `wae_tf.losses`: the named
terms `autoencoder_terms`, `adversary_terms` (WAE), `vae_terms` (VAE) and
`evaluation_terms`, and the randomness `sample_prior`, `input_noise` and (VAE)
`reparameterize`. `train_step` differentiates them with TensorFlow; on JAX
`wae_tf.jax_steps` runs the same algorithms from the same public methods. Those step
modules never import this one: they take the model as an argument.

Every term dict holds float32 scalars, batch means (the MMD is a U-statistic over the
global batch), in nats or in units of the cost c; "loss" is the one differentiated.
"""

from __future__ import annotations

import keras
from keras import ops

from wae_tf import global_batch, losses, networks, optimizers, pretraining
from wae_tf.configs import Config


class _AutoEncoderBase(keras.Model):
    """What the WAE and the VAE share: the two networks, the prior and the API."""

    def __init__(self, config: Config | dict, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, Config) else Config.from_dict(config)
        self.encoder = networks.build_encoder(self.config)
        self.decoder = networks.build_decoder(self.config)
        # Prior draws and input noise: Keras seed generators, so that runs repeat on
        # every backend and the RNG state is a model variable: saved in the training
        # CLI's .npz checkpoints (a .keras file does not keep it).
        self.seed_generator = keras.random.SeedGenerator(self.config.seed, name="train_seed")

    # --- Serialisation: the constructor argument is the whole config. ------------------
    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # --- Public API ----------------------------------------------------------------------
    def call(self, images, training=False):
        """`reconstruct`: what `model(images)` and `predict` return."""
        return self.reconstruct(images, training=training)

    def decode(self, z, training=False):
        """Codes (B, d_z) -> images in the config's pixel range."""
        return self.decoder(z, training=training)

    def reconstruct(self, images, training=False):
        """G(Q(x)): images -> images, both in the config's pixel range."""
        return self.decode(self.encode(images, training=training), training=training)

    def sample_prior(self, n: int, seed=None):
        """n draws from P_Z = N(0, sigma_z^2 I) [paper, Sec. 4], shape (n, d_z).

        Under tf.distribute, n is this replica's share of one global draw [global_batch.py].
        """
        seed = self.seed_generator if seed is None else seed
        return global_batch.local_rows(
            lambda m: keras.random.normal(
                (m, self.config.z_dim), stddev=self.config.pz_scale, seed=seed
            ),
            n,
        )

    def sample(self, n: int, seed: int = 0):
        """n random images G(z), z ~ P_Z, reproducible for a given integer seed."""
        return self.decode(self.sample_prior(n, seed=seed))

    def compile(self, optimizer=None, steps_per_epoch: int | None = None, **kwargs):
        """Compile with the paper's optimizers unless `optimizer` is given.

        steps_per_epoch drives the per-epoch learning-rate schedule [paper, App. C].
        XLA is off by default: it made these nets 2.4-5x slower on CPU (see README).
        """
        if optimizer is None:
            optimizer = optimizers.make_optimizer(self.config, steps_per_epoch)
        kwargs.setdefault("jit_compile", keras.backend.backend() == "jax")
        super().compile(optimizer=optimizer, **kwargs)
        if self.built:
            # Assign every variable to its sub-optimizer now; the train step applies
            # them separately (Algorithm 1), so nothing else would build the map.
            self.optimizer.build(self.trainable_variables)
        # mixed_float16: one dynamic loss scale per sub-optimizer [optimizers.py].
        self._loss_scaled = optimizers.loss_scaled_sub_optimizers(
            self.optimizer, self.trainable_variables
        )

    def step_optimizer(self, name: str) -> keras.optimizers.Optimizer:
        """The optimizer that applies sub-step `name` (optimizers.AUTOENCODER or ADVERSARY).

        The sub-optimizer of `self.optimizer`, or under mixed_float16 for the WAE-GAN the
        LossScaleOptimizer around it (its scale is not in `self.optimizer.variables`).
        """
        scaled = getattr(self, "_loss_scaled", {})
        return scaled.get(name) or optimizers.sub_optimizer(self.optimizer, name)

    def compile_from_config(self, config):
        """Restore compile() when a `.keras` file is loaded (optimizer state included)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    def input_noise(self, images):
        """`images` plus the encoder's training input noise [code, models.py add_noise].

        Truncated normal, std `config.input_noise_stddev` in pixel units (0.01 in every
        preset: 1% of MNIST's [0, 1] range, 0.5% of CelebA's [-1, 1]), cut at 2 std; one
        draw per pixel from the model's SeedGenerator. Returns `images`' shape and dtype,
        each pixel moved by at most 2 std (so up to 0.02 outside the pixel range), or
        `images` itself when the std is 0. Used by the train steps and by encoder
        pretraining, never at inference.
        """
        if self.config.input_noise_stddev <= 0:
            return images
        noise = global_batch.local_rows(
            lambda m: keras.random.truncated_normal(
                (m, *images.shape[1:]),
                stddev=self.config.input_noise_stddev,
                seed=self.seed_generator,
            ),
            ops.shape(images)[0],
        )
        return images + ops.cast(noise, images.dtype)

    def _update_trackers(self, terms: dict):
        for tracker in self.metrics:
            tracker.update_state(terms[tracker.name])
        return global_batch.reducible_logs(
            {tracker.name: tracker.result() for tracker in self.metrics}
        )

    def _tensorflow_step(self, loss_fn, variables, optimizer):
        """One gradient step on `variables`, TensorFlow backend. Returns loss_fn's terms."""
        import tensorflow as tf  # only this backend's step needs it

        with tf.GradientTape() as tape:
            terms = loss_fn()
            # Gradients are summed across replicas under tf.distribute [global_batch.py].
            loss = terms["loss"] / global_batch.num_replicas_in_sync()
            loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return terms

    @property
    def autoencoder_variables(self) -> list:
        """The encoder's and decoder's trainable variables: what the AE step moves."""
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def test_step(self, *args):
        if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
            from wae_tf import jax_steps

            return jax_steps.test_step(self, *args)  # JAX calls test_step(state, data)
        (data,) = args
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # unsupervised: x only
        return self._update_trackers(self.evaluation_terms(images))

    def pretrain_encoder(self, images, steps=None, batch_size=None, verbose: bool = True):
        """Match mean and covariance of Q_Z to P_Z before training [code, e_pretrain].

        Up to `pretrain_steps` Adam steps on the encoder only, on batches of
        `pretrain_batch_size` images and as many prior draws; stops once the loss is
        below `pretrain_threshold`. Returns the list of losses.
        """
        return pretraining.pretrain_encoder(self, images, steps, batch_size, verbose)


@keras.saving.register_keras_serializable(package="wae_tf")
class WAE(_AutoEncoderBase):
    """Wasserstein Auto-Encoder with a deterministic encoder [paper, Sec. 3].

    config.model "wae_mmd": D_Z = MMD with the IMQ (or RBF) kernel (Algorithm 2);
    config.model "wae_gan": D_Z = JS divergence via a latent adversary (Algorithm 1).
    """

    def __init__(self, config: Config | dict, **kwargs):
        super().__init__(config, **kwargs)
        if self.config.penalty is None:
            raise ValueError(f"WAE needs model 'wae_mmd' or 'wae_gan', got {self.config.model!r}")
        self.adversary = None
        if self.config.penalty == "gan":
            # Variable paths "adversary/...": what routes them to the adversary's Adam in
            # the MultiOptimizer (optimizers.py); without the scope they are "fc1/kernel".
            with keras.name_scope("adversary"):
                self.adversary = networks.build_adversary(self.config)
        names = ["loss", "reconstruction", "penalty"]
        if self.adversary is not None:
            names.append("adversary_loss")
        self.trackers = [keras.metrics.Mean(name=n) for n in names]

    @property
    def metrics(self):
        return self.trackers

    def encode(self, images, training=False):
        """Images in the config's pixel range -> deterministic codes (B, d_z)."""
        return self.encoder(images, training=training)

    # --- The objective, backend-agnostic -------------------------------------------------
    def adversary_logits(self, z, training=False):
        """WAE-GAN: the adversary's logits (B, 1) that z came from P_Z rather than Q_Z.

        With `config.log_prior_trick` (CelebA) the log-density of P_Z at z (nats) is
        added, so the network itself only learns log q/p [paper, App. C.2].
        """
        logits = self.adversary(z, training=training)
        if self.config.log_prior_trick:  # AVB's trick
            logits = logits + losses.log_normal_density(
                z, self.config.pz_scale, self.config.log_prior_constant
            )
        return logits

    def latent_penalty(self, qz, pz):
        """D_Z(Q_Z, P_Z) on the *global* batch (codes gathered across replicas), a scalar.

        qz: codes (B, d_z); pz: prior draws (B, d_z). wae_mmd: the unbiased MMD^2
        estimate; wae_gan: the encoder's non-saturating -log D(z~), in nats.
        """
        qz, pz = global_batch.all_gather(qz), global_batch.all_gather(pz)
        if self.config.penalty == "mmd":
            return losses.mmd_penalty(qz, pz, self.config.mmd_kernel, self.config.pz_scale)
        return losses.gan_penalty(self.adversary_logits(qz))

    def autoencoder_terms(self, images, reconstructions, qz, pz) -> dict:
        """The objective of the encoder and decoder [paper, Algorithms 1-2, AE step].

        images, reconstructions: (B, H, W, C) in the config's pixel range ([0, 1] MNIST,
        [-1, 1] CelebA); qz: codes Q(x) (B, d_z); pz: prior draws (B, d_z). Returns
        {"loss": reconstruction + lambda * penalty, "reconstruction": the cost c(x, G(z~)) =
        reconstruction_scale * ||x - G(z~)||^2 (0.05 by default) as a batch mean,
        "penalty": D_Z(Q_Z, P_Z)}: the unbiased MMD^2 (wae_mmd) or the non-saturating
        -log D(z~) in nats (wae_gan), both on the batch gathered across replicas.
        """
        reconstruction = losses.reconstruction_cost(
            images, reconstructions, self.config.reconstruction_scale
        )
        penalty = self.latent_penalty(qz, pz)
        return {
            "loss": reconstruction + self.config.penalty_weight * penalty,
            "reconstruction": reconstruction,
            "penalty": penalty,
        }

    def adversary_terms(self, qz, pz) -> dict:
        """WAE-GAN: the adversary's objective [paper, Algorithm 1, D step].

        qz: codes (B, d_z), treated as constants; pz: prior draws (B, d_z). Returns
        {"loss": lambda * (BCE(D(z), 1) + BCE(D(z~), 0))} in nats, a batch mean over the
        batch gathered across replicas.
        """
        qz, pz = global_batch.all_gather(qz), global_batch.all_gather(pz)
        loss = losses.adversary_loss(
            self.adversary_logits(pz, training=True),
            self.adversary_logits(ops.stop_gradient(qz), training=True),
            self.config.penalty_weight,
        )
        return {"loss": loss}

    def evaluation_terms(self, images) -> dict:
        """The training terms on `images` (B, H, W, C) in the config's pixel range,
        inference mode: no input noise, BN moving statistics.

        Returns `autoencoder_terms` plus, for the WAE-GAN, "adversary_loss" (the
        `adversary_terms` loss); the names of `self.metrics`.
        """
        qz = self.encode(images)
        # A fixed integer seed, not the training stream: how often validation runs must not
        # change the prior draws and input noise that training sees (train --validate_every).
        pz = self.sample_prior(ops.shape(images)[0], seed=self.config.seed)
        terms = self.autoencoder_terms(images, self.decode(qz), qz, pz)
        if self.adversary is not None:
            terms["adversary_loss"] = self.adversary_terms(qz, pz)["loss"]
        return terms

    # --- Algorithms 1 and 2 --------------------------------------------------------------
    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
            from wae_tf import jax_steps

            return jax_steps.wae_train_step(self, *args)
        (data,) = args
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # unsupervised: x only
        pz = self.sample_prior(ops.shape(images)[0])  # fresh prior draws, same batch size
        noisy = self.input_noise(images)

        def autoencoder_objective():
            qz = self.encode(noisy, training=True)
            return self.autoencoder_terms(images, self.decode(qz, training=True), qz, pz)

        terms = self._tensorflow_step(
            autoencoder_objective,
            self.autoencoder_variables,
            self.step_optimizer(optimizers.AUTOENCODER),
        )
        if self.adversary is not None:
            # [code] the adversary step follows, on the same batch and prior draws, with
            # codes recomputed by the updated encoder; with adversary_fresh_input_noise the
            # batch gets new input noise, as the code's second sess.run draws (wae.py:605-611).
            if self.config.adversary_fresh_input_noise:
                noisy = self.input_noise(images)
            adversary_terms = self._tensorflow_step(
                lambda: self.adversary_terms(self.encode(noisy, training=True), pz),
                self.adversary.trainable_variables,
                self.step_optimizer(optimizers.ADVERSARY),
            )
            terms["adversary_loss"] = adversary_terms["loss"]
            self.optimizer.iterations.assign_add(1)  # one training step, two sub-steps
        return self._update_trackers(terms)


@keras.saving.register_keras_serializable(package="wae_tf")
class VAE(_AutoEncoderBase):
    """The VAE baseline [paper, Sec. 4]: the same networks, a Gaussian encoder.

    The encoder's last layer outputs the posterior mean and log-variance. The decoder is
    Bernoulli (MNIST) or Gaussian with fixed variance (CelebA). `reconstruction` reports
    the WAE's cost c(x, G(z)) so that all three models can be compared on it.
    """

    def __init__(self, config: Config | dict, **kwargs):
        super().__init__(config, **kwargs)
        self.trackers = [
            keras.metrics.Mean(name=n) for n in ("loss", "nll", "kl", "reconstruction")
        ]

    @property
    def metrics(self):
        return self.trackers

    def posterior(self, images, training=False):
        """Q(Z|x) for images in the config's pixel range: (mean, log-variance), each (B, d_z)."""
        stats = self.encoder(images, training=training)
        mean, log_variance = ops.split(stats, 2, axis=-1)
        return mean, log_variance

    def encode(self, images, training=False):
        """The posterior mean (B, d_z)."""
        return self.posterior(images, training=training)[0]

    def vae_terms(self, images, mean, log_variance, reconstructions) -> dict:
        """The negative ELBO and its parts [paper, Sec. 4], batch means in nats.

        images, reconstructions: (B, H, W, C) in the config's pixel range (the decoder's
        Bernoulli means in [0, 1] on MNIST, Gaussian means in [-1, 1] on CelebA); mean,
        log_variance: the posterior (B, d_z). Returns {"loss": nll + kl, "nll": -log
        p(x|z) summed over pixels, "kl": KL(Q(Z|x) || P_Z) analytic, "reconstruction": the
        WAE's cost c(x, G(z)) (not trained on; for comparing the three models)}.
        """
        if self.config.vae_likelihood == "bernoulli":
            nll = losses.bernoulli_nll(images, reconstructions)
        else:
            nll = losses.gaussian_nll(images, reconstructions, self.config.vae_gaussian_variance)
        kl = losses.gaussian_kl(mean, log_variance, self.config.pz_scale)
        return {
            "loss": nll + kl,
            "nll": nll,
            "kl": kl,
            "reconstruction": losses.reconstruction_cost(
                images, reconstructions, self.config.reconstruction_scale
            ),
        }

    def reparameterize(self, mean, log_variance):
        """A draw z = mean + exp(log_variance / 2) * eps, eps ~ N(0, I) from the model's
        SeedGenerator: (B, d_z), differentiable in mean and log_variance."""
        eps = global_batch.local_rows(
            lambda m: keras.random.normal((m, mean.shape[-1]), seed=self.seed_generator),
            ops.shape(mean)[0],
        )
        return mean + ops.exp(0.5 * log_variance) * eps

    def evaluation_terms(self, images) -> dict:
        """`vae_terms` on `images` in inference mode, decoding the posterior mean (no
        sampling: evaluation is deterministic); the names of `self.metrics`."""
        mean, log_variance = self.posterior(images)
        return self.vae_terms(images, mean, log_variance, self.decode(mean))

    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
            from wae_tf import jax_steps

            return jax_steps.vae_train_step(self, *args)
        (data,) = args
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # unsupervised: x only

        def negative_elbo():
            mean, log_variance = self.posterior(images, training=True)
            z = self.reparameterize(mean, log_variance)
            return self.vae_terms(images, mean, log_variance, self.decode(z, training=True))

        terms = self._tensorflow_step(negative_elbo, self.autoencoder_variables, self.optimizer)
        return self._update_trackers(terms)


def build_model(config: Config) -> WAE | VAE:
    """A built (not compiled) WAE or VAE for `config`."""
    model = VAE(config) if config.model == "vae" else WAE(config)
    model(ops.zeros((1, *config.image_shape)))  # create every variable now
    return model
