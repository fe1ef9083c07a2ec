"""Benchmarks with an official test set: MNIST-1D (generated); MNIST, Fashion-MNIST, CIFAR-10 (downloaded)."""

from __future__ import annotations

import gzip
import logging
import math
import os
import random
import struct
import tarfile
from pathlib import Path

import numpy as np

from training.download import DatasetCache, fetch_dataset
from training.spec import DownloadedDatasetSpec, MNIST1DDatasetSpec, Task
from training.tabular import DatasetError, Table

log = logging.getLogger(__name__)

CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32x32 planes


def _table(X: np.ndarray, y: np.ndarray, class_labels: list[str]) -> Table:
    """A classification table whose labels are already class indices 0..K-1 (shared by both splits)."""
    if len(X) != len(y) or len(y) == 0:
        raise DatasetError(f"{len(X)} examples with {len(y)} labels")
    if y.min() < 0 or y.max() >= len(class_labels):
        raise DatasetError(f"labels must lie in 0..{len(class_labels) - 1}; found {y.min()}..{y.max()}")
    names = [f"x{i}" for i in range(X.shape[-1])]
    return Table(
        X.astype(np.float32),
        y.astype(np.int64),
        Task.classification,
        len(class_labels),
        names,
        list(class_labels),
    )


def _mnist1d_arrays(spec: MNIST1DDatasetSpec) -> dict[str, np.ndarray]:
    """Generate MNIST-1D with the package's arguments, the spec's samples, seed and shuffle_seq."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.shuffle_seq = spec.samples, spec.seed, spec.shuffle_seq
    # the package seeds numpy's and Python's global generators; leave them as they were
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {"x": data["x"], "y": data["y"], "x_test": data["x_test"], "y_test": data["y_test"]}


def load_mnist1d(spec: MNIST1DDatasetSpec, cache: DatasetCache) -> tuple[Table, Table]:
    """Train (the package's 4,000 by default) and test (its 1,000) tables, generated once and cached."""
    variant = "-shuffled" if spec.shuffle_seq else ""
    path = cache.folder / "mnist1d" / f"mnist1d-{spec.samples}-seed{spec.seed}{variant}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    else:
        arrays = _mnist1d_arrays(spec)
        _save_atomically(path, arrays)
    labels = [str(digit) for digit in range(10)]
    tables = []
    for X, y in ((arrays["x"], arrays["y"]), (arrays["x_test"], arrays["y_test"])):
        table = _table(X[:, :, None] if spec.as_sequence else X, y, labels)
        if spec.as_sequence:
            table.feature_names = ["x"]
        tables.append(table)
    return tables[0], tables[1]


def _save_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz through a temporary file; a cache that cannot be written only costs regeneration."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"])
        os.replace(partial, path)
    except OSError as error:
        log.warning("could not cache %s (%s); it will be generated again next time", path, error)
    finally:
        partial.unlink(missing_ok=True)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed), as distributed for MNIST and Fashion-MNIST."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DatasetError(f"{path.name} is not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{data[3]}I", data[4 : 4 + 4 * data[3]])
    body = data[4 + 4 * len(dims) :]
    if len(body) != math.prod(dims):
        raise DatasetError(f"{path.name} declares shape {list(dims)} but holds {len(body):,} values")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _read_cifar(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(train, test) pixels and labels from CIFAR-10's binary distribution (fixed-size records, no pickle)."""

    def records(archive: tarfile.TarFile, name: str) -> np.ndarray:
        member = archive.extractfile(f"{CIFAR_FOLDER}/{name}")
        if member is None:
            raise DatasetError(f"{path.name} lacks {CIFAR_FOLDER}/{name}")
        data = member.read()
        if len(data) % CIFAR_RECORD:
            raise DatasetError(f"{name} is not a whole number of {CIFAR_RECORD}-byte records")
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)

    try:
        with tarfile.open(path, "r:gz") as archive:
            train = np.concatenate([records(archive, f"data_batch_{i}.bin") for i in range(1, 6)])
            test = records(archive, "test_batch.bin")
    except (tarfile.TarError, KeyError) as error:
        raise DatasetError(f"{path.name} is not CIFAR-10's binary distribution: {error}") from None
    return (train[:, 1:], train[:, 0]), (test[:, 1:], test[:, 0])


def load_downloaded(spec: DownloadedDatasetSpec, cache: DatasetCache) -> tuple[Table, Table]:
    """Official train and test tables of flattened pixels (0..255), the files fetched first if needed."""
    files = fetch_dataset(spec.name, cache)
    labels = CLASS_NAMES[spec.name]
    if spec.name == "cifar10":
        (X, y), (X_test, y_test) = _read_cifar(files["cifar-10-binary.tar.gz"])
    else:
        X, y = read_idx(files["train-images-idx3-ubyte.gz"]), read_idx(files["train-labels-idx1-ubyte.gz"])
        X_test, y_test = (
            read_idx(files["t10k-images-idx3-ubyte.gz"]),
            read_idx(files["t10k-labels-idx1-ubyte.gz"]),
        )
    return (
        _table(X.reshape(len(X), -1), y, labels),
        _table(X_test.reshape(len(X_test), -1), y_test, labels),
    )


def load_official_splits(
    spec: MNIST1DDatasetSpec | DownloadedDatasetSpec, cache: DatasetCache
) -> tuple[Table, Table]:
    """(train, test) of a benchmark whose test set is fixed by its publishers."""
    if isinstance(spec, MNIST1DDatasetSpec):
        return load_mnist1d(spec, cache)
    return load_downloaded(spec, cache)
