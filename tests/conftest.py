"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO_ROOT = Path(__file__).resolve().parents[1]

# --- The suite writes only into temporary folders and never reaches the internet --------
# Every folder that defaults to the home folder points into one temporary folder of this
# session, and the dataset mirrors at a closed loopback port (the discard port: nothing
# listens, a connection is refused at once); tests that need a mirror start their own.
# Set when pytest imports this file, before any test module imports Keras (which reads
# KERAS_HOME then); subprocesses inherit them (`python_env` starts from os.environ).
SESSION_HOME = Path(tempfile.mkdtemp(prefix="wae_tf_tests_"))
CLOSED_PORT_URL = "http://127.0.0.1:9/"
ISOLATED_ENV = {
    "WAE_TF_CACHE_DIR": str(SESSION_HOME / "wae_tf_cache"),  # CelebA decode cache, downloads
    "KERAS_HOME": str(SESSION_HOME / "keras"),  # keras.json, downloaded weights
    "MPLCONFIGDIR": str(SESSION_HOME / "matplotlib"),  # matplotlib's font cache
    "TFDS_DATA_DIR": str(SESSION_HOME / "tensorflow_datasets"),
    "WAE_TF_MNIST_MIRROR": CLOSED_PORT_URL,
    "WAE_TF_FASHION_MNIST_MIRROR": CLOSED_PORT_URL,
}
os.environ.update(ISOLATED_ENV)
# The real folders those variables replace: the suite must leave them as it found them.
GUARDED_HOME_FOLDERS = tuple(
    Path(p).expanduser() for p in ("~/.cache/wae_tf", "~/.keras", "~/.cache/matplotlib")
)


def folder_listing(folder: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under `folder` ({} if absent)."""
    if not folder.is_dir():
        return {}
    listing = {}
    for path in folder.rglob("*"):
        try:
            stat = path.lstat()
        except FileNotFoundError:  # removed while listing
            continue
        listing[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return listing


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def home_folders_untouched():
    """Fails the session (an error at the last test's teardown) if any test wrote into the
    real ~/.cache/wae_tf, ~/.keras or ~/.cache/matplotlib."""
    before = {folder: folder_listing(folder) for folder in GUARDED_HOME_FOLDERS}
    yield ISOLATED_ENV
    changed = [
        f"{folder}: {sorted(set(now.items()) ^ set(before[folder].items()))[:5]}"
        for folder in GUARDED_HOME_FOLDERS
        if (now := folder_listing(folder)) != before[folder]
    ]
    if changed:
        pytest.fail("the test suite wrote outside its temporary folders: " + "; ".join(changed))


def python_env(**variables: str) -> dict[str, str]:
    """Environment of a subprocess: this checkout importable, TensorFlow's logs quiet, the
    default Keras backend unless `variables` sets KERAS_BACKEND, and os.environ's
    ISOLATED_ENV (or what a test set instead): caches in temporary folders, no mirror."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(variables)
    return env


def run_python(*args: str, timeout: float = 300, **variables: str) -> subprocess.CompletedProcess:
    """`python *args` in the repo root with `python_env(**variables)`, output captured."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=python_env(**variables),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_config(model: str = "wae_mmd", epochs: int = 1, **overrides):
    """The CLI's `--width=4 --batch_size=50` MNIST config, as `config_from_flags` resolves it."""
    from wae_tf import configs

    config = configs.with_width(configs.get_config("mnist", model), 4)
    return config.replace(batch_size=50, epochs=epochs, **overrides)


TINY_RUN_DATA = dict(train_examples=100, eval_examples=50, pretrain=False)


def train_tiny_run(mnist_dir: Path, workdir: Path, model: str = "wae_mmd", epochs: int = 1):
    """`trainer.train` of `tiny_config(model, epochs)` on TINY_RUN_DATA, quietly: in-process,
    the run `python -m wae_tf.train` with `helpers.tiny_mnist_run_flags(..., pretrain=False)`
    makes, so either can extend a run of the other."""
    from wae_tf import trainer

    settings = trainer.TrainSettings(data_dir=mnist_dir, verbose=0, **TINY_RUN_DATA)
    return trainer.train(tiny_config(model, epochs=epochs), workdir, settings)


@pytest.fixture(scope="session")
def finished_tiny_run(mnist_dir, tmp_path_factory):
    """finished_tiny_run(model, epochs=1) -> (workdir, trained model): a finished run of
    `tiny_config(model, epochs)` on 100 MNIST images (50 to evaluate, no pretraining; one
    checkpoint per epoch, the newest 2 kept), trained once per session and shared. A test
    that changes the run works on a copy of its folder."""
    runs = {}

    def finished(model: str, epochs: int = 1):
        if (model, epochs) not in runs:
            workdir = tmp_path_factory.mktemp(f"tiny_{model}_{epochs}") / "run"
            runs[model, epochs] = workdir, train_tiny_run(mnist_dir, workdir, model, epochs)
        return runs[model, epochs]

    return finished


@contextlib.contextmanager
def mounted_tmpfs(mount_point: Path) -> Iterator[Path]:
    """A freshly mounted 8 MiB tmpfs at `mount_point` (a real file system that runs out
    of space: ENOSPC); unmounted afterwards. pytest.skip where mounting is not allowed (it
    needs root)."""
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError as e:
        pytest.skip(f"cannot mount a tmpfs here ({e})")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """`mounted_tmpfs` at tmp_path/tmpfs for one test; skips where it cannot be mounted."""
    with mounted_tmpfs(tmp_path / "tmpfs") as mount_point:
        yield mount_point


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Write folder/filler.bin so that about `leave` bytes stay free on its file system."""
    stat = os.statvfs(folder)
    filler = folder / "filler.bin"
    size = max(0, stat.f_bavail * stat.f_frsize - leave)
    try:
        with open(filler, "wb") as f:
            f.write(b"\0" * size)
    except OSError as e:  # the estimate overshot by the file's own metadata: full anyway
        if e.errno != errno.ENOSPC:
            raise
    return filler


def shared_data_root() -> Path:
    """The read-only real data: ../shared/data next to the repo, or $WAE_TF_SHARED_DATA."""
    override = os.environ.get("WAE_TF_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"shared real data not found at {root} (set WAE_TF_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def mnist_dir(shared_data: Path) -> Path:
    """The four original MNIST IDX .gz files."""
    path = shared_data / "mnist"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def celeba_dir(shared_data: Path) -> Path:
    """The shared 10k CelebA subset (89x109 JPEGs + list_eval_partition.txt)."""
    path = shared_data / "celeba_10k"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


def read_mnist_images(path: Path, count: int) -> np.ndarray:
    """The first `count` MNIST training images in [0, 1], read straight from the IDX file."""
    with gzip.open(path / "train-images-idx3-ubyte.gz", "rb") as f:
        f.read(16)
        raw = f.read(count * 784)
    return (np.frombuffer(raw, np.uint8).reshape(count, 28, 28, 1) / 255.0).astype("float32")


@pytest.fixture(scope="session")
def mnist_images() -> np.ndarray:
    """400 real MNIST images in [0, 1] when the shared data is present, synthetic otherwise.

    The synthetic fallback (random bars) keeps the training tests meaningful on a clean
    machine without the data.
    """
    root = shared_data_root() / "mnist"
    if (root / "train-images-idx3-ubyte.gz").is_file():
        return read_mnist_images(root, 400)
    rng = np.random.default_rng(0)
    images = np.zeros((400, 28, 28, 1), "float32")
    for image in images:
        r, c = rng.integers(4, 24, size=2)
        image[r - 3 : r + 3, max(c - 8, 0) : c + 8, 0] = 1.0
    return images
