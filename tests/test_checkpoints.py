"""Checkpoints that survive damage and a full disk (`wae_tf.checkpoints`, `wae_tf.trainer`).

- The newest `keep` are kept; a damaged latest one (truncated, or a flipped byte: bad
  CRC) is reported in one line, moved aside as `.corrupt` and the run resumes from the
  one before; with none readable, one line says what to do.
- A full disk (a real tmpfs) while a checkpoint or config.json is written stops the run
  with one line naming the file and the intact checkpoint; freeing space and rerunning
  resumes.

Tiny nets (`--width=4`), 100 images: every test copies the session's 2-epoch run
(conftest's `finished_tiny_run`), and the four command-line runs start together
(`cli_runs`). About 1 minute on 2 shared CPU cores.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REPO_ROOT,
    fill_disk,
    mounted_tmpfs,
    python_env,
    tiny_config,
    train_tiny_run,
)
from helpers import run_together, tiny_mnist_run_flags

from wae_tf import checkpoints, rundir, trainer


def cli_args(mnist_dir: Path, workdir: Path, epochs: int) -> list[str]:
    """`python -m wae_tf.train` extending a run of `train_run` below to `epochs`."""
    flags = tiny_mnist_run_flags(mnist_dir, workdir, "wae_mmd", epochs=epochs, pretrain=False)
    return ["-m", "wae_tf.train", *flags]


def train_run(mnist_dir: Path, workdir: Path, epochs: int):
    return train_tiny_run(mnist_dir, workdir, "wae_mmd", epochs)


@pytest.fixture
def two_epochs(finished_tiny_run) -> Path:
    """A finished 2-epoch run: checkpoints epoch_0001.npz and epoch_0002.npz (keep=2),
    trained once per session (~6 s on 2 cores: every test that uses it is marked slow).
    Read-only: a test that changes it works on a copy (`copy_run`)."""
    return finished_tiny_run("wae_mmd", epochs=2)[0]


def copy_run(source: Path, target: Path) -> rundir.RunPaths:
    shutil.copytree(source, target)
    return rundir.RunPaths(target)


def history_epochs(paths: rundir.RunPaths) -> list[int]:
    return [int(row["epoch"]) for row in rundir.read_history(paths.history)]


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def remount_read_only(mount_point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True, timeout=30)


# The four command-line runs of this file (the test_cli_* tests), each on its own copy of
# the 2-epoch run, set up and then started together: each pays a TensorFlow import and an
# epoch. Trains: every test that uses it is marked slow.
@pytest.fixture(scope="module")
def cli_runs(mnist_dir, finished_tiny_run, tmp_path_factory):
    """{name: (its run's RunPaths, its CompletedProcess)}, or {name: why it was skipped}
    for a run on a tmpfs where none can be mounted; "filler": the full disk's filler."""
    source = finished_tiny_run("wae_mmd", epochs=2)[0]
    folder = tmp_path_factory.mktemp("cli")
    runs, commands, each = {}, {}, {}
    with contextlib.ExitStack() as mounts:
        # A truncated latest checkpoint, as `truncate -s` leaves it.
        paths = runs["truncated"] = copy_run(source, folder / "truncated")
        with open(paths.checkpoint(2), "r+b") as f:
            f.truncate(paths.checkpoint(2).stat().st_size // 2)
        commands["truncated"] = [sys.executable, *cli_args(mnist_dir, paths.root, epochs=3)]
        # A file-size limit below a checkpoint's size (EFBIG, as `ulimit -f` makes it;
        # Python ignores SIGXFSZ, so the write fails); the small files fit.
        paths = runs["file_size"] = copy_run(source, folder / "file_size")
        limit = paths.checkpoint(2).stat().st_size // 2

        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        commands["file_size"] = [sys.executable, *cli_args(mnist_dir, paths.root, epochs=3)]
        each["file_size"] = {"preexec_fn": limit_file_size}
        try:
            # A full disk (room for the small files only); a read-only file system.
            full = mounts.enter_context(mounted_tmpfs(folder / "full"))
            paths = runs["full_disk"] = copy_run(source, full / "run")
            runs["filler"] = fill_disk(full, leave=paths.checkpoint(2).stat().st_size // 2)
            commands["full_disk"] = [sys.executable, *cli_args(mnist_dir, paths.root, epochs=3)]
            read_only = mounts.enter_context(mounted_tmpfs(folder / "read_only"))
            paths = runs["read_only"] = copy_run(source, read_only / "run")
            remount_read_only(read_only)
            commands["read_only"] = [sys.executable, *cli_args(mnist_dir, paths.root, epochs=2)]
        except pytest.skip.Exception as skipped:
            for name in ("full_disk", "read_only"):
                runs[name] = str(skipped)
                commands.pop(name, None)
        results = run_together(commands, cwd=REPO_ROOT, env=python_env(), each=each)
        yield {name: (run, results[name]) if name in results else run for name, run in runs.items()}


def cli_run(cli_runs, name: str) -> tuple[rundir.RunPaths, subprocess.CompletedProcess]:
    if isinstance(cli_runs[name], str):
        pytest.skip(cli_runs[name])
    return cli_runs[name]


# ======================================================================================
# save / restore / list / prune
# ======================================================================================


def test_list_latest_and_prune_keep_the_newest(tmp_path):
    paths = rundir.RunPaths(tmp_path)
    paths.checkpoints.mkdir()
    for epoch in (3, 1, 12):
        paths.checkpoint(epoch).write_bytes(b"")
    (paths.checkpoints / "epoch_0007.npz.corrupt").write_bytes(b"")  # moved aside: not listed
    assert [e for e, _ in checkpoints.list_checkpoints(paths)] == [1, 3, 12]
    assert checkpoints.latest(paths) == (12, paths.checkpoint(12))
    checkpoints.prune(paths, keep=2)
    assert [e for e, _ in checkpoints.list_checkpoints(paths)] == [3, 12]
    with pytest.raises(ValueError, match="keep must be >= 1"):
        checkpoints.prune(paths, keep=0)


@pytest.mark.slow
def test_a_damaged_file_assigns_nothing(two_epochs, tmp_path):
    model = trainer.build_compiled_model(tiny_config("wae_mmd"), steps_per_epoch=2)
    before = [np.asarray(v) for v in model.variables]
    damaged = tmp_path / "epoch_0002.npz"
    content = (two_epochs / "checkpoints" / "epoch_0002.npz").read_bytes()
    damaged.write_bytes(content[: len(content) // 2])
    with pytest.raises(checkpoints.UnreadableCheckpointError, match="epoch_0002.npz is unreadable"):
        checkpoints.restore(model, damaged)
    for old, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(old, np.asarray(variable))


def test_files_that_are_not_npz_archives_are_not_checkpoints_one_line_each(tmp_path, caplog):
    paths = rundir.RunPaths(tmp_path)
    paths.checkpoints.mkdir()
    paths.checkpoint(1).write_bytes(b"garbage written over a checkpoint")
    paths.checkpoint(2).write_bytes(b"")  # truncated to nothing
    model = trainer.build_compiled_model(tiny_config("wae_mmd"), steps_per_epoch=2)
    with caplog.at_level(logging.WARNING), pytest.raises(rundir.WorkdirError):
        checkpoints.restore_latest(model, paths)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"{paths.checkpoint(2)} is not a checkpoint (an empty file); moved it aside to "
        "epoch_0002.npz.corrupt",
        f"{paths.checkpoint(1)} is not a checkpoint (not an .npz archive); moved it aside to "
        "epoch_0001.npz.corrupt",
    ]


@pytest.mark.slow
def test_a_worker_that_listed_before_the_chief_moved_the_damaged_one_aside_follows_it(
    two_epochs, tmp_path, monkeypatch, caplog
):
    """Multi-worker resume: the chief and another worker read the same shared folder. The
    worker listed the checkpoints, then the chief chose epoch 1 and moved the damaged
    epoch 2 aside, then the worker reads: it makes the chief's choice, and says nothing
    about a missing file."""
    paths = copy_run(two_epochs, tmp_path / "run")
    paths.checkpoint(2).write_bytes(paths.checkpoint(2).read_bytes()[:1000])
    listed_by_the_worker = checkpoints.list_checkpoints(paths)
    chief = trainer.build_compiled_model(tiny_config("wae_mmd"), steps_per_epoch=2)
    assert checkpoints.restore_latest(chief, paths, move_aside=True)[0] == 1
    assert (paths.checkpoints / "epoch_0002.npz.corrupt").is_file()

    monkeypatch.setattr(checkpoints, "list_checkpoints", lambda _: listed_by_the_worker)
    worker = trainer.build_compiled_model(tiny_config("wae_mmd"), steps_per_epoch=2)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert checkpoints.restore_latest(worker, paths, move_aside=False)[0] == 1
    assert caplog.records == []
    for a, b in zip(chief.variables, worker.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_the_chief_moves_a_damaged_checkpoint_aside_only_after_it_has_chosen(
    two_epochs, tmp_path, monkeypatch
):
    """While the chief reads the older checkpoints, another worker still sees the damaged
    newest one where it was (it judges it by reading, as the chief did)."""
    paths = copy_run(two_epochs, tmp_path / "run")
    paths.checkpoint(2).write_bytes(b"PK\x03\x04 torn")
    seen = []
    restore = checkpoints.restore

    def restore_and_look(model, path):
        seen.append((path.name, sorted(p.name for p in paths.checkpoints.iterdir())))
        return restore(model, path)

    monkeypatch.setattr(checkpoints, "restore", restore_and_look)
    model = trainer.build_compiled_model(tiny_config("wae_mmd"), steps_per_epoch=2)
    assert checkpoints.restore_latest(model, paths, move_aside=True)[0] == 1
    assert seen[-1] == ("epoch_0001.npz", ["epoch_0001.npz", "epoch_0002.npz"])
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        "epoch_0001.npz",
        "epoch_0002.npz.corrupt",
    ]


# ======================================================================================
# A damaged latest checkpoint
# ======================================================================================


@pytest.mark.slow
def test_cli_truncated_latest_checkpoint_is_moved_aside_and_the_run_resumes_before_it(cli_runs):
    paths, result = cli_run(cli_runs, "truncated")
    latest = paths.checkpoint(2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "unreadable" in line]
    assert f"checkpoint {latest} is unreadable" in warning
    assert "moved it aside to epoch_0002.npz.corrupt" in warning
    assert "resuming from" in result.stderr and "epoch 1 completed" in result.stderr
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        "epoch_0002.npz",  # written again
        "epoch_0002.npz.corrupt",
        "epoch_0003.npz",
    ]
    assert history_epochs(paths) == [1, 2, 3]


@pytest.mark.slow
def test_flipped_byte_bad_crc_falls_back_the_same_way(mnist_dir, two_epochs, tmp_path, caplog):
    paths = copy_run(two_epochs, tmp_path / "run")
    latest = paths.checkpoint(2)
    content = bytearray(latest.read_bytes())
    content[len(content) // 2] ^= 0xFF
    latest.write_bytes(bytes(content))
    with zipfile.ZipFile(latest) as archive:  # the zip still opens: only a CRC shows it
        assert archive.testzip() is not None

    with caplog.at_level(logging.WARNING):
        train_run(mnist_dir, paths.root, epochs=3)
    assert f"checkpoint {latest} is unreadable (Bad CRC-32" in caplog.text
    assert (paths.checkpoints / "epoch_0002.npz.corrupt").is_file()
    assert history_epochs(paths) == [1, 2, 3]


@pytest.mark.slow
def test_no_readable_checkpoint_is_one_line_saying_what_to_do(mnist_dir, two_epochs, tmp_path):
    paths = copy_run(two_epochs, tmp_path / "run")
    for epoch in (1, 2):
        paths.checkpoint(epoch).write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(rundir.WorkdirError) as caught:
        train_run(mnist_dir, paths.root, epochs=3)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"no readable checkpoint in {paths.checkpoints} (epoch_0002.npz, epoch_0001.npz "
        "damaged, moved aside as *.corrupt): put a good copy of a checkpoint back to extend "
        "this finished run, or use a new --workdir"
    )
    # Doing what it says: with a good copy back, the run is extended from it.
    shutil.copy(two_epochs / "checkpoints" / "epoch_0002.npz", paths.checkpoint(2))
    train_run(mnist_dir, paths.root, epochs=3)
    assert history_epochs(paths) == [1, 2, 3]
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        "epoch_0001.npz.corrupt",
        "epoch_0002.npz",
        "epoch_0002.npz.corrupt",
        "epoch_0003.npz",
    ]


@pytest.mark.slow
def test_no_readable_checkpoint_of_an_unfinished_run_says_to_start_over(
    mnist_dir, two_epochs, tmp_path
):
    paths = copy_run(two_epochs, tmp_path / "run")
    paths.done.unlink()
    paths.final_model.unlink()  # as if killed during epoch 3
    for epoch in (1, 2):
        paths.checkpoint(epoch).write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(rundir.WorkdirError) as caught:
        train_run(mnist_dir, paths.root, epochs=3)
    assert str(caught.value).endswith(
        "moved aside as *.corrupt): rerun the same command to start over from epoch 1, or "
        "put a good copy of a checkpoint back"
    )
    train_run(mnist_dir, paths.root, epochs=1)  # doing what it says
    assert history_epochs(paths) == [1]


# ======================================================================================
# A full disk
# ======================================================================================


@pytest.mark.slow
def test_cli_full_disk_at_a_checkpoint_is_one_line_and_a_rerun_resumes(mnist_dir, cli_runs):
    paths, result = cli_run(cli_runs, "full_disk")
    filler = cli_runs["filler"]
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"wae_tf.train: error: no space left to write {paths.checkpoint(3)}; the last good "
        f"checkpoint is epoch 2 ({paths.checkpoint(2)}), intact. Free some space and rerun "
        "the same command to resume"
    )
    assert "Traceback" not in result.stderr and "PyFunc" not in result.stderr
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        "epoch_0001.npz",
        "epoch_0002.npz",
    ]
    checkpoints.read(paths.checkpoint(2))  # intact

    filler.unlink()
    train_run(mnist_dir, paths.root, epochs=3)  # the same command, in-process
    assert history_epochs(paths) == [1, 2, 3]
    assert (paths.root / "DONE.json").is_file()


@pytest.mark.slow
def test_full_disk_at_the_run_record_names_it_and_keeps_the_checkpoint(
    mnist_dir, two_epochs, small_tmpfs
):
    paths = copy_run(two_epochs, small_tmpfs / "run")
    record = paths.config.read_text()
    fill_disk(small_tmpfs)
    with pytest.raises(trainer.NoSpaceError) as caught:
        train_run(mnist_dir, paths.root, epochs=3)
    assert str(caught.value) == (  # found by the workdir probe, before config.json is written
        f"no space left to write in workdir {paths.root}; the last good checkpoint is epoch 2 "
        f"({paths.checkpoint(2)}), intact. Free some space and rerun the same command to "
        "resume"
    )
    assert paths.config.read_text() == record
    checkpoints.read(paths.checkpoint(2))


@pytest.mark.slow
def test_full_disk_before_the_first_write_names_the_workdir_and_leaves_it_empty(
    mnist_dir, small_tmpfs
):
    workdir = small_tmpfs / "run"
    filler = fill_disk(small_tmpfs)
    with pytest.raises(trainer.NoSpaceError) as caught:
        train_run(mnist_dir, workdir, epochs=1)
    assert str(caught.value) == (
        f"no space left to write in workdir {workdir}; no checkpoint was written yet. Free "
        "some space and rerun the same command to resume"
    )
    assert not workdir.exists() or list(workdir.iterdir()) == []  # no empty .lock
    filler.unlink()
    train_run(mnist_dir, workdir, epochs=1)  # doing what it says
    assert (workdir / "DONE.json").is_file()


# ======================================================================================
# A read-only file system, a file-size limit
# ======================================================================================


@pytest.mark.slow
def test_cli_finished_run_on_a_read_only_file_system_is_the_same_no_op(mnist_dir, cli_runs):
    paths, result = cli_run(cli_runs, "read_only")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already finished 2 epochs" in result.stderr

    with pytest.raises(rundir.WorkdirError) as caught:  # extending it must write: one line
        train_run(mnist_dir, paths.root, epochs=3)
    assert str(caught.value) == (
        f"workdir {paths.root} is not writable (Read-only file system): make it writable, "
        "or copy the folder to a writable place and use that"
    )


@pytest.mark.slow
def test_cli_checkpoint_over_the_file_size_limit_is_one_line_and_a_rerun_resumes(
    mnist_dir, cli_runs
):
    """EFBIG, as `ulimit -f` makes it (Python ignores SIGXFSZ, so the write fails)."""
    paths, result = cli_run(cli_runs, "file_size")
    assert result.returncode == 1
    assert last_line(result.stderr) == (
        f"wae_tf.train: error: cannot write {paths.checkpoint(3)}: the file would be larger "
        "than allowed (a file-size limit, `ulimit -f`, or the file system's largest file); "
        f"the last good checkpoint is epoch 2 ({paths.checkpoint(2)}), intact. Raise the "
        "limit (`ulimit -f unlimited`) or use another file system, then rerun the same "
        "command to resume"
    )
    assert "Traceback" not in result.stderr
    assert not list(paths.checkpoints.glob(".*"))  # no temporary left
    train_run(mnist_dir, paths.root, epochs=3)  # without the limit
    assert history_epochs(paths) == [1, 2, 3]
