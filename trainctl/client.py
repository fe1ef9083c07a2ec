"""A small Python client of the trainctl API (httpx): jobs, metrics, sweeps, compare, plots, events."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from trainctl.errors import FieldProblem, ServerUnreachable, TrainctlError, WaitTimeout
from trainctl.table import Table
from training.records import EpochRecord

__all__ = ["Client", "FieldProblem", "ServerUnreachable", "Table", "TrainctlError", "WaitTimeout"]

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def default_key_file() -> Path:
    """Where `trainctl serve` writes the first key: DATA_DIR/api-key (TRAINCTL_DATA_DIR, else ./var)."""
    return Path(os.environ.get("TRAINCTL_DATA_DIR") or "var").expanduser() / "api-key"


def resolve_key(api_key: str | None = None) -> str | None:
    """The key from the argument, else TRAINCTL_API_KEY, else the key file; None when there is none."""
    if api_key:
        return api_key.strip()
    if os.environ.get("TRAINCTL_API_KEY"):
        return os.environ["TRAINCTL_API_KEY"].strip()
    try:
        return default_key_file().read_text().strip() or None
    except OSError:
        return None


def _join(values: Iterable[str] | str | None) -> str | None:
    if values is None or isinstance(values, str):
        return values
    return ",".join(str(value) for value in values)


class Client:
    """The trainctl API over HTTP. Every failure answered by the server raises TrainctlError."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("TRAINCTL_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = resolve_key(api_key)
        headers = {"User-Agent": "trainctl-client"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            reason = type(error).__name__ + (f": {error}" if str(error) else "")
            raise ServerUnreachable(self.url, reason) from error
        if response.is_error:
            raise TrainctlError.from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _save(self, path: str, target: str | Path, params: Mapping[str, Any] | None = None) -> Path:
        """Stream a GET into a file (written next to it first, so a failure leaves no half file)."""
        target = Path(target)
        partial = target.with_name(target.name + ".part")
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.is_error:
                    response.read()
                    raise TrainctlError.from_response(response)
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.TransportError as error:
            partial.unlink(missing_ok=True)
            raise ServerUnreachable(self.url, type(error).__name__) from error
        partial.replace(target)
        return target

    # -- jobs -------------------------------------------------------------------------------------------

    def submit(
        self,
        spec: Mapping[str, Any],
        name: str | None = None,
        tags: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job spec; returns the queued job (with its lint warnings)."""
        body: dict[str, Any] = {"spec": dict(spec)}
        if name:
            body["name"] = name
        if tags:
            body["tags"] = list(tags)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        job: dict[str, Any] = self._json("POST", "/v1/jobs", json=body, headers=headers)
        return job

    def validate(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Check a spec without creating anything (POST /v1/specs/validate)."""
        result: dict[str, Any] = self._json("POST", "/v1/specs/validate", json={"spec": dict(spec)})
        return result

    def get(self, job_id: str) -> dict[str, Any]:
        """One job: status, progress, result, error."""
        job: dict[str, Any] = self._json("GET", f"/v1/jobs/{job_id}")
        return job

    def jobs(
        self, *, status: str | None = None, tag: str | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """The newest jobs (one page), optionally filtered."""
        params = {k: v for k, v in {"status": status, "tag": tag, "limit": limit}.items() if v is not None}
        page: dict[str, Any] = self._json("GET", "/v1/jobs", params=params)
        return list(page["items"])

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 0.5,
    ) -> dict[str, Any]:
        """Poll until the job has finished; on_progress(job) sees each change. Raises WaitTimeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            job = self.get(job_id)
            state = (job["status"], job["progress"]["epoch"])
            if on_progress is not None and state != last:
                on_progress(job)
            last = state
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id}", timeout or 0.0, job)
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def metrics(
        self, job_id: str, since_epoch: int | None = None, fields: Iterable[str] | str | None = None
    ) -> list[dict[str, Any]]:
        """Per-epoch records, oldest first (later epochs only with since_epoch, some keys with fields)."""
        params = {"since_epoch": since_epoch, "fields": _join(fields)}
        page = self._json(
            "GET", f"/v1/jobs/{job_id}/metrics", params={k: v for k, v in params.items() if v is not None}
        )
        return list(page["items"])

    def metrics_csv(self, job_id: str, fields: Iterable[str] | str | None = None) -> str:
        """Per-epoch metrics as CSV text (layer diagnostics flattened into layers.<name>.<field>)."""
        params = {"format": "csv"} | ({"fields": _join(fields) or ""} if fields else {})
        return self._request("GET", f"/v1/jobs/{job_id}/metrics", params=params).text

    def metrics_table(self, job_id: str, fields: Iterable[str] | str | None = None) -> Table:
        """Per-epoch metrics as a Table: epoch, then the fields asked for, or EpochRecord's in its order."""
        wanted = None if fields is None else [f for f in (_join(fields) or "").split(",") if f]
        records = self.metrics(job_id, fields=wanted)
        if wanted is None:  # EpochRecord's fields in its order, then anything newer the server sends
            present = {name for record in records for name in record}
            known = [name for name in EpochRecord.model_fields if name in present]
            return Table.from_records(records, [*known, *sorted(present - set(known))])
        return Table.from_records(records, ["epoch", *[f for f in wanted if f != "epoch"]])

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """The job's checkpoint files."""
        return list(self._json("GET", f"/v1/jobs/{job_id}/checkpoints"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job."""
        job: dict[str, Any] = self._json("POST", f"/v1/jobs/{job_id}/cancel")
        return job

    def delete(self, job_id: str) -> None:
        """Delete a finished job with its metrics and files."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def predict(
        self, job_id: str, inputs: list[list[float]], checkpoint: str | None = None
    ) -> dict[str, Any]:
        """Predictions on raw rows by the checkpoint result.test measured, or by `checkpoint` (best, last)."""
        body: dict[str, Any] = {"inputs": inputs} | ({"checkpoint": checkpoint} if checkpoint else {})
        result: dict[str, Any] = self._json("POST", f"/v1/jobs/{job_id}/predict", json=body)
        return result

    def download(self, job_id: str, checkpoint: str = "model", path: str | Path | None = None) -> Path:
        """Save a checkpoint (safetensors) to `path` (default: JOB-CHECKPOINT.safetensors here).

        `model` is the checkpoint whose weights result.test measured; or best, last, epoch-NNNNN.
        """
        target = Path(path) if path is not None else Path(f"{job_id}-{checkpoint}.safetensors")
        return self._save(f"/v1/jobs/{job_id}/checkpoints/{checkpoint}", target)

    def job_plot(self, job_id: str, kind: str = "gradients", path: str | Path | None = None) -> Path:
        """Save a job's diagnostic plot (gradients or saturation) as PNG."""
        target = Path(path) if path is not None else Path(f"{job_id}-{kind}.png")
        return self._save(f"/v1/jobs/{job_id}/plots/{kind}.png", target)

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[tuple[str, Any]]:
        """Live (event, data) pairs from the job's Server-Sent Events until its `end` event.

        data is the parsed JSON (the raw text when it is not JSON). A dropped connection is resumed
        once per drop from the last event id, so no epoch is missed or repeated.
        """
        from httpx_sse import SSEError, connect_sse

        last_id = last_event_id
        drops = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(self._http.timeout.connect, read=None),
                ) as source:
                    if source.response.is_error:
                        source.response.read()
                        raise TrainctlError.from_response(source.response)
                    for sse in source.iter_sse():
                        drops = 0
                        if sse.id:
                            last_id = sse.id
                        if sse.event == "message" and not sse.data:
                            continue  # only a retry: hint or a keep-alive
                        try:
                            data: Any = json.loads(sse.data) if sse.data else None
                        except ValueError:
                            data = sse.data
                        yield sse.event, data
                        if sse.event == "end":
                            return
                return  # the server closed the stream without an end event: nothing more will come
            except SSEError as error:
                raise TrainctlError(0, "Not an event stream", str(error)) from error
            except httpx.TransportError as error:
                drops += 1
                if drops > 3:
                    raise ServerUnreachable(self.url, type(error).__name__) from error
                time.sleep(0.5 * drops)

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
        return {"jobs": _join(jobs) or ""} if jobs is not None else {"sweep": str(sweep)}

    def compare(
        self, jobs: Iterable[str] | str | None = None, sweep: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Compare jobs (or a sweep's jobs): common spec, per-job differences and results, seed groups.

        Extra keyword arguments are query parameters: metric, mode, target, alpha, fields, points,
        job_curves.
        """
        query = self._selection(jobs, sweep) | {
            k: _join(v) if isinstance(v, list | tuple) else v for k, v in params.items() if v is not None
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

    def health(self) -> dict[str, Any]:
        """The service's health (no key needed)."""
        result: dict[str, Any] = self._json("GET", "/v1/health")
        return result
