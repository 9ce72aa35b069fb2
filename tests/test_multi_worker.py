"""--distribution=multi_worker with two real workers: two processes on 127.0.0.1 (TF_CONFIG,
free ports) each take half of every global batch; after two steps their weights equal a
single process's two steps on the whole batches.

The workers and the reference are this file run as a script (`__main__`), since a
MultiWorkerMirroredStrategy must be created before TensorFlow starts, and every process
is bounded in time. Runtime: about 30 s on 2 shared CPU cores; the test below that resumes
two workers from a damaged newest checkpoint of the session's tiny run adds about 30 s.

Tolerance: as in tests/test_distribute.py (SGD, so the weight change is the gradient; the
all-reduce adds the same float32 terms in another order), each variable's change agrees to
TOLERANCE x the largest change of that variable or, for variables whose exact gradient is
zero (conv biases before BN: pure rounding noise), of the whole model.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import python_env
from helpers import tiny_mnist_run_flags

REPO_ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 8  # 4 images per worker
STEPS = 2
SGD_LEARNING_RATE = 0.1
TOLERANCE = 3e-4
TIMEOUT_S = 240


def _train_two_steps(out: Path) -> None:
    """Build a tiny WAE-MMD (under the strategy TF_CONFIG describes, if any), take STEPS
    SGD steps on fixed images, and save the weights before and after to `out`."""
    import keras

    from wae_tf import configs, distribute, models, optimizers

    strategy = distribute.make_strategy("multi_worker") if os.environ.get("TF_CONFIG") else None
    config = configs.with_width(configs.get_config("mnist", "wae_mmd"), 4).replace(
        lr_schedule="constant", sync_batch_norm=True
    )
    images = np.random.default_rng(0).random((GLOBAL_BATCH * STEPS, 28, 28, 1), "float32")
    with distribute.scope(strategy):
        model = models.build_model(config)
        model.compile(
            optimizer=keras.optimizers.SGD(SGD_LEARNING_RATE, name=optimizers.AUTOENCODER)
        )
    before = [np.array(v.numpy()) for v in model.weights]
    model.fit(images, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    after = [np.array(v.numpy()) for v in model.weights]
    replicas = strategy.num_replicas_in_sync if strategy else 1
    np.savez(
        out,
        replicas=replicas,
        steps=int(model.optimizer.iterations.numpy()),
        **{f"before_{i}": w for i, w in enumerate(before)},
        **{f"after_{i}": w for i, w in enumerate(after)},
    )


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(out: Path, tf_config: dict | None) -> subprocess.Popen:
    env = python_env()
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, __file__, str(out)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_worker")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = [
        _start(
            folder / f"worker{i}.npz", {"cluster": cluster, "task": {"type": "worker", "index": i}}
        )
        for i in range(2)
    ]
    processes.append(_start(folder / "single.npz", None))
    logs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=TIMEOUT_S)
            logs.append(output)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, log in zip(processes, logs, strict=True):
        assert process.returncode == 0, log[-3000:]
    return {
        name: dict(np.load(folder / f"{name}.npz")) for name in ("worker0", "worker1", "single")
    }


def _weights(run: dict, when: str) -> list[np.ndarray]:
    return [run[f"{when}_{i}"] for i in range(sum(k.startswith(when) for k in run))]


@pytest.mark.slow
def test_two_workers_take_two_steps_as_two_replicas(runs):
    for name in ("worker0", "worker1"):
        assert int(runs[name]["replicas"]) == 2
        assert int(runs[name]["steps"]) == STEPS
    assert int(runs["single"]["replicas"]) == 1


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_process_on_the_whole_batches(runs):
    single = runs["single"]
    for a, b in zip(_weights(single, "before"), _weights(runs["worker0"], "before"), strict=True):
        np.testing.assert_array_equal(a, b)  # same initial weights (same seed)
    deltas = [
        a - b for a, b in zip(_weights(single, "after"), _weights(single, "before"), strict=True)
    ]
    model_scale = max(float(np.abs(d).max()) for d in deltas)
    assert model_scale > 1e-3  # the steps moved the weights
    for name in ("worker0", "worker1"):
        worker_deltas = [
            a - b
            for a, b in zip(
                _weights(runs[name], "after"), _weights(runs[name], "before"), strict=True
            )
        ]
        for i, (want, got) in enumerate(zip(deltas, worker_deltas, strict=True)):
            own = float(np.abs(want).max())
            scale = own if own > 1e-3 * model_scale else model_scale  # rounding-noise variables
            error = float(np.abs(want - got).max())
            assert error <= TOLERANCE * scale, (name, i, error, scale)


# ======================================================================================
# Resuming with a damaged newest checkpoint: the chief decides, the other worker follows
# ======================================================================================


@pytest.mark.slow  # two workers extending the session's 2-epoch tiny run: ~30 s on 2 cores
def test_two_workers_resume_from_the_newest_readable_checkpoint_and_only_the_chief_moves(
    mnist_dir, finished_tiny_run, tmp_path
):
    """Pins that only the chief moves a damaged checkpoint aside (the trainer passes
    move_aside to checkpoints.restore_latest for the chief alone): with every worker
    moving it, the other worker's log says "moved it aside" too, or its rename fails. The
    race between the chief's rename and the other worker's reads is pinned
    deterministically in tests/test_checkpoints.py."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_tiny_run("wae_mmd", epochs=2)[0], workdir)
    newest = workdir / "checkpoints" / "epoch_0002.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated

    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    flags = tiny_mnist_run_flags(mnist_dir, workdir, "wae_mmd", epochs=3, pretrain=False)
    workers = []
    for index in range(2):
        env = python_env(
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "wae_tf.train", *flags, "--distribution=multi_worker"],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=TIMEOUT_S)[1])
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
        assert "Traceback" not in log
        assert f"resuming from {workdir / 'checkpoints' / 'epoch_0001.npz'}" in log
    chief, other = logs
    assert f"{newest} is unreadable" in chief and "moved it aside" in chief
    assert f"{newest} is unreadable" in other and "moved it aside" not in other
    assert "No such file" not in other
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [
        "epoch_0002.npz",  # written again
        "epoch_0002.npz.corrupt",
        "epoch_0003.npz",
    ]
    history = (workdir / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]


if __name__ == "__main__":
    _train_two_steps(Path(sys.argv[1]))
