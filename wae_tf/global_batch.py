"""The global batch under tf.distribute: the paper's estimators see all replicas' examples.

Under `tf.distribute`, each replica sees batch / R examples. The MMD estimate is not a
sum over examples (it compares all pairs of codes), so computing it per replica would
change the estimator; the models therefore gather the codes of all replicas first. (The
WAE-GAN's losses are batch means of per-code terms: gathering leaves them unchanged.)
Random draws (prior samples, input noise, the VAE's epsilon) come from the model's
SeedGenerator, whose state is mirrored: every replica would draw the *same* values, so
each replica draws the global batch and keeps its own rows (`local_rows`).
Outside a multi-replica TensorFlow context these are identities, and on other
backends TensorFlow is never imported.
"""

from __future__ import annotations

import keras


def _replica_context():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas_in_sync() -> int:
    """How many replicas compute one global batch together (1 without a strategy)."""
    context = _replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def all_gather(x):
    """Concatenate `x` (B_local, ...) over replicas along axis 0; identity on one replica."""
    context = _replica_context()
    if context is None:
        return x
    gathered = context.all_gather(x, axis=0)
    # all_gather forgets the static shape; the losses read the code size d_z from it.
    gathered.set_shape([None, *x.shape[1:]])
    return gathered


def local_rows(draw, n):
    """This replica's `n` rows of the global random draw `draw(global_batch)`.

    `draw(m)` returns m random rows (m, ...) seeded by the model's SeedGenerator. Its
    state is the same on every replica, so per-replica draws would repeat one set of
    rows R times in the global batch; drawing the whole global batch on every replica
    and keeping rows [offset, offset + n) gives exactly the draws of one device that
    sees the global batch (uneven replica batches included). Without a strategy: draw(n).
    """
    context = _replica_context()
    if context is None:
        return draw(n)
    import tensorflow as tf

    sizes = context.all_gather(tf.reshape(tf.cast(n, tf.int32), [1]), axis=0)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    rows = draw(tf.reduce_sum(sizes))
    local = rows[offset : offset + tf.cast(n, tf.int32)]
    local.set_shape([None, *rows.shape[1:]])
    return local


def reducible_logs(logs: dict) -> dict:
    """The step's logs in the shape Keras can reduce across the workers of a cluster.

    With several workers, Keras 3's `fit` reduces every log value with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalars a train step
    returns ("Invalid reduction dimension 0 for input with 0 dimensions";
    tensorflow/tensorflow#72388). A leading axis of length 1 makes that reduction the mean
    over the replicas, a scalar again. Everywhere else the logs are returned as they are.
    """
    context = _replica_context()
    if context is None:
        return logs
    import tensorflow as tf

    strategy = context.strategy
    local_replicas = len(strategy.extended.worker_devices)
    if context.num_replicas_in_sync <= local_replicas:  # one worker: Keras reduces fine
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
