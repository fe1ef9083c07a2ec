"""Hostile uploads: declared sizes are checked from the npz headers and CSV rows as they arrive."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.lib import format as npy

from core.config import Settings
from core.models import Dataset
from training.spec import EXAMPLE_SPEC

ZERO_BLOCK = 1 << 24


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small row and byte limits, so hostile files stay small too."""
    return settings.model_copy(update={"max_dataset_rows": 1000, "max_dataset_bytes": 1 << 20})


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(
        buffer, {"descr": npy.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def _zip(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A zip archive of already-deflated members: name -> (deflated bytes, crc32, uncompressed size)."""
    out, directory = io.BytesIO(), io.BytesIO()
    for name, (deflated, crc, size) in members.items():
        offset, raw_name = out.tell(), name.encode()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(deflated), size, len(raw_name), 0
            )
        )
        out.write(raw_name + deflated)
        directory.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0,
                crc,
                len(deflated),
                size,
                len(raw_name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw_name
        )
    start = out.tell()
    out.write(directory.getvalue())
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory.getvalue()), start, 0
        )
    )
    return out.getvalue()


def _deflated(data: bytes) -> tuple[bytes, int, int]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(), zlib.crc32(data), len(data)


def zeros_npz(shape: tuple[int, ...], dtype: Any, y: np.ndarray) -> bytes:
    """What np.savez_compressed(X=np.zeros(shape, dtype), y=y) writes, built without allocating X."""
    header = _npy_header(shape, np.dtype(dtype))
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    assert size % ZERO_BLOCK == 0
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor forgets its history, so every zero block deflates alike.
    block = bytes(ZERO_BLOCK)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    for _ in range(size // ZERO_BLOCK):
        crc = zlib.crc32(block, crc)
    deflated = head + piece * (size // ZERO_BLOCK) + compressor.flush()
    y_buffer = io.BytesIO()
    np.save(y_buffer, y)
    return _zip({"X.npy": (deflated, crc, len(header) + size), "y.npy": _deflated(y_buffer.getvalue())})


def declared_only_npz(x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> bytes:
    """An .npz whose headers declare these shapes (float32) but that holds no data at all."""
    return _zip(
        {
            "X.npy": _deflated(_npy_header(x_shape, np.dtype(np.float32))),
            "y.npy": _deflated(_npy_header(y_shape, np.dtype(np.float32))),
        }
    )


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def measured(call: Callable[[], Any]) -> tuple[Any, float, int]:
    """The call's result, its seconds, and the peak of Python and numpy allocations meanwhile."""
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - start
        return result, seconds, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_zeros_builder_writes_what_savez_compressed_writes() -> None:
    content = zeros_npz((4, 1 << 22), np.float32, np.arange(4))
    with np.load(io.BytesIO(content)) as archive:
        assert archive["X"].shape == (4, 1 << 22) and not archive["X"].any()
        assert archive["y"].tolist() == [0, 1, 2, 3]


def upload(client: TestClient, headers: dict[str, str], name: str, content: bytes) -> Any:
    return client.post("/v1/datasets", files={"file": (name, content)}, headers=headers)


def assert_refused(response: Any, *words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["field"] == "file"
    for word in words:
        assert word in body["detail"], body["detail"]


def test_a_wide_compressed_npz_is_refused_from_its_header_in_little_memory(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    # The reported upload: 1.3 MB that decompresses to 1.34 GB (it took the API 4.3 GB for 17 s).
    content = zeros_npz((20, 1 << 24), np.float32, np.zeros(20))
    assert len(content) < 2_000_000
    response, seconds, peak = measured(lambda: upload(client, auth_headers, "wide.npz", content))
    assert_refused(response, "16,777,216 numbers per example", "65,536", "TRAINCTL_MAX_DATASET_FEATURES")
    assert seconds < 5
    assert peak < 20 * 2**20, f"peak {peak:,} bytes"


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "words"),
    [
        ((10**9, 2), (10**9,), ["1,000,000,000 rows", "1,000", "TRAINCTL_MAX_DATASET_ROWS"]),
        ((20, 10), (10**9,), ["1,000,000,000 rows", "TRAINCTL_MAX_DATASET_ROWS"]),
        ((1000, 1000), (1000,), ["4,004,000 bytes", "1,048,576", "TRAINCTL_MAX_DATASET_BYTES"]),
    ],
)
def test_declared_sizes_over_the_limits_are_refused_before_any_data_is_read(
    client: TestClient,
    auth_headers: dict[str, str],
    x_shape: tuple[int, ...],
    y_shape: tuple[int, ...],
    words: list[str],
) -> None:
    response = upload(client, auth_headers, "lying.npz", declared_only_npz(x_shape, y_shape))
    assert_refused(response, *words)


def test_csv_rows_are_counted_as_they_arrive(client: TestClient, auth_headers: dict[str, str]) -> None:
    content = b"a,b,y\n" + b"1.5,2.5,0\n" * 400_000
    response, _seconds, peak = measured(lambda: upload(client, auth_headers, "long.csv", content))
    assert_refused(response, "1,001 rows is over the limit of 1,000", "TRAINCTL_MAX_DATASET_ROWS")
    # The file arrives and is held a few times over; parsing all of it would take far more.
    assert peak < 4 * len(content) + 4 * 2**20, f"peak {peak:,} bytes for a {len(content):,}-byte file"


def test_csv_wider_than_the_feature_limit_is_refused_from_its_header(
    client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    header = ",".join(f"x{i}" for i in range(settings.max_dataset_features + 1)).encode()
    response = upload(client, auth_headers, "wide.csv", header + b",y\n")
    assert_refused(response, "65,537 numbers per example", "TRAINCTL_MAX_DATASET_FEATURES")


X = np.zeros((20, 3))
BAD_ARRAYS = {
    "complex y": ({"X": X, "y": np.ones(20, np.complex64)}, "y has dtype complex64"),
    "datetime y": ({"X": X, "y": np.arange(20).astype("datetime64[D]")}, "y has dtype datetime64[D]"),
    "timedelta y": ({"X": X, "y": np.arange(20).astype("timedelta64[s]")}, "y has dtype timedelta64[s]"),
    "structured y": (
        {"X": X, "y": np.zeros(20, dtype=[("a", "f4"), ("b", "i4")])},
        "it must hold numbers or text labels",
    ),
    "0-d y": ({"X": X, "y": np.float64(1.0)}, "y is a single value"),
    "complex X": ({"X": X.astype(np.complex128), "y": np.arange(20) % 2}, "X has dtype complex128"),
    "text X": ({"X": X.astype(str), "y": np.arange(20) % 2}, "X has dtype <U32"),
    "zero feature columns": ({"X": np.zeros((20, 0)), "y": np.arange(20) % 2}, "features have zero columns"),
    "zero time steps": ({"X": np.zeros((20, 0, 3)), "y": np.arange(20) % 2}, "zero time steps"),
    "zero features per step": ({"X": np.zeros((20, 4, 0)), "y": np.arange(20) % 2}, "zero columns"),
    "y with zero columns": ({"X": X, "y": np.zeros((20, 0))}, "the target has zero columns"),
    "y of three dimensions": ({"X": X, "y": np.zeros((20, 2, 2))}, "the target must be (rows,)"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_arrays_no_network_can_use_are_a_422_naming_file(
    client: TestClient, auth_headers: dict[str, str], case: str
) -> None:
    arrays, words = BAD_ARRAYS[case]
    assert_refused(upload(client, auth_headers, "bad.npz", npz(**arrays)), words)


def test_class_labels_in_two_columns_are_refused(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/datasets",
        files={"file": ("two.npz", npz(X=X, y=np.arange(40).reshape(20, 2) % 2))},
        data={"task": "classification"},
        headers=auth_headers,
    )
    assert_refused(response, "a classification target is one column")


def test_pickled_arrays_are_refused_unread(client: TestClient, auth_headers: dict[str, str]) -> None:
    content = npz(X=X, y=np.array([{"evil": i} for i in range(20)], dtype=object))
    assert_refused(upload(client, auth_headers, "evil.npz", content), "object arrays are refused")


def test_an_npz_listing_thousands_of_members_is_refused(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    members = {f"m{i}.npy": _deflated(b"") for i in range(5000)}
    content = _zip({**members, "X.npy": _deflated(b""), "y.npy": _deflated(b"")})
    assert_refused(upload(client, auth_headers, "many.npz", content), "more than 256 members")


def test_a_stored_upload_with_no_columns_is_refused_at_submission(
    app: Any, client: TestClient, auth_headers: dict[str, str]
) -> None:
    # Stored before such uploads were refused: training on it would crash, so submission says why.
    with app.state.session_factory() as session:
        session.add(
            Dataset(
                id="ds_empty",
                owner="alice",
                filename="old.npz",
                format="npz",
                uri="datasets/ds_empty.npz",
                rows=20,
                columns=0,
                example_shape=[0],
                task="classification",
                classes=2,
                size_bytes=100,
            )
        )
        session.commit()
    spec = {**EXAMPLE_SPEC, "dataset": {"id": "ds_empty"}}
    response = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "spec.dataset.id"
