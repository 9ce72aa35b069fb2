"""Our train step on JAX against a PyTorch reference of the same nets and loss, in one run.

For each paper net (MNIST 28x28x1 and CelebA 64x64x3 [paper, App. C], batch 100) and
precision (float32, mixed_bfloat16) this times, on the same device and in the same process:

  ours           `model.fit` of `wae_tf.models.WAE` (the project's train step, jitted by
                 Keras on JAX) on device-resident batches, after warm-up;
  torch eager    the same architecture, loss and Adam written directly in PyTorch;
  torch.compile  that PyTorch loss compiled with `torch.compile` (forward and backward;
                 Adam's step stays eager, fused on CUDA),

in interleaved rounds (so machine load hits all three alike), and prints images/s (best
round) and the ratio ours / torch.compile (issue 6's target: >= 1.0 on both nets).

The models are WAE-MMD by default (Algorithm 2, IMQ kernel) and optionally WAE-GAN
(Algorithm 1: AE step, then the adversary step on codes from the updated encoder). Both
steps include prior draws and the truncated-normal input noise, as ours do.

Runs where TensorFlow is absent (the GPU host: JAX + PyTorch) and on CPU:

    KERAS_BACKEND=jax python benchmarks/gpu_train_step.py                 # GPU host
    KERAS_BACKEND=jax python benchmarks/gpu_train_step.py --nets=mnist --steps=3 --warmup=1
    ... --json_out=bench.json      # also write the numbers and the environment as JSON

Bfloat16 follows Keras's mixed policy on both sides: convolutions and dense layers compute
in bfloat16 with float32 weights; the codes, the images and every loss term are float32.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # the GPU host has no TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX grabs 75% of the GPU by default; leave room for PyTorch in the same process.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from absl import app, flags  # noqa: E402
from torch import nn  # noqa: E402

from wae_tf import losses  # noqa: E402
from wae_tf.configs import Config, get_config  # noqa: E402
from wae_tf.models import build_model  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("nets", ["mnist", "celeba"], "Paper nets to time: mnist, celeba.")
flags.DEFINE_list(
    "precisions", ["float32", "mixed_bfloat16"], "Precisions: float32, mixed_bfloat16."
)
flags.DEFINE_list("models", ["wae_mmd"], "Models: wae_mmd, wae_gan.")
flags.DEFINE_integer("batch_size", 100, "Images per step [paper, App. C: 100].", lower_bound=2)
flags.DEFINE_integer("steps", 50, "Timed steps per round and contender.", lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed steps (compilation) per contender.", lower_bound=1)
flags.DEFINE_integer("rounds", 2, "Interleaved timing rounds; the best is reported.", lower_bound=1)
flags.DEFINE_integer(
    "steps_per_execution", 1, "Keras fit's steps_per_execution for ours.", lower_bound=1
)
flags.DEFINE_enum(
    "torch_compile_mode",
    "default",
    ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
    "torch.compile mode of the reference.",
)
flags.DEFINE_bool("torch_channels_last", False, "Use channels_last memory format in PyTorch.")
flags.DEFINE_string("json_out", None, "Also write the results and the environment here.")

NUM_DEVICE_BATCHES = 4  # distinct batches kept on the device and cycled


# ==========================================================================================
# Ours: the project's train step through `model.fit`.
# ==========================================================================================
def _device_batches(config: Config, batch_size: int) -> list[np.ndarray]:
    """Random images in the config's pixel range, NHWC float32 (speed does not depend on
    the pixels); the same NumPy arrays feed both frameworks."""
    rng = np.random.default_rng(0)
    low = 0.0 if config.pixel_range == "unit" else -1.0
    shape = (batch_size, *config.image_shape)
    return [rng.uniform(low, 1.0, shape).astype("float32") for _ in range(NUM_DEVICE_BATCHES)]


def _cycle(batches) -> Iterator:
    while True:
        for batch in batches:
            yield (batch,)


def _block(value) -> None:
    keras.ops.convert_to_numpy(value)  # waits for the device


class Ours:
    """`model.fit` on batches already on the device (a generator of device arrays: Keras
    keeps them where they are instead of copying NumPy slices every step)."""

    name = "ours"

    def __init__(self, config: Config, precision: str, batches: list[np.ndarray]):
        keras.mixed_precision.set_global_policy(precision)
        try:
            self.model = build_model(config)
            self.model.compile(steps_per_epoch=600, steps_per_execution=FLAGS.steps_per_execution)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        device_batches = [keras.ops.convert_to_tensor(b) for b in batches]
        self.data = _cycle(device_batches)

    def run(self, steps: int) -> None:
        steps = max(steps // FLAGS.steps_per_execution, 1) * FLAGS.steps_per_execution
        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0)
        _block(self.model.trainable_variables[0].value)


# ==========================================================================================
# The PyTorch reference: the same architecture [paper, App. C] and loss, NCHW.
# ==========================================================================================
def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Module):
    """Conv2d with TensorFlow SAME padding (asymmetric for 5x5 stride 2)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int):
        super().__init__()
        before, after = _same_padding(size, kernel, stride)
        self.pad = None if before == after else (before, after, before, after)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=before if self.pad is None else 0)

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.conv(x)


def _up_conv(cin: int, cout: int, kernel: int) -> nn.ConvTranspose2d:
    """Transposed conv, stride 2, output = 2 x input (TensorFlow SAME's output size)."""
    padding = (kernel - 1) // 2  # 4 -> 1, 5 -> 2
    output_padding = 2 - kernel + 2 * padding  # 4 -> 0, 5 -> 1
    return nn.ConvTranspose2d(cin, cout, kernel, 2, padding, output_padding)


def _bn(channels: int, config: Config) -> nn.Module:
    # Keras momentum 0.9 (moving-average decay) is PyTorch momentum 0.1.
    if not config.batch_norm:
        return nn.Identity()
    return nn.BatchNorm2d(channels, eps=config.bn_epsilon, momentum=1.0 - config.bn_momentum)


class TorchEncoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        size, cin, blocks = config.image_shape[0], config.image_shape[-1], []
        for filters in config.encoder_filters:
            blocks += [
                _SameConv(cin, filters, config.kernel_size, 2, size),
                _bn(filters, config),
                nn.ReLU(),
            ]
            size, cin = math.ceil(size / 2), filters
        self.blocks = nn.Sequential(*blocks)
        self.codes = nn.Linear(size * size * cin, config.z_dim)

    def forward(self, x):
        return self.codes(torch.flatten(self.blocks(x), 1))


class TorchDecoder(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.size, self.width = config.decoder_initial_size, config.decoder_dense_filters
        self.fc = nn.Linear(config.z_dim, self.size * self.size * self.width)
        blocks, cin = [], self.width
        for filters in config.decoder_filters:
            blocks += [_up_conv(cin, filters, config.kernel_size), _bn(filters, config), nn.ReLU()]
            cin = filters
        # Stride-1 transposed conv == SAME conv with the flipped kernel: same FLOPs.
        blocks.append(nn.Conv2d(cin, config.image_shape[-1], config.kernel_size, padding="same"))
        blocks.append(nn.Sigmoid() if config.pixel_range == "unit" else nn.Tanh())
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z):
        x = F.relu(self.fc(z)).view(-1, self.width, self.size, self.size)
        return self.blocks(x)


class TorchAdversary(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        layers, width = [], config.z_dim
        for _ in range(config.adversary_layers):
            layers += [nn.Linear(width, config.adversary_units), nn.ReLU()]
            width = config.adversary_units
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


def _torch_mmd_imq(qz, pz, pz_scale: float):
    """losses.mmd_penalty (IMQ) written in PyTorch, term for term."""
    n = qz.shape[0]

    def sq_dist(a, b):
        return (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T

    d_qq, d_pp, d_qp = sq_dist(qz, qz), sq_dist(pz, pz), sq_dist(qz, pz)
    off_diagonal = 1.0 - torch.eye(n, device=qz.device, dtype=qz.dtype)
    base, total = 2.0 * qz.shape[1] * pz_scale**2, 0.0
    for s in losses.IMQ_SCALES:
        c = base * s
        within = ((c / (c + d_qq) + c / (c + d_pp)) * off_diagonal).sum() / (n * n - n)
        total = total + within - 2.0 * (c / (c + d_qp)).sum() / (n * n)
    return total


def _truncated_normal(shape, stddev: float, device) -> torch.Tensor:
    """N(0, stddev^2) cut at 2 stddev, by inverting the CDF (no resampling loop)."""
    low = 0.5 * (1.0 + math.erf(-2.0 / math.sqrt(2.0)))
    u = torch.empty(shape, device=device).uniform_(low, 1.0 - low)
    return stddev * math.sqrt(2.0) * torch.erfinv(2.0 * u - 1.0)


class TorchReference:
    """WAE-MMD / WAE-GAN train step in PyTorch, eager or `torch.compile`d."""

    def __init__(self, config: Config, precision: str, batches, device, compiled: bool):
        self.config, self.device = config, device
        self.name = "torch.compile" if compiled else "torch eager"
        self.autocast = precision == "mixed_bfloat16"
        fmt = torch.channels_last if FLAGS.torch_channels_last else torch.contiguous_format
        self.encoder = TorchEncoder(config).to(device, memory_format=fmt)
        self.decoder = TorchDecoder(config).to(device, memory_format=fmt)
        self.adversary = TorchAdversary(config).to(device) if config.penalty == "gan" else None
        fused = {"fused": True} if device.type == "cuda" else {}
        betas = (config.adam_beta1, config.adam_beta2)
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.ae_adam = torch.optim.Adam(params, config.learning_rate, betas, eps=1e-8, **fused)
        if self.adversary is not None:
            self.adversary_adam = torch.optim.Adam(
                self.adversary.parameters(), config.adversary_learning_rate, betas, 1e-8, **fused
            )
        self.batches = [
            torch.from_numpy(b).permute(0, 3, 1, 2).contiguous(memory_format=fmt).to(device)
            for b in batches
        ]
        self.ae_loss, self.adversary_loss = self._autoencoder_loss, self._adversary_loss
        if compiled:
            self.ae_loss = torch.compile(self.ae_loss, mode=FLAGS.torch_compile_mode)
            self.adversary_loss = torch.compile(self.adversary_loss, mode=FLAGS.torch_compile_mode)
        self.index = 0

    def _networks(self, module, x):
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
            out = module(x)
        return out.float()  # codes, images and logits are float32, as in ours

    def _logits(self, z):
        logits = self._networks(self.adversary, z)
        if self.config.log_prior_trick:
            d, s2 = z.shape[1], self.config.pz_scale**2
            logits = (
                logits
                - (z * z).sum(1, keepdim=True) / (2 * s2)
                - 0.5 * d * math.log(2 * math.pi * s2)
            )
        return logits

    def _autoencoder_loss(self, x, noisy, pz):
        qz = self._networks(self.encoder, noisy)
        reconstruction = (
            self.config.reconstruction_scale
            * ((x - self._networks(self.decoder, qz)) ** 2).sum((1, 2, 3)).mean()
        )
        if self.adversary is None:
            penalty = _torch_mmd_imq(qz, pz, self.config.pz_scale)
        else:
            logits = self._logits(qz)
            penalty = (F.softplus(logits) - logits).mean()  # -log D(z~)
        return reconstruction + self.config.penalty_weight * penalty

    def _adversary_loss(self, noisy, pz):
        with torch.no_grad():  # codes from the updated encoder, no gradient to it
            qz = self._networks(self.encoder, noisy)
        prior, encoded = self._logits(pz), self._logits(qz)
        return self.config.penalty_weight * (
            (F.softplus(prior) - prior).mean() + F.softplus(encoded).mean()
        )

    def _step(self) -> None:
        x = self.batches[self.index % len(self.batches)]
        self.index += 1
        c = self.config
        pz = c.pz_scale * torch.randn(x.shape[0], c.z_dim, device=self.device)
        noisy = x + _truncated_normal(x.shape, c.input_noise_stddev, self.device)
        self.ae_adam.zero_grad(set_to_none=True)
        self.ae_loss(x, noisy, pz).backward()
        self.ae_adam.step()
        if self.adversary is not None:
            self.adversary_adam.zero_grad(set_to_none=True)
            self.adversary_loss(noisy, pz).backward()
            self.adversary_adam.step()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self._step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()


# ==========================================================================================
# Timing and the table.
# ==========================================================================================
def _time(contender, steps: int) -> float:
    start = time.perf_counter()
    contender.run(steps)
    return time.perf_counter() - start


def _bench_one(net: str, model: str, precision: str, device) -> dict:
    config = get_config(net, model).replace(batch_size=FLAGS.batch_size, pretrain_encoder=False)
    batches = _device_batches(config, FLAGS.batch_size)
    makers: dict[str, Callable] = {
        "ours": lambda: Ours(config, precision, batches),
        "torch eager": lambda: TorchReference(config, precision, batches, device, False),
        "torch.compile": lambda: TorchReference(config, precision, batches, device, True),
    }
    contenders, errors, seconds = {}, {}, {}
    for name, make in makers.items():
        start = time.perf_counter()
        try:
            contenders[name] = make()
            contenders[name].run(FLAGS.warmup)
        except Exception as error:  # report and go on: one failing contender is a result
            errors[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            contenders.pop(name, None)
        print(
            f"  {net}/{model}/{precision}: {name} built and warmed up in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
    for round_index in range(FLAGS.rounds):
        for name, contender in contenders.items():
            elapsed = _time(contender, FLAGS.steps)
            seconds.setdefault(name, []).append(elapsed)
            print(
                f"  round {round_index + 1}: {name:13s} {FLAGS.steps * FLAGS.batch_size / elapsed:9.1f} images/s",
                flush=True,
            )
    images_per_s = {
        name: FLAGS.steps * FLAGS.batch_size / min(times) for name, times in seconds.items()
    }
    return {
        "net": net,
        "model": model,
        "precision": precision,
        "images_per_s": images_per_s,
        "seconds_per_round": seconds,
        "errors": errors,
    }


def _environment(device) -> dict:
    env = {
        "keras_backend": keras.backend.backend(),
        "keras": keras.__version__,
        "torch": torch.__version__,
        "torch_device": str(device),
        "torch_threads": torch.get_num_threads(),
        # TF32 changes float32 speed on Ampere/Hopper: record what each side used.
        "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "flags": {
            name: FLAGS[name].value
            for name in (
                "nets",
                "precisions",
                "models",
                "batch_size",
                "steps",
                "warmup",
                "rounds",
                "steps_per_execution",
                "torch_compile_mode",
                "torch_channels_last",
            )
        },
    }
    if keras.backend.backend() == "jax":
        import jax

        env["jax"] = jax.__version__
        env["jax_default_matmul_precision"] = str(jax.config.jax_default_matmul_precision)
        env["jax_devices"] = [str(d) for d in jax.devices()]
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cell(ips: dict, name: str, width: int) -> str:
    return f"{ips[name]:{width}.1f}" if name in ips else f"{'n/a':>{width}s}"


def _ratio(ips: dict, other: str, width: int) -> str:
    if "ours" in ips and other in ips:
        return f"{ips['ours'] / ips[other]:{width}.2f}x"
    return f"{'n/a':>{width + 1}s}"


def _table(results: list[dict]) -> str:
    header = (
        f"{'net':7s} {'model':8s} {'precision':15s} {'ours':>10s} {'torch eager':>12s} "
        f"{'torch.compile':>14s} {'ours/compile':>13s} {'ours/eager':>11s}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        ips = r["images_per_s"]
        lines.append(
            f"{r['net']:7s} {r['model']:8s} {r['precision']:15s} {_cell(ips, 'ours', 10)} "
            f"{_cell(ips, 'torch eager', 12)} {_cell(ips, 'torch.compile', 14)} "
            f"{_ratio(ips, 'torch.compile', 12)} {_ratio(ips, 'torch eager', 10)}"
        )
        for name, error in r["errors"].items():
            lines.append(f"    {name} failed: {error}")
    lines.append(
        f"images/s: best of the rounds; batch {FLAGS.batch_size}; ratio > 1 means ours is faster."
    )
    return "\n".join(lines)


def _check_flags() -> None:
    for value, allowed, flag in (
        (FLAGS.nets, ("mnist", "celeba"), "nets"),
        (FLAGS.precisions, ("float32", "mixed_bfloat16"), "precisions"),
        (FLAGS.models, ("wae_mmd", "wae_gan"), "models"),
    ):
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise app.UsageError(f"--{flag}: {bad or 'empty'} not in {', '.join(allowed)}")


def main(argv) -> None:
    del argv
    _check_flags()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    environment = _environment(device)
    print(json.dumps(environment, indent=1), flush=True)
    results = []
    for net in FLAGS.nets:
        for model in FLAGS.models:
            for precision in FLAGS.precisions:
                results.append(_bench_one(net, model, precision, device))
                if FLAGS.json_out:  # after each, so a time-boxed run keeps what it measured
                    _write_json(FLAGS.json_out, {"environment": environment, "results": results})
    print()
    print(_table(results))


def _write_json(path: str, payload: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    app.run(main)
