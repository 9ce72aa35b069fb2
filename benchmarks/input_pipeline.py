"""Input-pipeline benchmark: is the loader >= 10x faster than the paper-size train step?

    python benchmarks/input_pipeline.py --data_dir=PATH  (holding mnist/ and celeba_10k/)

Prints, for the folder layout of the shared data (`mnist/`, `celeba_10k/`):
  * CelebA cold preprocessing time of the whole subset (train + test splits, empty temp
    cache) and the cached load time;
  * images/s the tf.data train stream delivers (MNIST, CelebA from cache);
  * images/s of the paper-size train step (`wae_tf.models.build_model`, `fit`) measured in
    the same run after a warm-up, and the ratio loader / step.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wae_tf import data, streams  # noqa: E402


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, help="folder with mnist/ and celeba_10k/")
    parser.add_argument("--celeba_subdir", default="celeba_10k")
    parser.add_argument("--batch_size", type=int, default=100)  # [paper, App. C]
    parser.add_argument("--loader_batches", type=int, default=400, help="batches timed per stream")
    parser.add_argument("--step_batches", type=int, default=3, help="train steps timed per model")
    parser.add_argument("--model", default="wae_mmd", choices=("wae_mmd", "wae_gan", "vae"))
    parser.add_argument("--skip_step", action="store_true", help="loader numbers only")
    return parser.parse_args()


def time_stream(images: np.ndarray, batch_size: int, pixel_range: str, batches: int) -> float:
    """Images/s the tf.data stream delivers to a consumer that does nothing (after warm-up)."""
    ds = streams.train_dataset(images, batch_size, seed=0, pixel_range=pixel_range)
    iterator = iter(ds)
    for _ in range(20):  # warm-up: start the generator and fill the prefetch buffer
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def time_celeba_loading(celeba_dir: Path) -> tuple[float, float, int]:
    """(cold seconds, cached seconds, number of images) for train + test of the folder."""
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        n = sum(
            len(data.load_uint8("celeba", celeba_dir, s, cache_dir=cache))
            for s in ("train", "test")
        )
        cold = time.perf_counter() - start
        start = time.perf_counter()
        for split in ("train", "test"):
            data.load_uint8("celeba", celeba_dir, split, cache_dir=cache)
        cached = time.perf_counter() - start
    return cold, cached, n


def time_train_step(dataset: str, model_name: str, images: np.ndarray, args) -> float | None:
    """Images/s of the paper-size train step, `fit` on the same stream; None if unavailable."""
    try:
        from wae_tf.configs import get_config
        from wae_tf.models import build_model
    except ImportError as e:
        print(f"  train step timing unavailable: cannot import wae_tf.models ({e})")
        return None
    config = get_config(dataset, model_name).replace(batch_size=args.batch_size)
    try:
        model = build_model(config)
        model.compile(steps_per_epoch=streams.steps_per_epoch(len(images), args.batch_size))
        ds = streams.train_dataset(images, args.batch_size, seed=0, pixel_range=config.pixel_range)
        model.fit(
            ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False
        )  # warm-up: trace + build
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=args.step_batches, epochs=1, verbose=0, shuffle=False)
    except Exception as e:  # the models module is developed in parallel: report, don't crash
        print(f"  train step timing unavailable: {type(e).__name__}: {e}")
        return None
    return args.step_batches * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    args = _parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(args.data_dir)
    celeba_dir = root / args.celeba_subdir

    print(f"CelebA preprocessing ({celeba_dir}):")
    cold, cached, n = time_celeba_loading(celeba_dir)
    print(f"  cold (decode + crop + LANCZOS, {n} images): {cold:.2f} s  ({n / cold:.0f} images/s)")
    print(f"  from cache: {cached:.2f} s")

    streams = {
        "mnist": data.load_uint8("mnist", root / "mnist", "train"),
        "celeba": data.load_uint8("celeba", celeba_dir, "train"),  # default cache dir
    }
    for dataset, images in streams.items():
        pixel_range = data.pixel_range_for(dataset)
        loader = time_stream(images, args.batch_size, pixel_range, args.loader_batches)
        print(
            f"{dataset}: tf.data stream {loader:,.0f} images/s (batch {args.batch_size}, uint8->float)"
        )
        if args.skip_step:
            continue
        step = time_train_step(dataset, args.model, images, args)
        if step is not None:
            verdict = "OK" if loader >= 10 * step else "BELOW TARGET"
            print(
                f"  paper-size {args.model} train step: {step:,.1f} images/s; "
                f"loader / step = {loader / step:,.0f}x (target >= 10x: {verdict})"
            )


if __name__ == "__main__":
    main()
