"""EpochRecord and RunResult: the JSON the loop writes holds the keys that apply to the run, no others."""

from __future__ import annotations

import json
from pathlib import Path

from tests.training.conftest import make_spec, run_fit
from training.records import EpochRecord, RunResult, is_maximized


def test_a_record_dumps_the_keys_that_apply_and_keeps_null_for_unmeasured_ones() -> None:
    record = EpochRecord(epoch=1, train_loss=0.5, train_accuracy=0.9, val_loss=None, val_accuracy=None)
    assert record.model_dump(mode="json") == {
        "epoch": 1,
        "train_loss": 0.5,
        "train_accuracy": 0.9,
        "val_loss": None,
        "val_accuracy": None,
    }
    again = EpochRecord.model_validate(json.loads(record.model_dump_json()))
    assert again.model_dump() == record.model_dump()  # a stored record reads back to the same JSON


def test_the_schema_documents_every_field_although_dumps_leave_some_out() -> None:
    schema = EpochRecord.model_json_schema(mode="serialization")
    assert {"train_loss", "val_rmse", "l2_penalty", "layers"} <= set(schema["properties"])


def test_fit_records_of_a_classifier_and_a_regression_hold_their_own_metrics(tmp_path: Path) -> None:
    _, classifier = run_fit(make_spec(training={"epochs": 1}))
    assert {"train_accuracy", "val_accuracy"} <= set(classifier[0])
    assert not {"train_rmse", "val_rmse", "l2_penalty", "grad_first_step"} & set(classifier[0])
    result, regression = run_fit(make_spec(dataset={"name": "diabetes"}, training={"epochs": 1}), tmp_path)
    assert {"train_rmse", "val_rmse"} <= set(regression[0]) and "train_accuracy" not in regression[0]
    written = json.loads((tmp_path / "result.json").read_text())
    assert RunResult.model_validate(written) == result
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == regression


def test_accuracy_is_maximized_and_losses_are_minimized() -> None:
    assert is_maximized("val_accuracy") and is_maximized("train_accuracy")
    assert not any(is_maximized(m) for m in ("val_loss", "train_loss", "val_rmse"))
