"""The artifact store: checkpoints and uploads, in a local folder or any fsspec URL (s3://...)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

CHUNK_BYTES = 1024 * 1024


def checkpoint_key(job_id: str, name: str, attempt: str | None = None) -> str:
    """Where a checkpoint lives: each attempt uploads under its own folder, so a replaced attempt never
    overwrites the owner's files (the checkpoint row, promoted by the owner only, says which is current)."""
    if attempt is None:
        return f"jobs/{job_id}/checkpoints/{name}.safetensors"
    return f"jobs/{job_id}/attempts/{attempt}/{name}.safetensors"


class ArtifactStore:
    """Files addressed by keys such as `jobs/<id>/checkpoints/best.safetensors` under one root URL."""

    def __init__(self, root_url: str, **storage_options: Any) -> None:
        self.fs: fsspec.AbstractFileSystem
        self.fs, root = url_to_fs(root_url, **storage_options)
        self.root = root.rstrip("/")
        self.local = self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"artifact key must be relative and stay under the root: {key!r}")
        return f"{self.root}/{key}"

    def put_file(self, local_path: Path, key: str) -> str:
        """Copy a local file to `key` (atomically on a local store); returns the key.

        On a local store on the file's own file system the copy is a hard link: the caller never
        changes a file it has put (it writes a new one and renames it), so the two names can share it.
        """
        target = self._path(key)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        partial = f"{target}.partial"
        if self.local and _link(local_path, Path(partial), Path(target)):
            return key
        self.fs.put_file(str(local_path), partial)
        self.fs.mv(partial, target)
        return key

    def put_bytes(self, data: bytes, key: str) -> str:
        """Write bytes to `key`; returns the key."""
        target = self._path(key)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(target, data)
        return key

    def get_file(self, key: str, local_path: Path) -> Path:
        """Copy `key` to a local file."""
        local_path.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(self._path(key), str(local_path))
        return local_path

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        """Stream the file at `key` in chunks."""
        with self.fs.open(self._path(key), "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def size(self, key: str) -> int:
        """Size of the file at `key`, in bytes."""
        return int(self.fs.size(self._path(key)))

    def exists(self, key: str) -> bool:
        """Whether `key` exists."""
        return bool(self.fs.exists(self._path(key)))

    def delete_prefix(self, prefix: str) -> None:
        """Remove every file under `prefix` (a job's folder, say); missing is fine."""
        path = self._path(prefix.rstrip("/"))
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)


def _link(source: Path, partial: Path, target: Path) -> bool:
    """Give `source` the name `target` atomically, through `partial`; False where it cannot be linked.
    (training.checkpoint.link_atomically does the same for checkpoints: core may not import it.)"""
    try:
        partial.unlink(missing_ok=True)
        os.link(source, partial)
    except OSError:  # another file system, or one without hard links: the caller copies
        return False
    os.replace(partial, target)
    partial.unlink(missing_ok=True)  # a rename onto a name of the same file leaves both names
    return True
