"""The one atomic writer (`wae_tf.fileio`): all or nothing, the usual file mode, no
temporary left behind, and a full disk reported as one line naming the file (on a real
tmpfs that runs out of space). No Keras: about a second.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import fill_disk

from wae_tf import fileio


def umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_atomic_write_has_the_umask_mode_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "record.json"
    fileio.write_json(path, {"b": 1, "a": [2]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    2\n  ]\n}\n'
    assert path.stat().st_mode & 0o777 == umask_mode()  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "data.bin"
    fileio.write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with fileio.atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_read_json_names_an_unreadable_file_and_returns_none_when_absent(tmp_path):
    assert fileio.read_json(tmp_path / "absent.json") is None
    torn = tmp_path / "torn.json"
    torn.write_text('{"epochs": ')
    with pytest.raises(fileio.UnreadableFileError, match=r"torn\.json is unreadable"):
        fileio.read_json(torn)


def test_append_text_appends_and_remove_temporaries_keeps_the_targets(tmp_path):
    path = tmp_path / "history.csv"
    fileio.append_text(path, "epoch\n")
    fileio.append_text(path, "1\n")
    assert path.read_text() == "epoch\n1\n"
    (tmp_path / ".history.csv.abc.tmp").write_text("left by a kill")
    (tmp_path / ".other.json.xyz.tmp").write_text("not ours")
    fileio.remove_temporaries(tmp_path, names=("history.csv",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.xyz.tmp", "history.csv"]
    fileio.remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_is_disk_full_follows_the_cause_chain():
    full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise full
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as wrapped:
        assert fileio.is_disk_full(wrapped)
    assert not fileio.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    error = fileio.DiskFullError(errno.ENOSPC, "no space left to write x.npz")
    assert str(error) == "no space left to write x.npz"  # one line, no "[Errno 28]"


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_the_old_file(small_tmpfs):
    path = small_tmpfs / "config.json"
    fileio.write_json(path, {"version": 1})
    fill_disk(small_tmpfs)
    with pytest.raises(fileio.DiskFullError) as caught:
        fileio.write_json(path, {"version": 2, "padding": "x" * 100_000})
    assert str(caught.value) == f"no space left to write {path}"
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["config.json", "filler.bin"]

    appended = small_tmpfs / "new.csv"  # a new file needs a page: ENOSPC
    with pytest.raises(fileio.DiskFullError, match=f"no space left to write {appended}"):
        fileio.append_text(appended, "epoch,loss\n" * 1000)


def test_a_read_only_file_system_is_one_line_naming_the_file(small_tmpfs):
    path = small_tmpfs / "config.json"
    fileio.write_json(path, {"version": 1})
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True, timeout=30)
    with pytest.raises(fileio.WriteError) as caught:
        fileio.write_json(path, {"version": 2})
    assert str(caught.value) == f"cannot write {path}: the file system is read-only"
    assert not isinstance(caught.value, fileio.DiskFullError)
    with pytest.raises(fileio.WriteError, match=f"^cannot write {path}: the file system is read"):
        fileio.append_text(path, "more")
    assert json.loads(path.read_text()) == {"version": 1}


def test_errors_the_user_must_fix_become_one_line_others_stay_as_they_are(tmp_path):
    path = tmp_path / "epoch_0003.npz"
    too_large = fileio.write_error(OSError(errno.EFBIG, "File too large"), path)
    assert str(too_large).startswith(f"cannot write {path}: the file would be larger than")
    assert "ulimit -f unlimited" in too_large.remedy
    full = fileio.write_error(OSError(errno.ENOSPC, "No space left on device"), path)
    assert isinstance(full, fileio.DiskFullError) and full.remedy == "free some space"
    other = OSError(errno.EBADF, "Bad file descriptor")
    assert fileio.write_error(other, path) is other
    try:
        try:
            raise too_large
        except OSError as e:
            raise RuntimeError("wrapped by a callback") from e
    except RuntimeError as wrapped:
        assert fileio.find_write_error(wrapped) is too_large


def test_fill_disk_leaves_about_what_it_was_asked(small_tmpfs):
    fill_disk(small_tmpfs, leave=1 << 20)
    stat = os.statvfs(small_tmpfs)
    assert abs(stat.f_bavail * stat.f_frsize - (1 << 20)) <= 64 << 10
    assert Path(small_tmpfs / "filler.bin").is_file()


def test_history_row_on_a_full_disk_names_history_csv(small_tmpfs):
    from wae_tf import rundir

    path = small_tmpfs / "history.csv"
    fill_disk(small_tmpfs)
    with pytest.raises(fileio.DiskFullError, match=f"^no space left to write {path}$"):
        rundir.append_history_row(path, {"epoch": 1, "loss": 0.5})
    assert rundir.read_history(path) == []  # nothing, or a torn row that readers drop


# ======================================================================================
# history.csv whose columns change between invocations (wae_tf.rundir)
# ======================================================================================


def test_a_column_added_later_is_kept_and_the_file_gets_the_union_header(tmp_path):
    from wae_tf import rundir

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,3.5\n2,2.5\n")  # an old run: no epoch_time_s, no val_
    rundir.append_history_row(
        path, {"epoch": 3, "loss": 1.5, "val_loss": 1.75, "epoch_time_s": 0.25}
    )
    rundir.append_history_row(path, {"epoch": 4, "loss": 1.25, "epoch_time_s": 0.5})
    assert path.read_text().splitlines() == [
        "epoch,loss,epoch_time_s,val_loss",
        "1,3.5,,",
        "2,2.5,,",
        "3,1.5,0.25,1.75",
        "4,1.25,0.5,",
    ]
    assert not list(tmp_path.glob(".*"))  # rewritten atomically: no temporary left


def test_a_foreign_history_csv_is_refused_in_one_line_and_left_as_it_is(tmp_path):
    from wae_tf import rundir

    path = tmp_path / "history.csv"
    foreign = "step,accuracy\n100,0.5\n200,0.75\n"
    path.write_text(foreign)
    for action in (
        lambda: rundir.append_history_row(path, {"epoch": 1, "loss": 0.5}),
        lambda: rundir.truncate_history(path, 0),
    ):
        with pytest.raises(rundir.WorkdirError) as caught:
            action()
        assert str(caught.value) == (
            f"{path} is not a wae_tf history (its first column is 'step', not 'epoch'): "
            "move it away or use another --workdir"
        )
        assert path.read_text() == foreign


def test_appending_a_row_reads_only_the_header_line(tmp_path):
    """O(1) per epoch: the rows already there are not read again (here they could not be
    decoded, so reading them would fail)."""
    from wae_tf import rundir

    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,loss\n" + b"1,\xff\xfe\n" * 1000)
    rundir.append_history_row(path, {"epoch": 1001, "loss": 0.5})
    assert path.read_bytes().endswith(b"1,\xff\xfe\n1001,0.5\n")
