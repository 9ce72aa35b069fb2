"""WAE-MMD, WAE-GAN and the VAE baseline as Keras models with custom train steps.

`train_step` reads like the paper's algorithms [paper, Sec. 3]:

  Algorithm 1 (WAE-GAN)                     Algorithm 2 (WAE-MMD)
  x ~ data, z ~ P_Z, z~ = Q(x + noise)      x ~ data, z ~ P_Z, z~ = Q(x + noise)
  AE step:  c(x, G(z~)) - lambda log D(z~)  AE step: c(x, G(z~)) + lambda MMD(z~, z)
  D step:   lambda [BCE(D(z), 1) + BCE(D(z~), 0)], z~ from the updated encoder [code]

The math lives in backend-agnostic methods (`_autoencoder_terms`, `_adversary_terms`,
`_vae_terms`) built from `wae_tf.losses`; `train_step` differentiates them with the
active backend (TensorFlow here; `wae_tf.jax_steps` on JAX).
"""

from __future__ import annotations

import keras
from keras import ops

from wae_tf import losses, networks, optimizers, replicas
from wae_tf.configs import Config


def _images(data):
    """Accept x, (x,), (x, y) or (x, y, w) from fit; the WAE is unsupervised."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


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
        return self.reconstruct(images, training=training)

    def decode(self, z, training=False):
        """Codes (B, d_z) -> images in the config's pixel range."""
        return self.decoder(z, training=training)

    def reconstruct(self, images, training=False):
        return self.decode(self.encode(images, training=training), training=training)

    def sample_prior(self, n: int, seed=None):
        """n draws from P_Z = N(0, sigma_z^2 I) [paper, Sec. 4], shape (n, d_z).

        Under tf.distribute, n is this replica's share of one global draw [replicas.py].
        """
        seed = self.seed_generator if seed is None else seed
        return replicas.local_rows(
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

    def _step_optimizer(self, name: str) -> keras.optimizers.Optimizer:
        """The optimizer that applies sub-step `name` (AUTOENCODER or ADVERSARY)."""
        scaled = getattr(self, "_loss_scaled", {})
        return scaled.get(name) or optimizers.sub_optimizer(self.optimizer, name)

    def compile_from_config(self, config):
        """Restore compile() when a `.keras` file is loaded (optimizer state included)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    def _input_noise(self, images):
        """Truncated-normal noise (std 0.01, cut at 2 std) on the encoder's input [code]."""
        if self.config.input_noise_stddev <= 0:
            return images
        noise = replicas.local_rows(
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
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def _tensorflow_step(self, loss_fn, variables, optimizer):
        """One gradient step on `variables`, TensorFlow backend. Returns loss_fn's terms."""
        import tensorflow as tf  # only this backend's step needs it

        with tf.GradientTape() as tape:
            terms = loss_fn()
            # Gradients are summed across replicas under tf.distribute [replicas.py].
            loss = terms["loss"] / replicas.num_replicas_in_sync()
            loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return terms

    @property
    def autoencoder_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def test_step(self, *args):
        if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
            from wae_tf import jax_steps

            return jax_steps.test_step(self, *args)  # JAX calls test_step(state, data)
        (data,) = args
        images = _images(data)
        return self._update_trackers(self._evaluation_terms(images))

    def pretrain_encoder(self, images, steps=None, batch_size=None, verbose: bool = True):
        """Match mean and covariance of Q_Z to P_Z before training [code, e_pretrain].

        Up to `pretrain_steps` Adam steps on the encoder only, on batches of
        `pretrain_batch_size` images and as many prior draws; stops once the loss is
        below `pretrain_threshold`. Returns the list of losses.
        """
        from wae_tf import pretraining

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
        logits = self.adversary(z, training=training)
        if self.config.log_prior_trick:
            # AVB's trick [paper, App. C.2]: the adversary only learns log q/p.
            logits = logits + losses.log_normal_density(
                z, self.config.pz_scale, self.config.log_prior_constant
            )
        return logits

    def _penalty(self, qz, pz):
        """D_Z(Q_Z, P_Z) on the *global* batch (codes gathered across replicas)."""
        qz, pz = replicas.all_gather(qz), replicas.all_gather(pz)
        if self.config.penalty == "mmd":
            return losses.mmd_penalty(qz, pz, self.config.mmd_kernel, self.config.pz_scale)
        return losses.gan_penalty(self.adversary_logits(qz))

    def _autoencoder_terms(self, images, reconstructions, qz, pz):
        reconstruction = losses.reconstruction_cost(
            images, reconstructions, self.config.reconstruction_scale
        )
        penalty = self._penalty(qz, pz)
        return {
            "loss": reconstruction + self.config.penalty_weight * penalty,
            "reconstruction": reconstruction,
            "penalty": penalty,
        }

    def _adversary_terms(self, qz, pz):
        qz, pz = replicas.all_gather(qz), replicas.all_gather(pz)
        loss = losses.adversary_loss(
            self.adversary_logits(pz, training=True),
            self.adversary_logits(ops.stop_gradient(qz), training=True),
            self.config.penalty_weight,
        )
        return {"loss": loss}

    def _evaluation_terms(self, images):
        qz = self.encode(images)
        # A fixed integer seed, not the training stream: how often validation runs must not
        # change the prior draws and input noise that training sees (train --validate_every).
        pz = self.sample_prior(ops.shape(images)[0], seed=self.config.seed)
        terms = self._autoencoder_terms(images, self.decode(qz), qz, pz)
        if self.adversary is not None:
            terms["adversary_loss"] = self._adversary_terms(qz, pz)["loss"]
        return terms

    # --- Algorithms 1 and 2 --------------------------------------------------------------
    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
            from wae_tf import jax_steps

            return jax_steps.wae_train_step(self, *args)
        (data,) = args
        images = _images(data)
        pz = self.sample_prior(ops.shape(images)[0])  # fresh prior draws, same batch size
        noisy = self._input_noise(images)

        def autoencoder_objective():
            qz = self.encode(noisy, training=True)
            return self._autoencoder_terms(images, self.decode(qz, training=True), qz, pz)

        terms = self._tensorflow_step(
            autoencoder_objective,
            self.autoencoder_variables,
            self._step_optimizer(optimizers.AUTOENCODER),
        )
        if self.adversary is not None:
            # [code] the adversary step follows, on the same batch and prior draws, with
            # codes recomputed by the updated encoder.
            adversary_terms = self._tensorflow_step(
                lambda: self._adversary_terms(self.encode(noisy, training=True), pz),
                self.adversary.trainable_variables,
                self._step_optimizer(optimizers.ADVERSARY),
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
        stats = self.encoder(images, training=training)
        mean, log_variance = ops.split(stats, 2, axis=-1)
        return mean, log_variance

    def encode(self, images, training=False):
        """The posterior mean (B, d_z)."""
        return self.posterior(images, training=training)[0]

    def _vae_terms(self, images, mean, log_variance, reconstructions):
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

    def _reparameterize(self, mean, log_variance):
        eps = replicas.local_rows(
            lambda m: keras.random.normal((m, mean.shape[-1]), seed=self.seed_generator),
            ops.shape(mean)[0],
        )
        return mean + ops.exp(0.5 * log_variance) * eps

    def _evaluation_terms(self, images):
        mean, log_variance = self.posterior(images)
        return self._vae_terms(images, mean, log_variance, self.decode(mean))

    def train_step(self, *args):
        if keras.backend.backend() == "jax":  # pragma: no cover - exercised on JAX
            from wae_tf import jax_steps

            return jax_steps.vae_train_step(self, *args)
        (data,) = args
        images = _images(data)

        def negative_elbo():
            mean, log_variance = self.posterior(images, training=True)
            z = self._reparameterize(mean, log_variance)
            return self._vae_terms(images, mean, log_variance, self.decode(z, training=True))

        terms = self._tensorflow_step(negative_elbo, self.autoencoder_variables, self.optimizer)
        return self._update_trackers(terms)


def build_model(config: Config) -> WAE | VAE:
    """A built (not compiled) WAE or VAE for `config`."""
    model = VAE(config) if config.model == "vae" else WAE(config)
    model(ops.zeros((1, *config.image_shape)))  # create every variable now
    return model
