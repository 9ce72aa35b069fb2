"""Every value of every preset, with its source: the oracle of the preset tests.

Written by hand from the paper and the official code, never from `wae_tf.configs`; the
tests compare `get_config` with it field by field (tests/preset_checks.py). One row pins
one field of a set of presets to one value:
    Row(presets, field, value, source)
Sources:
    "paper App. C.1"                  the paper (Tolstikhin et al., ICLR 2018) section;
    "code configs.py:72"              the official code, github.com/tolstikhin/wae at 6351565;
    "ours: <reason>"                  our choice, with its reason;
    "[?] <reason>"                    recalled or inferred, not stated: kept configurable.
The first word of a source is its tag in README's preset tables (`markdown()`).
Fashion-MNIST has no run in the paper: its presets are MNIST's, only `dataset` differs.

`python tests/preset_table.py` prints README's preset section.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

PAPER, CODE = "paper", "official_code"

# --- The presets, named (dataset, model, variant) ----------------------------------------
M_VAE, M_MMD, M_GAN = (("mnist", m, PAPER) for m in ("vae", "wae_mmd", "wae_gan"))
C_VAE, C_MMD, C_GAN = (("celeba", m, PAPER) for m in ("vae", "wae_mmd", "wae_gan"))
MO_MMD, MO_GAN = (("mnist", m, CODE) for m in ("wae_mmd", "wae_gan"))
CO_MMD, CO_GAN = (("celeba", m, CODE) for m in ("wae_mmd", "wae_gan"))

MNIST_PAPER = (M_VAE, M_MMD, M_GAN)
CELEBA_PAPER = (C_VAE, C_MMD, C_GAN)
MNIST_CODE = (MO_MMD, MO_GAN)
CELEBA_CODE = (CO_MMD, CO_GAN)
MNIST = MNIST_PAPER + MNIST_CODE
CELEBA = CELEBA_PAPER + CELEBA_CODE
PAPER_PRESETS = MNIST_PAPER + CELEBA_PAPER
CODE_PRESETS = MNIST_CODE + CELEBA_CODE
ALL = MNIST + CELEBA
VAES = (M_VAE, C_VAE)
MMDS = (M_MMD, MO_MMD, C_MMD, CO_MMD)
GANS = (M_GAN, MO_GAN, C_GAN, CO_GAN)
WAES = MMDS + GANS
NOT_GANS = VAES + MMDS

# Fashion-MNIST: MNIST's presets with dataset="fashion_mnist" (get_config's own rule).
FASHION = {("fashion_mnist", m, v): ("mnist", m, v) for (_, m, v) in MNIST}
# Every preset get_config builds, in the order of README's tables.
PRESETS: tuple[tuple[str, str, str], ...] = ALL + tuple(FASHION)
# get_config refuses these: the official code has no VAE.
NO_PRESET = (("mnist", "vae", CODE), ("celeba", "vae", CODE), ("fashion_mnist", "vae", CODE))


class Row(NamedTuple):
    presets: tuple[tuple[str, str, str], ...]
    field: str
    value: Any
    source: str


UNUSED_BY_VAE = "ours: unused by the VAE; the Config default"
UNUSED_NO_ADVERSARY = "ours: unused without an adversary; the Config default"
FASHION_SOURCE = "ours: Fashion-MNIST reuses MNIST's preset (the paper has no such run)"

ROWS: tuple[Row, ...] = (
    # --- Which run -----------------------------------------------------------------------
    Row(MNIST, "dataset", "mnist", "paper Sec. 4, Figure 2 (MNIST)"),
    Row(CELEBA, "dataset", "celeba", "paper Sec. 4, Figure 3 and Table 1 (CelebA)"),
    Row(VAES, "model", "vae", "paper Sec. 4 (the VAE baseline)"),
    Row(MMDS, "model", "wae_mmd", "paper Algorithm 2"),
    Row(GANS, "model", "wae_gan", "paper Algorithm 1"),
    Row(PAPER_PRESETS, "variant", PAPER, "ours: the preset follows the paper"),
    Row(CODE_PRESETS, "variant", CODE, "ours: the preset follows the code's configs.py"),
    # --- Data ----------------------------------------------------------------------------
    Row(MNIST, "image_shape", (28, 28, 1), "paper App. C.1; code datahandler.py:22"),
    Row(CELEBA, "image_shape", (64, 64, 3), "paper App. C.2; code datahandler.py:24"),
    Row(MNIST, "pixel_range", "unit", "paper App. C.1 (sigmoid); code configs.py:67"),
    Row(CELEBA, "pixel_range", "symmetric", "paper App. C.2 (tanh); code configs.py:14"),
    Row(
        MNIST_PAPER,
        "split_rule",
        "standard",
        "ours: the distributed 60k/10k files; the code pools them (datahandler.py:437-470)",
    ),
    Row(MNIST_CODE, "split_rule", "official_code", "code datahandler.py:437-470"),
    Row(
        CELEBA,
        "split_rule",
        "official_code",
        "code datahandler.py:592-608 (the split behind the paper's numbers)",
    ),
    Row(
        PAPER_PRESETS,
        "batch_order",
        "epoch_permutation",
        "ours: one permutation per epoch, so a resumed run is exact",
    ),
    Row(CODE_PRESETS, "batch_order", "independent_draws", "code wae.py:573-576"),
    # --- Networks ------------------------------------------------------------------------
    Row(MNIST, "z_dim", 8, "paper App. C.1; code configs.py:99"),
    Row(CELEBA, "z_dim", 64, "paper App. C.2; code configs.py:47"),
    Row(MNIST, "kernel_size", 4, "paper App. C.1; code configs.py:82"),
    Row(CELEBA, "kernel_size", 5, "paper App. C.2; code configs.py:30"),
    Row(
        MNIST,
        "encoder_filters",
        (128, 256, 512, 1024),
        "paper App. C.1; code configs.py:87-88, models.py:113-116",
    ),
    Row(
        CELEBA,
        "encoder_filters",
        (128, 256, 512, 1024),
        "paper App. C.2; code configs.py:35-36, models.py:113-116",
    ),
    Row(
        MNIST,
        "decoder_filters",
        (512, 256),
        "paper App. C.1; code configs.py:91-92, models.py:225-230",
    ),
    Row(
        CELEBA,
        "decoder_filters",
        (512, 256, 128),
        "paper App. C.2; code configs.py:39-40, models.py:225-230",
    ),
    Row(MNIST, "decoder_dense_filters", 1024, "paper App. C.1; code configs.py:91, models.py:220"),
    Row(CELEBA, "decoder_dense_filters", 1024, "paper App. C.2; code configs.py:39, models.py:220"),
    Row(MNIST, "decoder_initial_size", 7, "paper App. C.1; code models.py:216-218 (28 / 2^2)"),
    Row(CELEBA, "decoder_initial_size", 8, "paper App. C.2; code models.py:216-218 (64 / 2^3)"),
    Row((M_GAN, MO_GAN), "adversary_units", 512, "paper App. C.1; code configs.py:96"),
    Row((C_GAN,), "adversary_units", 512, "paper App. C.2 (the code has 1024, configs.py:45)"),
    Row((CO_GAN,), "adversary_units", 1024, "code configs.py:45"),
    Row(VAES + (M_MMD, MO_MMD, C_MMD), "adversary_units", 512, UNUSED_NO_ADVERSARY),
    Row((CO_MMD,), "adversary_units", 1024, "ours: unused; the code's value, configs.py:45"),
    Row((M_GAN, MO_GAN), "adversary_layers", 4, "paper App. C.1; code configs.py:97"),
    Row((C_GAN, CO_GAN), "adversary_layers", 4, "paper App. C.2; code configs.py:44"),
    Row(NOT_GANS, "adversary_layers", 4, UNUSED_NO_ADVERSARY),
    Row(
        MNIST,
        "batch_norm",
        True,
        "paper App. C.1 (Conv-BN-ReLU; the VAE has the same nets); code configs.py:79",
    ),
    Row(CELEBA_CODE + (C_MMD, C_GAN), "batch_norm", True, "paper App. C.2; code configs.py:27"),
    Row(
        (C_VAE,),
        "batch_norm",
        False,
        "[?] the CelebA VAE without BN (recalled from the paper, not re-checked)",
    ),
    Row(MNIST, "bn_epsilon", 1e-5, "code configs.py:80, ops.py:22"),
    Row(CELEBA, "bn_epsilon", 1e-5, "code configs.py:28, ops.py:22"),
    Row(MNIST, "bn_momentum", 0.9, "code configs.py:81, ops.py:22 (decay)"),
    Row(CELEBA, "bn_momentum", 0.9, "code configs.py:29, ops.py:22 (decay)"),
    Row(MNIST, "init_stddev", 0.0099999, "code configs.py:77, ops.py:55,94,123"),
    Row(CELEBA, "init_stddev", 0.0099999, "code configs.py:25, ops.py:55,94,123"),
    Row(ALL, "sync_batch_norm", False, "ours: one device; matters only under tf.distribute"),
    # --- Objective -----------------------------------------------------------------------
    Row(MNIST, "pz_scale", 1.0, "paper App. C.1 (N(0, I)); code configs.py:102"),
    Row((C_MMD, C_GAN), "pz_scale", 2.0**0.5, "paper App. C.2 (sigma_z^2 = 2 for the WAEs)"),
    Row(
        (C_VAE,),
        "pz_scale",
        2.0**0.5,
        "[?] inherited from the WAEs: the paper states sigma_z^2 = 2 for the WAE runs only",
    ),
    Row(CELEBA_CODE, "pz_scale", 1.0, "code configs.py:50"),
    Row(
        (M_MMD, M_GAN) + MNIST_CODE,
        "penalty_weight",
        10.0,
        "paper App. C.1 (one lambda for MNIST); code configs.py:105",
    ),
    Row((C_MMD,), "penalty_weight", 100.0, "paper App. C.2; code configs.py:53"),
    Row((C_GAN,), "penalty_weight", 1.0, "paper App. C.2 (the code has 100, configs.py:53)"),
    Row(CELEBA_CODE, "penalty_weight", 100.0, "code configs.py:53"),
    Row(VAES, "penalty_weight", 10.0, UNUSED_BY_VAE),
    Row((M_MMD, MO_MMD), "mmd_kernel", "imq", "code configs.py:104, wae.py:287-309"),
    Row((C_MMD, CO_MMD), "mmd_kernel", "imq", "code configs.py:52, wae.py:287-309"),
    Row(VAES + GANS, "mmd_kernel", "imq", "ours: unused without MMD; the Config default"),
    Row(WAES, "reconstruction_scale", 0.05, "code wae.py:342 (l2sq, configs.py:49 / :101)"),
    Row(VAES, "reconstruction_scale", 0.05, UNUSED_BY_VAE),
    Row((M_GAN, MO_GAN), "log_prior_trick", False, "paper App. C.1 (off); code configs.py:95"),
    Row((C_GAN, CO_GAN), "log_prior_trick", True, "paper App. C.2 (AVB); code configs.py:43"),
    Row(NOT_GANS, "log_prior_trick", False, UNUSED_NO_ADVERSARY),
    Row(
        (C_GAN, CO_GAN),
        "log_prior_constant",
        "official_code",
        "code models.py:352-354 (ours: the exact constant stalls, see README)",
    ),
    Row(
        NOT_GANS + (M_GAN, MO_GAN),
        "log_prior_constant",
        "official_code",
        "ours: unused without the log-prior trick; the Config default",
    ),
    Row(
        (M_GAN, C_GAN),
        "adversary_fresh_input_noise",
        False,
        "ours: one noisy batch per step, as Algorithm 1 reads",
    ),
    Row(
        (MO_GAN, CO_GAN),
        "adversary_fresh_input_noise",
        True,
        "code wae.py:605-611 (a second sess.run), models.py:8-16",
    ),
    Row(VAES + (M_MMD, C_MMD), "adversary_fresh_input_noise", False, UNUSED_NO_ADVERSARY),
    Row(
        (MO_MMD, CO_MMD),
        "adversary_fresh_input_noise",
        True,
        "ours: unused without an adversary; the code's data handling",
    ),
    Row((M_VAE,), "vae_likelihood", "bernoulli", "paper App. C.1 (cross-entropy)"),
    Row((C_VAE,), "vae_likelihood", "gaussian", "paper App. C.2"),
    Row(WAES, "vae_likelihood", "bernoulli", "ours: unused by the WAEs; the Config default"),
    Row(
        (C_VAE,),
        "vae_gaussian_variance",
        0.3,
        "[?] the fixed variance (recalled from the paper, not re-checked)",
    ),
    Row(
        (M_VAE,) + WAES,
        "vae_gaussian_variance",
        0.3,
        "ours: unused without a Gaussian decoder; the Config default",
    ),
    # --- Optimisation --------------------------------------------------------------------
    Row(MNIST, "batch_size", 100, "paper App. C.1; code configs.py:75"),
    Row(CELEBA, "batch_size", 100, "paper App. C.2; code configs.py:23"),
    Row(MNIST, "epochs", 100, "paper App. C.1; code configs.py:76"),
    Row((C_MMD, C_GAN), "epochs", 55, "paper App. C.2 (the code has 50, configs.py:24)"),
    Row((C_VAE,), "epochs", 68, "paper App. C.2"),
    Row(CELEBA_CODE, "epochs", 50, "code configs.py:24"),
    Row(MNIST, "learning_rate", 1e-3, "paper App. C.1; code configs.py:72"),
    Row((C_MMD,), "learning_rate", 1e-3, "paper App. C.2; code configs.py:20 (comment)"),
    Row((C_GAN,), "learning_rate", 3e-4, "paper App. C.2; code configs.py:20 (comment)"),
    Row(
        (C_VAE,),
        "learning_rate",
        1e-4,
        "[?] the CelebA VAE's lr (recalled from the paper, not re-checked)",
    ),
    Row(CELEBA_CODE, "learning_rate", 5e-4, "code configs.py:20"),
    Row((M_GAN, MO_GAN), "adversary_learning_rate", 5e-4, "paper App. C.1; code configs.py:73"),
    Row((C_GAN, CO_GAN), "adversary_learning_rate", 1e-3, "paper App. C.2; code configs.py:21"),
    Row((CO_MMD,), "adversary_learning_rate", 1e-3, "ours: unused; the code's value, :21"),
    Row(VAES + (M_MMD, MO_MMD, C_MMD), "adversary_learning_rate", 5e-4, UNUSED_NO_ADVERSARY),
    Row(MNIST, "adam_beta1", 0.5, "paper App. C; code configs.py:71"),
    Row(CELEBA, "adam_beta1", 0.5, "paper App. C; code configs.py:19"),
    Row(ALL, "adam_beta2", 0.999, "paper App. C; code wae.py:373 (TF1 Adam's default)"),
    Row(
        MNIST,
        "lr_schedule",
        "paper",
        "paper App. C.1; code configs.py:74 'manual', wae.py:542-548",
    ),
    Row(CELEBA_PAPER, "lr_schedule", "paper", "paper App. C.2 (as for MNIST)"),
    Row(CELEBA_CODE, "lr_schedule", "official_code", "code configs.py:22, wae.py:549-552"),
    Row(
        MNIST + CELEBA_PAPER,
        "lr_boundaries",
        (30, 50, 100),
        "paper App. C; code wae.py:543-548 (epoch == 30, 50, 100, 0-based)",
    ),
    Row(
        MNIST + CELEBA_PAPER,
        "lr_factors",
        (0.5, 0.1, 0.01),
        "paper App. C; code wae.py:544-548 (/2, then /5, then /10)",
    ),
    Row(CELEBA_CODE, "lr_boundaries", (30, 50, 100), "ours: unused by the smooth decay"),
    Row(CELEBA_CODE, "lr_factors", (0.5, 0.1, 0.01), "ours: unused by the smooth decay"),
    Row(CELEBA_CODE, "lr_decay_epochs", 50, "code configs.py:24 epoch_num, wae.py:550-552"),
    Row(MNIST + CELEBA_PAPER, "lr_decay_epochs", 50, "ours: unused by the step schedule"),
    # --- Heuristics ----------------------------------------------------------------------
    Row(WAES, "input_noise_stddev", 0.01, "code configs.py:86 / :34, models.py:8-16"),
    Row(VAES, "input_noise_stddev", 0.0, "ours: the WAE heuristics are not the VAE's"),
    Row(WAES, "pretrain_encoder", True, "code configs.py:84 / :32, wae.py:516-519"),
    Row(VAES, "pretrain_encoder", False, "ours: the WAE heuristics are not the VAE's"),
    Row(WAES, "pretrain_steps", 200, "code wae.py:431"),
    Row(VAES, "pretrain_steps", 200, UNUSED_BY_VAE),
    Row((M_MMD, M_GAN) + MNIST_CODE, "pretrain_batch_size", 1000, "code configs.py:85"),
    Row((C_MMD, C_GAN) + CELEBA_CODE, "pretrain_batch_size", 256, "code configs.py:33"),
    Row((M_VAE,), "pretrain_batch_size", 1000, UNUSED_BY_VAE + " (MNIST's)"),
    Row((C_VAE,), "pretrain_batch_size", 256, UNUSED_BY_VAE + " (CelebA's)"),
    Row(WAES, "pretrain_threshold", 0.1, "code wae.py:451"),
    Row(VAES, "pretrain_threshold", 0.1, UNUSED_BY_VAE),
    Row(WAES, "pretrain_learning_rate", None, "code wae.py:379, :406 (the AE's lr, no decay)"),
    Row(VAES, "pretrain_learning_rate", None, UNUSED_BY_VAE),
    Row(WAES, "pretrain_input_noise", True, "code wae.py:445 (is_training), models.py:8-16"),
    Row(VAES, "pretrain_input_noise", True, UNUSED_BY_VAE),
    Row(ALL, "seed", 0, "ours: the code leaves training unseeded; 0 makes runs repeatable"),
)


def rows_of(preset: tuple[str, str, str]) -> list[Row]:
    """The rows that pin `preset` (Fashion-MNIST: MNIST's, with its own `dataset` row)."""
    if preset in FASHION:
        mnist_rows = [r for r in rows_of(FASHION[preset]) if r.field != "dataset"]
        return [Row((preset,), "dataset", "fashion_mnist", FASHION_SOURCE)] + [
            r._replace(presets=(preset,)) for r in mnist_rows
        ]
    return [row for row in ROWS if preset in row.presets]


def expected(preset: tuple[str, str, str]) -> dict[str, Any]:
    """{field: value} of `preset` by the table (a field pinned twice raises)."""
    values: dict[str, Any] = {}
    for row in rows_of(preset):
        if row.field in values:
            raise ValueError(f"{preset}: field {row.field!r} has two rows")
        values[row.field] = row.value
    return values


# --- Learning rates: the code's train loop, epoch by epoch --------------------------------
# Which of the code's schedules each preset follows: "manual" (configs.py:74; the paper's
# App. C steps) or "manual_smooth" (configs.py:22).
CODE_SCHEDULE = {preset: "manual" for preset in MNIST + CELEBA_PAPER} | {
    preset: "manual_smooth" for preset in CELEBA_CODE
}
# Epochs (0-based) probed: both sides of every step, and past the end of each run.
PROBE_EPOCHS = {
    "manual": (0, 29, 30, 31, 49, 50, 51, 99, 100, 101),
    "manual_smooth": (0, 1, 24, 48, 49, 50, 80),
}


def code_decay(schedule: str, epoch: int, epoch_num: int) -> float:
    """The factor on the lr in 0-based `epoch` of the code's train loop (wae.py:538-552).

    "manual": before epoch e's steps, /2 if e == 30, /5 if e == 50, /10 if e == 100
    (wae.py:542-548), so each factor first applies in epoch 30, 50, 100 (0-based).
    "manual_smooth": before every epoch's steps, epoch 0 included, / exp(log(100) /
    epoch_num) (wae.py:549-552). The code stops after epoch_num epochs; past it (ours) the
    lr stays at its end point, lr / 100.
    """
    decay = 1.0
    if schedule == "manual_smooth" and epoch >= epoch_num:
        return 0.01  # ours: held at the decay's end point
    for e in range(epoch + 1):
        if schedule == "manual":
            if e == 30:
                decay = decay / 2.0
            if e == 50:
                decay = decay / 5.0
            if e == 100:
                decay = decay / 10.0
        elif schedule == "manual_smooth":
            decay = decay / math.exp(math.log(100.0) / epoch_num)
        else:
            raise ValueError(f"unknown schedule {schedule!r}")
    return decay


def expected_learning_rates(preset: tuple[str, str, str]) -> dict[str, dict[int, float]]:
    """{"autoencoder" / "adversary": {epoch: lr}} at PROBE_EPOCHS, by the table."""
    values = expected(preset)
    base = FASHION.get(preset, preset)
    schedule = CODE_SCHEDULE[base]
    rates = {"autoencoder": values["learning_rate"]}
    if values["model"] == "wae_gan":
        rates["adversary"] = values["adversary_learning_rate"]
    # The code's smooth decay runs over epoch_num, the number of epochs (wae.py:550).
    epoch_num = values["epochs"]
    return {
        name: {e: lr * code_decay(schedule, e, epoch_num) for e in PROBE_EPOCHS[schedule]}
        for name, lr in rates.items()
    }


# --- README's preset tables, rendered from the rows above ---------------------------------
COLUMNS = (M_VAE, M_MMD, M_GAN, C_VAE, C_MMD, C_GAN, MO_MMD, MO_GAN, CO_MMD, CO_GAN)
MODEL_NAMES = {"vae": "VAE", "wae_mmd": "WAE-MMD", "wae_gan": "WAE-GAN"}
TAGS = {"paper": "p", "code": "c", "ours:": "o", "[?]": "?"}


def _label(preset: tuple[str, str, str]) -> str:
    dataset, model, variant = preset
    prefix = "code " if variant == CODE else ""
    return f"{prefix}{'MNIST' if dataset == 'mnist' else 'CelebA'} {MODEL_NAMES[model]}"


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value == 2.0**0.5:
            return "√2 (σ_z² = 2)"
        short = f"{value:.0e}".replace("e-0", "e-")  # 1e-3, 5e-4
        return short if 0 < value < 0.01 and float(short) == value else f"{value:g}"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, tuple):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return str(value)


def _scope(presets: list) -> str:
    """'MNIST', 'CelebA' or the presets' labels."""
    groups = {
        "MNIST": MNIST,
        "CelebA": CELEBA,
        "WAEs": WAES,
        "WAE-GANs": GANS,
        "WAE-MMDs": MMDS,
        "MNIST WAE-GANs": (M_GAN, MO_GAN),
        "CelebA WAE-GANs": (C_GAN, CO_GAN),
        "MNIST WAE-MMDs": (M_MMD, MO_MMD),
        "CelebA WAE-MMDs": (C_MMD, CO_MMD),
        "step schedule (all but code CelebA)": MNIST + CELEBA_PAPER,
        "code CelebA": CELEBA_CODE,
    }
    for name, group in groups.items():
        if set(presets) == set(group):
            return name
    return ", ".join(_label(p) for p in presets)


def _tag(source: str) -> str:
    return TAGS[source.split()[0]]


def _cell(row: Row) -> str:
    if row.source.startswith("ours: unused"):
        return f"({_format(row.value)})"
    return f"{_format(row.value)} {_tag(row.source)}"


def markdown() -> str:
    """README's section on the presets: every value of every preset, with its source."""
    by_preset = {p: {r.field: r for r in rows_of(p)} for p in COLUMNS}
    fields = list(by_preset[M_MMD])
    named = ("dataset", "model", "variant")  # the columns' names
    differ = [f for f in fields if len({repr(by_preset[p][f].value) for p in COLUMNS}) > 1]
    differ = [f for f in differ if f not in named]
    lines = [
        "## Presets: every value and its source",
        "",
        "`get_config(dataset, model, variant)` builds one preset per paper run (`paper`) and,",
        "for the WAEs, the official code's configuration (`official_code`, `--config=official_code`).",
        "These tables are generated from `tests/preset_table.py` (`python tests/preset_table.py`),",
        "which gives each value its source (paper section, the code's file:line at commit",
        "6351565, or our reason); `tests/test_presets.py` compares every field of every preset",
        "with it, and with this section. Fashion-MNIST's presets are MNIST's. Tags: p = paper,",
        "c = official code, o = ours, ? = not stated by the paper (configurable); (x) = a value",
        "the model does not use.",
        "",
        "| field | " + " | ".join(_label(p) for p in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for field in differ:
        cells = [_cell(by_preset[p][field]) for p in COLUMNS]
        lines.append(f"| `{field}` | " + " | ".join(cells) + " |")
    lines += ["", "The same in every preset:", "", "| field | value | source |", "|---|---|---|"]
    for field in fields:
        if field in differ or field in named:
            continue
        sources: dict[str, list] = {}
        for p in COLUMNS:
            source = by_preset[p][field].source
            if not source.startswith("ours: unused"):
                sources.setdefault(source, []).append(p)
        sources = {
            source if set(ps) == set(COLUMNS) else f"{_scope(ps)}: {source}": ps
            for source, ps in sources.items()
        }
        value = _format(by_preset[M_MMD][field].value)
        lines.append(f"| `{field}` | {value} | {' / '.join(sources)} |")
    lines += [
        "",
        "### Values marked [?] (configurable)",
        "",
        "Not stated by the paper, or recalled and not re-checked; each is a `Config` field:",
        "",
        "| preset | field | value | why |",
        "|---|---|---|---|",
    ]
    for row in ROWS:
        if row.source.startswith("[?]"):
            presets = ", ".join(_label(p) for p in row.presets)
            why = row.source.removeprefix("[?] ")
            lines.append(f"| {presets} | `{row.field}` | {_format(row.value)} | {why} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
