"""A comparison's statistics from seed groups: who counts, which test, effects, bands and warnings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from api.compare.analysis import GroupInput, Member, analyze, split_key

SPEC = {"dataset": {"name": "digits", "validation_fraction": 0.2}}


def group(
    key: dict, values: list[float], *, statuses: list[str] | None = None, split: str = "d"
) -> GroupInput:
    statuses = statuses or ["succeeded"] * len(values)
    members = [
        Member(
            status=status, seed=seed, value=value, curves={"val_loss": ([1, 2, 3], [value * 2, value, value])}
        )
        for seed, (value, status) in enumerate(zip(values, statuses, strict=True))
    ]
    return GroupInput(key=key, split=split, members=members)


def test_only_succeeded_jobs_count_and_the_rest_are_counted() -> None:
    groups = [
        group({"activation": "relu"}, [0.1, 0.12, 0.11, 0.5], statuses=["succeeded"] * 3 + ["running"]),
        group({"activation": "sigmoid"}, [0.3, 0.31, 0.33, 0.2], statuses=["succeeded"] * 3 + ["failed"]),
    ]
    result = analyze(groups, mode="min", alpha=0.05, swept=["activation"], fields=["val_loss"])
    [test] = result.tests
    assert result.best_group == 0 and test.test == "paired" and test.n_best == 3
    assert test.p == pytest.approx(stats.ttest_rel([0.1, 0.12, 0.11], [0.3, 0.31, 0.33]).pvalue, rel=1e-12)
    [warning] = result.warnings
    assert warning.kind == "excluded_jobs" and warning.groups == [0, 1]
    assert warning.message.startswith("2 jobs left out of the statistics (1 failed, 1 running)")
    assert [band.n for band in result.bands["val_loss"]] == [[3, 3, 3], [3, 3, 3]]


def test_other_data_means_welch_and_few_seeds_and_unswept_fields_warn() -> None:
    groups = [
        group({"activation": "relu", "dataset.name": "iris"}, [0.1, 0.12, 0.13], split="iris"),
        group({"activation": "tanh", "dataset.name": "iris"}, [0.2, 0.22], split="iris"),
        group({"activation": "sigmoid", "dataset.name": "wine"}, [0.3, 0.31, 0.35], split="wine"),
    ]
    result = analyze(groups, mode="min", alpha=0.05, swept=["activation"])
    assert result.tests[1].test == "welch" and "dataset or split" in result.tests[1].reason
    kinds = {warning.kind: warning for warning in result.warnings}
    assert kinds["too_few_seeds"].groups == [1] and "group 1: n = 2" in kinds["too_few_seeds"].message
    assert "different seeds (2 in common)" in result.tests[0].reason
    assert "dataset.name" in kinds["unswept_fields"].message
    # effects are still over the swept field; the warning says what else differs with it
    assert result.effects is not None and result.effects.fields == ["activation"]


def test_effects_of_a_full_grid_come_from_the_groups(rng: np.random.Generator) -> None:
    cells = {
        ("sigmoid", "none"): 2.3,
        ("sigmoid", "batch"): 0.35,
        ("relu", "none"): 0.19,
        ("relu", "batch"): 0.13,
    }
    groups = [
        group({"activation": a, "normalization.layers": n}, rng.normal(mean, 0.02, 5).tolist())
        for (a, n), mean in cells.items()
    ]
    swept = ["activation", "normalization.layers"]
    levels = {"activation": ["sigmoid", "relu"], "normalization.layers": ["none", "batch"]}
    result = analyze(groups, mode="min", alpha=0.05, swept=swept, levels=levels)
    assert result.effects is not None and result.effects.complete
    terms = [(e.term, e.contrast) for e in result.effects.effects]
    assert terms == [
        ("activation", "relu − sigmoid"),
        ("normalization.layers", "batch − none"),
        ("activation × normalization.layers", "(relu − sigmoid) × (batch − none)"),
    ]
    means = [float(np.mean([m.value for m in g.members if m.value is not None])) for g in groups]
    interaction = (means[3] - means[2]) - (means[1] - means[0])
    assert result.effects.effects[2].estimate == pytest.approx(interaction, rel=1e-12)
    assert result.best_group == 3 and len(result.tests) == 3
    missing = analyze(groups[:3], mode="min", alpha=0.05, swept=swept, levels=levels)
    assert missing.effects is not None and not missing.effects.complete and missing.effects.effects == []


def test_without_a_sweep_every_differing_field_is_chosen() -> None:
    groups = [
        group({"activation": "relu"}, [0.1, 0.2, 0.15]),
        group({"activation": "tanh"}, [0.3, 0.2, 0.25]),
    ]
    result = analyze(groups, mode="min", alpha=0.05, swept=None)
    assert result.warnings == [] and result.effects is not None
    assert result.effects.effects[0].contrast == "tanh − relu"


def test_split_key_is_the_dataset_settings() -> None:
    assert split_key(SPEC) == split_key({"dataset": {"validation_fraction": 0.2, "name": "digits"}})
    assert split_key(SPEC) != split_key({"dataset": {"name": "digits", "validation_fraction": 0.3}})


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)
