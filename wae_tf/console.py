"""What a command prints: durations, time projections, verbosity, TensorFlow's start-up.

    format_duration(seconds)        "0.4 s", "42 s", "7 min", "32 h", "75 h (3.1 days)"
    format_step_time(seconds)       "62.1 ms/step", "1.93 s/step"
    default_verbose()               the CLI's --verbose: 1 (progress bar) on a terminal, else 2
    quiet_tensorflow_startup()      import Keras (and TensorFlow) with the start-up lines once
                                    at most; entry points call it before anything imports Keras
    import_tensorflow_quietly()     the same for TensorFlow imported later (other backends)
    run_cli(main, program)          absl's app.run for a command line: --help exits 0, a flag
                                    error, a stray argument or a `WaeError` is one line

Why TensorFlow's start-up lines appeared twice: `import tensorflow` (2.21) loads two native
libraries that each carry their own copy of absl's logging and of the oneDNN check,
`_pywrap_tensorflow_internal` and, through `tf.profiler.experimental.client`,
`_pywrap_profiler_plugin`. Each copy prints absl's "All log messages before
absl::InitializeLog() ..." banner and the oneDNN notice. Those lines are written before
TensorFlow reads $TF_CPP_MIN_LOG_LEVEL, so that variable cannot hide them; only reading
what the import writes to file descriptor 2 can. This module imports nothing heavy.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import tempfile

TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# Our entry points' default: TensorFlow's C++ INFO lines off (warnings and errors stay).
DEFAULT_TF_LOG_LEVEL = "1"

# A C++ log line: severity letter, MMDD, time, thread id, source.cc:line] message.
_CPP_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w./-]+\.(?:cc|cpp|h):\d+\] (.*)$")
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to"
# The second line of cpu_feature_guard.cc's INFO message.
_CONTINUATION = "To enable the following instructions:"


def format_duration(seconds: float) -> str:
    """A duration for people: "0.4 s", "42 s", "7 min", "3.5 h", "32 h", "75 h (3.1 days)"."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    text = f"{hours:.1f} h" if hours < 10 else f"{hours:.0f} h"
    return f"{text} ({hours / 24:.1f} days)" if hours >= 48 else text


def format_step_time(seconds: float) -> str:
    """Seconds per step with three significant digits: "62.1 ms/step", "1.93 s/step"."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms/step"
    return f"{seconds:.3g} s/step"


def default_verbose() -> int:
    """Keras's progress bar (1) when stdout, where it is drawn, is a terminal (or a
    notebook's); else one line per epoch (2), so that redirected logs get no carriage
    returns or ANSI codes."""
    if "ipykernel" in sys.modules:
        return 1
    try:
        return 1 if sys.stdout.isatty() else 2
    except (AttributeError, ValueError):  # replaced or closed stdout
        return 2


def filter_startup_lines(text: str, min_log_level: int) -> str:
    """What of TensorFlow's import-time stderr `text` to show.

    Lines that repeat an earlier one (ignoring the C++ lines' time and thread prefix) are
    dropped: each native library prints its own copy. With `min_log_level` >= 1 the C++
    INFO lines (oneDNN notice, CPU features) and absl's banner before them are dropped
    too, as $TF_CPP_MIN_LOG_LEVEL would have done had it been read in time. Everything
    else (warnings, errors, Python's output) is kept, in order.
    """
    kept: list[str] = []
    seen: set[str] = set()
    info = False  # whether the last TensorFlow line was an INFO line
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        match = _CPP_LOG_LINE.match(bare)
        if match:
            key, info = match.group(2), match.group(1) == "I"
        elif bare.startswith(_ABSL_BANNER):
            key, info = bare, True  # printed before the first INFO line
        elif bare.startswith(_CONTINUATION):
            key = bare  # the second line of the message before it
        else:
            kept.append(line)  # not TensorFlow's: Python's warnings, a user's prints
            continue
        if (info and min_log_level >= 1) or key in seen:
            continue
        seen.add(key)
        kept.append(line)
    return "".join(kept)


def tf_min_log_level() -> int:
    """$TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get(TF_LOG_LEVEL_ENV, "0"))
    except ValueError:
        return 0


def quiet_tensorflow_startup() -> None:
    """Import Keras (hence TensorFlow, on its default backend) with its start-up lines
    printed once at most; a no-op once Keras is imported.

    Sets $TF_CPP_MIN_LOG_LEVEL to 1 (C++ INFO lines off) unless the user set it; with a
    user's 0 the start-up lines are shown, once each. What the import writes to stderr
    is held back until it has finished and then written through `filter_startup_lines`.
    TensorFlow's Python warnings go through absl's handler only (they came twice: once by
    the handler TensorFlow adds when the root logger has none yet, once by absl's), and
    its Python INFO lines are off with the C++ ones.
    """
    os.environ.setdefault(TF_LOG_LEVEL_ENV, DEFAULT_TF_LOG_LEVEL)
    if "keras" in sys.modules:
        return
    from absl import logging as absl_logging

    absl_logging.use_absl_handler()  # before TensorFlow's get_logger() looks at the root
    if tf_min_log_level() >= 1:  # its Python INFO lines too ("Reduce to ... then broadcast")
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
    # Keras imports matplotlib (keras.src.visualization), which says "generated new
    # fontManager" at INFO on a first run: noise in a one-line error or a training log.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    _import_filtered("keras")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow now, if it is installed and not imported yet, through the same
    filter. On other backends Keras imports it lazily when it saves a .keras file
    (keras/src/saving/serialization_lib.py, `tf.available`), where its start-up lines
    came twice at the end of a run: entry points call this before saving."""
    import importlib.util

    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    _import_filtered("tensorflow")


def _import_filtered(module: str) -> None:
    """`import module`, with what it writes to file descriptor 2 filtered afterwards."""
    import importlib

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no usable stderr: nothing to tidy
        importlib.import_module(module)
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            importlib.import_module(module)
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            capture.seek(0)
            text = filter_startup_lines(capture.read().decode(errors="replace"), tf_min_log_level())
            if text:
                os.write(2, text.encode())


# absl's multi-flag validators prefix their message with every flag they read:
# "flags dataset=mnist, model=vae, ...: <message>" (absl/flags/_flagvalues.py).
_VALIDATOR_PREFIX = re.compile(r"^flags \w+=[^:]*?: ")
# absl's line for each required flag left out (flags.mark_flags_as_required).
_REQUIRED = re.compile(r"Flag (--\w+) must have a value other than None")


def flag_error_line(error: BaseException) -> str:
    """absl's flag error as one line: the first message, without the validator's list of
    every flag value it read."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    missing = [m.group(1) for line in lines if (m := _REQUIRED.search(line))]
    if missing:
        return f"{', '.join(missing)} must be given (--help lists the flags)"
    return _VALIDATOR_PREFIX.sub("", lines[0])


def run_cli(main, program: str, argv: list[str] | None = None) -> None:
    """`absl.app.run(main, argv)` with a command line's conventions, for every entry point:

    --help, --helpshort, --helpfull and --helpxml print the help and exit 0 (absl exits 1);
    a bad flag value, an argument that is not a flag, and a `wae_tf.errors.WaeError` raised
    by `main` (any error meant for the user) end in one line on stderr,
    "<program>: error: ...", and exit 1 (absl prints a second line, or the whole help; a
    WaeError would be a traceback). Any other exception is a bug and keeps its traceback.
    """
    from absl import app, flags

    from wae_tf.errors import WaeError

    def parse(args: list[str]) -> list[str]:
        try:
            remaining = flags.FLAGS(args)
        except flags.Error as error:
            print(f"{program}: error: {flag_error_line(error)}", file=sys.stderr)
            sys.exit(1)
        except SystemExit as stop:  # a help flag printed the help, then exit(1)
            raise SystemExit(0 if stop.code == 1 else stop.code) from None
        if len(remaining) > 1:
            print(
                f"{program}: error: unexpected argument {remaining[1]!r} (flags are written "
                "--name=value; --help lists them)",
                file=sys.stderr,
            )
            sys.exit(1)
        return remaining

    def main_with_one_line_errors(args: list[str]) -> None:
        try:
            main(args)
        except WaeError as error:
            message = f"{program}: error: {one_line(error)}"
        else:
            return
        # Outside the except block: the error's frames, which may hold a model and its
        # tf.data iterators, are released, and collected here while Python can still run
        # their finalizers; at interpreter exit TensorFlow would add "Error occurred when
        # finalizing GeneratorDataset iterator: FAILED_PRECONDITION" to the one line.
        gc.collect()
        print(message, file=sys.stderr)
        sys.exit(1)

    app.run(main_with_one_line_errors, argv, flags_parser=parse)


def one_line(error: BaseException) -> str:
    """str(error) on one line (its lines joined by "; "), or its class name when empty."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__
