"""An output's text: its markdown (as its `reproduce.specs.OutputSpec` lays it out), its
JSON, its provenance; and writing every file of it atomically, under a lock.

Every output is rendered in memory first and written only after every number has been
computed (`write_outputs`, through `wae_tf.fileio`), so a failed run leaves no
half-written results. `provenance` records what produced them (`wae_tf.provenance`: code
version, machine, command line) and when. `markdown(spec, payload)` is the one layout of
all three outputs: heading, scale line, labels, the figure (if any), the table of
`spec.rows` x `spec.columns`, the notes `spec.notes` (written here, by name), provenance.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from reproduce.cli import MODEL_LABELS, Options, ReproError
from reproduce.specs import ROW_LABELS, OutputSpec, run_group
from wae_tf import fileio
from wae_tf import provenance as provenance_lib


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def json_bytes(payload: dict[str, Any]) -> bytes:
    """Indented JSON with a final newline; NumPy numbers as Python's, NaN / inf as null."""
    return (json.dumps(_jsonable(payload), indent=2) + "\n").encode()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any, spec: str = ".4g") -> str:
    """A number for a markdown cell; "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float, np.floating)):
        return format(float(value), spec)
    return str(value)


def label_lines(labels: Sequence[str]) -> list[str]:
    """The PARTIAL / MIXED BUNDLES labels as bold markdown lines (nothing when whole)."""
    return [line for label in labels for line in (f"**{label}**", "")]


class OutDirLock:
    """An exclusive lock on <out_dir>/.lock, taken by `acquire` before a run writes anything
    to --out_dir (its bundles, then its figure / table) and held until `release`: a second
    run on the same --out_dir is refused before it can replace the first's bundles. The OS
    releases it when the holder exits, however it exits. `acquire` creates --out_dir, so
    the scripts call it only after their up-front checks (which create nothing)."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self._file = None

    def acquire(self) -> None:
        """Take the lock (again: nothing); ReproError naming --out_dir when another process
        holds it."""
        if self._file is not None:
            return
        import fcntl

        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.out_dir / ".lock", "a+")  # held until release
        except OSError as e:
            raise ReproError(f"cannot create --out_dir {self.out_dir} ({e.strerror or e})") from e
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise ReproError(
                f"--out_dir={self.out_dir} is in use by another reproduce run (pid {holder}); "
                "wait for it to finish or choose another --out_dir"
            ) from e
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._file = lock

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None

    def __enter__(self) -> OutDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_outputs(out_dir: Path, files: dict[str, bytes | str]) -> list[str]:
    """Write files already rendered in memory (name -> content), each atomically, so a
    failure while computing leaves nothing half-written. Returns the paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReproError(f"cannot create --out_dir {out_dir} ({e.strerror or e})") from e
    written = []
    for name, content in files.items():
        path = out_dir / name
        if isinstance(content, str):
            fileio.write_text(path, content)
        else:
            fileio.write_bytes(path, content)
        written.append(str(path))
        logging.info("wrote %s", path)
    return written


def process_provenance(command_line: str, start_time: float) -> dict[str, Any]:
    """What this process is: its command line, the code version, the machine, when it
    started and how long it has run."""
    return {
        "command_line": command_line,
        **provenance_lib.code_version(),
        "machine": provenance_lib.machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start_time)),
        "wall_time_s": round(time.time() - start_time, 1),
    }


def provenance(options: Options, start_time: float) -> dict[str, Any]:
    """An output's provenance: this process's, its seed and its runs' folder (none when
    it only assembled bundles)."""
    return {
        **process_provenance(options.command_line, start_time),
        "seed": None if options.assemble else options.seed,
        "runs_dir": None if options.assemble else str(options.workdir / run_group(options)),
    }


def provenance_lines(payload: dict[str, Any]) -> list[str]:
    """The markdown "## Provenance" section: the assembly, then one line per bundle. (All
    that legitimately differs between two assemblies of the same numbers is in here.)"""
    prov = payload["provenance"]

    def line(p: dict[str, Any]) -> str:
        git, host = p.get("git", {}), p.get("machine", {})
        return (
            f"commit {git.get('commit')}{' (local changes)' if git.get('dirty') else ''}, "
            f"sources sha256 {str(p.get('source_sha256'))[:12]}, {host.get('platform')}, "
            f"{host.get('cpu_count')} CPUs, GPUs {host.get('gpus')}, started "
            f"{p.get('started_at')}, {p.get('wall_time_s')} s; `{p.get('command_line')}`"
        )

    lines = ["## Provenance", "", f"- Assembled by: {line(prov)}."]
    for name, p in prov["bundles"].items():
        lines.append(f"- {MODEL_LABELS[name]} bundle `{p['path']}`: {line(p)}.")
    return [*lines, ""]


def done_message(name: str, payload: dict[str, Any]) -> str:
    """The line a script prints when it is done."""
    if payload.get("assembled") is False:
        return f"{name}: wrote the bundle(s) {', '.join(payload['bundles'])}; {payload['next']}"
    labels = "".join(f"{label}; " for label in payload.get("labels", []))
    return f"{name}: {labels}{payload['scale']['description']}; wrote {', '.join(payload['files'])}"


# ======================================================================================
# The markdown of an output
# ======================================================================================


def markdown(spec: OutputSpec, payload: dict[str, Any]) -> str:
    """The output's markdown: heading, scale, labels, figure, table, notes, provenance."""
    ours = "ours, REDUCED SCALE" if payload["scale"]["reduced"] else "ours"
    headers = ["model", *(column.header.format(ours=ours) for column in spec.columns)]
    figure = [f"![Figure {spec.figure_number}]({spec.name}.png)", ""] if spec.is_figure else []
    return "\n".join(
        [
            f"# {spec.heading}",
            "",
            f"**{payload['scale']['description']}**",
            "",
            *label_lines(payload["labels"]),
            *figure,
            markdown_table(headers, [table_row(spec, key, payload) for key in spec.rows]),
            "",
            *(_NOTES[name](spec, payload) for name in spec.notes),
            "",
            *provenance_lines(payload),
        ]
    )


def table_row(spec: OutputSpec, key: str, payload: dict[str, Any]) -> list[str]:
    """The cells of row `key` ("true_data" or a model): "missing" for a missing model's
    numbers; the paper's numbers are shown regardless."""
    ours = payload[spec.row_numbers].get(key)
    cells = [ROW_LABELS[key]]
    for column in spec.columns:
        numbers = payload["paper"][key] if column.source == "paper" else ours
        if numbers is None:
            cells.append("missing")
        elif column.template:
            cells.append(column.template.format(**numbers))
        else:
            cells.append(fmt(numbers[column.key], column.spec))
    return cells


def sharpness_note(num_samples: int) -> str:
    """The note that defines both sharpness columns."""
    return (
        "- Sharpness, two statistics of the per-image variance of the 3x3 Laplacian of the "
        "grayscale image (VALID) [code, compute_blurriness]: **ours** = mean over "
        f"{num_samples:,} samples, pixels mapped to [0, 1] (`wae_tf.metrics.mean_sharpness`); "
        "**code's** = minimum over a batch of 30 (the first 30 samples; true data: the first "
        "30 training images, as the code), pixels in [-1, 1] as the official code measures CelebA "
        "(`wae_tf.metrics.code_sharpness`; wae.py:351-364, 533-536, 682-692 at 6351565), "
        "i.e. 4x ours for the same image. The paper's Table 1 (true data 2e-2, VAE 3e-3, "
        "WAEs 6e-3) does not say which statistic it reports."
    )


def _cost_mnist(spec: OutputSpec, payload: dict[str, Any]) -> str:
    return (
        "- c(x, y) = 0.05 ||x - y||^2 summed over pixels, averaged over the test images "
        "[code, l2sq]; the VAE reconstructs from its posterior mean. Lower is better."
    )


def _cost_celeba(spec: OutputSpec, payload: dict[str, Any]) -> str:
    return (
        "- c(x, y) = 0.05 ||x - y||^2 summed over pixels (images in [-1, 1]), averaged over "
        "the test images [code, l2sq]; the VAE reconstructs from its posterior mean."
    )


def _mnist_frechet(spec: OutputSpec, payload: dict[str, Any]) -> str:
    classifier = payload["mnist_classifier"]
    return (
        f"- MNIST Fréchet score (ours; the paper has no MNIST FID): Fréchet distance of "
        f"LeNet penultimate features, {classifier['num_samples']:,} samples vs "
        f"{classifier['num_reference_test_images']:,} test images; classifier test accuracy "
        f"{fmt(classifier['test_accuracy'], '.4f')} "
        f"({classifier['epochs']} epochs on {classifier['train_images']:,} images; weights "
        f"sha256 {classifier['weights_sha256'][:12]}). "
        "Lower is better; 0 for two halves of the test set up to sampling noise."
    )


def _curves(spec: OutputSpec, payload: dict[str, Any]) -> str:
    name = f"{spec.name}_training_curves.png"
    return f"- Training curves: [{name}]({name})."


def _data_celeba(spec: OutputSpec, payload: dict[str, Any]) -> str:
    return (
        f"- Data: {payload['split']}. Real test images' sharpness: ours "
        f"{fmt(payload['test_images_sharpness'], '.2e')}, code's "
        f"{fmt(payload['test_images_sharpness_code'], '.2e')}."
    )


def _sharpness(spec: OutputSpec, payload: dict[str, Any]) -> str:
    return sharpness_note(payload["num_samples"])


def _fid_figure(spec: OutputSpec, payload: dict[str, Any]) -> str:
    fid = payload["fid"]
    if "reason" in fid:
        return f"- FID: null ({fid['reason']})."
    return (
        f"- FID: {fid['features']} features"
        f"{'' if fid['comparable_to_paper'] else ' (NOT comparable to the paper)'}; "
        f"real images: {payload['real_images']['source']}."
    )


def _fid_table(spec: OutputSpec, payload: dict[str, Any]) -> str:
    fid = payload["fid"]
    if "reason" in fid:
        return f"- **FID: n/a** -- {fid['reason']}"
    if fid["comparable_to_paper"]:
        return (
            f"- FID features: pool_3 of the graph `{fid['graph']}` (the paper's protocol "
            "when it is TTUR's inception-2015-12-05 classify_image_graph_def.pb)."
        )
    return f"- FID features: {fid['features']} (NOT comparable to the paper's numbers)."


def _samples_table(spec: OutputSpec, payload: dict[str, Any]) -> str:
    real = payload["real_images"]
    return (
        f"- Samples per model: {payload['num_samples']:,} (seed {payload['seeds']['samples']}); "
        f"real images: {real['source']}; models' FID reference: "
        f"{real['reference_size']:,} real images; true data: "
        f"{real['true_data_set_sizes'][0]:,} vs {real['true_data_set_sizes'][1]:,}."
    )


def _training_table(spec: OutputSpec, payload: dict[str, Any]) -> str:
    models = payload["models"]
    epochs = ", ".join(
        f"{MODEL_LABELS[n]} {models[n]['epochs']} (paper {models[n]['paper_epochs']})"
        for n in models
    )
    train_sizes = sorted({f"{m['train_size']:,}" for m in models.values()})
    return (
        f"- Training: epochs {epochs}; {' / '.join(train_sizes)} train images; "
        f"training seed {payload['seeds']['training']}."
    )


# The notes a spec can ask for (`OutputSpec.notes`), by name.
_NOTES = {
    "cost_mnist": _cost_mnist,
    "cost_celeba": _cost_celeba,
    "mnist_frechet": _mnist_frechet,
    "curves": _curves,
    "data_celeba": _data_celeba,
    "sharpness": _sharpness,
    "fid_figure": _fid_figure,
    "fid_table": _fid_table,
    "samples_table": _samples_table,
    "training_table": _training_table,
}
