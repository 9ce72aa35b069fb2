"""wae_tf.download against a real HTTP server on 127.0.0.1 (tests/loopback_mirror.py) serving
the shared MNIST files: good files, a corrupted file, a transfer cut off half-way (resumed
with a Range request), and a server that is down. No test touches the internet."""

from __future__ import annotations

import gzip
import shutil
import time

import numpy as np
import pytest
from loopback_mirror import dead_url, read_files, serve, silent

from wae_tf import data, download

NAMES = download.MNIST.files


@pytest.fixture
def mirror(mnist_dir):
    """A local mirror serving the four shared MNIST files (their .gz bytes as shipped)."""
    with serve(read_files(mnist_dir, NAMES)) as server:
        yield server


def test_fetch_downloads_verifies_and_the_loader_reads_the_files(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    folder = download.fetch(download.MNIST, tmp_path / "mnist", progress=lambda m: None)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # no .part left
    assert download.verified(download.MNIST, folder)
    labels = data.load_labels("mnist", folder, "train")
    assert list(labels[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # ../shared/data/README.md

    mirror.requests.clear()
    download.fetch(download.MNIST, folder, progress=lambda m: None)
    assert mirror.requests == []  # verified files are not fetched again


def test_recompressed_copy_is_accepted_because_the_content_is_checked(
    mirror, tmp_path, monkeypatch
):
    name = "t10k-labels-idx1-ubyte.gz"
    shipped = mirror.files[name]
    mirror.files[name] = gzip.compress(gzip.decompress(shipped), compresslevel=1, mtime=12345)
    assert mirror.files[name] != shipped  # other .gz bytes, same IDX content
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    download.fetch(download.MNIST, tmp_path / "mnist", progress=lambda m: None)
    assert download.decompressed_md5(tmp_path / "mnist" / name) == download.MNIST.md5[name]


def test_corrupted_file_is_refused_in_one_line_and_nothing_is_installed(
    mirror, tmp_path, monkeypatch
):
    name = "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(mirror.files[name]))
    content[100] ^= 0xFF  # one label changed
    mirror.files[name] = gzip.compress(bytes(content))
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    with pytest.raises(download.DownloadError) as error:
        download.fetch(download.MNIST, tmp_path / "mnist", progress=lambda m: None)
    message = str(error.value)
    assert "\n" not in message and name in message and download.MNIST.md5[name] in message
    assert not (tmp_path / "mnist" / name).exists()
    assert not list((tmp_path / "mnist").glob(".*"))  # no .part kept of a wrong file


@pytest.mark.slow
def test_corrupted_first_mirror_falls_back_to_the_next(mirror, tmp_path, monkeypatch):
    bad_server_files = {name: gzip.compress(b"not mnist") for name in NAMES}
    with serve(bad_server_files, prefix="") as first:
        monkeypatch.delenv(download.MNIST.mirror_env, raising=False)
        monkeypatch.setattr(
            download,
            "MNIST",
            download.RemoteDataset(
                name="mnist",
                md5=download.MNIST.md5,
                mirrors=(first.url, mirror.url),
                mirror_env=download.MNIST.mirror_env,
            ),
        )
        download.fetch(download.MNIST, tmp_path / "mnist", progress=lambda m: None)
    assert download.verified(download.MNIST, tmp_path / "mnist")
    assert len(first.requests) == 4  # each file tried there first


@pytest.mark.slow
def test_transfer_cut_off_half_way_is_resumed_with_a_range_request(
    mirror, mnist_dir, tmp_path, monkeypatch
):
    name = "train-images-idx3-ubyte.gz"
    mirror.cut.add(name)
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    download.fetch(download.MNIST, tmp_path / "mnist", progress=lambda m: None)
    ranges = [r for n, r in mirror.requests if n == name]
    assert ranges == [None, f"bytes={len(mirror.files[name]) // 2}-"]
    assert download.verified(download.MNIST, tmp_path / "mnist")
    images = data.load_uint8("mnist", tmp_path / "mnist", "train")
    assert images.shape == (60000, 28, 28, 1)
    np.testing.assert_array_equal(images, data.load_uint8("mnist", mnist_dir, "train"))


def test_server_down_is_one_line_saying_there_is_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv(download.MNIST.mirror_env, dead_url())
    with pytest.raises(download.DownloadError) as error:
        download.fetch(download.MNIST, tmp_path / "mnist", progress=lambda m: None)
    message = str(error.value)
    assert "\n" not in message
    assert "no network" in message and "--data_dir" in message
    assert not (tmp_path / "mnist").exists() or not list((tmp_path / "mnist").iterdir())


def test_a_wrong_file_already_in_the_folder_is_replaced(mirror, mnist_dir, tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(mnist_dir / name, folder / name)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"truncated")
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    notes = []
    download.fetch(download.MNIST, folder, progress=notes.append)
    assert [n for n, _ in mirror.requests] == ["t10k-labels-idx1-ubyte.gz"]
    assert any("downloading it again" in n for n in notes)
    assert download.verified(download.MNIST, folder)


def test_a_finished_part_file_of_a_killed_run_is_installed_without_a_request(
    mirror, tmp_path, monkeypatch
):
    name = "t10k-labels-idx1-ubyte.gz"
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / f".{name}.part").write_bytes(mirror.files[name])  # killed before the rename
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    download.fetch(download.MNIST, folder, progress=lambda m: None)
    assert name not in [n for n, _ in mirror.requests]
    assert download.verified(download.MNIST, folder) and not list(folder.glob(".*"))


def test_a_part_file_longer_than_the_file_starts_over_after_the_servers_416(
    mirror, tmp_path, monkeypatch
):
    name = "t10k-labels-idx1-ubyte.gz"
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / f".{name}.part").write_bytes(mirror.files[name] + b"junk")
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    download.fetch(download.MNIST, folder, progress=lambda m: None)
    size = len(mirror.files[name]) + 4
    assert [r for n, r in mirror.requests if n == name] == [f"bytes={size}-", None]
    assert download.verified(download.MNIST, folder)


@pytest.mark.slow
def test_a_mirror_that_never_answers_is_named_with_its_time_out_while_it_is_awaited(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(download, "TIMEOUT_S", 2.0)
    monkeypatch.setattr(download, "WAIT_NOTICE_S", 0.2)
    notes = []
    with silent() as hung:
        monkeypatch.setenv(download.MNIST.mirror_env, hung.url)
        start = time.monotonic()
        with pytest.raises(download.DownloadError) as error:
            download.fetch(
                download.MNIST,
                tmp_path / "mnist",
                progress=lambda m: notes.append((time.monotonic() - start, m)),
            )
        waited = time.monotonic() - start
        assert hung.connections == 1  # given up for the next mirror, not retried as cut off
    ((noted_at, note),) = notes
    assert note == f"waiting for {hung.url} to answer (gives up after 2 s without an answer)"
    assert noted_at < 1.5 <= waited  # said while waiting, not after giving up
    message = str(error.value)
    assert "\n" not in message
    assert f"{hung.url}{NAMES[0]}: no answer within 2 s" in message


def test_a_mirror_that_answers_at_once_adds_no_waiting_line(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(download.MNIST.mirror_env, mirror.url)
    notes = []
    download.fetch(download.MNIST, tmp_path / "mnist", progress=notes.append)
    assert not [n for n in notes if "waiting for" in n]
