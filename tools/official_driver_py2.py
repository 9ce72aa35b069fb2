# ruff: noqa: B905, UP004, UP010, UP031, NPY002  (Python 2.7 code; the code's own np.random)
"""Run the official WAE code (tolstikhin/wae @ 6351565) and record every step. Python 2.7.

    python2.7 official_driver_py2.py SPEC.json

Run by tools/compare_official.py in the environment of tools/official_env.py; not imported
by Python 3. SPEC: {"code_dir": the official files, "jobs": [...]}; each job builds the
official graph `wae.WAE(opts)` in a fresh tf.Graph from the code's own configs.py
(config_mnist or config_celebA) with the job's "opts" overrides (reduced widths, z_test,
batch size, ...), then runs the code's own loop, unmodified:
  "pretrain": WAE.pretrain_encoder(data) (wae.py:429-452), stopped after "max_steps";
  "train": WAE.train(data) (wae.py:498-762) for opts['epoch_num'] epochs.
Only the session's `run` is wrapped: it records what the code feeds and fetches, snapshots
every variable (after the initialiser, before the first training step, at the end), and
feeds the encoder's input noise (models.py:8-16 add_noise, an in-graph
tf.truncated_normal) with values drawn here, so that Python 3 can replay the same noise.
Everything a job records goes to its "out" .npz.
"""

from __future__ import absolute_import, division, print_function

import copy
import json
import os
import sys
import time

import numpy as np


class StopAfterSteps(Exception):
    """Raised by the recorder once a pretraining job has run its steps."""


class Data(object):
    """What WAE.train and WAE.pretrain_encoder read of the code's DataHandler."""

    def __init__(self, images):
        self.data = images
        self.test_data = images
        self.num_points = len(images)


def truncated_normal(rng, shape, stddev):
    """tf.truncated_normal's distribution: N(0, stddev^2) redrawn outside 2 stddev."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * stddev).astype(np.float32)


class Recorder(object):
    """Wraps `model.sess.run`: records each call of the code's train and pretrain loops."""

    def __init__(self, tf, model, noise_tensor, noise_rng, max_pretrain_steps):
        self.tf, self.model, self.noise_tensor = tf, model, noise_tensor
        self.noise_rng = noise_rng
        self.max_pretrain_steps = max_pretrain_steps
        self.real_run = model.sess.run
        self.record = {}
        self.counts = {"pretrain": 0, "ae": 0, "adversary": 0}
        self.before_training_done = False

    def snapshot(self, phase):
        variables = [
            v for v in self.tf.global_variables() if not v.name.startswith("leastGaussian2d")
        ]
        values = self.real_run(variables)
        for variable, value in zip(variables, values):
            self.record["var/%s/%s" % (phase, variable.name)] = value

    def kind(self, fetches):
        model = self.model
        if fetches is model.init:
            return "init"
        if fetches is model.blurriness:
            return "blurriness"
        if isinstance(fetches, (list, tuple)) and fetches:
            first = fetches[0]
            if model.pretrain_opt is not None and first is model.pretrain_opt:
                return "pretrain"
            if first is model.ae_opt:
                return "ae"
            if model.z_adv_opt is not None and first is model.z_adv_opt:
                return "adversary"
        return "other"

    def __call__(self, fetches, feed_dict=None, *args, **kwargs):
        model = self.model
        kind = self.kind(fetches)
        if kind == "blurriness" and not self.before_training_done:
            # wae.py:533, after the initialiser and the pretraining, before the first step.
            self.snapshot("before_training")
            self.before_training_done = True
        if kind not in self.counts:
            result = self.real_run(fetches, feed_dict, *args, **kwargs)
            if kind == "init":
                self.snapshot("init")
            return result
        step = self.counts[kind]
        feed = dict(feed_dict)
        images = np.asarray(feed[model.sample_points], dtype=np.float32)
        noise = truncated_normal(self.noise_rng, images.shape, 0.01)  # models.py:12
        feed[self.noise_tensor] = noise
        start = time.time()
        result = self.real_run(fetches, feed, *args, **kwargs)
        seconds = time.time() - start
        prefix = "%s/%d/" % (kind, step)
        self.record[prefix + "images"] = images
        self.record[prefix + "prior"] = np.asarray(feed[model.sample_noise], np.float32)
        self.record[prefix + "noise"] = noise
        self.record[prefix + "seconds"] = np.float64(seconds)  # the session call alone
        if model.lr_decay in feed:
            self.record[prefix + "decay"] = np.float64(feed[model.lr_decay])
        if kind == "pretrain":
            self.record[prefix + "loss"] = np.float64(result[1])
        elif kind == "ae":
            for name, value in zip(("loss", "reconstruction", "penalty"), result[1:]):
                self.record[prefix + name] = np.float64(value)
        else:
            self.record[prefix + "loss"] = np.float64(result[1])
        self.counts[kind] = step + 1
        if kind == "pretrain" and step + 1 >= self.max_pretrain_steps:
            raise StopAfterSteps()
        return result


def run_job(tf, configs, wae, job):
    base = configs.config_mnist if job["dataset"] == "mnist" else configs.config_celebA
    opts = copy.deepcopy(base)
    opts.update(
        verbose=False,
        print_every=10**9,  # no debug plots (wae.py:654)
        save_every_epoch=10**9,  # no checkpoints inside the loop (wae.py:560)
        work_dir=job["work_dir"],
    )
    opts.update(job["opts"])
    images = np.load(job["images"])
    opts["plot_num_pics"] = min(opts["plot_num_pics"], len(images))
    for sub in ("", "checkpoints"):
        path = os.path.join(opts["work_dir"], sub)
        if not os.path.isdir(path):
            os.makedirs(path)
    np.random.seed(job["seed"])  # the code's batches and prior draws (wae.py:435-438, 573-576)
    with tf.Graph().as_default():
        tf.set_random_seed(job["seed"])
        model = wae.WAE(opts, train_size=len(images))
        # The encoder's input noise: the one truncated normal inside the tf.cond of add_noise.
        noise_ops = [
            op
            for op in tf.get_default_graph().get_operations()
            if op.type == "TruncatedNormal" and "cond" in op.name.split("/")[0]
        ]
        assert len(noise_ops) == 1, [
            job["kind"],
            job["dataset"],
            opts["e_noise"],
            opts["epoch_num"],
        ] + [
            op.name
            for op in tf.get_default_graph().get_operations()
            if op.type == "TruncatedNormal"
        ]
        noise_tensor = tf.get_default_graph().get_tensor_by_name(
            noise_ops[0].name.rsplit("/", 1)[0] + ":0"
        )
        recorder = Recorder(
            tf,
            model,
            noise_tensor,
            np.random.RandomState(job["seed"] + 1),
            job.get("max_steps", 10**9),
        )
        model.sess.run = recorder  # the only change: the session records and feeds noise
        data = Data(images)
        if job["kind"] == "pretrain":
            recorder.real_run(model.init)
            recorder.snapshot("init")
            try:
                model.pretrain_encoder(data)
            except StopAfterSteps:
                pass
        else:
            model.train(data)
        recorder.snapshot("final")
        n_params = sum(
            int(np.prod(v.get_shape().as_list()))
            for v in tf.trainable_variables()
            if v.name.startswith(("encoder/", "generator/"))
        )
        recorder.record["autoencoder_parameters"] = np.int64(n_params)
        model.sess.close()
    np.savez(job["out"], **recorder.record)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    sys.path.insert(0, spec["code_dir"])
    import tensorflow as tf

    tf.logging.set_verbosity(tf.logging.ERROR)
    import configs
    import wae

    for job in spec["jobs"]:
        run_job(tf, configs, wae, job)


if __name__ == "__main__":
    main()
