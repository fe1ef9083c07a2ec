"""Benchmark files fetched once into a cache folder: verified by SHA-256, written atomically, one download
at a time across processes (a file lock), from their canonical location or a mirror."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.tabular import DatasetError

CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per socket operation: a stalled server fails the download instead of hanging the job


@dataclass(frozen=True)
class RemoteFile:
    """One file of a benchmark: where it is published, and what exactly it must contain."""

    dataset: str
    name: str
    url: str
    sha256: str
    size: int


def _files(dataset: str, base: str, files: dict[str, tuple[int, str]]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(dataset, name, base + name, sha, size) for name, (size, sha) in files.items())


# The checksums are the ones their publishers' files have had for years (torchvision, TFDS agree).
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    # yann.lecun.com no longer serves the files to scripts; this is the copy torchvision downloads
    "mnist": _files(
        "mnist",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": (
                9_912_422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            "train-labels-idx1-ubyte.gz": (
                28_881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            "t10k-images-idx3-ubyte.gz": (
                1_648_877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                4_542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        },
    ),
    "fashion_mnist": _files(
        "fashion_mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": (
                26_421_880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            "train-labels-idx1-ubyte.gz": (
                29_515,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            "t10k-images-idx3-ubyte.gz": (
                4_422_102,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            "t10k-labels-idx1-ubyte.gz": (
                5_148,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        },
    ),
    "cifar10": _files(
        "cifar10",
        "https://www.cs.toronto.edu/~kriz/",
        {
            "cifar-10-binary.tar.gz": (
                170_052_171,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            ),
        },
    ),
}


class DatasetSettings(BaseSettings):
    """The dataset cache settings, read like the service's Settings (the engine may not import those)."""

    model_config = SettingsConfigDict(env_prefix="TRAINCTL_", env_file=".env", extra="ignore")

    data_dir: Path = Path("var")
    dataset_cache: Path | None = None
    dataset_mirror: str | None = None


@dataclass(frozen=True)
class DatasetCache:
    """Where benchmark files are kept (one folder per dataset), and the mirror to fetch them from."""

    folder: Path
    mirror: str | None = None

    @classmethod
    def from_env(cls) -> DatasetCache:
        """TRAINCTL_DATASET_CACHE (default: TRAINCTL_DATA_DIR/datasets) and TRAINCTL_DATASET_MIRROR."""
        settings = DatasetSettings()
        return cls(settings.dataset_cache or settings.data_dir / "datasets", settings.dataset_mirror or None)

    def path(self, remote: RemoteFile) -> Path:
        """Where the file lives in the cache."""
        return self.folder / remote.dataset / remote.name

    def url(self, remote: RemoteFile) -> str:
        """The mirror's copy, MIRROR/<dataset>/<file>, or else the canonical location."""
        if self.mirror:
            return f"{self.mirror.rstrip('/')}/{remote.dataset}/{remote.name}"
        return remote.url


_current_cache: ContextVar[DatasetCache | None] = ContextVar("trainctl_dataset_cache", default=None)


@contextmanager
def using_cache(cache: DatasetCache) -> Iterator[None]:
    """Make `cache` the one that datasets are read from in this context (the worker's settings)."""
    token = _current_cache.set(cache)
    try:
        yield
    finally:
        _current_cache.reset(token)


def current_cache() -> DatasetCache:
    """The cache set by `using_cache`, else the one the environment describes."""
    return _current_cache.get() or DatasetCache.from_env()


class DownloadError(DatasetError):
    """A benchmark file that is neither cached nor fetchable; the message says how to provide it."""


Progress = Callable[[RemoteFile, int], None]  # (file, bytes received so far)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_cached(remote: RemoteFile, cache: DatasetCache) -> bool:
    """Whether the cache holds this file with the right contents."""
    path = cache.path(remote)
    return path.is_file() and path.stat().st_size == remote.size and sha256_of(path) == remote.sha256


def fetch_file(remote: RemoteFile, cache: DatasetCache, progress: Progress | None = None) -> Path:
    """The cached file, downloaded first when missing or damaged; other processes wait for one download."""
    target = cache.path(remote)
    if is_cached(remote, cache):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(f".{target.name}.lock")):
        if not is_cached(remote, cache):  # a process we waited for may have fetched it meanwhile
            target.unlink(missing_ok=True)  # a damaged copy is never used
            _download(remote, cache.url(remote), target, progress)
    return target


def _download(remote: RemoteFile, url: str, target: Path, progress: Progress | None) -> None:
    """Stream `url` into a temporary file beside `target`; rename it into place only once verified."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, partial.open("wb") as out:
            while chunk := response.read(CHUNK):
                received += len(chunk)
                if received > remote.size:  # a wrong or hostile server: stop reading at once
                    raise DownloadError(
                        f"{url} sends more than the {remote.size:,} bytes of {remote.name}: it is not the "
                        "published file; nothing was cached"
                    )
                out.write(chunk)
                digest.update(chunk)
                if progress is not None:
                    progress(remote, received)
            out.flush()
            os.fsync(out.fileno())
        if received != remote.size:
            raise DownloadError(
                f"{url} sent {received:,} bytes where {remote.name} has {remote.size:,} "
                "(interrupted, or not the published file); nothing was cached"
            )
        if digest.hexdigest() != remote.sha256:
            raise DownloadError(
                f"{url} does not match the SHA-256 of {remote.name} (expected {remote.sha256}, got "
                f"{digest.hexdigest()}): nothing was cached; check the mirror serves the published file"
            )
        os.replace(partial, target)
    except urllib.error.HTTPError as error:
        raise DownloadError(
            f"downloading {url} failed (HTTP {error.code} {error.reason}); nothing was cached"
        ) from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"downloading {url} failed ({reason}); nothing was cached") from error
    finally:
        partial.unlink(missing_ok=True)


def fetch_dataset(name: str, cache: DatasetCache, progress: Progress | None = None) -> dict[str, Path]:
    """Every file of a benchmark from the cache, fetching what is missing; one error that says what to do."""
    remotes = REMOTE_FILES[name]
    try:
        return {remote.name: fetch_file(remote, cache, progress) for remote in remotes}
    except (DownloadError, OSError) as error:  # OSError: a cache folder that cannot be written
        files = ", ".join(remote.name for remote in remotes)
        mirror = f"now {cache.mirror}" if cache.mirror else "not set"
        raise DownloadError(
            f"dataset {name} needs {files} in the dataset cache {cache.folder.resolve() / name} "
            f"(TRAINCTL_DATASET_CACHE), and they could not be fetched: {error}. Run `trainctl datasets "
            f"fetch {name}` where the internet is reachable and copy that folder here, or set "
            f"TRAINCTL_DATASET_MIRROR ({mirror}) to a base URL serving <mirror>/{name}/<file>."
        ) from error
