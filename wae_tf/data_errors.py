"""`DataError`: the one error of the data layer (`wae_tf.data` and the modules it reads with).

It sits below `data`, `mnist_files`, `celeba` and `streams` so that each of them can raise it
without importing the others; callers catch it as `wae_tf.data.DataError` (the same class).
"""

from __future__ import annotations

from wae_tf.errors import WaeError


class DataError(WaeError, ValueError):
    """A data file, folder or argument is missing, malformed or inconsistent."""
