"""Reading CSV and NPZ datasets into arrays (numpy only: the API uses it to check uploads)."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.lib import format as npy

from training.spec import Task

if TYPE_CHECKING:
    from _csv import Reader

# Integer targets with at most this many distinct values are read as class labels.
MAX_INFERRED_CLASSES = 50
# A class label longer than this is not a label (a wrong target column, or a hostile file).
MAX_LABEL_CHARS = 256
# Members an .npz may list; counting them bounds what opening its zip directory costs.
MAX_NPZ_MEMBERS = 256
FEATURE_KINDS = "biuf"  # bool, integers, floats
TARGET_KINDS = "biufUS"  # ... and text labels
CSV_CHUNK_ROWS = 8192


class DatasetError(ValueError):
    """A dataset that cannot be used, with a message that says why and what to do."""


class DatasetTooLarge(DatasetError):
    """A dataset over one of the limits; `setting` names the DatasetLimits field it broke."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class DatasetLimits:
    """Ceilings checked from declared sizes (npz headers, CSV rows as they arrive) before data is read."""

    max_dataset_rows: int
    max_dataset_features: int  # numbers per example (time steps × features for sequences)
    max_dataset_bytes: int  # the arrays once decompressed, X and y together

    def check_rows(self, rows: int) -> None:
        """Refuse more rows than allowed."""
        if rows > self.max_dataset_rows:
            raise DatasetTooLarge(
                f"{rows:,} rows is over the limit of {self.max_dataset_rows:,}", setting="max_dataset_rows"
            )

    def check_features(self, features: int) -> None:
        """Refuse wider examples than allowed."""
        if features > self.max_dataset_features:
            raise DatasetTooLarge(
                f"{features:,} numbers per example is over the limit of {self.max_dataset_features:,}",
                setting="max_dataset_features",
            )

    def check_bytes(self, size: int) -> None:
        """Refuse more decompressed data than allowed."""
        if size > self.max_dataset_bytes:
            raise DatasetTooLarge(
                f"the arrays take {size:,} bytes once decompressed, over the limit of "
                f"{self.max_dataset_bytes:,}",
                setting="max_dataset_bytes",
            )


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


def _check_shapes(X: np.ndarray, y: np.ndarray) -> None:
    """Refuse shapes no network can train on, before any work is done with them."""
    if X.ndim not in (2, 3):
        raise DatasetError(
            "features must be (rows, features) or, for sequences, (rows, time steps, features); "
            f"got {X.shape}"
        )
    if X.shape[-1] == 0:
        raise DatasetError(f"features have zero columns (shape {X.shape}): a dataset needs at least one")
    if X.ndim == 3 and X.shape[1] == 0:
        raise DatasetError(f"sequences have zero time steps (shape {X.shape}): they need at least one")
    if y.ndim == 0 or y.ndim > 2:
        raise DatasetError(f"the target must be (rows,) or (rows, outputs); got shape {y.shape}")
    if y.ndim == 2 and y.shape[1] == 0:
        raise DatasetError(f"the target has zero columns (shape {y.shape}): it needs at least one")
    if len(X) != len(y):
        raise DatasetError(f"features have {len(X)} rows but the target has {len(y)}")
    if len(X) < 10:
        raise DatasetError(f"a dataset needs at least 10 rows; this one has {len(X)}")
    if X.dtype.kind not in FEATURE_KINDS:
        raise DatasetError(f"features must be numbers (bool, integer or float); X has dtype {X.dtype}")
    if y.dtype.kind not in TARGET_KINDS + "O":  # object: the text labels of a CSV
        raise DatasetError(
            "the target must be numbers or text labels (not complex, dates or records); "
            f"y has dtype {y.dtype}"
        )


def _classes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct labels and each row's class index."""
    if y.ndim == 2 and y.shape[1] != 1:
        raise DatasetError(f"a classification target is one column; y has shape {y.shape}")
    flat = y.reshape(len(y))
    labels, codes = np.unique(flat.astype(str) if flat.dtype.kind == "O" else flat, return_inverse=True)
    if len(labels) < 2:
        raise DatasetError("a classification target needs at least two classes")
    if y.dtype.kind in "OUS" and max(len(str(label)) for label in labels) > MAX_LABEL_CHARS:
        raise DatasetError(
            f"a class label is longer than {MAX_LABEL_CHARS} characters: is the target column right?"
        )
    return labels, codes


def make_table(X: np.ndarray, y: np.ndarray, feature_names: list[str], task: Task | None = None) -> Table:
    """Check shapes and values, encode class labels as 0..K-1, and infer the task."""
    _check_shapes(X, y)
    X = X.astype(np.float32)
    if not np.all(np.isfinite(X)):
        raise DatasetError("features contain NaN or infinite values (or values too large for float32)")
    task = task or infer_task(y)
    if task == Task.classification:
        labels, codes = _classes(y)
        classes = [class_label(v) for v in labels]
        return Table(X, codes.astype(np.int64), task, len(labels), feature_names, classes)
    try:
        values = y.astype(np.float32)
    except (TypeError, ValueError):
        raise DatasetError("a regression target must be numeric") from None
    if not np.all(np.isfinite(values)):
        raise DatasetError("the target contains NaN or infinite values")
    return Table(X, values.reshape(len(values), -1), task, None, feature_names)


def _csv_body(
    reader: Reader, width: int, column: int, limits: DatasetLimits | None
) -> tuple[np.ndarray, list[str]]:
    """Features and raw targets, read row by row: the limits hold as rows arrive, not after."""
    features = width - 1
    chunks: list[np.ndarray] = []
    chunk = np.empty((CSV_CHUNK_ROWS, features), np.float32)
    filled = 0
    targets: list[str] = []
    for row in reader:
        if not row:
            continue
        if len(row) != width:
            raise DatasetError(f"line {reader.line_num} has {len(row)} fields; the header has {width}")
        if limits is not None:
            limits.check_rows(len(targets) + 1)
        try:
            chunk[filled] = [float(value) for i, value in enumerate(row) if i != column]
        except ValueError as error:
            raise DatasetError(f"line {reader.line_num}: feature columns must be numeric: {error}") from None
        targets.append(row[column])
        filled += 1
        if filled == CSV_CHUNK_ROWS:
            chunks.append(chunk)
            if limits is not None:
                limits.check_bytes(len(targets) * features * chunk.itemsize)
            chunk, filled = np.empty_like(chunk), 0
    chunks.append(chunk[:filled])
    return np.concatenate(chunks), targets


def read_csv(
    data: bytes | Path,
    target: str | None = None,
    task: Task | None = None,
    limits: DatasetLimits | None = None,
) -> Table:
    """A CSV with a header row; `target` names the target column (default: the last one)."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline=""))
    try:
        header = next((row for row in reader if row), [])
        if len(header) < 2:
            raise DatasetError("a CSV dataset needs at least two columns: features and a target")
        if limits is not None:
            limits.check_features(len(header) - 1)
        target = target or header[-1]
        if target not in header:
            raise DatasetError(f"target column {target!r} is not in the header: {', '.join(header)}")
        column = header.index(target)
        X, targets = _csv_body(reader, len(header), column, limits)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"not a readable UTF-8 CSV file: {error}") from None
    if not targets:
        raise DatasetError("a CSV dataset needs a header row and at least one data row")
    labels = np.array(targets, dtype=object)
    del targets
    try:
        y: np.ndarray = labels.astype(np.float64)
        if np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
    except (ValueError, OverflowError):
        y = labels
    return make_table(X, y, [name for i, name in enumerate(header) if i != column], task)


def _npy_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Declared shape and dtype of one member, read from its header alone."""
    with archive.open(f"{name}.npy") as member:
        version = npy.read_magic(member)
        if version == (1, 0):
            shape, _fortran, dtype = npy.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _fortran, dtype = npy.read_array_header_2_0(member)
        else:
            raise DatasetError(f"{name} uses .npy format version {version}; save it with numpy's np.savez")
    if dtype.hasobject:
        raise DatasetError(f"{name} is an object array: object arrays are refused (they would need pickle)")
    if not shape:
        raise DatasetError(f"{name} is a single value (a 0-d array); it needs one row per example")
    kinds = FEATURE_KINDS if name == "X" else TARGET_KINDS
    if dtype.kind not in kinds:
        what = "numbers (bool, integer or float)" if name == "X" else "numbers or text labels"
        raise DatasetError(f"{name} has dtype {dtype}: it must hold {what} (not complex, dates or records)")
    return shape, dtype


def _check_declared(archive: zipfile.ZipFile, limits: DatasetLimits | None) -> None:
    """Shapes, dtypes and sizes as the headers declare them, checked before any data is read."""
    names = set(archive.namelist())
    missing = [name for name in ("X", "y") if f"{name}.npy" not in names]
    if missing:
        raise DatasetError(f"the .npz file lacks {', '.join(missing)}; it must hold X and y")
    (x_shape, x_dtype), (y_shape, y_dtype) = (_npy_header(archive, name) for name in ("X", "y"))
    if limits is not None:
        limits.check_rows(max(x_shape[0], y_shape[0]))
        limits.check_features(math.prod(x_shape[1:]))
        limits.check_bytes(math.prod(x_shape) * x_dtype.itemsize + math.prod(y_shape) * y_dtype.itemsize)


def read_npz(data: bytes | Path, task: Task | None = None, limits: DatasetLimits | None = None) -> Table:
    """An .npz holding arrays X and y, loaded without pickle once its headers are within the limits."""
    if isinstance(data, bytes) and data.count(b"PK\x01\x02") > MAX_NPZ_MEMBERS:
        raise DatasetError(f"the .npz file lists more than {MAX_NPZ_MEMBERS} members; it must hold X and y")
    source: IO[bytes] | Path = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with zipfile.ZipFile(source) as archive:
            _check_declared(archive, limits)
            X, y = (_read_member(archive, name) for name in ("X", "y"))
    except DatasetError:
        raise
    except Exception as error:  # zipfile and numpy raise many types for a corrupt archive
        raise DatasetError(f"not a readable .npz file: {error}") from None
    names = [f"x{i}" for i in range(X.shape[-1])] if X.ndim in (2, 3) else []
    return make_table(X, y, names, task)


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(f"{name}.npy") as member:
        return np.asarray(npy.read_array(member, allow_pickle=False))


def read_dataset(path: Path, target: str | None = None, task: Task | None = None) -> Table:
    """Read a .csv or .npz file by its suffix."""
    if not path.exists():
        raise DatasetError(f"dataset file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npz":
        return read_npz(path, task)
    return read_csv(path, target, task)
