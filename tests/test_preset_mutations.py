"""Mutation check of the preset tests: no preset value can change unnoticed.

For every field of every preset, `get_config` is patched to return the preset with that
field changed to another value Config accepts, and the two preset checks of
tests/test_presets.py (tests/preset_checks.py) run on it in-process:
- the table comparison must report that very field;
- the learning-rate check must fail too when the field sets a learning rate the preset's
  optimizers use (the table marks unused values "ours: unused ...").
A mutation that passes is a survivor; the test prints them all and none may survive.
"""

from __future__ import annotations

import dataclasses
import typing

import preset_checks
import preset_table
import pytest

from wae_tf import configs

# The fields that set a learning rate of the optimizers (wae_tf/optimizers.py).
LR_FIELDS = {
    "learning_rate",
    "adversary_learning_rate",
    "lr_schedule",
    "lr_boundaries",
    "lr_factors",
    "lr_decay_epochs",
}


def _changed(value):
    """Another value of the same type: a float * 1.5, an int + 1, a bool negated, ..."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1]
    if isinstance(value, float):
        return [value * 1.5 if value else 0.5]
    if value is None:
        return [1e-3]
    return []


def mutations(config: configs.Config):
    """(field, overrides) pairs: every field changed to every tried value Config accepts.

    A tuple gets one mutation per element; a choice field every other choice. Where
    Config ties two fields (the decoder must land on the image size), the partner
    changes with it.
    """
    hints = typing.get_type_hints(configs.Config)
    for field in dataclasses.fields(config):
        name, value = field.name, getattr(config, field.name)
        choices = typing.get_args(hints[name])
        if hints[name] is not bool and choices and all(isinstance(c, str) for c in choices):
            candidates = [{name: c} for c in choices if c != value]
        elif isinstance(value, tuple):
            candidates = [
                {name: value[:i] + (new,) + value[i + 1 :]}
                for i, item in enumerate(value)
                for new in _changed(item)
            ]
        else:
            candidates = [{name: new} for new in _changed(value)]
        if name == "image_shape":
            h, w, c = value
            candidates.append(
                {name: (2 * h, 2 * w, c), "decoder_initial_size": 2 * config.decoder_initial_size}
            )
        if name == "decoder_initial_size":
            candidates.append({name: 2 * value, "decoder_filters": config.decoder_filters[1:]})
        valid = []
        for overrides in candidates:
            try:
                config.replace(**overrides)
            except ValueError:
                continue
            valid.append(overrides)
        yield name, valid


def _patched_get_config(monkeypatch, preset, overrides):
    real = configs.get_config

    def get_config(dataset, model, variant="paper"):
        config = real(dataset, model, variant)
        return config.replace(**overrides) if (dataset, model, variant) == preset else config

    monkeypatch.setattr(configs, "get_config", get_config)


def _unused(preset, field) -> bool:
    row = next(r for r in preset_table.rows_of(preset) if r.field == field)
    return row.source.startswith("ours: unused")


def test_every_changed_preset_value_fails_the_preset_checks(monkeypatch, capsys):
    survivors, unmutated, tried = [], [], 0
    for preset in preset_table.PRESETS:
        config = configs.get_config(*preset)
        for field, candidates in mutations(config):
            if not candidates:
                unmutated.append(f"{preset} {field}")
            for overrides in candidates:
                tried += 1
                with monkeypatch.context() as patch:
                    _patched_get_config(patch, preset, overrides)
                    table = preset_checks.table_mismatches(preset)
                    if not any(f": {field} = " in problem for problem in table):
                        survivors.append(f"{preset} {overrides}: table check passes")
                    if field in LR_FIELDS and not _unused(preset, field):
                        lr_problems = preset_checks.learning_rate_problems(preset, "make_optimizer")
                        if next(lr_problems, None) is None:
                            survivors.append(f"{preset} {overrides}: lr check passes")
    with capsys.disabled():
        print(f"\npreset mutations: {tried} tried, {len(survivors)} survived")
        for line in survivors + [f"no valid mutation: {u}" for u in unmutated]:
            print("  " + line)
    assert tried > 500 and not unmutated and not survivors


# The reviewer's eight changes at once (issue 16), which 56 tests used to pass: the step
# boundaries (30, 50, 100) -> (40, 60, 100) everywhere, MNIST epochs 100 -> 60, and on CelebA
# sigma_z^2 2 -> 1, WAE epochs 55 -> 50, VAE epochs 68 -> 55, WAE-MMD lambda 100 -> 10 and
# lr 1e-3 -> 5e-4, WAE-GAN lambda 1 -> 100 and lr 3e-4 -> 5e-4.
REVIEWED = {p: {"lr_boundaries": (40, 60, 100), "epochs": 60} for p in preset_table.MNIST_PAPER}
REVIEWED[preset_table.C_VAE] = {"lr_boundaries": (40, 60, 100), "pz_scale": 1.0, "epochs": 55}
REVIEWED[preset_table.C_MMD] = {
    "lr_boundaries": (40, 60, 100),
    "pz_scale": 1.0,
    "epochs": 50,
    "penalty_weight": 10.0,
    "learning_rate": 5e-4,
}
REVIEWED[preset_table.C_GAN] = {
    "lr_boundaries": (40, 60, 100),
    "pz_scale": 1.0,
    "epochs": 50,
    "penalty_weight": 100.0,
    "learning_rate": 5e-4,
}


@pytest.mark.parametrize("preset", sorted(REVIEWED))
def test_the_reviewers_eight_changes_fail_both_checks(monkeypatch, preset):
    _patched_get_config(monkeypatch, preset, REVIEWED[preset])
    table = preset_checks.table_mismatches(preset)
    assert {p.split(" = ")[0].split(": ")[-1] for p in table} == set(REVIEWED[preset])
    assert preset_checks.learning_rate_mismatches(preset)  # a compiled model's optimizers


@dataclasses.dataclass(frozen=True)
class ConfigWithANewField(configs.Config):
    new_knob: int = 0


def test_a_new_config_field_without_a_row_fails(monkeypatch):
    real = configs.get_config

    def get_config(*args):
        return ConfigWithANewField(**real(*args).to_dict())

    monkeypatch.setattr(configs, "get_config", get_config)
    assert preset_checks.table_mismatches(preset_table.M_MMD) == [
        f"{preset_table.M_MMD}: Config field 'new_knob' has no row in tests/preset_table.py"
    ]
