"""A workdir's run record: what makes a resumed run's data "the same"."""

from __future__ import annotations

from pathlib import Path

import pytest

from wae_tf import data, rundir


def _provenance(**changes):
    record = {
        "dataset": "mnist",
        "source": "files",
        "train_split": "train",
        "eval_split": "test",
        "train_size": 600,
        "eval_size": 100,
        "eval_order": data.EVAL_ORDER_TEXT,
    }
    return {**record, **changes}


def test_same_data_is_accepted(tmp_path: Path):
    rundir.check_same_data({"data": _provenance()}, _provenance(), tmp_path)


def test_a_run_validated_in_another_test_order_is_different_data(tmp_path: Path):
    # A run recorded before validation took a fixed random order of the test set has no
    # eval_order: resuming it would switch its validation images mid-run.
    old = _provenance()
    del old["eval_order"]
    with pytest.raises(rundir.WorkdirError, match="different data.*eval_order: None there"):
        rundir.check_same_data({"data": old}, _provenance(), tmp_path)
