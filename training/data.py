"""Datasets: built-in, synthetic and file-based; seeded splits; input scaling fitted on train only."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

from training.benchmarks import load_official_splits
from training.download import DatasetCache, current_cache
from training.spec import (
    BuiltinDatasetSpec,
    DataKind,
    DatasetSpec,
    DownloadedDatasetSpec,
    FileDatasetSpec,
    InputScaling,
    MNIST1DDatasetSpec,
    SequenceDatasetSpec,
    SyntheticDatasetSpec,
    TargetScaling,
    Task,
    UploadedDatasetSpec,
    example_kind,
    example_shape,
)
from training.tabular import ClassLabel, DatasetError, Table, class_label, make_table, read_dataset

SCALING_ROWS = 8192  # rows scaled at a time: float64 copies of MNIST or CIFAR-10 at once would be GBs

_BUILTIN_LOADERS = {
    "digits": skdatasets.load_digits,
    "iris": skdatasets.load_iris,
    "wine": skdatasets.load_wine,
    "breast_cancer": skdatasets.load_breast_cancer,
    "diabetes": skdatasets.load_diabetes,
}


def _xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.uniform(-1, 1, size=(n, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    return X + rng.normal(0, noise, X.shape), y


def _spirals(n: int, noise: float, rng: np.random.Generator, arms: int = 3) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % arms
    radius = rng.uniform(0.05, 1.0, n)
    angle = y * 2 * np.pi / arms + radius * 1.75 * np.pi
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return X + rng.normal(0, noise * 0.5, X.shape), y.astype(np.int64)


def _sine(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return X, np.sin(X[:, 0]) + rng.normal(0, noise, n)


def _adding(n: int, length: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem: values in [0, 1] and two markers; the target is the sum of the marked values."""
    values = rng.uniform(0, 1, size=(n, length))
    markers = np.zeros((n, length))
    half = max(length // 2, 1)
    rows = np.arange(n)
    first, second = rng.integers(0, half, n), rng.integers(half, length, n)
    markers[rows, first], markers[rows, second] = 1.0, 1.0
    target = values[rows, first] + values[rows, second] + rng.normal(0, noise, n)
    return np.stack([values, markers], axis=2), target


def _parity(n: int, length: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bit sequences; the class is whether the number of ones is odd."""
    bits = rng.integers(0, 2, size=(n, length))
    return (bits + rng.normal(0, noise, bits.shape))[:, :, None], bits.sum(axis=1) % 2


def _sine_sequence(
    n: int, length: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy windows of sines of random phase and frequency; the target is the next clean value."""
    phase, frequency = rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(0.1, 0.4, (n, 1))
    clean = np.sin(phase + frequency * np.arange(length + 1))
    return (clean[:, :-1] + rng.normal(0, noise, (n, length)))[:, :, None], clean[:, -1]


def _sequence(spec: SequenceDatasetSpec) -> Table:
    rng = np.random.default_rng(spec.seed)
    generate = {"adding": _adding, "parity": _parity, "sine_sequence": _sine_sequence}[spec.name]
    X, y = generate(spec.samples, spec.length, spec.noise, rng)
    task = Task.classification if spec.name == "parity" else Task.regression
    names = ["value", "marker"] if spec.name == "adding" else ["x"]
    return make_table(X, y if task == Task.classification else y.astype(np.float32), names, task)


def _synthetic(spec: SyntheticDatasetSpec) -> Table:
    n, noise, seed = spec.samples, spec.noise, spec.seed
    rng = np.random.default_rng(seed)
    match spec.name:
        case "xor":
            X, y = _xor(n, noise, rng)
        case "moons":
            X, y = skdatasets.make_moons(n, noise=noise, random_state=seed)
        case "circles":
            X, y = skdatasets.make_circles(n, noise=noise, factor=0.5, random_state=seed)
        case "spirals":
            X, y = _spirals(n, noise, rng)
        case "blobs":
            X, y = skdatasets.make_blobs(
                n, centers=3, n_features=2, cluster_std=1.0 + noise, random_state=seed
            )
        case "sine":
            X, y = _sine(n, noise, rng)
            return make_table(X, y.astype(np.float32), ["x"], Task.regression)
    return make_table(X, y, ["x0", "x1"], Task.classification)


@functools.cache
def _builtin(name: str) -> Bunch:
    """A dataset that ships with scikit-learn, read once per process (the jobs of a sweep share it)."""
    bunch = _BUILTIN_LOADERS[name]()
    for array in (bunch.data, bunch.target):
        array.setflags(write=False)  # shared: make_table copies before anything changes a value
    return bunch


def load_table(spec: DatasetSpec) -> Table:
    """Read the dataset a spec names into arrays."""
    match spec:
        case BuiltinDatasetSpec():
            bunch = _builtin(spec.name)
            task = Task.regression if spec.name == "diabetes" else Task.classification
            names = [str(name) for name in getattr(bunch, "feature_names", [])] or [
                f"x{i}" for i in range(bunch.data.shape[1])
            ]
            table = make_table(bunch.data, bunch.target, names, task)
            if task == Task.classification and "target_names" in bunch:  # iris: setosa, not "0"
                table.class_labels = [class_label(label) for label in bunch.target_names]
            return table
        case SyntheticDatasetSpec():
            return _synthetic(spec)
        case SequenceDatasetSpec():
            return _sequence(spec)
        case FileDatasetSpec():
            return read_dataset(Path(spec.path), spec.target, spec.task)
        case UploadedDatasetSpec():
            raise DatasetError(
                f"dataset id {spec.id!r} refers to an upload: only the trainctl service can resolve it; "
                "use a path to the file instead"
            )
    raise DatasetError(f"unsupported dataset: {spec!r}")


@dataclass
class Scaler:
    """x' = (x - shift) / scale, fitted on the training split."""

    kind: InputScaling
    shift: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, kind: InputScaling, X: torch.Tensor) -> Scaler:
        """Fit per feature (the last axis) on training data; constant features map to 0."""
        X = X.reshape(-1, X.shape[-1])  # sequences: statistics over examples and time steps
        # float64: (max + min)/2 and (max - min)/2 of float32 values are then exact, so min-max
        # scaling lands exactly on -1 and 1 (in float32 the midpoint rounds and overshoots [-1, 1])
        match kind:
            case InputScaling.minmax:
                low, high = X.min(dim=0).values.double(), X.max(dim=0).values.double()
                # 2(p - min)/(max - min) - 1 == (p - (max + min)/2) / ((max - min)/2)
                shift, scale = (high + low) / 2, (high - low) / 2
            case InputScaling.zscore:
                zero, chunks = torch.zeros(X.shape[1:], dtype=torch.float64), X.split(SCALING_ROWS)
                shift = sum((c.double().sum(dim=0) for c in chunks), zero) / len(X)
                squares = sum((((c.double() - shift) ** 2).sum(dim=0) for c in chunks), zero)
                scale = (squares / len(X)).sqrt()
            case _:
                shift = torch.zeros(X.shape[1:], dtype=torch.float64)
                scale = torch.ones(X.shape[1:], dtype=torch.float64)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return cls(kind, shift, scale)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """Scale features (computed in float64, a block of rows at a time, returned in X's dtype)."""
        if self.kind == InputScaling.none:
            return X
        shift, scale = self.shift.to(X.device), self.scale.to(X.device)
        out = torch.empty_like(X)
        for rows, block in zip(out.split(SCALING_ROWS), X.split(SCALING_ROWS), strict=True):
            rows.copy_((block.double() - shift) / scale)
        return out

    def invert(self, X: torch.Tensor) -> torch.Tensor:
        """Back to the original units: x = x' · scale + shift."""
        if self.kind == InputScaling.none:
            return X
        return (X.double() * self.scale.to(X.device) + self.shift.to(X.device)).to(X.dtype)


def scale_inputs(scaler: Scaler, X: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Apply the scaler to raw examples; images are scaled per pixel, as flat feature vectors."""
    if len(input_shape) == 3:
        # the pixel count, not -1: an empty split (a fraction of 0) has no size to infer it from
        return scaler(X.reshape(len(X), math.prod(input_shape))).reshape(len(X), *input_shape)
    return scaler(X)


@dataclass
class Splits:
    """Train/validation/test tensors on the training device, already scaled."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    task: Task
    input_shape: tuple[int, ...]  # one example: (features,), (time steps, features) or (C, H, W)
    outputs: int
    scaler: Scaler
    feature_scale: float  # largest |x| of the raw training features, for lint
    feature_names: list[str]
    class_labels: list[ClassLabel] | None
    targets: Scaler | None = None  # regression targets are trained on in these scaled units
    unstratified_classes: list[str] = field(default_factory=list)  # see _split

    @property
    def kind(self) -> DataKind:
        """table, sequence or image."""
        return example_kind(self.input_shape)

    @property
    def sequence_length(self) -> int | None:
        """Time steps per example, for sequences."""
        return self.input_shape[0] if self.kind == "sequence" else None

    def train_sample(self, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training split, or a sample of `limit` of its rows fixed by the seed (same every epoch)."""
        if len(self.X_train) <= limit:
            return self.X_train, self.y_train
        generator = torch.Generator().manual_seed(seed)  # its own: the run's random streams stay untouched
        rows = torch.randperm(len(self.X_train), generator=generator)[:limit].sort().values
        rows = rows.to(self.X_train.device)
        return self.X_train[rows], self.y_train[rows]


Held = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]


def _split(X: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool) -> Held:
    """Hold out `fraction` of the rows; returns kept and held-out rows, and the classes not stratified.

    Classifiers get a split stratified by class. A class with a single example cannot be in both parts:
    its rows stay in the kept part and the other classes are stratified as usual. Only when the
    held-out part has fewer rows than there are classes is no stratified split possible at all.
    """
    if fraction <= 0:
        return X, X[:0], y, y[:0], []
    if not stratify:
        return (*train_test_split(X, y, test_size=fraction, random_state=seed), [])
    classes, counts = np.unique(y, return_counts=True)
    single = classes[counts < 2]
    common = ~np.isin(y, single)
    try:
        X_kept, X_held, y_kept, y_held = train_test_split(
            X[common], y[common], test_size=fraction, random_state=seed, stratify=y[common]
        )
    except ValueError:  # fewer held-out (or kept) rows than classes: no stratified split exists
        return (*train_test_split(X, y, test_size=fraction, random_state=seed), classes.tolist())
    X_kept, y_kept = np.concatenate([X_kept, X[~common]]), np.concatenate([y_kept, y[~common]])
    return X_kept, X_held, y_kept, y_held, single.tolist()


def prepare(
    spec: DatasetSpec,
    scaling: InputScaling,
    seed: int,
    device: torch.device,
    targets: TargetScaling = TargetScaling.none,
    *,
    cache: DatasetCache | None = None,
) -> Splits:
    """Load, split (fixed by the seed), fit the scalers on train, and move everything to the device.

    Benchmarks keep their official test set; `cache` (default: the current one) holds their files.
    """
    unstratified: list[int] = []
    if isinstance(spec, MNIST1DDatasetSpec | DownloadedDatasetSpec):
        table, test = load_official_splits(spec, cache or current_cache())
        X_rest, y_rest, X_test, y_test = table.X, table.y, test.X, test.y
        val_share = spec.validation_fraction
    else:
        table = load_table(spec)
        stratify = table.task == Task.classification
        X_rest, X_test, y_rest, y_test, unstratified = _split(
            table.X, table.y, spec.test_fraction, seed, stratify
        )
        val_share = spec.validation_fraction / (1 - spec.test_fraction)
    stratify = table.task == Task.classification
    X_train, X_val, y_train, y_val, more = _split(X_rest, y_rest, val_share, seed + 1, stratify)
    if len(X_train) < 2:
        raise DatasetError(
            f"only {len(X_train)} training rows are left after the splits: lower the fractions"
        )

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))

    train_raw = tensor(X_train)
    scaler = Scaler.fit(scaling, train_raw)
    outputs = table.classes if table.task == Task.classification else table.y.shape[1]
    shape = example_shape(spec) or tuple(table.X.shape[1:])

    def scaled(X: np.ndarray) -> torch.Tensor:
        return scale_inputs(scaler, tensor(X), shape).to(device)

    target_scaler = None
    if table.task == Task.regression and targets == TargetScaling.zscore:
        target_scaler = Scaler.fit(InputScaling.zscore, tensor(y_train))

    def target(y: np.ndarray) -> torch.Tensor:
        return (target_scaler(tensor(y)) if target_scaler is not None else tensor(y)).to(device)

    labels = table.class_labels or []
    return Splits(
        X_train=scaled(X_train),
        y_train=target(y_train),
        X_val=scaled(X_val),
        y_val=target(y_val),
        X_test=scaled(X_test),
        y_test=target(y_test),
        task=table.task,
        input_shape=shape,
        outputs=int(outputs or 1),
        scaler=scaler,
        feature_scale=float(np.abs(X_train).max()),
        feature_names=table.feature_names,
        class_labels=table.class_labels,
        targets=target_scaler,
        unstratified_classes=[
            str(labels[c]) if c < len(labels) else str(c) for c in sorted({*unstratified, *more})
        ],
    )
