"""Reading CSV and NPZ datasets into arrays (numpy only: the API uses it to check uploads)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.spec import Task

# Integer targets with at most this many distinct values are read as class labels.
MAX_INFERRED_CLASSES = 50


class DatasetError(ValueError):
    """A dataset that cannot be used, with a message that says why and what to do."""


ClassLabel = int | float | str


def class_label(value: Any) -> ClassLabel:
    """A class label as the dataset has it: whole numbers as int (digits: 3, not "3"), text as str."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int | float) else str(value)


@dataclass
class Table:
    """Features, target and what kind of problem they pose."""

    X: np.ndarray  # float32, (rows, features)
    y: np.ndarray  # int64 class indices, or float32 values (rows, outputs)
    task: Task
    classes: int | None
    feature_names: list[str]
    class_labels: list[ClassLabel] | None = None  # original label of each class index, in its own type


def infer_task(y: np.ndarray) -> Task:
    """Classification for integer-valued or text targets with few distinct values, else regression."""
    if y.dtype.kind in "OUSb":
        return Task.classification
    if y.ndim == 1 and y.dtype.kind in "iu":
        return Task.classification if len(np.unique(y)) <= MAX_INFERRED_CLASSES else Task.regression
    if y.ndim == 1 and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0):
        return Task.classification if len(np.unique(y)) <= MAX_INFERRED_CLASSES else Task.regression
    return Task.regression


def make_table(X: np.ndarray, y: np.ndarray, feature_names: list[str], task: Task | None = None) -> Table:
    """Check shapes and values, encode class labels as 0..K-1, and infer the task."""
    if X.ndim not in (2, 3):
        raise DatasetError(
            "features must be (rows, features) or, for sequences, (rows, time steps, features); "
            f"got {X.shape}"
        )
    if len(X) != len(y):
        raise DatasetError(f"features have {len(X)} rows but the target has {len(y)}")
    if len(X) < 10:
        raise DatasetError(f"a dataset needs at least 10 rows; this one has {len(X)}")
    try:
        X = X.astype(np.float32)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"features must be numeric: {error}") from None
    if not np.all(np.isfinite(X)):
        raise DatasetError("features contain NaN or infinite values: fill or drop those rows")
    task = task or infer_task(y)
    if task == Task.classification:
        labels, codes = np.unique(y.astype(str) if y.dtype.kind == "O" else y, return_inverse=True)
        if len(labels) < 2:
            raise DatasetError("a classification target needs at least two classes")
        classes = [class_label(v) for v in labels]
        return Table(X, codes.astype(np.int64), task, len(labels), feature_names, classes)
    try:
        values = y.astype(np.float32)
    except (TypeError, ValueError):
        raise DatasetError("a regression target must be numeric") from None
    if not np.all(np.isfinite(values)):
        raise DatasetError("the target contains NaN or infinite values")
    return Table(X, values.reshape(len(values), -1), task, None, feature_names)


def read_csv(data: bytes | Path, target: str | None = None, task: Task | None = None) -> Table:
    """A CSV with a header row; `target` names the target column (default: the last one)."""
    text = data.read_bytes() if isinstance(data, Path) else data
    try:
        rows = list(csv.reader(io.StringIO(text.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"not a readable UTF-8 CSV file: {error}") from None
    rows = [row for row in rows if row]
    if len(rows) < 2:
        raise DatasetError("a CSV dataset needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if len(header) < 2:
        raise DatasetError("a CSV dataset needs at least two columns: features and a target")
    target = target or header[-1]
    if target not in header:
        raise DatasetError(f"target column {target!r} is not in the header: {', '.join(header)}")
    bad = next((i for i, row in enumerate(body, start=2) if len(row) != len(header)), None)
    if bad is not None:
        raise DatasetError(f"line {bad} has {len(body[bad - 2])} fields; the header has {len(header)}")
    column = header.index(target)
    features = [name for i, name in enumerate(header) if i != column]
    try:
        X = np.array([[float(v) for i, v in enumerate(row) if i != column] for row in body], dtype=np.float32)
    except ValueError as error:
        raise DatasetError(f"feature columns must be numeric: {error}") from None
    raw = np.array([row[column] for row in body], dtype=object)
    try:
        y: np.ndarray = raw.astype(np.float64)
        if np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
    except ValueError:
        y = raw
    return make_table(X, y, features, task)


def read_npz(data: bytes | Path, task: Task | None = None) -> Table:
    """An .npz holding arrays X and y, loaded without pickle."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with np.load(source, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise DatasetError(f"the .npz file lacks {', '.join(sorted(missing))}; it must hold X and y")
            X, y = archive["X"], archive["y"]
    except DatasetError:
        raise
    except Exception as error:  # np.load raises many types for a corrupt archive
        raise DatasetError(f"not a readable .npz file (object arrays are refused): {error}") from None
    names = [f"x{i}" for i in range(X.shape[-1])] if X.ndim in (2, 3) else []
    return make_table(X, y, names, task)


def read_dataset(path: Path, target: str | None = None, task: Task | None = None) -> Table:
    """Read a .csv or .npz file by its suffix."""
    if not path.exists():
        raise DatasetError(f"dataset file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npz":
        return read_npz(path, task)
    return read_csv(path, target, task)
