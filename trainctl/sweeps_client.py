"""The part of the client that works on many jobs: sweeps, compare and plots (and what Client shares)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from trainctl.errors import WaitTimeout
from trainctl.retry import HttpClient

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # an argument not given (None means "clear it")


def changes(name: Any, tags: Any, notes: Any) -> dict[str, Any]:
    """The PATCH body: only what was given."""
    body = {"name": name, "notes": notes}
    body = {k: v for k, v in body.items() if v is not UNSET}
    if tags is not UNSET:
        body["tags"] = list(tags or [])
    return body


def join(values: Iterable[str] | str | None) -> str | None:
    if values is None or isinstance(values, str):
        return values
    return ",".join(str(value) for value in values)


class SweepsClient:
    """Sweeps, compare and plots over the HTTP plumbing (Client adds jobs, datasets and workers)."""

    _api: HttpClient

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._api.request(method, path, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._api.json(method, path, **kwargs)

    def _save(self, path: str, target: str | Path, params: Mapping[str, Any] | None = None) -> Path:
        return self._api.save(path, target, params)

    # -- sweeps, compare, plots -------------------------------------------------------------------------

    def sweep(
        self,
        base: Mapping[str, Any],
        grid: Mapping[str, Iterable[Any]],
        seeds: int = 1,
        name: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Create one job per grid point × seed (grid keys are dotted paths into the spec)."""
        body: dict[str, Any] = {
            "name": name or "sweep",
            "base": dict(base),
            "grid": {path: list(values) for path, values in grid.items()},
            "seeds": seeds,
        }
        if tags:
            body["tags"] = list(tags)
        result: dict[str, Any] = self._json("POST", "/v1/sweeps", json=body)
        return result

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep with its counts by status and its jobs."""
        result: dict[str, Any] = self._json("GET", f"/v1/sweeps/{sweep_id}")
        return result

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        """Your newest sweeps (one page)."""
        page: dict[str, Any] = self._json("GET", "/v1/sweeps", params={"limit": limit})
        return list(page["items"])

    def update_sweep(
        self, sweep_id: str, *, name: str = UNSET, tags: Iterable[str] = UNSET, notes: str | None = UNSET
    ) -> dict[str, Any]:
        """Rename, re-tag (its jobs too) or annotate a sweep; notes=None clears the notes."""
        result: dict[str, Any] = self._json(
            "PATCH", f"/v1/sweeps/{sweep_id}", json=changes(name, tags, notes)
        )
        return result

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete a finished sweep with its jobs, their metrics and files."""
        self._request("DELETE", f"/v1/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        """Cancel every unfinished job of a sweep."""
        result: dict[str, Any] = self._json("POST", f"/v1/sweeps/{sweep_id}/cancel")
        return result

    def add_seeds(self, sweep_id: str, seeds: int) -> dict[str, Any]:
        """Give every grid point `seeds` seeds in total; only the missing ones run (`added` lists them)."""
        result: dict[str, Any] = self._json("POST", f"/v1/sweeps/{sweep_id}/seeds", json={"seeds": seeds})
        return result

    def wait_sweep(
        self,
        sweep_id: str,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
    ) -> dict[str, Any]:
        """Poll until every job of the sweep has finished; on_progress(sweep) sees each change."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            sweep = self.get_sweep(sweep_id)
            counts = {status: n for status, n in sweep.get("counts", {}).items() if n}
            if on_progress is not None and counts != last:
                on_progress(sweep)
            last = counts
            if all(job["status"] in FINISHED for job in sweep.get("jobs", [])):
                return sweep
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"sweep {sweep_id}", timeout or 0.0, sweep)
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    @staticmethod
    def _selection(jobs: Iterable[str] | str | None, sweep: str | None) -> dict[str, str]:
        if (jobs is None) == (sweep is None):
            raise ValueError("give either jobs or sweep")
        return {"jobs": join(jobs) or ""} if jobs is not None else {"sweep": str(sweep)}

    def compare(
        self, jobs: Iterable[str] | str | None = None, sweep: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Compare jobs (or a sweep's jobs): common spec, per-job differences and results, seed groups.

        Extra keyword arguments are query parameters: metric, mode, target, alpha, fields, points,
        job_curves.
        """
        query = self._selection(jobs, sweep) | {
            k: join(v) if isinstance(v, list | tuple) else v for k, v in params.items() if v is not None
        }
        result: dict[str, Any] = self._json("GET", "/v1/compare", params=query)
        return result

    def compare_csv(
        self, jobs: Iterable[str] | str | None = None, sweep: str | None = None, **params: Any
    ) -> str:
        """The comparison as one flat CSV table (table=jobs, groups, effects or bands)."""
        query = self._selection(jobs, sweep) | {"format": "csv"}
        query |= {k: v for k, v in params.items() if v is not None}
        return self._request("GET", "/v1/compare", params=query).text

    def plot(
        self,
        jobs: Iterable[str] | str | None = None,
        sweep: str | None = None,
        metric: str = "val_loss",
        path: str | Path = "compare.png",
        **params: Any,
    ) -> Path:
        """Save overlaid learning curves of jobs (or a sweep), mean and 95% CI band per seed group, as PNG."""
        query = self._selection(jobs, sweep) | {"metric": metric}
        query |= {k: v for k, v in params.items() if v is not None}
        return self._save("/v1/compare/plot.png", path, params=query)
