"""MNIST-1D: the mnist1d package's own set and split, generated offline once, cached, as table or sequence."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.training.conftest import run_fit
from training.benchmarks import load_mnist1d
from training.data import prepare
from training.download import DatasetCache, using_cache
from training.spec import InputScaling, JobSpec, MNIST1DDatasetSpec, example_shape

CPU = torch.device("cpu")


def mnist1d(**options: object) -> MNIST1DDatasetSpec:
    """An MNIST-1D dataset spec."""
    return MNIST1DDatasetSpec.model_validate({"name": "mnist1d", **options})


def test_the_default_is_the_papers_set_with_its_test_split(tmp_path: Path) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    reference = make_dataset(get_dataset_args())  # 4,000 train, 1,000 test, seed 42
    train, test = load_mnist1d(mnist1d(), DatasetCache(tmp_path))
    assert train.X.shape == (4000, 40) and test.X.shape == (1000, 40)
    assert np.allclose(test.X, reference["x_test"]) and np.array_equal(test.y, reference["y_test"])
    assert np.array_equal(train.y, reference["y"])
    splits = prepare(
        mnist1d(validation_fraction=0.25), InputScaling.none, 0, CPU, cache=DatasetCache(tmp_path)
    )
    assert (len(splits.X_train), len(splits.X_val), len(splits.X_test)) == (3000, 1000, 1000)
    assert torch.allclose(splits.X_test, torch.from_numpy(reference["x_test"]).float())


def test_generated_once_then_read_from_the_cache(tmp_path: Path) -> None:
    cache = DatasetCache(tmp_path)
    first, _ = load_mnist1d(mnist1d(samples=200), cache)
    [cached] = list((tmp_path / "mnist1d").iterdir())
    stamp = cached.stat().st_mtime_ns
    again, _ = load_mnist1d(mnist1d(samples=200), cache)
    assert np.array_equal(first.X, again.X) and cached.stat().st_mtime_ns == stamp
    load_mnist1d(mnist1d(samples=200, seed=1), cache)
    assert len(list((tmp_path / "mnist1d").glob("*.npz"))) == 2  # another seed is another set


def test_options_shape_the_data_and_leave_global_random_state_alone(tmp_path: Path) -> None:
    cache = DatasetCache(tmp_path)
    np.random.seed(7)
    random.seed(7)
    expected = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    plain, _ = load_mnist1d(mnist1d(samples=200), cache)
    shuffled, _ = load_mnist1d(mnist1d(samples=200, shuffle_seq=True), cache)
    assert (np.random.rand(), random.random()) == expected
    assert np.array_equal(plain.y, shuffled.y) and not np.allclose(plain.X, shuffled.X)
    assert np.allclose(np.sort(plain.X, axis=1), np.sort(shuffled.X, axis=1))  # the same steps, permuted
    sequence = prepare(mnist1d(samples=200, as_sequence=True), InputScaling.zscore, 0, CPU, cache=cache)
    assert sequence.input_shape == (40, 1) and sequence.X_test.shape == (40, 40, 1)
    assert example_shape(mnist1d(as_sequence=True)) == (40, 1) and example_shape(mnist1d()) == (40,)


def test_test_fraction_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="official test set"):
        mnist1d(test_fraction=0.1)


def test_an_mlp_learns_mnist1d_through_fit(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"name": "mnist1d", "samples": 500},
            "network": {"hidden_layers": [64]},
            "optimizer": {"name": "adam", "learning_rate": 0.01},
            "training": {"epochs": 15, "batch_size": 50, "seed": 0, "device": "cpu"},
        }
    )
    with using_cache(DatasetCache(tmp_path)):
        result, _ = run_fit(spec)
    assert result.status == "succeeded" and "mnist1d_not_paper_set" in result.warnings
    assert result.test is not None and result.test["test_accuracy"] > 0.3, result.test  # chance: 0.1
