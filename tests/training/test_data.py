"""Datasets, splits and input scaling (fitted on the training split only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import Scaler, load_table, prepare
from training.spec import FileDatasetSpec, InputScaling, JobSpec, Task
from training.tabular import DatasetError

CPU = torch.device("cpu")


def dataset(raw: dict) -> object:
    """The validated dataset section of a spec."""
    return JobSpec.model_validate({"dataset": raw, "network": {"hidden_layers": [4]}}).dataset


def test_minmax_maps_each_training_feature_exactly_onto_minus_one_to_one() -> None:
    splits = prepare(dataset({"name": "wine"}), InputScaling.minmax, 0, CPU)
    X = splits.X_train
    assert torch.all(X.min(dim=0).values == -1.0)
    assert torch.all(X.max(dim=0).values == 1.0)


def test_minmax_hits_both_ends_on_awkward_float_values() -> None:
    generator = torch.Generator().manual_seed(3)
    X = torch.randn(500, 40, generator=generator) * torch.logspace(-3, 3, 40) + torch.linspace(-7, 11, 40)
    scaled = Scaler.fit(InputScaling.minmax, X)(X)
    assert torch.all(scaled.min(dim=0).values == -1.0)
    assert torch.all(scaled.max(dim=0).values == 1.0)


def test_minmax_is_the_chapter_formula() -> None:
    X = torch.tensor([[0.0, 10.0], [5.0, 30.0], [10.0, 20.0]])
    scaled = Scaler.fit(InputScaling.minmax, X)(X)
    expected = 2 * (X - X.min(0).values) / (X.max(0).values - X.min(0).values) - 1
    torch.testing.assert_close(scaled, expected)


def test_zscore_gives_zero_mean_unit_std_on_train() -> None:
    splits = prepare(dataset({"name": "breast_cancer"}), InputScaling.zscore, 0, CPU)
    X = splits.X_train.double()
    torch.testing.assert_close(X.mean(0), torch.zeros(X.shape[1], dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        X.std(0, unbiased=False), torch.ones(X.shape[1], dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_constant_feature_does_not_divide_by_zero() -> None:
    X = torch.tensor([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    for kind in (InputScaling.minmax, InputScaling.zscore):
        assert torch.isfinite(Scaler.fit(kind, X)(X)).all()


def test_scaler_is_fitted_on_the_training_split_only() -> None:
    ds = dataset({"name": "wine", "validation_fraction": 0.3, "test_fraction": 0.3})
    raw = prepare(ds, InputScaling.none, 0, CPU)
    scaled = prepare(ds, InputScaling.zscore, 0, CPU)
    torch.testing.assert_close(scaled.scaler.shift, raw.X_train.double().mean(0))
    assert not torch.allclose(scaled.scaler.shift, raw.X_val.double().mean(0), rtol=1e-3)
    # the validation split, scaled with train's statistics, is not itself standardized
    assert scaled.X_val.mean(0).abs().max() > 0.05
    assert scaled.X_test.mean(0).abs().max() > 0.05
    minmax = prepare(ds, InputScaling.minmax, 0, CPU)
    low, high = raw.X_train.min(0).values, raw.X_train.max(0).values
    torch.testing.assert_close(minmax.X_val, 2 * (raw.X_val - low) / (high - low) - 1)
    torch.testing.assert_close(minmax.X_test, 2 * (raw.X_test - low) / (high - low) - 1)
    assert minmax.X_val.abs().max() != 1.0  # val's own extremes do not map onto ±1


def test_none_scaling_leaves_inputs_untouched() -> None:
    splits = prepare(dataset({"name": "iris"}), InputScaling.none, 0, CPU)
    assert splits.X_train.max() > 5


def test_stratified_splits_keep_class_proportions() -> None:
    splits = prepare(dataset({"name": "breast_cancer"}), InputScaling.zscore, 0, CPU)
    shares = [y.float().mean().item() for y in (splits.y_train, splits.y_val, splits.y_test)]
    assert max(shares) - min(shares) < 0.02
    digits = prepare(dataset({"name": "digits"}), InputScaling.zscore, 0, CPU)
    for y in (digits.y_train, digits.y_val, digits.y_test):
        counts = torch.bincount(y, minlength=10).float() / len(y)
        assert counts.max() - counts.min() < 0.02


def test_split_sizes_follow_the_fractions() -> None:
    splits = prepare(
        dataset({"name": "digits", "validation_fraction": 0.25, "test_fraction": 0.1}), "zscore", 0, CPU
    )
    total = 1797
    assert abs(len(splits.X_test) - 0.1 * total) <= 1
    assert abs(len(splits.X_val) - 0.25 * total) <= 1
    assert len(splits.X_train) + len(splits.X_val) + len(splits.X_test) == total


def test_same_seed_same_split_other_seed_other_split() -> None:
    ds = dataset({"name": "iris"})
    a, b, c = (prepare(ds, InputScaling.none, seed, CPU) for seed in (4, 4, 5))
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.X_test, b.X_test)
    assert not torch.equal(a.X_train, c.X_train)


def test_regression_task_and_shapes() -> None:
    splits = prepare(dataset({"name": "diabetes"}), InputScaling.zscore, 0, CPU)
    assert splits.task == Task.regression and splits.outputs == 1
    assert splits.y_train.dtype == torch.float32 and splits.y_train.shape[1] == 1


@pytest.mark.parametrize("name", ["xor", "moons", "circles", "spirals", "blobs", "sine"])
def test_synthetic_datasets_are_seeded(name: str) -> None:
    a = load_table(dataset({"name": name, "samples": 60, "seed": 1}))
    b = load_table(dataset({"name": name, "samples": 60, "seed": 1}))
    c = load_table(dataset({"name": name, "samples": 60, "seed": 2}))
    assert a.X.shape[0] == 60 and np.array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)


def test_csv_file_loads_with_named_target_and_text_labels(tmp_path: Path) -> None:
    rows = ["a,label,b"] + [f"{i},{'cat' if i % 2 else 'dog'},{i * 0.5}" for i in range(20)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    table = load_table(FileDatasetSpec(path=str(path), target="label"))
    assert table.task == Task.classification and table.classes == 2
    assert table.feature_names == ["a", "b"] and table.class_labels == ["cat", "dog"]
    assert table.X.shape == (20, 2)


def test_csv_float_target_is_regression(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i * 0.37}\n" for i in range(30)))
    assert load_table(FileDatasetSpec(path=str(path))).task == Task.regression


def test_npz_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, X=np.arange(40, dtype=np.float64).reshape(20, 2), y=np.arange(20) % 3)
    table = load_table(FileDatasetSpec(path=str(path)))
    assert table.X.shape == (20, 2) and table.classes == 3


def test_npz_with_an_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    y = np.array([{"evil": i} for i in range(20)], dtype=object)
    np.savez(path, X=np.zeros((20, 2)), y=y)
    with pytest.raises(DatasetError, match="object arrays are refused"):
        load_table(FileDatasetSpec(path=str(path)))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("a,b,y\n1,2,0\n3,4\n", "line 3 has 2 fields; the header has 3"),
        ("a,y\n" + "x,1\n" * 12, "feature columns must be numeric"),
        ("a,y\n" + "1,2\n" * 3, "at least 10 rows"),
        ("a,y\n" + "1,3\n" * 12, "at least two classes"),
        ("a,y\n" + "1,nan\n" * 12, "NaN or infinite"),
        ("only\n1\n", "at least two columns"),
    ],
)
def test_bad_csv_gives_a_readable_dataset_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=expected):
        load_table(FileDatasetSpec(path=str(path)))


def test_missing_target_column_lists_the_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "1,0\n" * 12)
    with pytest.raises(DatasetError, match="'label' is not in the header: a, b"):
        load_table(FileDatasetSpec(path=str(path), target="label"))


def test_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_table(FileDatasetSpec(path=str(tmp_path / "nope.csv")))
