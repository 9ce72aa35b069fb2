"""Experiment configs: one frozen dataclass, one preset per paper run.

Every value cites where it comes from:
  [paper]  Tolstikhin et al., "Wasserstein Auto-Encoders", ICLR 2018 (arXiv 1711.01558),
  [code]   the official implementation, github.com/tolstikhin/wae,
  [?]      recalled from the paper but not re-checked: configurable, documented in README.

Tests and smoke runs shrink a preset with `dataclasses.replace`, e.g.
`dataclasses.replace(get_config("mnist", "wae_mmd"), encoder_filters=(8, 8, 8, 8))`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, get_args

# Choice sets, each declared once; the tuples (for flags and messages) derive from them.
Dataset = Literal["mnist", "fashion_mnist", "celeba"]
Model = Literal["wae_mmd", "wae_gan", "vae"]
Variant = Literal["paper", "official_code"]
PixelRange = Literal["unit", "symmetric"]  # the model's images: [0, 1] or [-1, 1]
# The range of any images a function reads: a model's, or uint8-valued pictures in [0, 255].
ImageRange = Literal["unit", "symmetric", "uint8"]
Kernel = Literal["imq", "rbf"]  # MMD kernel
Likelihood = Literal["bernoulli", "gaussian"]  # VAE decoder
Schedule = Literal["paper", "official_code", "constant"]  # learning-rate schedule
LogPriorConstant = Literal["official_code", "exact"]
Distribution = Literal["none", "mirrored", "multi_worker"]  # tf.distribute strategy
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]  # Keras dtype policy
DataSource = Literal["files", "tfds"]  # image files on disk, or prepared tfds data
# How the images are divided into train and test (see Config.split_rule).
SplitRule = Literal["standard", "official_code", "partition_file"]
# How training batches are drawn (see Config.batch_order).
BatchOrder = Literal["epoch_permutation", "independent_draws"]

DATASETS: tuple[str, ...] = get_args(Dataset)
MODELS: tuple[str, ...] = get_args(Model)
VARIANTS: tuple[str, ...] = get_args(Variant)
PIXEL_RANGES: tuple[str, ...] = get_args(PixelRange)
KERNELS: tuple[str, ...] = get_args(Kernel)
LIKELIHOODS: tuple[str, ...] = get_args(Likelihood)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
LOG_PRIOR_CONSTANTS: tuple[str, ...] = get_args(LogPriorConstant)
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)
PRECISIONS: tuple[str, ...] = get_args(Precision)
SPLIT_RULES: tuple[str, ...] = get_args(SplitRule)
BATCH_ORDERS: tuple[str, ...] = get_args(BatchOrder)
IMAGE_RANGES: tuple[str, ...] = get_args(ImageRange)
PIXEL_BOUNDS: dict[str, tuple[float, float]] = {
    "unit": (0.0, 1.0),
    "symmetric": (-1.0, 1.0),
    "uint8": (0.0, 255.0),
}


def pixel_bounds(pixel_range: ImageRange) -> tuple[float, float]:
    """(low, high) of the pixel range "unit", "symmetric" or "uint8"; the one converter
    from a range's name to its numbers (every caller names its range)."""
    if pixel_range not in PIXEL_BOUNDS:
        raise ValueError(
            f"pixel_range must be one of {', '.join(map(repr, IMAGE_RANGES))}; got {pixel_range!r}"
        )
    return PIXEL_BOUNDS[pixel_range]


# The split rules each dataset accepts; the first is the paper preset's.
DATASET_SPLIT_RULES: dict[str, tuple[str, ...]] = {
    "mnist": ("standard", "official_code"),
    "fashion_mnist": ("standard", "official_code"),
    "celeba": ("official_code", "partition_file"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """All hyperparameters of one training run (see module docstring for the tags)."""

    dataset: Dataset = "mnist"
    model: Model = "wae_mmd"
    variant: Variant = "paper"  # "official_code": the code's configs.py, WAEs only

    # --- Data -------------------------------------------------------------------------
    image_shape: tuple[int, int, int] = (28, 28, 1)
    # Pixel range the networks see: "unit" = [0, 1] (MNIST, sigmoid output),
    # "symmetric" = [-1, 1] (CelebA, tanh output). [paper, App. C]
    pixel_range: PixelRange = "unit"

    # How train and test are split.
    #   MNIST / Fashion-MNIST: "standard" = the distributed 60,000 train / 10,000 test files;
    #     "official_code" = the code pools all 70,000, shuffles them with seed 123 and holds
    #     out the last 10,000 ([code] datahandler.py:437-470).
    #   CelebA: "official_code" = the code's Python 2 shuffle (seed 123) of all 202,599 names,
    #     the last 20,000 held out ([code] datahandler.py:592-608): the split that produced
    #     the paper's numbers; "partition_file" = the official list_eval_partition.txt.
    split_rule: SplitRule = "standard"
    # How training batches are drawn. "epoch_permutation" (ours): each epoch is one
    # permutation of the training set, seeded by (seed, epoch), so resuming is exact.
    # "independent_draws": every step draws its batch afresh, without replacement inside
    # the batch but independently of every other step ([code] wae.py:573-576).
    batch_order: BatchOrder = "epoch_permutation"

    # --- Networks [paper, App. C; code models.py] ---------------------------------------
    z_dim: int = 8  # d_z: 8 for MNIST, 64 for CelebA [paper]
    kernel_size: int = 4  # 4x4 convs on MNIST, 5x5 on CelebA [paper]
    encoder_filters: tuple[int, ...] = (128, 256, 512, 1024)  # Conv-BN-ReLU blocks [paper]
    decoder_filters: tuple[int, ...] = (512, 256)  # FSConv-BN-ReLU blocks after FC [paper]
    decoder_dense_filters: int = 1024  # the decoder's FC reshapes to s x s x 1024 [paper]
    decoder_initial_size: int = 7  # s: 7 (MNIST), 8 (CelebA) [paper]
    adversary_units: int = 512  # FC512 x4 [paper]; the code uses 1024 on CelebA
    adversary_layers: int = 4
    batch_norm: bool = True  # the VAE on CelebA may have had none [?]
    bn_epsilon: float = 1e-5  # [code] ops.batch_norm
    bn_momentum: float = 0.9  # moving-average decay [code]
    init_stddev: float = 0.0099999  # [code] ops.conv2d / linear / deconv2d
    # Synchronised BN across replicas under tf.distribute, so that a distributed step
    # equals a single-device step on the same global batch.
    sync_batch_norm: bool = False

    # --- Objective [paper, Sec. 2-3; code wae.py] -------------------------------------
    pz_scale: float = 1.0  # sigma_z of P_Z = N(0, sigma_z^2 I)
    penalty_weight: float = 10.0  # lambda
    mmd_kernel: Kernel = "imq"  # "imq" (paper) or "rbf" (code alternative)
    # c(x, y) = 0.05 * ||x - y||^2: a legacy constant of the code's l2sq cost that only
    # rescales lambda and the learning rate; kept so that lambdas mean what they mean there.
    reconstruction_scale: float = 0.05
    log_prior_trick: bool = False  # add log p_Z(z) to the adversary logit [AVB; code]
    # WAE-GAN: whether the adversary step encodes the batch with freshly drawn input noise.
    # The code runs the adversary update in a second sess.run, whose add_noise op draws
    # new noise ([code] wae.py:605-611, models.py:8-16); False (ours) reuses the noisy
    # batch of the autoencoder step, as Algorithm 1 reads (one noisy sample per step).
    adversary_fresh_input_noise: bool = False
    # The trick's constant term. "official_code": -1/2 log(2 pi) - d_z/2 log(sigma_z^2), as
    # in the code's z_adversary; "exact": the true -d_z/2 log(2 pi sigma_z^2). They differ
    # by a constant that the adversary's bias must absorb; with d_z = 64 and sigma_z^2 = 2
    # that is 58 nats, which Adam (steps ~ lr) takes tens of thousands of steps to learn.
    log_prior_constant: LogPriorConstant = "official_code"
    # VAE decoder: "bernoulli" (MNIST) or "gaussian" with fixed variance (CelebA) [paper]
    vae_likelihood: Likelihood = "bernoulli"
    vae_gaussian_variance: float = 0.3  # [?]

    # --- Optimisation [paper, App. C] -------------------------------------------------
    batch_size: int = 100
    epochs: int = 100
    learning_rate: float = 1e-3  # encoder/decoder Adam
    adversary_learning_rate: float = 5e-4  # latent adversary Adam (WAE-GAN)
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    # "paper": lr / 2 after 30 epochs, / 5 more after 50, / 10 more after 100.
    # "official_code": smooth per-epoch decay reaching lr / 100 after lr_decay_epochs.
    lr_schedule: Schedule = "paper"
    # The 0-based epoch from which each factor applies: the code's 'manual' schedule divides
    # before epoch 30, 50 and 100's steps ([code] wae.py:542-548) [paper, App. C].
    lr_boundaries: tuple[int, ...] = (30, 50, 100)
    lr_factors: tuple[float, ...] = (0.5, 0.1, 0.01)  # cumulative: /2, /2/5, /2/5/10 [paper]
    lr_decay_epochs: int = 50  # official_code schedule only [code]

    # --- Heuristics [paper, App. C; code] ---------------------------------------------
    input_noise_stddev: float = 0.01  # truncated normal on the encoder's input [code]
    pretrain_encoder: bool = True  # match mean/cov of Q_Z to P_Z before training [code]
    pretrain_steps: int = 200
    pretrain_batch_size: int = 1000  # 1000 (MNIST), 256 (CelebA) [code]
    pretrain_threshold: float = 0.1  # stop once the matching loss is below this [code]
    # Adam lr of the pretraining steps; None = the autoencoder's `learning_rate`, without
    # its schedule, as the code does ([code] wae.py:379 lr = opts['lr'], wae.py:406
    # self.optimizer(lr), decay left at 1). A float overrides it (the old fixed 1e-3).
    pretrain_learning_rate: float | None = None
    # Truncated-normal input noise (input_noise_stddev) during pretraining too: the code
    # runs the pretraining steps with is_training=True (wae.py:445), which switches the
    # encoder's add_noise on (models.py:8-16). False = clean inputs (the old behaviour).
    pretrain_input_noise: bool = True

    seed: int = 0

    # ---------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for name, choices in (
            ("dataset", DATASETS),
            ("model", MODELS),
            ("variant", VARIANTS),
            ("pixel_range", PIXEL_RANGES),
            ("mmd_kernel", KERNELS),
            ("vae_likelihood", LIKELIHOODS),
            ("lr_schedule", SCHEDULES),
            ("log_prior_constant", LOG_PRIOR_CONSTANTS),
            ("split_rule", SPLIT_RULES),
            ("batch_order", BATCH_ORDERS),
        ):
            value = getattr(self, name)
            _check(value in choices, f"{name} must be one of {choices}, got {value!r}")
        allowed = DATASET_SPLIT_RULES[self.dataset]
        _check(
            self.split_rule in allowed,
            f"split_rule {self.split_rule!r} does not apply to {self.dataset}; "
            f"choose from {', '.join(allowed)}",
        )
        _check(
            len(self.lr_boundaries) == len(self.lr_factors),
            "lr_boundaries and lr_factors differ in length",
        )
        _check(
            len(self.encoder_filters) >= 1 and len(self.decoder_filters) >= 1,
            "need >= 1 conv block",
        )
        for name in (
            "z_dim",
            "kernel_size",
            "batch_size",
            "adversary_units",
            "decoder_dense_filters",
        ):
            _check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        _check(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        for name in ("pz_scale", "learning_rate", "adversary_learning_rate", "bn_epsilon"):
            _check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        _check(self.penalty_weight >= 0, f"penalty_weight must be >= 0, got {self.penalty_weight}")
        _check(
            self.pretrain_learning_rate is None or self.pretrain_learning_rate > 0,
            f"pretrain_learning_rate must be positive or None, got {self.pretrain_learning_rate}",
        )
        _check(self.vae_gaussian_variance > 0, "vae_gaussian_variance must be positive")
        # The decoder doubles its spatial size once per FSConv block; it must land on the image.
        size = self.decoder_initial_size * 2 ** len(self.decoder_filters)
        _check(
            size == self.image_shape[0] == self.image_shape[1],
            f"decoder_initial_size {self.decoder_initial_size} x 2^{len(self.decoder_filters)} = {size} "
            f"does not match image size {self.image_shape[:2]}",
        )

    @property
    def penalty(self) -> str | None:
        """'mmd' or 'gan' for the WAEs, None for the VAE."""
        return {"wae_mmd": "mmd", "wae_gan": "gan"}.get(self.model)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        # A config.json written before split_rule existed: its run used the dataset's
        # default rule (MNIST's standard files; CelebA's code shuffle, see data.py).
        if "split_rule" not in kwargs and "dataset" in kwargs:
            kwargs["split_rule"] = DATASET_SPLIT_RULES.get(kwargs["dataset"], ("standard",))[0]
        return cls(**kwargs)

    def replace(self, **overrides: Any) -> Config:
        return dataclasses.replace(self, **overrides)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# --------------------------------------------------------------------------------------
# Presets: one per paper run. Values without a tag below are the Config defaults above.
# --------------------------------------------------------------------------------------


def _mnist(model: str) -> Config:
    """MNIST, Figure 2 [paper, App. C.1]. Fashion-MNIST reuses it."""
    base = Config(dataset="mnist", model=model)  # 28x28x1 in [0,1], d_z 8, 4x4 kernels
    if model == "wae_mmd":
        return base.replace(penalty_weight=10.0)  # [paper, App. C.1; code configs.py:105]
    if model == "wae_gan":
        # lambda = 10: the paper's App. C.1 gives one lambda for MNIST, and the code's MNIST
        # config has one for both WAEs ([code] configs.py:105 config_mnist['lambda'] = 10.);
        # adversary lr 5e-4 [paper; code configs.py:73].
        return base.replace(penalty_weight=10.0, adversary_learning_rate=5e-4)
    # VAE: same nets, Bernoulli decoder [paper]; no P_Z matching heuristics (those are WAE's).
    return base.replace(vae_likelihood="bernoulli", pretrain_encoder=False, input_noise_stddev=0.0)


def _celeba(model: str) -> Config:
    """CelebA 64x64, Figure 3 and Table 1 [paper, App. C.2]."""
    base = Config(
        dataset="celeba",
        model=model,
        image_shape=(64, 64, 3),
        pixel_range="symmetric",
        z_dim=64,
        kernel_size=5,
        decoder_filters=(512, 256, 128),
        decoder_initial_size=8,
        # P_Z = N(0, 2 I): the paper's sigma_z^2 = 2 for the WAEs [paper, App. C.2]; the
        # VAE inherits it [?] (the paper gives no VAE prior); the code uses 1 (configs.py:50).
        pz_scale=math.sqrt(2.0),
        epochs=55,  # WAE [paper]
        pretrain_batch_size=256,  # [code]
        split_rule="official_code",  # the split behind the paper's numbers [code]
    )
    if model == "wae_mmd":
        return base.replace(penalty_weight=100.0, learning_rate=1e-3)  # [paper]
    if model == "wae_gan":
        return base.replace(
            penalty_weight=1.0,  # [paper]
            learning_rate=3e-4,  # [paper]
            adversary_learning_rate=1e-3,  # [paper]
            log_prior_trick=True,  # [paper, App. C.2; code]
        )
    return base.replace(  # the VAE keeps the WAEs' N(0, 2 I) prior [?]
        epochs=68,  # [paper]
        vae_likelihood="gaussian",
        vae_gaussian_variance=0.3,  # [?]
        learning_rate=1e-4,  # [?]
        batch_norm=False,  # [?]
        pretrain_encoder=False,
        input_noise_stddev=0.0,
    )


# The official code's data handling, shared by its MNIST and CelebA configurations.
_OFFICIAL_DATA_HANDLING = dict(
    variant="official_code",
    split_rule="official_code",  # [code] datahandler.py:437-470 (MNIST), :592-608 (CelebA)
    batch_order="independent_draws",  # [code] wae.py:573-576
    adversary_fresh_input_noise=True,  # [code] wae.py:605-611, a second sess.run
)


def _mnist_official_code(model: str) -> Config:
    """The official code's MNIST configuration (configs.py config_mnist, commit 6351565).

    Its hyperparameters equal the paper preset's: lr 1e-3 (:72), adversary lr 5e-4 (:73),
    the 'manual' schedule /2 at 30, /5 at 50, /10 at 100 (:74; wae.py:542-548), batch 100
    (:75), 100 epochs (:76), init std 0.0099999 (:77), BN eps 1e-5 / decay 0.9 (:79-81),
    4x4 kernels (:82), pretraining on 1000 images (:84-85), input noise (:86), d_z 8 (:99),
    sigma_z 1 (:102), IMQ (:104), lambda 10 (:105), no log-prior trick (:95), adversary
    FC512 x 4 (:96-97). What differs is how it handles the data (_OFFICIAL_DATA_HANDLING).
    """
    if model == "vae":
        raise ValueError("the official_code variant exists for wae_mmd and wae_gan only")
    return _mnist(model).replace(**_OFFICIAL_DATA_HANDLING)


def _celeba_official_code(model: str) -> Config:
    """The official code's CelebA configuration (configs.py config_celebA), not the paper's.

    The fields set below carry their line in the code's configs.py (commit 6351565); the
    paper preset's other values already equal the code's: batch 100 (:23),
    Adam beta1 0.5 (:19), init std 0.0099999 (:25), BN eps 1e-5 / decay 0.9 (:28-29),
    5x5 kernels (:30), encoder pretraining on batches of 256 (:32-33), input noise
    (:34 e_noise 'add_noise'), 1024-filter encoder and decoder (:35-41), log-prior trick
    for WAE-GAN (:43 gan_p_trick), d_z 64 (:47), l2sq cost (:49), IMQ kernel (:52).
    """
    if model == "vae":
        raise ValueError("the official_code variant exists for wae_mmd and wae_gan only")
    return _celeba(model).replace(
        **_OFFICIAL_DATA_HANDLING,
        pz_scale=1.0,  # [code] configs.py:50
        penalty_weight=100.0,  # both WAEs [code] configs.py:53
        learning_rate=5e-4,  # both WAEs [code] configs.py:20
        adversary_learning_rate=1e-3,  # [code] configs.py:21 lr_adv
        epochs=50,  # [code] configs.py:24 epoch_num
        lr_schedule="official_code",  # [code] configs.py:22 'manual_smooth'
        lr_decay_epochs=50,  # the code decays over epoch_num [code] wae.py:550-552
        adversary_units=1024,  # [code] configs.py:45 d_num_filters
        adversary_layers=4,  # [code] configs.py:44 d_num_layers
    )


def get_config(dataset: str, model: str, variant: str = "paper") -> Config:
    """The preset for one paper run, e.g. `get_config("celeba", "wae_gan")`."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if variant == "paper":
        if dataset == "celeba":
            return _celeba(model)
        return _mnist(model).replace(dataset=dataset)
    if variant == "official_code":
        if dataset == "celeba":
            return _celeba_official_code(model)
        return _mnist_official_code(model).replace(dataset=dataset)
    raise ValueError(f"unknown config variant {variant!r}; choose from {', '.join(VARIANTS)}")


def with_width(config: Config, width: int) -> Config:
    """`config` with every layer `width` wide, the same topology (the CLI's --width: small
    nets for tests and smoke runs)."""
    return config.replace(
        encoder_filters=(width,) * len(config.encoder_filters),
        decoder_filters=(width,) * len(config.decoder_filters),
        decoder_dense_filters=width,
        adversary_units=width,
    )
