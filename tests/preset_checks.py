"""The two preset checks, shared by tests/test_presets.py and tests/test_preset_mutations.py.

- `table_mismatches(preset)`: `get_config(*preset)` against tests/preset_table.py, field by
  field; a Config field without a row, or a row without a field, is a mismatch too.
- `learning_rate_mismatches(preset)`: the learning rates of the optimizers training uses
  (`model.compile` -> `optimizers.make_optimizer`), read at the first and last step of the
  epochs around every boundary, against the code's train loop (preset_table.code_decay).

Both read `configs.get_config` at call time, so a test may patch what it returns.
Each returns a list of one-line problems: [] when the preset is what the table says.
"""

from __future__ import annotations

import dataclasses
import math

import preset_table

from wae_tf import configs, optimizers, trained

STEPS_PER_EPOCH = 7  # any count: the schedules change once per epoch
OPTIMIZER_NAMES = {"autoencoder": optimizers.AUTOENCODER, "adversary": optimizers.ADVERSARY}


def _same(value, want) -> bool:
    """Equal and of the same type (10 is not 10.0, True is not 1, a list is not a tuple)."""
    if type(value) is not type(want):
        return False
    if isinstance(want, tuple):
        return len(value) == len(want) and all(map(_same, value, want))
    return value == want


def table_mismatches(preset: tuple[str, str, str]) -> list[str]:
    config = configs.get_config(*preset)
    have = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    want = preset_table.expected(preset)
    problems = [
        f"{preset}: Config field {name!r} has no row in tests/preset_table.py"
        for name in sorted(have.keys() - want.keys())
    ]
    problems += [
        f"{preset}: tests/preset_table.py pins {name!r}, which Config does not have"
        for name in sorted(want.keys() - have.keys())
    ]
    problems += [
        f"{preset}: {name} = {have[name]!r}, the table says {want[name]!r}"
        for name in sorted(have.keys() & want.keys())
        if not _same(have[name], want[name])
    ]
    return problems


def real_optimizers(config: configs.Config, via: str = "compile") -> dict:
    """{"autoencoder" [, "adversary"]: the Adam that applies that sub-step in training}.

    via="compile": a compiled model's own (trained.build_compiled_model, as training does;
    widths shrunk by `with_width`, which leaves every optimizer setting alone).
    via="make_optimizer": the optimizer compile() builds (models.py), without a model:
    30x cheaper, for the mutation check.
    """
    if via == "compile":
        model = trained.build_compiled_model(configs.with_width(config, 2), STEPS_PER_EPOCH)
        found = {"autoencoder": model.step_optimizer(optimizers.AUTOENCODER)}
        if config.penalty == "gan":
            found["adversary"] = model.step_optimizer(optimizers.ADVERSARY)
        return found
    optimizer = optimizers.make_optimizer(config, STEPS_PER_EPOCH)
    names = ("autoencoder", "adversary") if config.penalty == "gan" else ("autoencoder",)
    return {name: optimizers.sub_optimizer(optimizer, OPTIMIZER_NAMES[name]) for name in names}


def learning_rate_problems(preset: tuple[str, str, str], via: str = "compile"):
    """The learning-rate mismatches of `preset`, one by one (the mutation check stops at
    the first)."""
    config = configs.get_config(*preset)
    found = real_optimizers(config, via)
    want = preset_table.expected_learning_rates(preset)
    if found.keys() != want.keys():
        yield f"{preset}: optimizers {sorted(found)}, the table expects {sorted(want)}"
        return
    for name, by_epoch in want.items():
        optimizer = found[name]
        for epoch, lr in by_epoch.items():
            for step in (epoch * STEPS_PER_EPOCH, (epoch + 1) * STEPS_PER_EPOCH - 1):
                optimizer.iterations.assign(step)
                got = float(optimizer.learning_rate)
                if not math.isclose(got, lr, rel_tol=1e-5):
                    yield (
                        f"{preset}: {name} lr in epoch {epoch} (step {step}) is {got:.6g}, "
                        f"the code's loop gives {lr:.6g}"
                    )


def learning_rate_mismatches(preset: tuple[str, str, str], via: str = "compile") -> list[str]:
    return list(learning_rate_problems(preset, via))
