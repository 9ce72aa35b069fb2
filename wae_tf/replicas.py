"""Cross-replica helpers: the paper's estimators use the *global* batch.

Under `tf.distribute`, each replica sees batch / R examples. The MMD estimate and the
adversary's losses are not sums over examples, so computing them per replica would
change the estimator; the models therefore gather the codes of all replicas first.
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
    return x if context is None else context.all_gather(x, axis=0)
