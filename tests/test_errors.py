"""One base error: every exception class of the project is a `WaeError`, and a command line
turns any WaeError into one line on stderr (and exit status 1) through `console.run_cli`.

Importing every module of wae_tf/ and reproduce/ loads Keras and TensorFlow: a few seconds.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_python

from wae_tf import console
from wae_tf.errors import WaeError

# In a subprocess: the tools define their absl flags at import, which may clash with flags
# an earlier test of this session defined.
INTROSPECT = """
import importlib, inspect, json, sys
from pathlib import Path
from wae_tf.errors import WaeError

names = [
    package if path.stem == "__init__" else f"{package}.{path.stem}"
    for package in ("wae_tf", "reproduce")
    for path in sorted(Path(package).glob("*.py"))
]
# The command-line tools (official_driver_py2.py is Python 2 code, run apart).
names += ["tools.official_env", "tools.official_code", "tools.compare_official"]
found = {}
for name in names:
    for value in vars(importlib.import_module(name)).values():
        if inspect.isclass(value) and issubclass(value, BaseException):
            if value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = issubclass(value, WaeError)
print(json.dumps(found))
"""


@pytest.mark.slow
def test_every_exception_class_of_the_project_is_a_wae_error():
    run = run_python("-c", INTROSPECT)
    assert run.returncode == 0, run.stderr[-3000:]
    is_wae_error = json.loads(run.stdout.splitlines()[-1])
    # The introspection sees the classes it should (one per kind of module).
    assert {
        "wae_tf.data_errors.DataError",
        "wae_tf.rundir.WorkdirError",
        "wae_tf.fileio.DiskFullError",
        "wae_tf.trained.DamagedModelFileError",
        "wae_tf.export.ExportError",
        "reproduce.cli.ReproError",
        "tools.official_code.OfficialCodeError",
    } <= set(is_wae_error)
    not_wae = sorted(name for name, is_wae in is_wae_error.items() if not is_wae)
    assert not not_wae, f"exception classes that are no WaeError: {not_wae}"


def test_wae_errors_keep_their_builtin_bases():
    """`except ValueError` / `except OSError` written before WaeError still catch them."""
    from wae_tf import data, fileio, trainer

    assert issubclass(data.DataError, ValueError)
    assert issubclass(fileio.DiskFullError, OSError)
    assert issubclass(trainer.TrainError, RuntimeError)
    error = fileio.DiskFullError(28, "cannot write x: no space left")
    assert (error.errno, str(error)) == (28, "cannot write x: no space left")


class _AnyError(WaeError):
    """A WaeError no module of the project knows about."""


def _run_cli(main, capsys) -> tuple[int | str | None, list[str]]:
    with pytest.raises(SystemExit) as stop:
        console.run_cli(main, "prog", ["prog"])
    return stop.value.code, capsys.readouterr().err.splitlines()


def test_a_command_line_turns_any_wae_error_into_one_line(capsys):
    def main(argv):
        raise _AnyError("first line of the reason\n  second line: what to do\n")

    code, lines = _run_cli(main, capsys)
    assert code == 1
    assert lines == ["prog: error: first line of the reason; second line: what to do"]


def test_a_command_line_keeps_the_traceback_of_any_other_error(capsys):
    def main(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        console.run_cli(main, "prog", ["prog"])


def test_a_command_line_that_succeeds_exits_zero(capsys):
    code, lines = _run_cli(lambda argv: None, capsys)
    assert code in (0, None) and lines == []
