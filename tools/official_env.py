"""Build, once, the Python 2.7 environment that runs the official WAE code (TF 1.15).

    python -m tools.official_env            # build it (idempotent), print its folder
    python -m tools.official_env --check    # print the folder if built, else exit 1

The official implementation (tolstikhin/wae @ 6351565) is Python 2 / TensorFlow 1 code.
This installs `tools/official_env_requirements.txt` (every package pinned by version and
sha256, `pip --require-hashes`) with `python2.7 -m pip install --target` into
$WAE_TF_OFFICIAL_ENV, or <cache>/official_py27 (cache: $WAE_TF_CACHE_DIR, default
~/.cache/wae_tf), and writes a `sitecustomize.py` there: `--target` does not process the
`google` namespace package's .pth file, without which `import tensorflow` fails on
google.protobuf; `site.addsitedir` does. A marker file written last says the build is
complete and for which requirements; a second call with the same requirements does
nothing. Python 2.7 is found as $WAE_TF_PYTHON2, `python2.7` on PATH, or pyenv's 2.7.18.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from wae_tf.errors import WaeError

REQUIREMENTS = Path(__file__).with_name("official_env_requirements.txt")
MARKER = "WAE_TF_OFFICIAL_ENV_COMPLETE"
PYENV_PYTHON2 = "versions/2.7.18/bin/python2.7"


class OfficialEnvError(WaeError, RuntimeError):
    """The official Python 2.7 environment could not be built (one-line reason)."""


def cache_root() -> Path:
    """The project's cache folder: $WAE_TF_CACHE_DIR or ~/.cache/wae_tf (not created)."""
    return Path(os.environ.get("WAE_TF_CACHE_DIR") or "~/.cache/wae_tf").expanduser()


def default_cache_root() -> Path:
    """~/.cache/wae_tf: where CI builds the environment, whatever $WAE_TF_CACHE_DIR says."""
    return Path("~/.cache/wae_tf").expanduser()


def env_dir() -> Path:
    """$WAE_TF_OFFICIAL_ENV, or <cache>/official_py27."""
    override = os.environ.get("WAE_TF_OFFICIAL_ENV")
    return Path(override) if override else cache_root() / "official_py27"


def find_python2() -> str | None:
    """A Python 2.7 interpreter: $WAE_TF_PYTHON2, python2.7 on PATH, or pyenv's 2.7.18."""
    candidates = [os.environ.get("WAE_TF_PYTHON2"), shutil.which("python2.7")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path("~/.pyenv").expanduser())
    candidates.append(str(Path(pyenv_root) / PYENV_PYTHON2))
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "True":
            return candidate
    return None


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def is_built(folder: Path) -> bool:
    """True when `folder` holds a complete build of today's requirements file."""
    marker = folder / MARKER
    return marker.is_file() and marker.read_text().split()[:1] == [requirements_digest()]


def python2_env(folder: Path) -> dict[str, str]:
    """The environment a Python 2.7 subprocess needs to import TF 1.15 from `folder`."""
    # Only what TF 1.15 needs: variables meant for TF 2 (e.g. TF_ENABLE_ONEDNN_OPTS,
    # TF2_BEHAVIOR) or for our Python must not reach it.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "KERAS_HOME", "MPLCONFIGDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONPATH=str(folder), TF_CPP_MIN_LOG_LEVEL="3", PYTHONNOUSERSITE="1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the cached environment and code as built
    env["MPLBACKEND"] = "Agg"
    return env


def build(folder: Path, python2: str) -> dict:
    """Install the requirements into `folder` unless already built. Returns a summary."""
    if is_built(folder):
        return {"folder": str(folder), "built_now": False}
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    start = time.time()
    command = [
        python2,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--require-hashes",
        "--target",
        str(partial),
        "-r",
        str(REQUIREMENTS),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise OfficialEnvError(f"pip install of the official environment failed: {tail}")
    # --target skips the .pth files (google namespace): process them at start-up.
    (partial / "sitecustomize.py").write_text(
        "import os, site\nsite.addsitedir(os.path.dirname(os.path.abspath(__file__)))\n"
    )
    probe = subprocess.run(
        [python2, "-c", "import tensorflow as tf; print(tf.__version__)"],
        env=python2_env(partial),
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != "1.15.0":
        raise OfficialEnvError(
            f"the built environment does not import TF 1.15: {probe.stderr[-300:]}"
        )
    seconds = time.time() - start
    size = sum(p.stat().st_size for p in partial.rglob("*") if p.is_file())
    (partial / MARKER).write_text(f"{requirements_digest()} {seconds:.0f}s {size} bytes\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return {"folder": str(folder), "built_now": True, "seconds": seconds, "bytes": size}


PROGRAM = "python -m tools.official_env"
FLAGS = flags.FLAGS
flags.DEFINE_bool("check", False, "Only say whether the environment is built (exit 1 if not).")


def main(argv):
    del argv  # console.run_cli refuses stray arguments
    folder = env_dir()
    if FLAGS.check:
        if not is_built(folder):
            print(f"{PROGRAM}: error: not built at {folder} (run {PROGRAM})", file=sys.stderr)
            sys.exit(1)
        print(folder)
        return
    python2 = find_python2()
    if python2 is None:
        print(
            f"{PROGRAM}: error: no Python 2.7 found: install it (e.g. pyenv install 2.7.18) "
            "or set WAE_TF_PYTHON2",
            file=sys.stderr,
        )
        sys.exit(1)
    summary = build(folder, python2)  # an OfficialEnvError is one line (console.run_cli)
    if summary["built_now"]:
        print(f"built {folder} in {summary['seconds']:.0f} s ({summary['bytes'] / 2**20:.0f} MiB)")
    else:
        print(folder)


if __name__ == "__main__":
    from wae_tf import console

    console.run_cli(main, PROGRAM)
