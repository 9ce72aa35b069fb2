"""The numbers on a model's samples: the MNIST Fréchet score, CelebA's FID and sharpness.

Each dataset has an evaluator, `evaluate(run, test_uint8) -> dict`, that `reproduce.figure`
calls for every model and stores in its bundle's metrics.json:

- MNIST (`mnist_evaluator`): the Fréchet distance of LeNet features between --num_samples
  samples and as many test images (ours: the paper has no MNIST FID), with the LeNet's
  description (the sha256 of its weights is its identity).
- CelebA (`celeba_evaluator`): both sharpness statistics (SHARPNESS_DEFINITIONS) and FID
  against real images (null with the reason when there is no Inception network), and the
  "true data" row, the same in every bundle (CELEBA_SHARED).

Real images are uint8 in [0, 255]; the models' samples are in their pixel range.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from reproduce.inference import generate_samples
from reproduce.options import MODEL_LABELS, Options, ReproError, quick_settings
from reproduce.runs import TrainedRun, split_rule_of
from wae_tf.configs import ImageRange
from wae_tf.streams import to_model_range

Evaluator = Callable[[TrainedRun, np.ndarray], dict[str, Any]]

REAL_SPLIT_SEED_OFFSET = 123  # the shuffle of CelebA's real images: seed --seed + 123
CLASSIFIER_EPOCHS = 5  # 99.06% test accuracy (wae_tf.mnist_classifier docstring)
# In every bundle's metrics, the same for all models: shown once in the outputs.
MNIST_SHARED = ("mnist_classifier",)
CELEBA_SHARED = (
    "fid_info",
    "real_images",
    "true_data",
    "test_images_sharpness",
    "test_images_sharpness_code",
)

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


def mnist_evaluator(options: Options) -> Evaluator:
    """`evaluate(run, test_uint8)` for figure2 bundles: the model's MNIST Fréchet score and
    the classifier's description (its weights' sha256 is its identity). The classifier is
    loaded (or trained and cached) once per process, when first needed."""
    from wae_tf import data, mnist_classifier

    cache: dict[str, Any] = {}

    def setup() -> None:
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
        cache.update(classifier=classifier, reference=reference, info=info)

    def evaluate(run: TrainedRun, test: np.ndarray) -> dict[str, Any]:
        if not cache:
            setup()
        n = options.num_samples
        logging.info("%s: Fréchet score of %d samples", MODEL_LABELS[run.name], n)
        samples = generate_samples(run.model, n, options.seed + 1)
        score = mnist_classifier.mnist_frechet_score(
            cache["classifier"], samples, cache["reference"], pixel_range="unit"
        )
        return {"mnist_frechet_score": score, "mnist_classifier": cache["info"]}

    return evaluate


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
    the flag, so that `reproduce.figure` stops before any training."""
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


# The two sharpness statistics reported side by side (Table 1, Figure 3).
SHARPNESS_DEFINITIONS = {
    "sharpness": "ours: mean over all samples of the per-image Laplacian variance, pixels in "
    "[0, 1] (wae_tf.metrics.mean_sharpness)",
    "sharpness_code": "the official code's: minimum over a batch of 30 (the first 30 samples; "
    "real: the first 30 training images) of the per-image Laplacian variance, pixels in "
    "[-1, 1] (wae_tf.metrics.code_sharpness)",
}


def sharpness_numbers(images: np.ndarray, pixel_range: ImageRange) -> dict[str, float]:
    """{"sharpness": ours, "sharpness_code": the code's} (SHARPNESS_DEFINITIONS)."""
    from wae_tf import metrics

    return {
        "sharpness": metrics.mean_sharpness(images, pixel_range),
        "sharpness_code": metrics.code_sharpness(images, pixel_range),
    }


def sharpness_note(num_samples: int) -> str:
    """The markdown note that defines both sharpness columns."""
    return (
        "- Sharpness, two statistics of the per-image variance of the 3x3 Laplacian of the "
        "grayscale image (VALID) [code, compute_blurriness]: **ours** = mean over "
        f"{num_samples:,} samples, pixels mapped to [0, 1] (`wae_tf.metrics.mean_sharpness`); "
        "**code's** = minimum over a batch of 30 (the first 30 samples; true data: the first "
        "30 training images, as the code), pixels in [-1, 1] as the official code measures CelebA "
        "(`wae_tf.metrics.code_sharpness`; wae.py:351-364, 533-536, 682-692 at 6351565), "
        "i.e. 4x ours for the same image. The paper's Table 1 (true data 2e-2, VAE 3e-3, "
        "WAEs 6e-3) does not say which statistic it reports."
    )


def celeba_evaluator(
    options: Options, extractor: Any | None, fid_info: dict[str, Any]
) -> Evaluator:
    """`evaluate(run, test_uint8)` for CelebA bundles: on --num_samples samples G(z), z ~ P_Z
    (seed --seed + 1), both sharpness statistics and FID against the real reference set
    (null with the reason when there is no extractor); and, the same in every bundle, the
    "true data" row (the real reference set's sharpness, FID of its two disjoint halves) and
    the real test images' sharpness. The real images and their features are computed once
    per process."""
    cache: dict[str, Any] = {}

    def real_part(test: np.ndarray) -> dict[str, Any]:
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
        return {
            "feats": feats,
            "numbers": {
                "fid_info": fid_info,
                "real_images": real.to_dict(),
                "true_data": true_data,
                "test_images_sharpness": test_sharpness["sharpness"],
                "test_images_sharpness_code": test_sharpness["sharpness_code"],
            },
        }

    def evaluate(run: TrainedRun, test: np.ndarray) -> dict[str, Any]:
        if not cache:
            cache.update(real_part(test))
        n, seed = options.num_samples, options.seed + 1
        logging.info("%s: %d samples for FID / sharpness", MODEL_LABELS[run.name], n)
        samples = generate_samples(run.model, n, seed)
        return {
            **sharpness_numbers(samples, "symmetric"),
            "num_samples": n,
            "sample_seed": seed,
            **_fid_entry(extractor, fid_info, samples, "symmetric", cache["feats"]),
            **cache["numbers"],
        }

    return evaluate


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
