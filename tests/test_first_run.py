"""A new user's first commands, run as the README gives them, in a subprocess.

The main job, `python -m reproduce.figure2 --quick`, runs in an empty folder with an empty
cache ($WAE_TF_CACHE_DIR), no $WAE_TF_DATA_DIR and no --data_dir, so MNIST is downloaded
-- from a mirror on 127.0.0.1 serving the shared MNIST files ($WAE_TF_MNIST_MIRROR,
tests/loopback_mirror.py), never the internet -- and the figure is drawn under the default
--out_dir. With the mirror down, and for Table 1 without data, the command fails in one
line before anything is announced or trained. Each script's --help lists its own flags.
Everything is written under pytest's temporary folder (cache, runs, Keras and matplotlib
settings). The main job must show the paper's story, not a grey figure: its samples vary
and its three Fréchet scores differ (tests/quick_figure_checks.py). The seven commands
start together, four at a time (`first_runs`); most of the time is the main job's.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, python_env, shared_data_root
from helpers import run_together
from loopback_mirror import dead_url, read_files, serve
from quick_figure_checks import assert_samples_vary, assert_scores_differ

from wae_tf import download

# TensorFlow's C++ start-up lines (oneDNN, cpu_feature_guard, absl::InitializeLog): not ours.
TF_STARTUP_NOISE = re.compile(
    r"^([IWE]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]|WARNING: All log messages before "
    r"absl::InitializeLog|To enable the following instructions)"
)


def readme_first_commands() -> list[str]:
    """The commands of README.md's first code block, comments dropped."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


MAIN_JOB = "python -m reproduce.figure2 --quick"


def test_readme_starts_with_install_main_job_and_test_commands_and_ci_runs_the_same():
    install, main_job, tests = readme_first_commands()
    assert install == "python -m pip install -r requirements.txt -e ."
    assert main_job == MAIN_JOB  # what the next test runs
    assert tests == "python -m pytest -q"
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in [line.strip() for line in ci]


def fresh(home: Path, **variables: str) -> dict:
    """Popen arguments of a run in `home`/work, as on a fresh machine: this checkout
    importable, the cache in `home`/cache (empty at first), no $WAE_TF_DATA_DIR."""
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = python_env(
        WAE_TF_CACHE_DIR=str(home / "cache"),
        KERAS_HOME=str(home / "keras"),
        MPLCONFIGDIR=str(home / "matplotlib"),
        **variables,
    )
    env.pop("WAE_TF_DATA_DIR", None)
    return {"cwd": work, "env": env}


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line and not TF_STARTUP_NOISE.match(line)]


HELP_FLAGS = ["--quick", "--out_dir", "--workdir", "--epochs", "--width", "--models", "--assemble"]
HELP_SCRIPTS = {
    "figure2": HELP_FLAGS,
    "figure3": [*HELP_FLAGS, "--inception_graph"],
    "table1": [*HELP_FLAGS, "--inception_graph"],
}


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory):
    """Every command of this file, each in its own fresh home, started together (each pays
    a TensorFlow import; the main job, when the shared MNIST files are there to be
    served, overlaps them): {name: CompletedProcess}, "homes": {name: home}, "mirror": the main
    job's mirror (its requests)."""
    names = ["main_job", "mirror_down", "table1", "stray", *(f"help_{s}" for s in HELP_SCRIPTS)]
    homes = {name: tmp_path_factory.mktemp(name) for name in names}
    python = sys.executable
    commands = {
        "mirror_down": [python, "-m", "reproduce.figure2", "--quick"],
        "table1": [python, "-m", "reproduce.table1"],
        "stray": [python, "-m", "reproduce.figure2", "--quick", "extra"],
    }
    each = {
        "mirror_down": fresh(homes["mirror_down"], WAE_TF_MNIST_MIRROR=dead_url()),
        "table1": fresh(homes["table1"]),
        "stray": fresh(homes["stray"]),
    }
    for script in HELP_SCRIPTS:  # --help in a work folder, settings in temporary ones
        home = homes[f"help_{script}"]
        (home / "work").mkdir()
        env = python_env(MPLCONFIGDIR=str(home / "matplotlib"), KERAS_HOME=str(home / "k"))
        commands[f"help_{script}"] = [python, "-m", f"reproduce.{script}", "--help"]
        each[f"help_{script}"] = {"cwd": home / "work", "env": env}
    mnist = shared_data_root() / "mnist"
    with contextlib.ExitStack() as stack:
        mirror = None
        if mnist.is_dir():  # else the main job's test skips (the `mnist_dir` fixture)
            mirror = stack.enter_context(serve(read_files(mnist, download.MNIST.files)))
            commands = {"main_job": [python, *MAIN_JOB.split()[1:]], **commands}  # first
            each["main_job"] = fresh(homes["main_job"], WAE_TF_MNIST_MIRROR=mirror.url)
        runs = run_together(commands, timeout=300, each=each)
    return {**runs, "homes": homes, "mirror": mirror}


@pytest.mark.slow
def test_main_job_fetches_mnist_into_the_cache_and_draws_figure2(mnist_dir, first_runs):
    result, tmp_path, mirror = (
        first_runs["main_job"],
        first_runs["homes"]["main_job"],
        first_runs["mirror"],
    )
    assert result.returncode == 0, result.stderr[-4000:]
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(download.MNIST.files)
    assert download.verified(download.MNIST, cache)
    assert sorted(name for name, _ in mirror.requests) == sorted(download.MNIST.files)
    out = tmp_path / "work" / "runs" / "figure2"  # the default --out_dir
    for name in ("figure2.png", "figure2.md", "figure2.json", "figure2_training_curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert "REDUCED SCALE" in (out / "figure2.md").read_text()
    assert result.stdout.startswith("figure2: REDUCED SCALE") and "runs/figure2/figure2.png" in (
        result.stdout
    )
    # The paper's story: digits, not a grey figure, and three different scores.
    assert_samples_vary(out, "figure2", image_size=28)
    models = json.loads((out / "figure2.json").read_text())["models"]
    assert_scores_differ({m: numbers["mnist_frechet_score"] for m, numbers in models.items()})


@pytest.mark.slow
def test_main_job_with_the_mirror_down_fails_in_one_line_before_any_training(first_runs):
    result, tmp_path = first_runs["mirror_down"], first_runs["homes"]["mirror_down"]
    assert result.returncode == 1
    lines = our_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("figure2: error: could not fetch mnist")
    assert "--data_dir" in lines[0] and "no network" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "work" / "runs").exists()  # nothing announced, trained or written


@pytest.mark.slow
def test_table1_without_data_fails_in_one_line_naming_data_dir_before_announcing(first_runs):
    result, tmp_path = first_runs["table1"], first_runs["homes"]["table1"]
    assert result.returncode == 1
    lines = our_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("table1: error: no celeba data")
    assert "--data_dir=DIR" in lines[0] and "$WAE_TF_DATA_DIR" in lines[0]
    assert not (tmp_path / "work" / "runs").exists()


@pytest.mark.slow
def test_each_script_help_lists_its_own_flags_and_not_absls(first_runs):
    for name, flags in HELP_SCRIPTS.items():
        process = first_runs[f"help_{name}"]
        stdout, stderr = process.stdout, process.stderr
        assert process.returncode == 0 and "Try --helpfull" in stdout, stderr[-2000:]
        for flag in flags:
            assert re.search(rf"^\s+--(\[no\])?{flag[2:]}:", stdout, re.M), (name, flag)
        assert f"(default: 'runs/{name}')" in stdout  # outputs stay out of tracked folders
        assert "--logtostderr" not in stdout


@pytest.mark.slow
def test_a_stray_argument_is_one_line_naming_it_not_the_help(first_runs):
    result, tmp_path = first_runs["stray"], first_runs["homes"]["stray"]
    assert result.returncode == 1
    lines = our_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("figure2: error:"), result.stderr
    assert "'extra'" in lines[0] and result.stdout == ""
    assert not (tmp_path / "work" / "runs").exists()
