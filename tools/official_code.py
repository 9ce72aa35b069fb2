"""Materialise the official WAE code (tolstikhin/wae @ 6351565), checked file by file.

    python -m tools.official_code     # copy the files into the cache, print the folder

The official files are never part of this repository. They are taken, in this order, from
  1. $WAE_TF_OFFICIAL_CODE, a folder holding them (used as is, nothing copied);
  2. the cache, <cache>/official_code_6351565 (cache: $WAE_TF_CACHE_DIR or ~/.cache/wae_tf);
  3. a git clone of the repository given by $WAE_TF_OFFICIAL_GIT (`git show COMMIT:FILE`);
  4. GitHub, raw files at the commit, when the network allows;
and each file must match the sha256 pinned below. 2-4 write into the cache folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.request
from pathlib import Path

from tools.official_env import cache_root
from wae_tf.errors import WaeError

REPOSITORY = "tolstikhin/wae"
COMMIT = "63515656201eb6e3c3f32f6d38267401ed8ade8f"
# sha256 of each file the graph and its train loop import (wae.py imports all of them).
FILES = {
    "configs.py": "bb3b0014d894c365da63fd6929bdd5d9288c0246453b1a3b5fa82ab8fd78d1cc",
    "models.py": "a25b9a24f851910f4d6e083938ada011d84bfa23dbae23ad1a31468b207773fe",
    "wae.py": "96d80e408c0e6e97ac86e4b78452cb7a6ca7dbfbb3b5980f8c71452154651ac6",
    "ops.py": "fd2e019d6429a0cda33f11446381eaef73dc01167a1920d843991191c6eb9edd",
    "datahandler.py": "1a835fd17931a2f205cb689efa3bb86eec657e3f013debf1b1f113cb7a26ca6e",
    "utils.py": "540111bc08b7de903b0df8e0150ee150c58587b3f870b2dc74151569de423455",
    "improved_wae.py": "cfde9cedc33108f29d142bfee9b75027163ba2e37e3fbf48cc93c3b3a552fd9f",
}
PROGRAM = "python -m tools.official_code"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{name}"


class OfficialCodeError(WaeError, RuntimeError):
    """The official files could not be found or did not match their pinned sha256."""


def cache_folder() -> Path:
    return cache_root() / f"official_code_{COMMIT[:7]}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verified(folder: Path) -> bool:
    """True when `folder` holds every file, each with its pinned sha256."""
    return all(
        (folder / name).is_file() and _sha256((folder / name).read_bytes()) == digest
        for name, digest in FILES.items()
    )


def locate() -> Path | None:
    """A folder with verified official files, without writing anything; None if none."""
    override = os.environ.get("WAE_TF_OFFICIAL_CODE")
    if override:
        return Path(override) if verified(Path(override)) else None
    return cache_folder() if verified(cache_folder()) else None


def _from_git(git_dir: str, name: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{COMMIT}:{name}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def _from_github(name: str) -> bytes:
    url = RAW_URL.format(repo=REPOSITORY, commit=COMMIT, name=name)
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def materialise() -> Path:
    """A folder with the verified official files, fetching them into the cache if needed."""
    override = os.environ.get("WAE_TF_OFFICIAL_CODE")
    if override:
        if not verified(Path(override)):
            raise OfficialCodeError(
                f"$WAE_TF_OFFICIAL_CODE={override} does not hold the files of "
                f"{REPOSITORY}@{COMMIT[:7]} ({', '.join(FILES)}) with their pinned sha256"
            )
        return Path(override)
    folder = cache_folder()
    if verified(folder):
        return folder
    git_dir = os.environ.get("WAE_TF_OFFICIAL_GIT")
    sources = ([("git", lambda n: _from_git(git_dir, n))] if git_dir else []) + [
        ("GitHub", _from_github)
    ]
    reasons = []
    for label, fetch in sources:
        try:
            contents = {name: fetch(name) for name in FILES}
        except (OSError, subprocess.SubprocessError) as e:
            reasons.append(f"{label}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        bad = [n for n, data in contents.items() if _sha256(data) != FILES[n]]
        if bad:
            reasons.append(f"{label}: sha256 mismatch for {', '.join(bad)}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            partial = folder / f"{name}.partial"
            partial.write_bytes(data)
            partial.replace(folder / name)
        return folder
    raise OfficialCodeError(
        f"cannot get {REPOSITORY}@{COMMIT[:7]}: "
        + "; ".join(reasons)
        + " (set WAE_TF_OFFICIAL_CODE to a folder with the files, or WAE_TF_OFFICIAL_GIT to a clone)"
    )


def main(argv):
    del argv  # console.run_cli refuses stray arguments
    print(materialise())  # an OfficialCodeError is one line (console.run_cli)


if __name__ == "__main__":
    from wae_tf import console

    console.run_cli(main, PROGRAM)
