"""The reproduce scripts (Figures 2-3, Table 1): run with --quick on the shared real data.

The three scripts run in-process with their own flag values (`helpers.run_script`). Figure 2's
plumbing runs on tiny nets (PLUMBING: width 8, 300 train images, 1 epoch; README's
`figure2 --quick` itself runs in tests/test_first_run.py); figure3 runs README's
`--quick` as it is, and both table1 runs share its workdir, so the CelebA models are
trained once, and the per-model bundle runs reuse the finished runs (they only evaluate).
About 3 minutes in all on 2 CPU cores; the script tests skip when the shared data is
absent, the layout and panel tests need no data.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from helpers import run_script, write_standin_inception_graph
from PIL import Image
from quick_figure_checks import assert_samples_vary, assert_scores_differ

from reproduce import bundles, figure2, figure3, table1
from reproduce.cli import MODELS, ReproError, exit_on_error, parse_args, quick_settings
from reproduce.evaluation import interpolation_panel, reconstruction_panel
from reproduce.pipeline import finished_bundles, train_model
from reproduce.render import FigureLayout, figure_layout, render_figure
from reproduce.report import OutDirLock
from reproduce.specs import (
    FIGURE3,
    PANEL_COLS,
    PANEL_ROWS,
    RECONSTRUCTION_PAIRS,
    Scale,
    TrainedRun,
    describe_scale,
    panel_shapes,
    run_group,
)
from wae_tf import data

# ======================================================================================
# Fixtures: one quick run of each script
# ======================================================================================

# Figure 2's plumbing tests need no recognisable digits: --quick shrunk further (3 steps).
PLUMBING = ("--quick", "--width=8", "--train_examples=300", "--epochs=1")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Keep the CelebA decode cache of these runs out of ~/.cache."""
    path = tmp_path_factory.mktemp("celeba_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.CACHE_DIR_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def figure2_run(mnist_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("figure2")
    payload = run_script(
        figure2,
        [
            "figure2",
            *PLUMBING,
            f"--data_dir={mnist_dir}",
            f"--workdir={root / 'runs'}",
            f"--out_dir={root / 'out'}",
        ],
    )
    return payload, root / "out"


@pytest.fixture(scope="module")
def celeba_root(celeba_dir, cache_dir, tmp_path_factory):
    return tmp_path_factory.mktemp("celeba")


def _celeba_args(name: str, celeba_dir: Path, root: Path, out: str, *extra: str) -> list[str]:
    return [
        name,
        "--quick",
        f"--data_dir={celeba_dir}",
        f"--workdir={root / 'runs'}",  # shared: figure3 trains, table1 reuses
        f"--out_dir={root / out}",
        *extra,
    ]


@pytest.fixture(scope="module")
def figure3_run(celeba_dir, celeba_root):
    payload = run_script(figure3, _celeba_args("figure3", celeba_dir, celeba_root, "fig3"))
    return payload, celeba_root / "fig3"


@pytest.fixture(scope="module")
def table1_without_graph(celeba_dir, celeba_root, figure3_run):
    out = "table_no_graph"
    payload = run_script(table1, _celeba_args("table1", celeba_dir, celeba_root, out))
    return payload, celeba_root / out


@pytest.fixture(scope="module")
def table1_with_standin_graph(celeba_dir, celeba_root, figure3_run):
    graph = write_standin_inception_graph(celeba_root / "classify_image_graph_def.pb")
    out = "table_standin"
    payload = run_script(
        table1, _celeba_args("table1", celeba_dir, celeba_root, out, f"--inception_graph={graph}")
    )
    return payload, celeba_root / out


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _expected_figure_width(image_size: int, magnification: int) -> int:
    panel = (PANEL_COLS * (image_size + 1) - 1) * magnification  # 1 px gutters
    layout = FigureLayout(panel, (1, 1, 1), ())
    return layout.width


# ======================================================================================
# Figure 2 (MNIST)
# ======================================================================================


@pytest.mark.slow
def test_figure2_quick_writes_figure_curves_json_and_markdown(figure2_run):
    payload, out = figure2_run
    names = {"figure2.png", "figure2_training_curves.png", "figure2.json", "figure2.md"}
    assert names <= {p.name for p in out.iterdir()}
    assert sorted(payload["files"]) == sorted(str(out / n) for n in names)
    with Image.open(out / "figure2.png") as image:
        width, height = image.size
    # Three 10-image-wide panels of 28 px digits at 2x, side by side.
    assert width == _expected_figure_width(28, magnification=2)
    assert 0.5 * width < height < width
    with Image.open(out / "figure2_training_curves.png") as image:
        assert image.size[0] > image.size[1]
    # One bundle per model, and the figure was assembled from exactly those.
    assert {p.name for p in (out / "bundles").iterdir()} == {
        "figure2_vae",
        "figure2_wae_mmd",
        "figure2_wae_gan",
    }
    assert [b["path"] for b in payload["provenance"]["bundles"].values()] == [
        str(out / "bundles" / f"figure2_{m}") for m in MODELS
    ]


@pytest.mark.slow
def test_figure2_json_has_the_three_models_with_their_numbers(figure2_run):
    _, out = figure2_run
    payload = _read_json(out / "figure2.json")
    assert list(payload["models"]) == ["vae", "wae_mmd", "wae_gan"]
    for numbers in payload["models"].values():
        assert (
            _finite(numbers["test_reconstruction_cost"]) and numbers["test_reconstruction_cost"] > 0
        )
        assert numbers["test_squared_l2"] == pytest.approx(
            numbers["test_reconstruction_cost"] / 0.05
        )
        assert _finite(numbers["mnist_frechet_score"]) and numbers["mnist_frechet_score"] >= 0
        assert numbers["epochs"] == 1 and numbers["paper_epochs"] == 100
        assert numbers["train_size"] == 300 and numbers["test_size"] == 200
        assert numbers["seconds_per_epoch"] > 0
    assert 0.0 < payload["mnist_classifier"]["test_accuracy"] <= 1.0
    assert (
        payload["provenance"]["git"]["commit"] is None
        or len(payload["provenance"]["git"]["commit"]) == 40
    )


@pytest.mark.slow
def test_figure2_quick_run_says_it_is_reduced_scale_everywhere(figure2_run):
    payload, out = figure2_run
    assert payload["scale"]["reduced"] is True
    description = payload["scale"]["description"]
    assert description.startswith("REDUCED SCALE: 1 epoch (paper: 100), 300 train images")
    assert description in (out / "figure2.md").read_text()


def _no_fit(*args, **kwargs):
    raise AssertionError("a finished run was retrained")


def _without_provenance(markdown: str) -> str:
    """The markdown up to its "## Provenance" section (assembly and bundle provenance:
    commands, paths, machines, start and wall times, which legitimately differ)."""
    head, sep, _ = markdown.partition("\n## Provenance\n")
    assert sep, "no provenance section"
    return head


def _comparable_json(path: Path) -> dict:
    """The saved payload less what names where and when it was assembled: "provenance"
    (per-bundle paths, commands, times) and "files" (output paths)."""
    payload = _read_json(path)
    del payload["provenance"], payload["files"]
    return payload


def _assert_same_outputs(one_shot: Path, assembled: Path, names: list[str]) -> None:
    for name in names:
        if name.endswith(".png"):
            assert (assembled / name).read_bytes() == (one_shot / name).read_bytes(), name
        elif name.endswith(".md"):
            got, want = ((d / name).read_text() for d in (assembled, one_shot))
            assert _without_provenance(got) == _without_provenance(want)
        else:
            assert _comparable_json(assembled / name) == _comparable_json(one_shot / name)


@pytest.mark.slow
def test_figure2_bundles_from_separate_runs_assemble_into_the_one_shot_figure_and_table(
    figure2_run, mnist_dir, tmp_path, monkeypatch
):
    payload, out = figure2_run
    monkeypatch.setattr(keras.Model, "fit", _no_fit)  # the finished runs are reused, not retrained
    workdir = Path(payload["models"]["vae"]["workdir"]).parents[1]
    quick = [*PLUMBING, f"--data_dir={mnist_dir}", f"--workdir={workdir}"]
    first = run_script(
        figure2, ["figure2", *quick, "--models=vae,wae_mmd", f"--out_dir={tmp_path / 'a'}"]
    )
    second = run_script(
        figure2, ["figure2", *quick, "--models=wae_gan", f"--out_dir={tmp_path / 'b'}"]
    )
    # Fewer than three models: bundles only, no figure.
    assert first["assembled"] is False and len(first["bundles"]) == 2
    assert [p.name for p in (tmp_path / "a").iterdir() if p.name != ".lock"] == ["bundles"]
    dirs = [*second["bundles"], *first["bundles"]]  # any order
    assembled = run_script(
        figure2, ["figure2", f"--assemble={','.join(dirs)}", f"--out_dir={tmp_path / 'c'}"]
    )
    assert list(assembled["models"]) == list(MODELS)
    names = ["figure2.png", "figure2_training_curves.png", "figure2.md", "figure2.json"]
    _assert_same_outputs(out, tmp_path / "c", names)


@pytest.mark.slow
def test_a_quick_bundle_is_small_and_a_paper_scale_bundle_is_bounded_far_below_16_mib(
    figure2_run,
):
    _, out = figure2_run
    for model in MODELS:
        path = bundles.bundle_dir(out, "figure2", model)
        assert sorted(p.name for p in path.iterdir()) == sorted(bundles.FILES)  # no weights
        with np.load(path / "panels.npz") as npz:
            shapes = {k: npz[k].shape for k in npz.files}
            assert {npz[k].dtype for k in npz.files} == {np.dtype(np.uint8)}
        # The panel shapes do not depend on the scale: the bound is computed from them.
        assert shapes == panel_shapes("mnist")
        assert bundles.bundle_bytes(path) <= bundles.size_bound("mnist", epochs=1)
        assert bundles.bundle_bytes(path) < 100 * 1024
    assert bundles.size_bound("mnist", epochs=100) < 0.5 * 2**20  # paper scale: 100 epochs
    assert bundles.size_bound("celeba", epochs=68) < 3 * 2**20  # 55 (WAE) / 68 (VAE) epochs
    assert bundles.size_bound("celeba", epochs=68) < bundles.MAX_BUNDLE_BYTES


def _copy_bundles(out: Path, tmp_path: Path, kind: str = "figure2") -> dict[str, Path]:
    copies = {}
    for model in MODELS:
        copies[model] = tmp_path / "bundles" / f"{kind}_{model}"
        shutil.copytree(bundles.bundle_dir(out, kind, model), copies[model])
    return copies


def _edit_json(path: Path, edit) -> None:
    payload = _read_json(path)
    edit(payload)
    path.write_text(json.dumps(payload))


def _assemble_figure2(copies, out: Path, *extra: str) -> dict:
    dirs = ",".join(str(p) for p in copies)
    return run_script(figure2, ["figure2", f"--assemble={dirs}", f"--out_dir={out}", *extra])


@pytest.mark.slow
def test_assembly_refuses_bundles_that_disagree_and_labels_them_when_allowed(figure2_run, tmp_path):
    _, out = figure2_run
    copies = _copy_bundles(out, tmp_path)
    gan = copies["wae_gan"]
    _edit_json(gan / "config.json", lambda c: c["settings"].update(width=16))
    _edit_json(gan / "provenance.json", lambda p: p.update(source_sha256="0" * 64))
    _edit_json(
        gan / "metrics.json", lambda m: m["mnist_classifier"].update(weights_sha256="f" * 64)
    )
    # A bundle made where .git is absent records no commit: that alone is no disagreement.
    _edit_json(copies["vae"] / "provenance.json", lambda p: p["git"].update(commit=None))
    with pytest.raises(ReproError, match="allow_mixed_bundles") as error:
        _assemble_figure2(copies.values(), tmp_path / "refused")
    message = str(error.value)
    assert "scale.width: VAE 8 / WAE-MMD 8 / WAE-GAN 16" in message
    assert "code.source_sha256:" in message and "WAE-GAN 000000000000" in message
    assert "metric.mnist_classifier_sha256:" in message and "WAE-GAN ffffffffffff" in message
    assert "code.git_commit" not in message and message.count(": VAE ") == 3
    assert not (tmp_path / "refused").exists()

    payload = _assemble_figure2(copies.values(), tmp_path / "mixed", "--allow_mixed_bundles")
    assert payload["scale"]["description"].startswith(
        "MIXED BUNDLES (differ in code.source_sha256, metric.mnist_classifier_sha256, "
        "scale.width) | REDUCED SCALE"
    )
    markdown = (tmp_path / "mixed" / "figure2.md").read_text()
    assert "**MIXED BUNDLES, they differ in code.source_sha256: VAE" in markdown
    assert "scale.width: VAE 8 / WAE-MMD 8 / WAE-GAN 16**" in markdown


@pytest.mark.slow
def test_assembly_refuses_a_partial_set_unless_allowed_and_then_says_what_is_missing(
    figure2_run, tmp_path
):
    _, out = figure2_run
    copies = _copy_bundles(out, tmp_path)
    two = [copies["vae"], copies["wae_gan"]]
    with pytest.raises(ReproError, match="no bundle for WAE-MMD"):
        _assemble_figure2(two, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    payload = _assemble_figure2(two, tmp_path / "partial", "--allow_partial_bundles")
    assert payload["labels"] == ["PARTIAL: missing WAE-MMD"]
    markdown = (tmp_path / "partial" / "figure2.md").read_text()
    assert "**PARTIAL: missing WAE-MMD**" in markdown
    assert "| WAE-MMD | missing | missing |" in markdown
    # The missing column is left white; the others are the bundles' panels, pixel for pixel.
    image = np.asarray(Image.open(tmp_path / "partial" / "figure2.png").convert("RGB"))
    panels = {m: bundles.read_bundle(copies[m]).panels for m in ("vae", "wae_gan")}
    layout = figure_layout({m: panels["vae"] for m in MODELS}, 2, [])
    for col, model in enumerate(MODELS):
        left, top, width, height = layout.panel_box(2, col)  # random samples
        shown = image[top : top + height, left : left + width, 0]
        if model == "wae_mmd":
            assert (shown == 255).all()
        else:
            want = np.kron(panels[model]["samples"][..., 0], np.ones((2, 2), np.uint8))
            np.testing.assert_array_equal(shown, want)


@pytest.mark.slow
def test_assembly_refuses_two_bundles_of_one_model_and_bundles_of_another_kind(
    figure2_run, tmp_path
):
    _, out = figure2_run
    copies = _copy_bundles(out, tmp_path)
    twice = [*copies.values(), tmp_path / "vae_again"]
    shutil.copytree(copies["vae"], twice[-1])
    with pytest.raises(ReproError, match="more than one bundle per model .VAE"):
        _assemble_figure2(twice, tmp_path / "x")
    _edit_json(copies["vae"] / "config.json", lambda c: c.update(kind="figure3_table1"))
    with pytest.raises(ReproError, match="expected 'figure2' bundles"):
        _assemble_figure2(copies.values(), tmp_path / "x")
    (copies["wae_gan"] / "panels.npz").unlink()
    with pytest.raises(ReproError, match="not a bundle: panels.npz missing"):
        _assemble_figure2(copies.values(), tmp_path / "x")
    with pytest.raises(ReproError, match="exclude each other"):
        parse_args(["figure2", "--assemble=a,b,c", "--models=vae"], "figure2")
    with pytest.raises(ReproError, match="unknown vea"):
        parse_args(["figure2", "--models=vea"], "figure2")


def _one_error_line(capsys, program: str, work) -> str:
    """Run `work` as a script's main does; it must exit 1 with one line on stderr."""
    with pytest.raises(SystemExit) as exit_info, exit_on_error(program):
        work()
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), lines
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped_byte", "truncated"])
def test_a_damaged_panels_file_is_one_line_naming_it(figure2_run, tmp_path, capsys, damage):
    _, out = figure2_run
    copies = _copy_bundles(out, tmp_path)
    panels = copies["wae_mmd"] / "panels.npz"
    content = bytearray(panels.read_bytes())
    if damage == "flipped_byte":
        content[len(content) // 2] ^= 0xFF  # inside the deflated data: a CRC / zlib error
    else:
        content = content[: len(content) // 2]
    panels.write_bytes(bytes(content))
    line = _one_error_line(
        capsys, "figure2", lambda: _assemble_figure2(copies.values(), tmp_path / "out")
    )
    assert str(panels) in line and "damaged" in line and "remake" in line
    assert not (tmp_path / "out" / "figure2.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "garbage",
    [b"\x89PNG\r\n\x1a\n\x00\xff\xfe", b"hello,world\n1,2\n", b"epoch,loss\n1,2\nzz,??\n"],
)
def test_a_garbage_history_in_a_bundle_is_one_line_saying_it_is_unreadable(
    figure2_run, tmp_path, capsys, garbage
):
    _, out = figure2_run
    copies = _copy_bundles(out, tmp_path)
    history = copies["wae_gan"] / "history.csv"
    history.write_bytes(garbage)
    line = _one_error_line(
        capsys, "figure2", lambda: _assemble_figure2(copies.values(), tmp_path / "out")
    )
    assert str(history) in line and "unreadable" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_mixed_widths_are_stated_per_bundle_and_the_scale_line_fits_in_the_figure(
    figure2_run, tmp_path
):
    _, out = figure2_run
    copies = _copy_bundles(out, tmp_path)
    _edit_json(copies["vae"] / "config.json", lambda c: c["settings"].update(width=16))
    payload = _assemble_figure2(copies.values(), tmp_path / "mixed", "--allow_mixed_bundles")
    description = payload["scale"]["description"]
    assert "VAE/WAE-MMD/WAE-GAN widths 16/8/8 (paper: 128-1024 filters)" in description
    assert "width 16 (paper" not in description
    image = np.asarray(Image.open(tmp_path / "mixed" / "figure2.png").convert("RGB"))
    red = (image[..., 0] > 120) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert red.any()  # the scale line is drawn...
    assert not red[:, :8].any() and not red[:, -8:].any()  # ...inside the margins


@pytest.mark.slow
def test_a_second_run_on_a_locked_out_dir_is_refused_before_it_writes_anything(
    figure2_run, mnist_dir, tmp_path, monkeypatch
):
    payload, out = figure2_run
    monkeypatch.setattr(keras.Model, "fit", _no_fit)  # the finished runs would be reused
    workdir = Path(payload["models"]["vae"]["workdir"]).parents[1]
    shutil.copytree(out, tmp_path / "out")
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    args = [*PLUMBING, f"--data_dir={mnist_dir}", f"--workdir={workdir}"]
    with OutDirLock(tmp_path / "out") as first_run:  # the first run, still drawing
        first_run.acquire()
        with pytest.raises(ReproError, match="--out_dir=.* is in use by another reproduce run"):
            run_script(figure2, ["figure2", *args, f"--out_dir={tmp_path / 'out'}"])
        with pytest.raises(ReproError, match="in use"):
            bundle_dirs = ",".join(str(bundles.bundle_dir(out, "figure2", m)) for m in MODELS)
            run_script(
                figure2, ["figure2", f"--assemble={bundle_dirs}", f"--out_dir={tmp_path / 'out'}"]
            )
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before  # the first run's bundles and figure are untouched


def test_train_examples_beyond_the_split_names_the_flag(mnist_dir, tmp_path):
    args = ["figure2", *PLUMBING[:-2], "--train_examples=100000", f"--data_dir={mnist_dir}"]
    args += [f"--workdir={tmp_path / 'runs'}", f"--out_dir={tmp_path / 'out'}"]
    with pytest.raises(ReproError) as error:
        run_script(figure2, args)
    message = str(error.value)
    assert message.startswith("--train_examples=100000 but ") and "num_examples" not in message
    assert "60000" in message and not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("checkpoints", ["kept", "removed"])
def test_a_damaged_final_model_of_a_reused_run_is_rebuilt_or_one_line(
    figure2_run, mnist_dir, tmp_path, monkeypatch, capsys, checkpoints
):
    payload, _ = figure2_run
    monkeypatch.setattr(keras.Model, "fit", _no_fit)  # reused, never retrained
    group = Path(payload["models"]["vae"]["workdir"]).parent
    shutil.copytree(group, tmp_path / "runs" / group.name)
    classifier = group.parent / "mnist_classifier"  # its cache: not retrained either
    shutil.copytree(classifier, tmp_path / "runs" / classifier.name)
    run = tmp_path / "runs" / group.name / "vae"
    final = run / "final.keras"
    final.write_bytes(final.read_bytes()[:1000])  # truncated
    if checkpoints == "removed":
        shutil.rmtree(run / "checkpoints")
    args = ["figure2", *PLUMBING, f"--data_dir={mnist_dir}", f"--workdir={tmp_path / 'runs'}"]
    args += ["--models=vae", f"--out_dir={tmp_path / 'out'}"]
    if checkpoints == "kept":
        result = run_script(figure2, args)  # final.keras rebuilt from the last checkpoint
        assert len(result["bundles"]) == 1
        keras.saving.load_model(final)
    else:
        line = _one_error_line(capsys, "figure2", lambda: run_script(figure2, args))
        assert str(final) in line and "Traceback" not in line


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "flipped_byte", "sidecar"])
def test_a_damaged_classifier_cache_is_rebuilt_with_one_warning(
    mnist_dir, tmp_path, caplog, damage
):
    from wae_tf import mnist_classifier

    settings = dict(epochs=1, num_train=300)
    first = mnist_classifier.get_or_train_classifier(tmp_path, mnist_dir, **settings)
    assert first.trained_now
    if damage == "sidecar":
        first.path.with_suffix(".json").write_text("{not json")
    else:
        content = bytearray(first.path.read_bytes())
        if damage == "truncated":
            content = content[: len(content) // 3]
        else:
            content[len(content) // 2] ^= 0xFF
        first.path.write_bytes(bytes(content))
    with caplog.at_level("WARNING"):
        again = mnist_classifier.get_or_train_classifier(tmp_path, mnist_dir, **settings)
    assert again.trained_now  # rebuilt, not a traceback
    ours = [r for r in caplog.records if r.name == mnist_classifier.__name__]
    warnings = [r.getMessage() for r in ours if r.levelname == "WARNING"]
    assert len(warnings) == 1 and f"MNIST classifier cache {first.path} is damaged" in warnings[0]
    assert "\n" not in warnings[0]
    assert not mnist_classifier.get_or_train_classifier(tmp_path, mnist_dir, **settings).trained_now


def test_cadence_flags_pass_straight_through_to_train(tmp_path, monkeypatch):
    from wae_tf import trainer

    seen = {}

    def spy(config, workdir, settings):
        # The real train() must accept exactly these arguments.
        inspect.signature(real_train).bind(config, workdir, settings)
        seen.update(dataclasses.asdict(settings), epochs=config.epochs)
        raise ReproError("stop")

    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", spy)
    argv = ["figure2", "--quick", f"--workdir={tmp_path}", "--models=vae", "--epochs=30"]
    flagged = [*argv, "--checkpoint_every=3", "--validate_every=0", "--sample_every=7"]
    with pytest.raises(ReproError, match="stop"):
        train_model(parse_args(flagged, "figure2"), "vae")
    assert (seen["checkpoint_every"], seen["validate_every"], seen["sample_every"]) == (3, 0, 7)
    with pytest.raises(ReproError, match="stop"):
        train_model(parse_args(argv, "figure2"), "vae")
    # Defaults: every epoch, and sample PNGs at a tenth of the epochs.
    assert (seen["checkpoint_every"], seen["validate_every"], seen["sample_every"]) == (1, 1, 3)


# ======================================================================================
# Figure 3 and Table 1 (CelebA)
# ======================================================================================


@pytest.mark.slow
def test_figure3_quick_writes_its_files_with_the_split_rule_and_null_fid(figure3_run):
    payload, out = figure3_run
    assert {"figure3.png", "figure3_training_curves.png", "figure3.json", "figure3.md"} <= {
        p.name for p in out.iterdir()
    }
    with Image.open(out / "figure3.png") as image:
        assert image.size[0] == _expected_figure_width(64, magnification=1)
    saved = _read_json(out / "figure3.json")
    assert "official_code_shuffle" in saved["split"]  # the shared 10k subset's rule
    assert saved["scale"]["reduced"] is True
    assert list(saved["models"]) == ["vae", "wae_mmd", "wae_gan"]
    for numbers in saved["models"].values():
        assert numbers["fid"] is None and "inception_graph" in numbers["fid_reason"]
        assert _finite(numbers["sharpness"]) and numbers["sharpness"] >= 0
        assert _finite(numbers["sharpness_code"]) and numbers["sharpness_code"] >= 0
        assert _finite(numbers["test_reconstruction_cost"])
    assert saved["test_images_sharpness"] > 1e-3  # real faces are sharp
    assert saved["test_images_sharpness_code"] > 1e-3
    assert set(saved["sharpness_definitions"]) == {"sharpness", "sharpness_code"}
    markdown = (out / "figure3.md").read_text()
    assert "| sharpness (ours: mean, [0, 1]) | sharpness (code's: min of 30, [-1, 1]) |" in markdown


@pytest.mark.slow
def test_table1_without_inception_graph_has_null_fids_with_a_reason_and_sharpness(
    table1_without_graph,
):
    payload, out = table1_without_graph
    outputs = {p.name for p in out.iterdir()} - {".lock"}  # the --out_dir lock stays
    assert outputs == {"table1.md", "table1.json", "bundles"}
    saved = _read_json(out / "table1.json")
    assert set(saved["rows"]) == {"true_data", "vae", "wae_mmd", "wae_gan"}
    for row in saved["rows"].values():
        assert row["fid"] is None and "classify_image_graph_def.pb" in row["fid_reason"]
        assert _finite(row["sharpness"]) and _finite(row["sharpness_code"])
    # Real faces (paper: 2e-2) are far sharper than the grey output of a 1-epoch model,
    # by either statistic.
    true_data = saved["rows"]["true_data"]
    assert true_data["sharpness"] > 1e-2
    for model in MODELS:
        assert true_data["sharpness"] > 3 * saved["rows"][model]["sharpness"]
        assert true_data["sharpness_code"] > 3 * saved["rows"][model]["sharpness_code"]
    assert saved["paper"]["wae_gan"] == {"fid": 42.0, "sharpness": 6e-3}
    assert saved["real_images"]["true_data_set_sizes"] == [200, 200]
    prov = saved["provenance"]
    assert {"git", "machine", "started_at", "wall_time_s", "command_line"} <= set(prov)
    markdown = (out / "table1.md").read_text()
    assert "REDUCED SCALE" in markdown and "| WAE-GAN | n/a | 42 |" in markdown
    assert "sharpness (ours, REDUCED SCALE: mean, [0, 1])" in markdown
    assert "sharpness (ours, REDUCED SCALE, code's statistic: min of 30, [-1, 1])" in markdown


@pytest.mark.slow
def test_celeba_bundles_assemble_into_the_one_shot_figure3_and_table1_either_way(
    figure3_run, table1_without_graph, celeba_dir, celeba_root, tmp_path, monkeypatch
):
    _, fig3_out = figure3_run
    _, table_out = table1_without_graph
    monkeypatch.setattr(keras.Model, "fit", _no_fit)  # reuses the runs figure3 trained
    separate = run_script(
        table1,
        _celeba_args("table1", celeba_dir, celeba_root, str(tmp_path / "b"), "--models=wae_gan"),
    )
    assert separate["assembled"] is False
    dirs = [
        str(bundles.bundle_dir(fig3_out, "figure3_table1", "vae")),
        str(bundles.bundle_dir(table_out, "figure3_table1", "wae_mmd")),
        *separate["bundles"],
    ]
    assemble = [f"--assemble={','.join(dirs)}"]
    run_script(table1, ["table1", *assemble, f"--out_dir={tmp_path / 't'}"])
    _assert_same_outputs(table_out, tmp_path / "t", ["table1.md", "table1.json"])
    run_script(figure3, ["figure3", *assemble, f"--out_dir={tmp_path / 'f'}"])
    names = ["figure3.png", "figure3_training_curves.png", "figure3.md", "figure3.json"]
    _assert_same_outputs(fig3_out, tmp_path / "f", names)


@pytest.mark.slow
def test_figure3_quick_shows_faces_not_a_grey_figure(figure3_run):
    _, out = figure3_run  # README's `figure3 --quick`, as it is
    assert_samples_vary(out, "figure3_table1", image_size=64)
    models = _read_json(out / "figure3.json")["models"]
    assert_scores_differ({m: numbers["sharpness"] for m, numbers in models.items()})
    assert_scores_differ({m: numbers["test_reconstruction_cost"] for m, numbers in models.items()})


@pytest.mark.slow
def test_table1_with_a_standin_inception_graph_gives_numeric_fids(table1_with_standin_graph):
    payload, out = table1_with_standin_graph
    saved = _read_json(out / "table1.json")
    fids = {key: row["fid"] for key, row in saved["rows"].items()}
    assert all(_finite(v) and v > -1e-6 for v in fids.values()), fids
    # Two real sets are far closer than real faces and the grey samples of 1-epoch models.
    assert fids["true_data"] < min(fids[m] for m in MODELS)
    assert saved["fid"]["comparable_to_paper"] is True and "reason" not in saved["fid"]


# ======================================================================================
# Building blocks (no data needed)
# ======================================================================================


def test_render_figure_places_each_model_and_panel_pixel_for_pixel():
    rng = np.random.default_rng(0)
    shapes = {"interpolations": (20, 30, 1), "reconstructions": (24, 30, 1), "samples": (20, 30, 1)}
    panels = {
        m: {k: rng.integers(0, 256, s, dtype=np.uint8) for k, s in shapes.items()} for m in MODELS
    }
    png, layout = render_figure(
        panels, "title", Scale(True, "REDUCED SCALE: test"), ["a caption"], magnification=2
    )
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape[:2] == (layout.height, layout.width)
    for row, key in enumerate(PANEL_ROWS):  # rows: interpolations, reconstructions, samples
        for col, model in enumerate(MODELS):  # columns: VAE | WAE-MMD | WAE-GAN
            left, top, width, height = layout.panel_box(row, col)
            expected = np.kron(panels[model][key][..., 0], np.ones((2, 2), np.uint8))
            np.testing.assert_array_equal(
                image[top : top + height, left : left + width, 0], expected
            )
    # Panels do not overlap and the columns are ordered left to right.
    lefts = [layout.panel_box(0, c)[0] for c in range(3)]
    assert lefts[0] + layout.panel_width < lefts[1] < lefts[2]


class _FakeModel:
    """encode: mean pixel value (d_z = 1); decode: a flat image of that value."""

    config = SimpleNamespace(pixel_range="unit")

    def encode(self, images):
        return np.asarray(images).mean(axis=(1, 2, 3))[:, None]

    def decode(self, z):
        return np.broadcast_to(np.asarray(z)[:, :, None, None], (len(z), 4, 4, 1)).copy()


def _flat_images(values) -> np.ndarray:
    return np.stack([np.full((4, 4, 1), v, np.uint8) for v in values])


def _cell_values(grid: np.ndarray, rows: int, cols: int, size: int = 4) -> np.ndarray:
    """(rows, cols): the value of each flat size x size cell of a grid with 1 px gutters."""
    return grid[:: size + 1, :: size + 1, 0][:rows, :cols]


def test_interpolation_rows_start_and_end_with_the_real_points_and_decode_a_straight_line():
    pairs = np.stack([_flat_images([0, 255]), _flat_images([100, 20])] * 3)[:5]
    grid = interpolation_panel(_FakeModel(), pairs)
    values = _cell_values(grid, 5, PANEL_COLS)
    assert (values[0, 0], values[0, -1]) == (0, 255)  # real endpoints, left and right
    expected = np.round(np.linspace(0.0, 1.0, PANEL_COLS - 2) * 255).astype(np.uint8)
    np.testing.assert_array_equal(values[0, 1:-1], expected)  # G of the straight line
    assert (values[1, 0], values[1, -1]) == (100, 20)
    assert values[1, 1] == 100 and values[1, -2] == 20  # the line's ends are G(Q(x_a)), G(Q(x_b))


def test_reconstruction_panel_alternates_real_rows_and_their_reconstructions():
    n = RECONSTRUCTION_PAIRS * PANEL_COLS
    images = _flat_images(np.arange(n) * 8)

    class Inverting(_FakeModel):
        def decode(self, z):
            return 1.0 - super().decode(z)

    grid = reconstruction_panel(Inverting(), images)
    values = _cell_values(grid, 2 * RECONSTRUCTION_PAIRS, PANEL_COLS)
    real = images[:, 0, 0, 0].reshape(RECONSTRUCTION_PAIRS, PANEL_COLS)
    np.testing.assert_array_equal(values[0::2], real)  # odd rows (1st, 3rd, ...): real
    np.testing.assert_array_equal(values[1::2], 255 - real)  # even rows: reconstructions


def _fake_run(name: str, epochs: int, train_size: int):
    from wae_tf import configs

    return TrainedRun(
        name,
        None,
        Path("/runs") / name,
        configs.get_config("mnist", name),
        {"data": {"train_size": train_size}},
        {"epochs": epochs},
        [],
    )


def test_scale_is_paper_only_with_paper_epochs_data_and_widths():
    options = parse_args(["figure2"], "figure2")
    paper = {n: _fake_run(n, 100, 60_000) for n in MODELS}
    scale = describe_scale(options, paper)
    assert not scale.reduced and scale.text.startswith("paper scale: 100 epochs")
    short = {n: _fake_run(n, 10, 60_000) for n in MODELS}
    assert describe_scale(options, short).text.startswith("REDUCED SCALE: 10 epochs (paper: 100)")
    subset = {n: _fake_run(n, 100, 5_000) for n in MODELS}
    assert describe_scale(options, subset).reduced
    narrow = parse_args(["figure2", "--width=32"], "figure2")
    assert "width 32" in describe_scale(narrow, paper).text


def test_quick_fills_unset_flags_and_explicit_flags_win():
    options = parse_args(["figure2", "--quick", "--epochs=3"], "figure2")
    quick = quick_settings("mnist")
    assert (options.width, options.train_examples, options.epochs) == (
        quick.width,
        quick.train_examples,
        3,
    )
    assert options.num_samples == quick.num_samples and options.out_dir == Path("runs/figure2")
    full = parse_args(["table1"], "table1")
    assert full.out_dir == Path("runs/table1")  # git-ignored, like the runs: not results/
    assert full.num_samples == 10_000 and full.width is None and full.epochs is None
    assert run_group(options) == f"mnist_quick_w{quick.width}_n{quick.train_examples}"
    assert run_group(full) == "celeba"
    celeba = parse_args(["figure3", "--quick"], "figure3")
    celeba_quick = quick_settings("celeba")
    assert (celeba.width, celeba.train_examples, celeba.epochs) == (
        celeba_quick.width,
        celeba_quick.train_examples,
        celeba_quick.epochs,
    )


def test_bad_flags_and_missing_data_fail_with_one_message_and_write_nothing(tmp_path, capsys):
    with pytest.raises(ReproError, match="num_samples"):
        parse_args(["table1", "--num_samples=1"], "table1")
    out, runs = tmp_path / "out", tmp_path / "runs"
    args = [
        "figure2",
        "--quick",
        f"--data_dir={tmp_path / 'nowhere'}",
        f"--workdir={runs}",
        f"--out_dir={out}",
    ]
    with pytest.raises(data.DataError, match="nowhere"):
        run_script(figure2, args)
    assert not out.exists() and not any(runs.rglob("*.json"))
    with pytest.raises(SystemExit) as exit_info, exit_on_error("figure2"):
        run_script(figure2, args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("figure2: error:") and "nowhere" in err[0]


def test_unwritable_out_dir_fails_before_any_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    runs = tmp_path / "runs"
    args = ["table1", "--quick", f"--workdir={runs}", f"--out_dir={blocker / 'out'}"]
    with pytest.raises(ReproError, match="not writable"):
        run_script(table1, args)
    assert not runs.exists()
    with pytest.raises(ReproError, match=f"--out_dir={blocker / 'out'} is not writable"):
        run_script(table1, ["table1", "--assemble=a,b,c", f"--out_dir={blocker / 'out'}"])
    out = tmp_path / "out"
    with pytest.raises(ReproError, match=f"--workdir={blocker / 'runs'} is not writable"):
        run_script(figure2, ["figure2", f"--workdir={blocker / 'runs'}", f"--out_dir={out}"])
    assert not out.exists()


def test_data_that_cannot_be_read_fails_naming_data_dir_before_anything_is_announced(
    tmp_path, caplog
):
    empty, runs, out = tmp_path / "empty", tmp_path / "runs", tmp_path / "out"
    empty.mkdir()
    args = ["figure2", "--quick", f"--data_dir={empty}", f"--workdir={runs}", f"--out_dir={out}"]
    with caplog.at_level("INFO"), pytest.raises(data.DataError) as error:
        run_script(figure2, args)
    message = str(error.value)
    assert "\n" not in message and str(empty) in message and "--data_dir" in message
    assert "[1/" not in caplog.text and "epoch" not in caplog.text
    assert not runs.exists() and not out.exists()


@pytest.mark.parametrize("graph", ["missing", "garbage", "empty"])
def test_an_unreadable_inception_graph_is_an_error_before_any_training(graph, tmp_path, caplog):
    path = tmp_path / "classify_image_graph_def.pb"
    if graph == "garbage":
        path.write_bytes(b"not a GraphDef\n" * 100)
    elif graph == "empty":
        path.write_bytes(b"")  # parses as an empty GraphDef: no TTUR tensors
    data_dir, runs, out = tmp_path / "celeba", tmp_path / "runs", tmp_path / "out"
    data_dir.mkdir()  # never read: the graph is checked before the (long) CelebA decode
    args = [f"--data_dir={data_dir}", f"--workdir={runs}", f"--out_dir={out}"]
    with caplog.at_level("INFO"), pytest.raises(ReproError) as error:
        run_script(table1, ["table1", *args, f"--inception_graph={path}"])
    message = str(error.value)
    assert message.startswith(f"--inception_graph={path}: ") and "\n" not in message
    assert "[1/" not in caplog.text and not runs.exists() and not out.exists()


def test_keras_inception_features_without_their_weights_are_an_error_before_training(
    tmp_path, monkeypatch
):
    from wae_tf import inception

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(inception, "KerasInceptionV3Features", offline)
    data_dir = tmp_path / "celeba"
    data_dir.mkdir()
    args = [
        f"--data_dir={data_dir}",
        f"--workdir={tmp_path / 'runs'}",
        f"--out_dir={tmp_path / 'out'}",
    ]
    with pytest.raises(ReproError, match="^--fid_features=keras_inception_v3: .*no network"):
        run_script(figure3, ["figure3", *args, "--fid_features=keras_inception_v3"])
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------
# reproduce.all: every output in one command, resumable
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_all_writes_every_output_from_one_command_and_resumes(mnist_dir, celeba_dir, tmp_path):
    """`python -m reproduce.all` finds both datasets under --data_root, prints one time
    estimate, writes Figure 2, Figure 3 and Table 1 (Table 1 from Figure 3's bundles), and a
    second call trains nothing and reuses the finished bundles, with the same numbers."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "mnist").symlink_to(mnist_dir)
    (data_root / "celeba_10k").symlink_to(celeba_dir)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "reproduce.all",
        "--quick",
        "--width=4",
        "--train_examples=300",
        "--epochs=1",
        "--eval_examples=100",
        "--num_samples=60",
        f"--data_root={data_root}",
        f"--workdir={tmp_path / 'runs'}",
        f"--out_dir={out}",
    ]
    env = {
        **os.environ,
        data.CACHE_DIR_ENV: str(tmp_path / "cache"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "KERAS_HOME": str(tmp_path / "keras"),
    }
    env.pop(data.DATA_DIR_ENV, None)

    def run() -> subprocess.CompletedProcess:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    first = run()
    lines = first.stdout.splitlines()
    # One estimate up front: 3 models x 1 epoch x 3 steps (300 images, batch 100) each.
    assert lines[0].startswith("all: figure2: 9 training steps to run, ~"), lines
    assert lines[1].startswith("figure3 and table1: 9 training steps to run, ~"), lines
    assert [line.split(":")[0] for line in lines[3:]] == ["figure2", "figure3", "table1"]
    figures = {"figure2": ["figure2.png", "figure2.json"], "figure3": ["figure3.png"]}
    for name, files in {**figures, "table1": ["table1.md", "table1.json"]}.items():
        for file in files:
            assert (out / name / file).is_file(), (name, file)
    table = _read_json(out / "table1" / "table1.json")
    fig3 = _read_json(out / "figure3" / "figure3.json")
    assert {p["path"] for p in table["provenance"]["bundles"].values()} == {
        str(bundles.bundle_dir(out / "figure3", "figure3_table1", m)) for m in MODELS
    }
    assert fig3["models"]["wae_mmd"]["sharpness"] == table["rows"]["wae_mmd"]["sharpness"]

    # Every check before any training, for both datasets: a bad graph stops it at once.
    bad = subprocess.run(
        [*command, f"--workdir={tmp_path / 'other'}", f"--inception_graph={tmp_path}/no.pb"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and not (tmp_path / "other").exists()
    assert bad.stderr.strip().splitlines()[-1].startswith("all: error: --inception_graph=")

    second = run()
    assert second.stdout.splitlines()[0] == "all: figure2: 0 training steps to run, ~0 s"
    assert "reusing the finished bundles" in second.stderr
    again = _read_json(out / "table1" / "table1.json")
    assert again["rows"] == table["rows"] and again["models"].keys() == table["models"].keys()
    # Reused only as made: another FID network (here a graph where there was none) or other
    # settings compute them again.
    same = [a for a in command[3:] if not a.startswith(("--data_root", "--out_dir"))]
    fig3 = ["figure3", *same, f"--data_dir={celeba_dir}", f"--out_dir={out / 'figure3'}"]
    assert len(finished_bundles(FIGURE3, parse_args(fig3, "figure3"))) == 3
    graph = write_standin_inception_graph(tmp_path / "classify_image_graph_def.pb")
    assert (
        finished_bundles(FIGURE3, parse_args([*fig3, f"--inception_graph={graph}"], "figure3"))
        == ()
    )
    assert finished_bundles(FIGURE3, parse_args([*fig3, "--num_samples=50"], "figure3")) == ()
