"""`WaeError`: the base of every error this project raises for a user to read.

Each error of the library and of the reproduce scripts (a missing data file, an unusable
workdir, a full disk, a damaged .keras file, an export that cannot be written, ...) is a
`WaeError` whose message is one line saying what is wrong and what to do. The command
lines catch `WaeError` in one place (`wae_tf.console.run_cli`) and print that line; any
other exception is a bug and keeps its traceback.

The subclasses also keep the built-in base they had (ValueError, OSError, RuntimeError,
FileNotFoundError), so existing `except ValueError:` code still catches them. This module
imports nothing: every module can import it.
"""

from __future__ import annotations


class WaeError(Exception):
    """An error a user can act on; str(error) is one line saying what to do."""
