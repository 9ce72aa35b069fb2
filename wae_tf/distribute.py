"""Training at scale: tf.distribute strategies and mixed-precision dtype policies.

Contract with the training CLI (`wae_tf.train`), in this order:

    distribute.set_precision(flags.precision)       # 1. before any layer is built
    strategy = distribute.make_strategy(flags.distribution, flags.num_gpus)  # 2.
    distribute.check_global_batch(config.batch_size, strategy)                # 3.
    with distribute.scope(strategy):                 # 4. a no-op for strategy None
        model = models.build_model(config)           #    model, optimizer(s), metric
        model.compile(steps_per_epoch=...)           #    trackers, RNG state: mirrored
    model.fit(dataset_of_global_batches, ...)        # 5. batches of config.batch_size

What each step guarantees:

1. The dtype policy is global Keras state read when layers are created. Under the mixed
   policies the layers compute in float16/bfloat16 with float32 variables, while the
   encoder's codes, the decoder's images and the adversary's logits are cast back to
   float32 by the networks' last layers (networks.py), so the losses and the MMD are
   float32; BatchNormalization computes its statistics in float32 itself. Under
   "mixed_float16" compile() wraps the optimizer in a dynamic LossScaleOptimizer, and
   the WAE-GAN's two sub-optimizers each get their own (optimizers.py).
2. `fit` splits every global batch (the paper's 100 [paper, App. C]) over the replicas.
   The models then compute the MMD penalty and the WAE-GAN losses on the *global*
   batch (codes gathered with `global_batch.all_gather`), every replica takes its rows of
   one global draw of prior samples / input noise (`global_batch.local_rows`), and the loss
   is divided by the number of replicas because the optimizer sums the replicas'
   gradients. Together with `config.sync_batch_norm=True` (BN statistics over the
   global batch) a distributed step equals a single-device step on the same global
   batch, up to float32 summation order (tests/test_distribute.py).
3. The global batch must split evenly: the reconstruction term is a per-replica mean.
   Use a dataset with `drop_remainder=True` so that no last batch is split unevenly.
4. Checkpoints (`model.save`, `keras.saving.load_model`) work under the strategy;
   load them inside `scope(strategy)` to resume. Under "multi_worker", only the chief
   should write files (`is_chief`).

Mirrored on a machine without GPUs falls back to its CPU devices: one replica on
"/cpu:0", or several if the CPU was split with `split_cpu` first (useful to dry-run
multi-replica training, as the tests do). Asking for more GPUs than are visible is an
error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import keras
from absl import logging

from wae_tf.configs import DISTRIBUTIONS as STRATEGIES
from wae_tf.configs import PRECISIONS


def make_strategy(name: str, num_gpus: int | None = None, devices: Sequence[str] | None = None):
    """A `tf.distribute.Strategy` for `name` in STRATEGIES, or None for "none".

    name="mirrored": synchronous data parallelism on one machine, over the first
      `num_gpus` GPUs (None: all visible GPUs; 0: the CPU), or over the explicit `devices`
      (e.g. ["/cpu:0", "/cpu:1"]). Without GPUs it falls back to the CPU device(s).
    name="multi_worker": synchronous data parallelism over the machines of the
      cluster described by the TF_CONFIG environment variable, every local GPU of each
      (num_gpus must then be None or the number of visible GPUs). Call it at program
      start: TensorFlow requires it before any other op.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown distribution {name!r}; choose from {', '.join(STRATEGIES)}")
    if num_gpus is not None and num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if name == "none":
        if devices:
            raise ValueError("devices were given but distribution is 'none'")
        return None
    backend = keras.backend.backend()
    if backend != "tensorflow":  # a tf.distribute strategy does nothing to a JAX train step
        raise ValueError(
            f"tf.distribute needs the TensorFlow backend (this is KERAS_BACKEND={backend}); "
            f"rerun without KERAS_BACKEND={backend}, or without --distribution"
        )
    import tensorflow as tf

    if name == "multi_worker":
        # Physical, not logical, devices: listing logical devices starts TensorFlow's
        # runtime, after which collective ops can no longer be configured.
        gpus = tf.config.list_physical_devices("GPU")
        if devices:
            raise ValueError("multi_worker uses every local GPU; devices cannot be chosen")
        if num_gpus is not None and num_gpus != len(gpus):
            raise ValueError(
                f"multi_worker uses all {len(gpus)} visible GPU(s) of each worker, but "
                f"num_gpus={num_gpus}; restrict them with CUDA_VISIBLE_DEVICES instead"
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _log_strategy(name, strategy)
        return strategy
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    strategy = tf.distribute.MirroredStrategy(_mirrored_devices(num_gpus, devices, gpus))
    _log_strategy(name, strategy)
    return strategy


def _mirrored_devices(
    num_gpus: int | None, devices: Sequence[str] | None, gpus: list[str]
) -> list[str]:
    if devices:
        if num_gpus is not None:
            raise ValueError("give either num_gpus or devices, not both")
        return list(devices)
    if num_gpus is not None and num_gpus > len(gpus):
        if not gpus:
            raise ValueError(
                f"asked for {num_gpus} GPU(s) but none is visible; use --num_gpus=0 to "
                "train on the CPU"
            )
        raise ValueError(
            f"asked for {num_gpus} GPU(s) but {len(gpus)} are visible ({', '.join(gpus)}); "
            f"use --num_gpus={len(gpus)} or fewer"
        )
    if gpus and num_gpus != 0:
        return gpus[: len(gpus) if num_gpus is None else num_gpus]
    import tensorflow as tf

    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    logging.warning(
        "mirrored strategy without GPUs: %d replica(s) on %s", len(cpus), ", ".join(cpus)
    )
    return cpus


def _log_strategy(name: str, strategy) -> None:
    logging.info(
        "distribution %s: %s with %d replica(s) in sync",
        name,
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )


def scope(strategy) -> contextlib.AbstractContextManager:
    """`strategy.scope()`, or a no-op context for strategy None (no distribution)."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def num_replicas(strategy) -> int:
    """Replicas computing one global batch together: 1 for strategy None."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def check_global_batch(batch_size: int, strategy) -> int:
    """The per-replica batch for a global batch of `batch_size`; error if uneven.

    The reconstruction term is a per-replica mean averaged over replicas, which equals
    the global mean only when every replica holds the same number of images.
    """
    replicas = num_replicas(strategy)
    if batch_size % replicas:
        raise ValueError(
            f"the global batch of {batch_size} images does not split evenly over "
            f"{replicas} replicas; choose a batch size divisible by {replicas}"
        )
    return batch_size // replicas


def is_chief(strategy) -> bool:
    """Whether this process should write checkpoints and logs (always, unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def split_cpu(count: int) -> None:
    """Split the host CPU into `count` logical devices "/cpu:0" ... "/cpu:{count-1}".

    For tests and dry runs of multi-replica training without GPUs. TensorFlow only
    allows it before it initialises its devices, i.e. before the first op runs.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            "split_cpu must run before TensorFlow initialises its devices (before any "
            "tensor is created); call it first thing in the program"
        ) from error


def set_precision(policy: str) -> str:
    """Set Keras's global dtype policy; call it before the model is built.

    "float32": the paper's setting (default). "mixed_bfloat16": bfloat16 compute,
    float32 variables (TPUs, recent GPUs and CPUs). "mixed_float16": float16 compute
    with dynamic loss scaling (GPUs). Returns the policy name.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"unknown precision {policy!r}; choose from {', '.join(PRECISIONS)}")
    keras.mixed_precision.set_dtype_policy(policy)
    if policy != "float32":
        logging.info("precision %s: losses, MMD and BN statistics stay float32", policy)
    return policy


@contextlib.contextmanager
def precision(policy: str) -> Iterator[str]:
    """Context manager: `set_precision(policy)` inside, the previous policy restored after."""
    previous = keras.mixed_precision.dtype_policy().name
    try:
        yield set_precision(policy)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
