"""Fetch MNIST and Fashion-MNIST when no local copy is given, verified by content.

The four IDX files of each dataset are downloaded, under their official names, from the
first mirror in a list that serves them (`$WAE_TF_MNIST_MIRROR` or
`$WAE_TF_FASHION_MNIST_MIRROR`, a base URL, replaces the list). Each file is checked by
the MD5 of its *decompressed* IDX bytes: mirrors and distributions recompress the files
(so the .gz bytes differ from copy to copy), but the IDX content is the original's.

A download goes to a hidden `.part` file next to its target and is renamed onto it only
once verified (after fsync), so the data folder never holds a torn or unverified file. A
transfer cut off half-way is resumed from the `.part` file with an HTTP Range request the
next time. A mirror that has not answered after a second is named in one line with its
time-out (`TIMEOUT_S`, for the connection and for each read); one that does not answer
in time is given up for the next one. Failures are one line each (`DownloadError`): offline,
every mirror tried with its reason, or a file whose content is not the dataset's.

Why hand-written: tensorflow-datasets verifies the sha256 of the *compressed* files, so it
rejects recompressed copies (paper_spec.md, "Known problems"), and needs TensorFlow; the
standard library's urllib does everything needed here.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from wae_tf import fileio
from wae_tf.errors import WaeError

CHUNK = 1 << 16
TIMEOUT_S = 30.0  # for the connection, the answer, and each read
WAIT_NOTICE_S = 1.0  # a mirror silent this long is named, with TIMEOUT_S


class DownloadError(WaeError, RuntimeError):
    """A dataset could not be fetched; the message is one line saying what to do."""


@dataclasses.dataclass(frozen=True)
class RemoteDataset:
    """An IDX dataset: its official file names, the MD5 of each decompressed file, mirrors."""

    name: str
    md5: dict[str, str]  # "<official name>.gz" -> MD5 of the decompressed bytes
    mirrors: tuple[str, ...]  # base URLs; a file's URL is base + its official name
    mirror_env: str  # environment variable whose base URL replaces `mirrors`

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.md5)

    def mirror_list(self) -> tuple[str, ...]:
        override = os.environ.get(self.mirror_env, "").strip()
        bases = (override,) if override else self.mirrors
        return tuple(base if base.endswith("/") else base + "/" for base in bases)


# The MNIST MD5s are those of the official uncompressed files. Mirrors: the one torchvision uses
# first, the one tensorflow-datasets uses, and the original site (often refuses robots).
MNIST = RemoteDataset(
    name="mnist",
    md5={
        "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    mirror_env="WAE_TF_MNIST_MIRROR",
)

# Fashion-MNIST: MD5s of the decompressed files of Debian's dataset-fashion-mnist package
# (the original IDX bytes, recompressed); mirrors: the dataset's own bucket and repository.
FASHION_MNIST = RemoteDataset(
    name="fashion_mnist",
    md5={
        "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    mirror_env="WAE_TF_FASHION_MNIST_MIRROR",
)

REMOTE_DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}


def decompressed_md5(path: str | os.PathLike) -> str:
    """MD5 of the decompressed bytes of the gzip file `path` (ValueError if not gzip)."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"not a complete gzip file ({e})") from e
    return digest.hexdigest()


def verified(dataset: RemoteDataset, folder: str | os.PathLike) -> bool:
    """Whether `folder` holds all of `dataset`'s files with the right content."""
    folder = Path(folder)
    for name, md5 in dataset.md5.items():
        try:
            if decompressed_md5(folder / name) != md5:
                return False
        except (OSError, ValueError):
            return False
    return True


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) checked in this process


def fetch(
    dataset: RemoteDataset,
    folder: str | os.PathLike,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Make `folder` hold `dataset`'s four verified files; download what is missing.

    Files already there and verified are kept (each is checked once per process while its
    size and mtime stay the same). Returns the folder. Raises DownloadError.
    """
    folder = Path(folder).expanduser()
    say = progress or _stderr
    for name, md5 in dataset.md5.items():
        target = folder / name
        if target.is_file():
            if _identity(target) in _VERIFIED or _content_md5(target) == md5:
                _VERIFIED.add(_identity(target))
                continue
            say(f"{target} is not the expected {dataset.name} file: downloading it again")
        _fetch_file(dataset, name, md5, target, say)
        _VERIFIED.add(_identity(target))
    return folder


def _identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def _content_md5(path: Path) -> str | None:
    """decompressed_md5, or None for a missing or incomplete gzip file."""
    try:
        return decompressed_md5(path)
    except (OSError, ValueError):
        return None


def _fetch_file(
    dataset: RemoteDataset, name: str, md5: str, target: Path, say: Callable[[str], None]
) -> None:
    """Download `name` into `target` from the first mirror that serves the right content.

    A `.part` file left by an interrupted run is resumed from the first mirror (or taken as
    it is when already complete); a transfer cut off mid-way is resumed; a resumed file
    whose content is wrong (two copies' bytes mixed) gets one clean try; the next mirror
    always starts from zero.
    """
    part = target.with_name(f"{fileio.TEMPORARY_PREFIX}{name}.part")
    if _content_md5(part) == md5:  # finished before a kill, not yet installed
        fileio.promote(part, target)
        say(f"verified and installed {target} (downloaded earlier)")
        return
    reasons = []
    for base in dataset.mirror_list():
        url = base + name
        clean_retry_left = True
        for _ in range(3):  # the first try, a resume after a cut, one clean start
            have = part.stat().st_size if part.is_file() else 0
            resuming = have > 0
            try:
                _download(url, part, say)
            except urllib.error.HTTPError as e:
                if e.code == 416 and resuming:  # the range is past the file: start over
                    part.unlink(missing_ok=True)
                    continue
                reasons.append(f"{url}: {_reason(e)}")
                break
            except urllib.error.URLError as e:
                reasons.append(f"{url}: {_reason(e)}")
                break
            except TimeoutError:
                got = (part.stat().st_size if part.is_file() else 0) > have
                reasons.append(f"{url}: no answer within {TIMEOUT_S:g} s")
                if got:  # it stalled mid-transfer: resume
                    continue
                break  # it never answered: the next mirror
            except (OSError, http.client.HTTPException) as e:  # cut off: resume
                reasons.append(f"{url}: {_reason(e)}")
                continue
            except ValueError as e:  # not a URL urllib can open
                reasons.append(f"{url}: {e}")
                break
            actual = _content_md5(part)
            if actual == md5:
                fileio.promote(part, target)
                say(f"downloaded and verified {target}")
                return
            part.unlink(missing_ok=True)
            reasons.append(
                f"{url}: content MD5 {actual or '(not a complete gzip file)'}, expected {md5}"
            )
            if not (resuming and clean_retry_left):
                break
            clean_retry_left = False
        part.unlink(missing_ok=True)  # never append another mirror's bytes to this one's
    offline = bool(reasons) and all(_looks_offline(r) for r in reasons)
    hint = (
        "no network: copy the four files by hand into that folder, or pass --data_dir"
        if offline
        else f"set ${dataset.mirror_env} to a base URL that serves it, or pass --data_dir"
    )
    raise DownloadError(
        f"could not fetch {dataset.name} file {name} into {target.parent} ({'; '.join(reasons)}); "
        + hint
    )


class DownloadInterrupted(WaeError, OSError):
    """The server closed the connection before the whole file arrived."""


def _download(url: str, part: Path, say: Callable[[str], None]) -> None:
    """Append `url`'s bytes to `part`, resuming after the bytes already there."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "wae-tf"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    # A mirror that accepts the connection and does not answer would be silent for up to
    # TIMEOUT_S: say whom we wait for, unless the answer comes at once (a refused
    # connection stays one line, the final error).
    base = url.rsplit("/", 1)[0] + "/"
    notice = threading.Timer(
        WAIT_NOTICE_S,
        say,
        [f"waiting for {base} to answer (gives up after {TIMEOUT_S:g} s without an answer)"],
    )
    notice.daemon = True
    notice.start()
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    finally:
        notice.cancel()
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        meter = _Meter(url.rsplit("/", 1)[-1], total, have, say)
        with open(part, mode) as f:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                meter.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        meter.done()
    if total is not None and part.stat().st_size < total:
        raise DownloadInterrupted(f"transfer cut off at {part.stat().st_size:,} of {total:,} bytes")


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"unreachable ({error.reason})"
    return str(error)


def _looks_offline(reason: str) -> bool:
    return "unreachable" in reason


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Meter:
    """Download progress: a redrawn line on a terminal, else a line every 25%."""

    def __init__(self, name: str, total: int | None, start: int, say: Callable[[str], None]):
        self.name, self.total, self.done_bytes, self.say = name, total, start, say
        self.tty = sys.stderr.isatty()
        self.next_quarter = 25
        self.start = time.time()

    def update(self, n: int) -> None:
        self.done_bytes += n
        if not self.total:
            return
        percent = 100 * self.done_bytes // self.total
        if self.tty:
            print(
                f"\r{self.name}: {percent:3d}% of {self.total / 1e6:.1f} MB",
                end="",
                file=sys.stderr,
            )
        elif percent >= self.next_quarter and percent < 100:
            self.say(f"{self.name}: {percent}% of {self.total / 1e6:.1f} MB")
            self.next_quarter = (percent // 25 + 1) * 25

    def done(self) -> None:
        if self.tty and self.total:
            print(file=sys.stderr)
