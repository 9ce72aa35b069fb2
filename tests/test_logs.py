"""What a user sees while training: time projections, TensorFlow's start-up lines, plain
redirected logs, and a suite that keeps out of the home folder.

- Long work says how long: after the first steps of encoder pretraining and of the first
  epoch, one log line with the measured time per step and the projection for the phase /
  the run; its numbers must agree with the steps and epochs it names.
- TensorFlow's C++ start-up lines (oneDNN, CPU features, absl's banner) at most once per
  command; a redirected CLI run defaults to one line per epoch: no '\\r', no ANSI codes.
- Caches and mirrors of the suite point into a temporary folder / a closed port, and so
  do those of its subprocesses.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ISOLATED_ENV, python_env, run_python, shared_data_root, tiny_config
from helpers import run_together, tiny_mnist_run_flags

from wae_tf import callbacks, console, data, models, pretraining

REPO = Path(__file__).resolve().parents[1]
UNITS = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
PRETRAINING_LINE = re.compile(
    r"encoder pretraining: ([\d.]+) (ms|s)/step, up to (\d+) steps: ~([\d.]+) (s|min|h) "
    r"on this machine"
)
EPOCH_LINE = re.compile(
    r"epoch (\d+): ([\d.]+) (ms|s)/step x (\d+) steps/epoch x (\d+) epochs?( left)?: "
    r"~([\d.]+) (s|min|h)(?: \([\d.]+ days\))? on this machine"
)


def assert_projection_consistent(per_step: float, count: int, projected: str, unit: str):
    """`projected` (as printed) is per_step (as printed, 3 significant digits) x count,
    up to the rounding of both numbers."""
    expected = per_step * count
    printed = float(projected) * UNITS[unit]
    half_digit = 0.5 * UNITS[unit] * (1 if "." not in projected else 0.1)
    assert abs(printed - expected) <= 0.006 * expected + half_digit, (per_step, count, projected)


# --- Formatting ----------------------------------------------------------------------------


def test_durations_and_step_times_read_as_people_write_them():
    assert console.format_duration(0.42) == "0.4 s"
    assert console.format_duration(42) == "42 s"
    assert console.format_duration(7 * 60) == "7 min"
    assert console.format_duration(3.5 * 3600) == "3.5 h"
    assert console.format_duration(32 * 3600) == "32 h"
    assert console.format_duration(75 * 3600) == "75 h (3.1 days)"
    assert console.format_step_time(0.0621) == "62.1 ms/step"
    assert console.format_step_time(1.934) == "1.93 s/step"


def test_default_verbose_is_the_progress_bar_on_a_terminal_only(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert console.default_verbose() == 1
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert console.default_verbose() == 2


# --- Time projections ------------------------------------------------------------------------


def test_pretraining_projects_its_time_from_the_first_steps_and_logs_while_it_runs(
    mnist_images, monkeypatch, caplog
):
    model = models.build_model(tiny_config(pretrain_threshold=0.0))  # never stops early
    monkeypatch.setattr(pretraining, "LOG_EVERY_S", 0.0)  # a line at every step
    with caplog.at_level(logging.INFO, logger="absl"):
        history = pretraining.pretrain_encoder(model, mnist_images, steps=7, verbose=2)
    assert len(history) == 7
    lines = [m for m in map(PRETRAINING_LINE.search, caplog.messages) if m]
    assert len(lines) == 1, caplog.text
    per_step, unit, steps, projected, projected_unit = lines[0].groups()
    assert int(steps) == 7
    assert_projection_consistent(float(per_step) * UNITS[unit], 7, projected, projected_unit)
    logged_steps = [m for m in caplog.messages if m.startswith("encoder pretraining step")]
    assert len(logged_steps) == 7  # every LOG_EVERY_S (here: every step)


@pytest.mark.slow
def test_first_epoch_projects_the_run_and_a_resumed_run_the_epochs_left(mnist_images, caplog):
    model = models.build_model(tiny_config())
    steps = 4
    model.compile(steps_per_epoch=steps)
    stream = data.train_dataset(mnist_images[:200], 50, seed=0, pixel_range="unit")
    with caplog.at_level(logging.INFO, logger="absl"):
        model.fit(
            stream,
            epochs=3,
            steps_per_epoch=steps,
            callbacks=[callbacks.TimeProjection(timed_steps=2)],
            shuffle=False,
            verbose=0,
        )
        model.fit(
            stream,
            epochs=5,
            initial_epoch=3,
            steps_per_epoch=steps,
            callbacks=[callbacks.TimeProjection(timed_steps=2)],
            shuffle=False,
            verbose=0,
        )
    lines = [m.groups() for m in map(EPOCH_LINE.search, caplog.messages) if m]
    assert [(int(g[0]), int(g[3]), int(g[4]), g[5]) for g in lines] == [
        (1, steps, 3, None),
        (4, steps, 2, " left"),
    ]
    for _, per_step, unit, steps_shown, epochs, _, projected, projected_unit in lines:
        count = int(steps_shown) * int(epochs)
        assert_projection_consistent(
            float(per_step) * UNITS[unit], count, projected, projected_unit
        )


# --- TensorFlow's start-up lines and redirected logs -----------------------------------------

STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795695201.155577    7451 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1795695201.238795    7451 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.
W0000 00:00:1795695201.300000    7451 some_op.cc:12] a real warning
/site-packages/x.py:3: UserWarning: a Python warning
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795695204.681231    7451 port.cc:153] oneDNN custom operations are on.
W0000 00:00:1795695204.700000    7451 some_op.cc:12] a real warning
"""


def test_startup_filter_drops_repeats_and_by_default_the_info_lines():
    default = console.filter_startup_lines(STARTUP, min_log_level=1)
    assert default.splitlines() == [
        "W0000 00:00:1795695201.300000    7451 some_op.cc:12] a real warning",
        "/site-packages/x.py:3: UserWarning: a Python warning",
    ]
    everything = console.filter_startup_lines(STARTUP, min_log_level=0).splitlines()
    assert len(everything) == 6  # the first copy of each, in order
    assert sum("port.cc" in line for line in everything) == 1
    assert sum("absl::InitializeLog" in line for line in everything) == 1
    assert everything[3].startswith("To enable the following instructions")


def startup_env(**variables: str) -> dict[str, str]:
    """python_env without conftest's TF_CPP_MIN_LOG_LEVEL=3: the user's default."""
    env = python_env(**variables)
    if "TF_CPP_MIN_LOG_LEVEL" not in variables:
        env.pop("TF_CPP_MIN_LOG_LEVEL")
    return env


# A retracing warning takes TensorFlow's Python logger, under absl's app.run.
WARNINGS_PROBE = (
    "from wae_tf import console; console.quiet_tensorflow_startup()\n"
    "import tensorflow as tf\n"
    "from absl import app\n"
    "def main(argv):\n"
    "    tf.get_logger().info('info probe')\n"
    "    tf.get_logger().warning('retracing probe')\n"
    "app.run(main)\n"
)


# The command lines of the tests below, started together (each pays a TensorFlow import):
# {name: CompletedProcess}, "folder": where their runs are.
@pytest.fixture(scope="module")
def log_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logs")
    python, train = sys.executable, [sys.executable, "-m", "wae_tf.train"]
    commands = {"help": [*train, "--help"], "warnings": [python, "-c", WARNINGS_PROBE]}
    each = {
        "help": {"env": startup_env(TF_CPP_MIN_LOG_LEVEL="0")},
        "warnings": {"env": startup_env()},
    }
    mnist_dir = shared_data_root() / "mnist"
    if mnist_dir.is_dir():  # else the two training runs' tests skip (`mnist_dir`)
        flags = tiny_mnist_run_flags(mnist_dir, folder / "redirected", "wae_mmd", verbose=None)
        commands["redirected"] = [*train, *flags, "--epochs=2"]  # --verbose: the default
        each["redirected"] = {"env": startup_env()}
        if importlib.util.find_spec("jax") is not None:
            flags = tiny_mnist_run_flags(mnist_dir, folder / "jax", "vae")
            commands["jax"] = [*train, *flags, "--epochs=1"]
            each["jax"] = {"env": startup_env(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="0")}
    return {**run_together(commands, cwd=REPO, each=each), "folder": folder}


@pytest.mark.slow
def test_help_with_all_tensorflow_logs_asked_for_prints_the_startup_lines_once(log_runs):
    result = log_runs["help"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--verbose" in result.stdout
    # TensorFlow 2.21 prints each of these twice without the filter (two native libraries)
    assert result.stderr.count("oneDNN custom operations are on") <= 1, result.stderr
    assert result.stderr.count("absl::InitializeLog()") <= 1, result.stderr
    assert result.stderr.count("cpu_feature_guard") <= 1, result.stderr


@pytest.mark.slow
def test_redirected_cli_run_is_one_line_per_epoch_without_startup_noise_and_says_how_long(
    mnist_dir, log_runs
):
    result = log_runs["redirected"]
    assert result.returncode == 0, result.stderr[-3000:]
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b[" not in stream
    # One line per epoch over both streams (as `2>&1` shows them): ours, with the metrics,
    # the time and the time left; not Keras's "Epoch N/2" and metrics lines besides.
    lines = (result.stdout + result.stderr).splitlines()
    with_metrics = [line for line in lines if re.search(r"\bloss[=:]", line)]
    assert len(with_metrics) == 2, "\n".join(with_metrics)
    assert all(re.search(r"epoch \d/2: loss=", line) for line in with_metrics), with_metrics
    assert not any(line.startswith("Epoch ") for line in lines)
    for noise in ("oneDNN custom operations", "absl::InitializeLog()", "cpu_feature_guard"):
        assert noise not in result.stderr  # INFO lines: off by default
    pretraining_line = PRETRAINING_LINE.search(result.stderr)
    assert pretraining_line and int(pretraining_line.group(3)) == 200, result.stderr
    epoch_line = EPOCH_LINE.search(result.stderr)
    assert epoch_line, result.stderr
    assert (int(epoch_line.group(4)), int(epoch_line.group(5))) == (2, 2)  # 100 / 50, 2 epochs


@pytest.mark.slow
def test_tensorflow_python_warnings_are_printed_once_under_an_entry_point(log_runs):
    result = log_runs["warnings"]  # WARNINGS_PROBE
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("retracing probe") == 1, result.stderr
    assert "info probe" not in result.stderr  # INFO off, as TensorFlow's C++ INFO lines


@pytest.mark.slow
def test_jax_run_prints_tensorflows_startup_lines_once_at_most(mnist_dir, log_runs):
    """On JAX, Keras imports TensorFlow when it saves final.keras; that import went
    unfiltered: its start-up lines came twice at the end of the run."""
    pytest.importorskip("jax")
    result = log_runs["jax"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert (log_runs["folder"] / "jax" / "final.keras").is_file()
    for line in ("oneDNN custom operations are on", "absl::InitializeLog()"):
        assert result.stderr.count(line) <= 1, result.stderr[-3000:]


# --- The suite keeps out of the home folder --------------------------------------------------


def test_caches_and_mirrors_point_into_a_temporary_folder_also_in_subprocesses():
    temporary = Path(tempfile.gettempdir()).resolve()
    for name in ("WAE_TF_CACHE_DIR", "KERAS_HOME", "MPLCONFIGDIR", "TFDS_DATA_DIR"):
        assert temporary in Path(os.environ[name]).resolve().parents
    names = sorted(ISOLATED_ENV)
    child = run_python("-c", f"import os; print([os.environ.get(n) for n in {names!r}])")
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == str([ISOLATED_ENV[n] for n in names])
    assert ISOLATED_ENV["WAE_TF_MNIST_MIRROR"].startswith("http://127.0.0.1:")
