"""Downloaded benchmarks: fetched once, SHA-256 verified, atomic, one download across processes, a mirror,
and failures that cache nothing and say what to do. Files are small stand-ins in the real formats."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.benchmark_files import (
    CIFAR_PER_BATCH,
    CIFAR_TEST,
    MNIST_TEST,
    MNIST_TRAIN,
    FileServer,
    cifar_archive,
    file_server,
    published,
)
from training.data import prepare
from training.download import (
    REMOTE_FILES,
    DatasetCache,
    DownloadError,
    current_cache,
    fetch_dataset,
    fetch_file,
    using_cache,
)
from training.loop import fit
from training.spec import DownloadedDatasetSpec, InputScaling, JobSpec

__all__ = ["file_server", "published"]  # fixtures used by name below
CPU = torch.device("cpu")


def leftovers(folder: Path) -> list[str]:
    """Files in the cache other than lock files: what a failed download must not leave behind."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_mnist_is_fetched_once_then_read_from_the_cache(published: FileServer, tmp_path: Path) -> None:
    cache = DatasetCache(tmp_path / "cache")
    spec = DownloadedDatasetSpec(name="mnist", validation_fraction=0.2)
    splits = prepare(spec, InputScaling.none, 0, CPU, cache=cache)
    assert splits.X_train.shape == (MNIST_TRAIN * 0.8, 784) and splits.X_val.shape == (MNIST_TRAIN * 0.2, 784)
    assert splits.X_test.shape == (MNIST_TEST, 784)  # the official test set, whole
    assert splits.class_labels == [str(d) for d in range(10)] and splits.feature_scale <= 255
    assert sum(published.requests.values()) == 4
    images = prepare(spec.model_copy(update={"as_images": True}), InputScaling.zscore, 0, CPU, cache=cache)
    assert images.input_shape == (1, 28, 28) and images.X_test.shape == (MNIST_TEST, 1, 28, 28)
    assert sum(published.requests.values()) == 4  # served from the cache
    assert leftovers(cache.folder) == sorted(f.name for f in REMOTE_FILES["mnist"])


def test_mnist_pixels_and_labels_are_read_in_order(published: FileServer, tmp_path: Path) -> None:
    from training.benchmarks import load_downloaded

    train, test = load_downloaded(DownloadedDatasetSpec(name="fashion_mnist"), DatasetCache(tmp_path))
    assert train.X.shape == (MNIST_TRAIN, 784) and test.y.tolist() == [i % 10 for i in range(MNIST_TEST)]
    assert train.class_labels is not None and train.class_labels[9] == "Ankle boot"


def test_cifar10_comes_from_the_binary_records_red_green_blue(published: FileServer, tmp_path: Path) -> None:
    _, members = cifar_archive()
    spec = DownloadedDatasetSpec(name="cifar10", as_images=True, validation_fraction=0.0)
    splits = prepare(spec, InputScaling.none, 0, CPU, cache=DatasetCache(tmp_path))
    assert splits.input_shape == (3, 32, 32) and splits.X_train.shape == (5 * CIFAR_PER_BATCH, 3, 32, 32)
    test = members["test_batch.bin"]
    assert splits.X_test.shape[0] == CIFAR_TEST and splits.y_test.tolist() == test[:, 0].tolist()
    first = test[0, 1:].reshape(3, 32, 32)  # channel planes, each row-major
    assert torch.equal(splits.X_test[0], torch.from_numpy(first.astype(np.float32)))
    assert splits.class_labels is not None and splits.class_labels[0] == "airplane"


def test_a_mirror_serves_dataset_folders(published: FileServer, tmp_path: Path) -> None:
    archive, _ = cifar_archive()
    published.files["/mirror/cifar10/cifar-10-binary.tar.gz"] = archive
    cache = DatasetCache(tmp_path, mirror=f"{published.url}/mirror/")
    fetch_dataset("cifar10", cache)
    assert published.requests == {"/mirror/cifar10/cifar-10-binary.tar.gz": 1}


def test_a_corrupted_download_caches_nothing_and_says_so(published: FileServer, tmp_path: Path) -> None:
    remote = REMOTE_FILES["mnist"][0]
    published.damage[remote.url.removeprefix(published.url)] = "corrupt"
    cache = DatasetCache(tmp_path)
    with pytest.raises(DownloadError, match="SHA-256") as raised:
        fetch_file(remote, cache)
    assert "nothing was cached" in str(raised.value) and leftovers(tmp_path) == []
    published.damage.clear()
    assert fetch_file(remote, cache).read_bytes() == published.files[remote.url.removeprefix(published.url)]


@pytest.mark.parametrize("damage", ["truncate", "oversize"])
def test_an_interrupted_or_oversized_download_caches_nothing(
    published: FileServer, tmp_path: Path, damage: str
) -> None:
    remote = REMOTE_FILES["mnist"][0]  # train images: several chunks
    published.damage[remote.url.removeprefix(published.url)] = damage
    with pytest.raises(DownloadError, match="nothing was cached") as raised:
        fetch_file(remote, DatasetCache(tmp_path))
    assert "interrupted" in str(raised.value) or "more than" in str(raised.value)
    assert leftovers(tmp_path) == []


def test_a_damaged_cached_file_is_fetched_again(published: FileServer, tmp_path: Path) -> None:
    cache = DatasetCache(tmp_path)
    remote = REMOTE_FILES["mnist"][1]
    path = fetch_file(remote, cache)
    path.write_bytes(b"\0" * remote.size)  # same size, wrong contents
    assert fetch_file(remote, cache).read_bytes() != b"\0" * remote.size
    assert published.requests[remote.url.removeprefix(published.url)] == 2


FETCH = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from training.download import DatasetCache, RemoteFile, fetch_file
    remote = RemoteFile("mnist", sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    print(fetch_file(remote, DatasetCache(Path(sys.argv[5]))))
    """
)


def test_two_processes_fetching_at_once_download_once(published: FileServer, tmp_path: Path) -> None:
    remote = REMOTE_FILES["mnist"][0]
    published.delay = 0.02  # about half a second per download: the second process arrives during it
    argv = [
        sys.executable,
        "-c",
        FETCH,
        remote.name,
        remote.url,
        remote.sha256,
        str(remote.size),
        str(tmp_path),
    ]
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "mnist" / remote.name)}
    assert published.requests[remote.url.removeprefix(published.url)] == 1
    assert leftovers(tmp_path) == [remote.name]


def test_without_network_or_cache_the_job_fails_naming_files_folder_and_mirror(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"name": "mnist"},
            "network": {"hidden_layers": [4]},
            "training": {"epochs": 1, "device": "cpu"},
        }
    )
    cache = DatasetCache(tmp_path / "cache", mirror="http://127.0.0.1:9/")  # the discard port: refused
    with using_cache(cache):
        result = fit(spec)
    assert result.status == "failed"
    error = result.error or ""
    for expected in (*(f.name for f in REMOTE_FILES["mnist"]), str(cache.folder.resolve() / "mnist")):
        assert expected in error
    assert "TRAINCTL_DATASET_MIRROR" in error and "trainctl datasets fetch mnist" in error
    assert leftovers(tmp_path) == []


def test_the_cache_in_use_is_the_callers_else_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINCTL_DATASET_CACHE", str(tmp_path / "from-env"))
    monkeypatch.setenv("TRAINCTL_DATASET_MIRROR", "https://mirror.example/data/")
    assert current_cache() == DatasetCache(tmp_path / "from-env", "https://mirror.example/data/")
    assert current_cache().url(REMOTE_FILES["mnist"][0]).startswith("https://mirror.example/data/mnist/")
    worker = DatasetCache(tmp_path / "worker")
    with using_cache(worker):
        assert current_cache() is worker
        assert current_cache().url(REMOTE_FILES["mnist"][0]) == REMOTE_FILES["mnist"][0].url
    monkeypatch.delenv("TRAINCTL_DATASET_CACHE")
    monkeypatch.setenv("TRAINCTL_DATA_DIR", str(tmp_path / "data"))
    assert current_cache().folder == tmp_path / "data" / "datasets"


def test_a_cache_folder_that_cannot_be_written_fails_with_the_same_advice(
    published: FileServer, tmp_path: Path
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with pytest.raises(DownloadError, match="TRAINCTL_DATASET_CACHE"):
        fetch_dataset("mnist", DatasetCache(blocked / "cache"))
