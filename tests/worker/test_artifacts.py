"""The artifact store's put_file: atomic, a hard link where it can be, a copy where it cannot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.artifacts import ArtifactStore


def write(path: Path, data: bytes) -> Path:
    """Write as checkpoints are written: a new file renamed over the old name."""
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path


def test_a_put_file_keeps_its_bytes_when_the_source_is_written_again(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = write(tmp_path / "last.safetensors", b"epoch 1")
    store.put_file(source, "jobs/j/last.safetensors")
    store.put_file(source, "jobs/j/last.safetensors")  # the same file again (a retried upload)
    target = tmp_path / "store" / "jobs" / "j" / "last.safetensors"
    assert os.path.samefile(source, target)  # linked, not copied
    write(source, b"epoch 2")
    assert target.read_bytes() == b"epoch 1"
    store.put_file(source, "jobs/j/last.safetensors")
    assert target.read_bytes() == b"epoch 2"
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.safetensors"]  # no partial left


def test_a_source_that_cannot_be_linked_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(*_: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    store = ArtifactStore(str(tmp_path / "store"))
    source = write(tmp_path / "best.safetensors", b"weights")
    store.put_file(source, "jobs/j/best.safetensors")
    target = tmp_path / "store" / "jobs" / "j" / "best.safetensors"
    assert target.read_bytes() == b"weights" and not os.path.samefile(source, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["best.safetensors"]
