"""What a trained model gives an output: its column of panels and the numbers on its samples.

- Batched model calls, as NumPy (`encode`, `decode`, `generate_samples`, the test
  reconstruction cost). Images in and out are floats NHWC in the model's pixel range
  ("unit" = [0, 1] for MNIST, "symmetric" = [-1, 1] for CelebA [paper, App. C]);
  `wae_tf.streams.to_model_range` maps uint8 [0, 255] images into it.
- The figure's column of one model (`model_panels`): test interpolations, test
  reconstructions, random samples, each a uint8 grid of PANEL_COLS images per row with
  1-pixel gutters (`wae_tf.visualize.image_grid`) [paper, Fig. 2-3]. The test images
  shown are chosen once with a fixed seed (`choose_panel_inputs`), the same for all models.
- The numbers on the samples, per dataset (`sample_scores`), stored in each bundle:
  MNIST (`MnistScores`): the Fréchet distance of LeNet features between --num_samples
  samples and as many test images (ours: the paper has no MNIST FID), with the LeNet's
  description (the sha256 of its weights is its identity). CelebA (`CelebaScores`): both
  sharpness statistics (`reproduce.specs.SHARPNESS_DEFINITIONS`) and FID against real
  images (null with the reason when there is no Inception network), and the "true data"
  row, the same in every bundle (`reproduce.specs.SHARED_METRICS`).

Real images are uint8 in [0, 255]; the models' samples are in their pixel range.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from reproduce.cli import MODEL_LABELS, Options, ReproError, quick_settings
from reproduce.specs import (
    INTERPOLATION_ROWS,
    PANEL_COLS,
    PANEL_SEED_OFFSET,
    RECONSTRUCTION_PAIRS,
    SAMPLE_ROWS,
    SAMPLE_SEED_OFFSET,
    TrainedRun,
    split_rule_of,
)
from wae_tf.configs import ImageRange
from wae_tf.streams import to_model_range

# ======================================================================================
# A model's outputs in batches
# ======================================================================================

GENERATION_BATCH = 500  # images decoded / encoded per call


def _numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def decode(model, z: np.ndarray) -> np.ndarray:
    """Codes (N, d_z) -> images (N, H, W, C) in the model's pixel range, batched."""
    out = [
        _numpy(model.decode(z[i : i + GENERATION_BATCH]))
        for i in range(0, len(z), GENERATION_BATCH)
    ]
    return np.concatenate(out).astype(np.float32)


def encode(model, images: np.ndarray) -> np.ndarray:
    """Images in the model's pixel range -> codes (the VAE: its posterior mean), batched."""
    out = [
        _numpy(model.encode(images[i : i + GENERATION_BATCH]))
        for i in range(0, len(images), GENERATION_BATCH)
    ]
    return np.concatenate(out).astype(np.float32)


def reconstruct(model, images: np.ndarray) -> np.ndarray:
    return decode(model, encode(model, images))


def generate_samples(model, n: int, seed: int) -> np.ndarray:
    """n images G(z), z ~ P_Z drawn with the integer `seed` (the same z for a given seed)."""
    z = _numpy(model.sample_prior(n, seed=seed)).astype(np.float32)
    return decode(model, z)


def reconstruction_costs(model, images: np.ndarray) -> dict[str, float]:
    """The WAE cost on test images (in the model's pixel range), averaged over images.

    "test_reconstruction_cost": c(x, G(Q(x))) = 0.05 * ||x - G(Q(x))||^2 [code, l2sq], the
      training objective's first term (the VAE uses its posterior mean as the code);
    "test_squared_l2": ||x - G(Q(x))||^2 summed over pixels (c without the 0.05).
    """
    scale = float(model.config.reconstruction_scale)
    squared = []
    for i in range(0, len(images), GENERATION_BATCH):
        batch = images[i : i + GENERATION_BATCH]
        diff = reconstruct(model, batch).astype(np.float64) - batch
        squared.append(np.sum(diff**2, axis=(1, 2, 3)))
    l2 = float(np.mean(np.concatenate(squared)))
    return {"test_reconstruction_cost": scale * l2, "test_squared_l2": l2}


# ======================================================================================
# The figure's column of one model [paper, Fig. 2-3]
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class PanelInputs:
    """The test images every column shows (the same for the three models), uint8."""

    interpolation_pairs: np.ndarray  # (INTERPOLATION_ROWS, 2, H, W, C)
    reconstruction_images: np.ndarray  # (RECONSTRUCTION_PAIRS * PANEL_COLS, H, W, C)
    sample_seed: int


def choose_panel_inputs(test_uint8: np.ndarray, seed: int) -> PanelInputs:
    """Fixed-seed random choice of distinct test images for the panels."""
    needed = 2 * INTERPOLATION_ROWS + RECONSTRUCTION_PAIRS * PANEL_COLS
    if len(test_uint8) < needed:
        raise ReproError(f"the figure needs >= {needed} test images, got {len(test_uint8)}")
    rng = np.random.default_rng(seed + PANEL_SEED_OFFSET)
    chosen = test_uint8[rng.choice(len(test_uint8), size=needed, replace=False)]
    pairs = chosen[: 2 * INTERPOLATION_ROWS].reshape(INTERPOLATION_ROWS, 2, *chosen.shape[1:])
    return PanelInputs(pairs, chosen[2 * INTERPOLATION_ROWS :], seed + SAMPLE_SEED_OFFSET)


def interpolation_panel(model, pairs_uint8: np.ndarray) -> np.ndarray:
    """Rows: real x_a, G(z) for z on the straight line from Q(x_a) to Q(x_b) (both ends
    included, PANEL_COLS - 2 points), real x_b [paper, Fig. 2-3 "test interpolations"]."""
    from wae_tf import visualize

    pixel_range = model.config.pixel_range
    steps = PANEL_COLS - 2
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = encode(model, to_model_range(pairs_uint8.reshape(-1, *pairs_uint8.shape[2:]), pixel_range))
    z_a, z_b = z[0::2, None, :], z[1::2, None, :]
    path = ((1.0 - t) * z_a + t * z_b).reshape(-1, z.shape[-1])  # (rows * steps, d_z)
    decoded = visualize.to_uint8(decode(model, path), pixel_range)
    decoded = decoded.reshape(len(pairs_uint8), steps, *decoded.shape[1:])
    rows = np.concatenate([pairs_uint8[:, :1], decoded, pairs_uint8[:, 1:]], axis=1)
    return visualize.image_grid(rows.reshape(-1, *rows.shape[2:]), len(pairs_uint8), PANEL_COLS)


def reconstruction_panel(model, images_uint8: np.ndarray) -> np.ndarray:
    """Odd rows: real test images; even rows: their reconstructions [paper, Fig. 2-3]."""
    from wae_tf import visualize

    pixel_range = model.config.pixel_range
    reconstructed = reconstruct(model, to_model_range(images_uint8, pixel_range))
    return visualize.reconstruction_grid(images_uint8, reconstructed, pixel_range, PANEL_COLS)


def sample_panel(model, seed: int) -> np.ndarray:
    """SAMPLE_ROWS x PANEL_COLS decoded draws z ~ P_Z (fixed seed) [paper, Fig. 2-3]."""
    from wae_tf import visualize

    samples = generate_samples(model, SAMPLE_ROWS * PANEL_COLS, seed)
    return visualize.image_grid(
        visualize.to_uint8(samples, model.config.pixel_range), SAMPLE_ROWS, PANEL_COLS
    )


def model_panels(model, inputs: PanelInputs) -> dict[str, np.ndarray]:
    return {
        "interpolations": interpolation_panel(model, inputs.interpolation_pairs),
        "reconstructions": reconstruction_panel(model, inputs.reconstruction_images),
        "samples": sample_panel(model, inputs.sample_seed),
    }


REAL_SPLIT_SEED_OFFSET = 123  # the shuffle of CelebA's real images: seed --seed + 123
CLASSIFIER_EPOCHS = 5  # 99.06% test accuracy (wae_tf.mnist_classifier docstring)

# ======================================================================================
# MNIST: the Fréchet score of LeNet features
# ======================================================================================


def weights_sha256(model) -> str:
    """sha256 of a Keras model's weights (dtype, shape and bytes of each, in order)."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.dtype.str}{w.shape}".encode() + w.tobytes())
    return digest.hexdigest()


class MnistScores:
    """The numbers of a figure2 bundle: `evaluate(run, test_uint8)` gives the model's MNIST
    Fréchet score and the classifier's description (its weights' sha256 is its identity).
    The classifier is loaded (or trained and cached) once, when first needed."""

    fid_reason = None  # no FID on MNIST

    def __init__(self, options: Options):
        self.options = options
        self._classifier: Any = None
        self._reference: np.ndarray | None = None
        self._info: dict[str, Any] = {}

    def _setup(self) -> None:
        from wae_tf import data, mnist_classifier

        options = self.options
        folder = options.workdir / "mnist_classifier"
        quick = quick_settings("mnist")
        logging.info("MNIST Fréchet score: classifier (cached in %s)", folder)
        classifier = mnist_classifier.get_or_train_classifier(
            folder,
            options.data_dir,
            epochs=quick.classifier_epochs if options.quick else CLASSIFIER_EPOCHS,
            num_train=quick.classifier_train_examples if options.quick else None,
        )
        test = data.load_uint8("mnist", options.data_dir, "test", split_rule=split_rule_of(options))
        reference = to_model_range(test[: options.num_samples], "unit")
        info = {
            "path": str(classifier.path),
            "weights_sha256": weights_sha256(classifier.model),
            "test_accuracy": classifier.info.get("test_accuracy"),
            "train_images": classifier.info.get("num_train"),
            "epochs": classifier.info.get("epochs"),
            "num_samples": options.num_samples,
            "num_reference_test_images": len(reference),
            "sample_seed": options.seed + 1,
        }
        if (info["test_accuracy"] or 0.0) < 0.985:
            info["warning"] = (
                "classifier below 98.5% test accuracy (quick run): scores are indicative"
            )
        self._classifier, self._reference, self._info = classifier, reference, info

    def evaluate(self, run: TrainedRun, test: np.ndarray) -> dict[str, Any]:
        from wae_tf import mnist_classifier

        if self._classifier is None:
            self._setup()
        n = self.options.num_samples
        logging.info("%s: Fréchet score of %d samples", MODEL_LABELS[run.name], n)
        samples = generate_samples(run.model, n, self.options.seed + 1)
        score = mnist_classifier.mnist_frechet_score(
            self._classifier, samples, self._reference, pixel_range="unit"
        )
        return {"mnist_frechet_score": score, "mnist_classifier": self._info}


# ======================================================================================
# CelebA: real images, sharpness, FID
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class RealImages:
    """Real 64x64 images (uint8) for FID: a reference set and two disjoint halves."""

    reference: np.ndarray  # min(num_samples, N) images: the models' FID reference
    half_a: np.ndarray  # "true data": two disjoint sets of min(num_samples, N // 2)
    half_b: np.ndarray
    description: str
    requested: int

    @property
    def short(self) -> bool:
        return len(self.half_a) < self.requested

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested_per_set": self.requested,
            "reference_size": len(self.reference),
            "true_data_set_sizes": [len(self.half_a), len(self.half_b)],
            "fewer_than_requested": self.short,
            "source": self.description,
        }


def load_celeba_real_images(options: Options, num: int) -> RealImages:
    """The test split, then (if 2 * num are needed) the train split, shuffled with a fixed
    seed; the models' reference is the first min(num, N) of them, the "true data" row
    compares two disjoint sets of min(num, N // 2). Fewer than 2 * num is said, not hidden."""
    from wae_tf import data

    logging.info("loading real CelebA images for FID / sharpness (%d per set requested)", num)
    test = data.load_uint8("celeba", options.data_dir, "test", split_rule=split_rule_of(options))
    parts, text = [test], f"{len(test):,} test-split images"
    if len(test) < 2 * num:
        train = _first_train_images(options, 2 * num - len(test))
        parts.append(train)
        text += f" + the first {len(train):,} train-split images"
    pool = np.concatenate(parts)
    order = np.random.default_rng(options.seed + REAL_SPLIT_SEED_OFFSET).permutation(len(pool))
    pool = pool[order]
    half = min(num, len(pool) // 2)
    rule = data.celeba_split_rule(
        data.resolve_data_dir("celeba", options.data_dir), split_rule_of(options)
    )
    description = (
        f"{text} (split rule: {rule}), shuffled with seed {options.seed + REAL_SPLIT_SEED_OFFSET}"
    )
    if half < num:
        description += (
            f"; ONLY {len(pool):,} real images available, so the true-data row compares "
            f"{half:,} vs {half:,} instead of {num:,} vs {num:,}"
        )
    return RealImages(
        pool[: min(num, len(pool))], pool[:half], pool[half : 2 * half], description, num
    )


def _first_train_images(options: Options, wanted: int) -> np.ndarray:
    """The first `wanted` CelebA train images, or all of them when there are fewer
    (decodes only what is needed: the full train split is 2 GB as uint8)."""
    from wae_tf import data

    load = dict(split_rule=split_rule_of(options))
    try:
        return data.load_uint8("celeba", options.data_dir, "train", num_examples=wanted, **load)
    except data.DataError:
        return data.load_uint8("celeba", options.data_dir, "train", **load)


def code_real_sharpness(options: Options) -> float:
    """The code's "Real pictures sharpness": `metrics.code_sharpness` of the first 30
    images of the training split, in the split's order ([code] wae.py:533-536 measures
    data.data[:self.num_pics], the training set after the split; under
    --split_rule=official_code its order is the code's shuffle)."""
    from wae_tf import metrics

    first = _first_train_images(options, metrics.CODE_SHARPNESS_BATCH)
    return metrics.code_sharpness(first, "uint8")


def make_fid_extractor(options: Options) -> tuple[Any | None, dict[str, Any]]:
    """(extractor or None, info with "features", "comparable_to_paper", "identity" (the
    network: "ttur graph sha256 ..." / "keras_inception_v3 imagenet, keras ..." / "none"),
    and "reason" when None). None only when no FID network was asked for (no
    --inception_graph): FID is then null with the reason. A network that was asked for but
    cannot be loaded (--inception_graph missing, unreadable or not the TTUR graph;
    --fid_features=keras_inception_v3 without its weights) is a one-line ReproError naming
    the flag, so that `reproduce.pipeline` stops before any training."""
    from wae_tf import inception

    info: dict[str, Any] = {"features": options.fid_features, "identity": "none"}
    if options.fid_features == "keras_inception_v3":
        info["comparable_to_paper"] = False
        try:
            extractor = inception.KerasInceptionV3Features(weights="imagenet")
        except Exception as e:  # noqa: BLE001 - e.g. no weights offline
            raise ReproError(
                f"--fid_features=keras_inception_v3: Keras InceptionV3 ImageNet weights "
                f"unavailable ({_one_line(e)}); use --fid_features=ttur --inception_graph=PB"
            ) from e
        import keras

        info["note"] = "Keras InceptionV3: NOT comparable to the paper's FID (TTUR graph)"
        info["identity"] = f"keras_inception_v3 imagenet, keras {keras.__version__}"
        return extractor, info
    info["comparable_to_paper"] = True
    if options.inception_graph is None:
        info["reason"] = (
            "no --inception_graph given: FID needs TTUR's classify_image_graph_def.pb "
            f"(from {inception.INCEPTION_URL})"
        )
        return None, info
    try:
        extractor = inception.TTURInception.from_graph_def(options.inception_graph)
    except (inception.InceptionGraphMissingError, ValueError, OSError) as e:
        raise ReproError(f"--inception_graph={options.inception_graph}: {_one_line(e)}") from e
    info["graph"] = str(options.inception_graph)
    info["identity"] = f"ttur graph sha256 {file_sha256(Path(extractor.name))}"
    return extractor, info


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sharpness_numbers(images: np.ndarray, pixel_range: ImageRange) -> dict[str, float]:
    """{"sharpness": ours, "sharpness_code": the code's}
    (`reproduce.specs.SHARPNESS_DEFINITIONS`)."""
    from wae_tf import metrics

    return {
        "sharpness": metrics.mean_sharpness(images, pixel_range),
        "sharpness_code": metrics.code_sharpness(images, pixel_range),
    }


class CelebaScores:
    """The numbers of a figure3_table1 bundle: `evaluate(run, test_uint8)` gives, on
    --num_samples samples G(z), z ~ P_Z (seed --seed + 1), both sharpness statistics and FID
    against the real reference set (null with the reason when there is no extractor); and,
    the same in every bundle, the "true data" row (the real reference set's sharpness, FID
    of its two disjoint halves) and the real test images' sharpness. The real images and
    their features are computed once, when first needed."""

    def __init__(self, options: Options, extractor: Any | None, fid_info: dict[str, Any]):
        self.options, self.extractor, self.fid_info = options, extractor, fid_info
        self._real_features: np.ndarray | None = None
        self._shared: dict[str, Any] = {}

    @property
    def fid_reason(self) -> str | None:
        """Why FID will be null (no FID network was asked for), or None."""
        return self.fid_info.get("reason")

    def _real_part(self, test: np.ndarray) -> None:
        options, extractor, fid_info = self.options, self.extractor, self.fid_info
        real = load_celeba_real_images(options, options.num_samples)
        feats = None
        if extractor is not None:
            logging.info("FID: features of %d real images", len(real.reference))
            feats = extractor.features(real.reference, pixel_range="uint8")
        logging.info("true data: %d vs %d real images", len(real.half_a), len(real.half_b))
        # half_a is a prefix of the reference set: its features are already computed.
        half_a_feats = None if feats is None else feats[: len(real.half_a)]
        true_data = {
            **sharpness_numbers(real.reference, "uint8"),
            # the code measures real images on the training set, not on this pool
            "sharpness_code": code_real_sharpness(options),
            "num_samples": len(real.reference),
            "fid_set_sizes": [len(real.half_a), len(real.half_b)],
            **_fid_entry(extractor, fid_info, real.half_b, "uint8", half_a_feats),
        }
        test_sharpness = sharpness_numbers(test, "uint8")
        self._real_features = feats
        self._shared = {
            "fid_info": fid_info,
            "real_images": real.to_dict(),
            "true_data": true_data,
            "test_images_sharpness": test_sharpness["sharpness"],
            "test_images_sharpness_code": test_sharpness["sharpness_code"],
        }

    def evaluate(self, run: TrainedRun, test: np.ndarray) -> dict[str, Any]:
        if not self._shared:
            self._real_part(test)
        n, seed = self.options.num_samples, self.options.seed + 1
        logging.info("%s: %d samples for FID / sharpness", MODEL_LABELS[run.name], n)
        samples = generate_samples(run.model, n, seed)
        return {
            **sharpness_numbers(samples, "symmetric"),
            "num_samples": n,
            "sample_seed": seed,
            **_fid_entry(self.extractor, self.fid_info, samples, "symmetric", self._real_features),
            **self._shared,
        }


def sample_scores(options: Options) -> MnistScores | CelebaScores:
    """The evaluator of `options.dataset`'s bundles. For CelebA, the FID network is loaded
    here (`make_fid_extractor`), so that one asked for but unusable stops the run before
    the long decode and any training; without one, FID is null and says why."""
    if options.dataset == "mnist":
        return MnistScores(options)
    extractor, fid_info = make_fid_extractor(options)
    return CelebaScores(options, extractor, fid_info)


def _fid_entry(
    extractor,
    fid_info: dict[str, Any],
    images: np.ndarray,
    pixel_range: ImageRange,
    other_feats,
) -> dict[str, Any]:
    """{"fid": d(features of images, other_feats)}, or {"fid": None, "fid_reason": ...}."""
    from wae_tf import metrics

    if extractor is None:
        return {"fid": None, "fid_reason": fid_info["reason"]}
    feats = extractor.features(images, pixel_range=pixel_range)
    return {"fid": metrics.frechet_distance(feats, other_feats)}
