"""Small benchmark files in their real formats (IDX gzip, CIFAR-10 binary), served by a local HTTP server.

Tests never reach the internet: they point the checksum table (REMOTE_FILES) at these files instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from training.download import REMOTE_FILES, RemoteFile

MNIST_TRAIN, MNIST_TEST = 30, 12
CIFAR_PER_BATCH, CIFAR_TEST = 4, 6


def idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, gzip-compressed as MNIST is distributed."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def mnist_files(seed: int = 0) -> dict[str, bytes]:
    """The four MNIST files with a few random images (labels 0..9 cycling)."""
    rng = np.random.default_rng(seed)
    files = {}
    for prefix, rows in (("train", MNIST_TRAIN), ("t10k", MNIST_TEST)):
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx(rng.integers(0, 256, (rows, 28, 28)))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx(np.arange(rows) % 10)
    return files


def cifar_records(rows: int, first_label: int, rng: np.random.Generator) -> np.ndarray:
    """CIFAR-10 binary records: a label byte, then 3072 pixel bytes (red, green, blue planes)."""
    records = rng.integers(0, 256, (rows, 3073)).astype(np.uint8)
    records[:, 0] = (np.arange(rows) + first_label) % 10
    return records


def cifar_archive(seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """cifar-10-binary.tar.gz with small batches, and the records each member holds."""
    rng = np.random.default_rng(seed)
    members = {f"data_batch_{i}.bin": cifar_records(CIFAR_PER_BATCH, i, rng) for i in range(1, 6)}
    members["test_batch.bin"] = cifar_records(CIFAR_TEST, 0, rng)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        contents = {name: records.tobytes() for name, records in members.items()}
        contents["batches.meta.txt"] = (
            b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
        )
        for name, data in contents.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), members


@dataclass
class FileServer:
    """Serves `files` at /<path>; `requests` counts GETs; `damage` per path: corrupt, truncate, oversize."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    damage: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds between 64 KiB chunks, so that downloads overlap
    requests: Counter[str] = field(default_factory=Counter)

    def publish(
        self, dataset: str, files: dict[str, bytes], prefix: str = "canonical"
    ) -> tuple[RemoteFile, ...]:
        """Serve files at /<prefix>/<dataset>/<name> and return checksum-table entries for them."""
        remotes = []
        for name, data in files.items():
            self.files[f"/{prefix}/{dataset}/{name}"] = data
            digest = hashlib.sha256(data).hexdigest()
            remotes.append(
                RemoteFile(dataset, name, f"{self.url}/{prefix}/{dataset}/{name}", digest, len(data))
            )
        return tuple(remotes)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests[self.path] += 1
            data = server.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            damage = server.damage.get(self.path)
            body = data
            if damage == "corrupt":
                body = bytes([data[0] ^ 0xFF]) + data[1:]
            elif damage == "oversize":
                body = data + b"\0" * (2 << 20)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if damage == "truncate":
                body = body[: len(body) // 2]  # the connection drops half way
            try:
                for start in range(0, len(body), 1 << 16):
                    self.wfile.write(body[start : start + (1 << 16)])
                    time.sleep(server.delay)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (an oversized file): expected
            if damage == "truncate":
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A local HTTP server, started for the test and stopped after it."""
    server = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def published(file_server: FileServer, monkeypatch: pytest.MonkeyPatch) -> FileServer:
    """MNIST, Fashion-MNIST and CIFAR-10 stand-ins served locally, the checksum table pointed at them."""
    monkeypatch.setitem(REMOTE_FILES, "mnist", file_server.publish("mnist", mnist_files(0)))
    monkeypatch.setitem(REMOTE_FILES, "fashion_mnist", file_server.publish("fashion_mnist", mnist_files(1)))
    archive, _ = cifar_archive()
    monkeypatch.setitem(
        REMOTE_FILES, "cifar10", file_server.publish("cifar10", {"cifar-10-binary.tar.gz": archive})
    )
    return file_server
