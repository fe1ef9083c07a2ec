"""The `trainctl` command: run the service (serve, api, worker), manage keys and migrations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trainctl")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
