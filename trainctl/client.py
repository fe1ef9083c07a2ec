"""A small Python client of the trainctl API (httpx): jobs, metrics, sweeps, compare, plots, events."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from trainctl import __version__
from trainctl.errors import FieldProblem, ServerUnreachable, TrainctlError, WaitTimeout
from trainctl.retry import NO_RETRY, HttpClient, RetryPolicy
from trainctl.sweeps_client import FINISHED, UNSET, SweepsClient, changes, join
from trainctl.table import Table
from training.records import EpochRecord

__all__ = [
    "NO_RETRY",
    "Client",
    "FieldProblem",
    "RetryPolicy",
    "ServerUnreachable",
    "Table",
    "TrainctlError",
    "WaitTimeout",
]

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_PAGE = 100  # the server's largest page


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


class Client(SweepsClient):
    """The trainctl API over HTTP. Every failure answered by the server raises TrainctlError."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`retry`: how long safe requests (GETs, POSTs with an Idempotency-Key) are retried on connection
        errors and 503 (default: up to TRAINCTL_RETRY_SECONDS, else 30 s; NO_RETRY turns it off)."""
        self.url = (url or os.environ.get("TRAINCTL_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = resolve_key(api_key)
        headers = {"User-Agent": f"trainctl-client/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        retry = retry or RetryPolicy(total=float(os.environ.get("TRAINCTL_RETRY_SECONDS") or 30.0))
        self._api = HttpClient(self.url, headers, timeout, retry, transport)
        self._http = self._api._http  # the event stream reads it directly

    def close(self) -> None:
        """Close the connection pool."""
        self._api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- jobs -------------------------------------------------------------------------------------------

    def submit(
        self,
        spec: Mapping[str, Any],
        name: str | None = None,
        tags: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job spec; returns the queued job (with its lint warnings).

        Every submission carries an Idempotency-Key (a new one unless given), so a retry after a lost
        answer returns the same job instead of a second one.
        """
        body: dict[str, Any] = {"spec": dict(spec)}
        if name:
            body["name"] = name
        if tags:
            body["tags"] = list(tags)
        headers = {"Idempotency-Key": idempotency_key or f"trainctl-{uuid.uuid4()}"}
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
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        sweep: str | None = None,
        sort: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Up to `limit` jobs, newest first (or by `sort`: -test_accuracy, val_loss...), filtered."""
        found: list[dict[str, Any]] = []
        cursor = None
        while len(found) < limit:
            params: dict[str, Any] = {
                "status": status,
                "tag": tag,
                "name": name,
                "sweep": sweep,
                "sort": sort,
            }
            params |= {"limit": min(limit - len(found), MAX_PAGE), "cursor": cursor}
            page = self._json("GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None})
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    def update(
        self,
        job_id: str,
        *,
        name: str | None = UNSET,
        tags: Iterable[str] | None = UNSET,
        notes: str | None = UNSET,
    ) -> dict[str, Any]:
        """Rename, re-tag (the whole list) or annotate a job; None clears the name or notes."""
        job: dict[str, Any] = self._json("PATCH", f"/v1/jobs/{job_id}", json=changes(name, tags, notes))
        return job

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
        params = {"since_epoch": since_epoch, "fields": join(fields)}
        page = self._json(
            "GET", f"/v1/jobs/{job_id}/metrics", params={k: v for k, v in params.items() if v is not None}
        )
        return list(page["items"])

    def metrics_csv(self, job_id: str, fields: Iterable[str] | str | None = None) -> str:
        """Per-epoch metrics as CSV text (layer diagnostics flattened into layers.<name>.<field>)."""
        params = {"format": "csv"} | ({"fields": join(fields) or ""} if fields else {})
        return self._request("GET", f"/v1/jobs/{job_id}/metrics", params=params).text

    def metrics_table(self, job_id: str, fields: Iterable[str] | str | None = None) -> Table:
        """Per-epoch metrics as a Table: epoch, then the fields asked for, or EpochRecord's in its order."""
        wanted = None if fields is None else [f for f in (join(fields) or "").split(",") if f]
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

    # -- datasets, workers, health ------------------------------------------------------------------------

    def upload_dataset(
        self, path: str | Path, target: str | None = None, task: str | None = None
    ) -> dict[str, Any]:
        """Upload a CSV (header row) or NPZ (X, y); refer to it from a spec as {"dataset": {"id": ...}}."""
        path = Path(path)
        form = {k: v for k, v in {"target": target, "task": task}.items() if v is not None}
        with path.open("rb") as handle:
            result: dict[str, Any] = self._json(
                "POST", "/v1/datasets", files={"file": (path.name, handle)}, data=form
            )
        return result

    def datasets(self) -> list[dict[str, Any]]:
        """Your uploaded datasets, newest first."""
        return list(self._json("GET", "/v1/datasets")["items"])

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete an uploaded dataset (refused while a queued or running job uses it)."""
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    def workers(self, seen_within: float | None = None) -> list[dict[str, Any]]:
        """Celery workers seen recently: host, pid, queues, device, concurrency, current jobs, last seen."""
        params = {"seen_within": seen_within} if seen_within is not None else None
        return list(self._json("GET", "/v1/workers", params=params)["items"])

    def health(self) -> dict[str, Any]:
        """The service's health (no key needed)."""
        result: dict[str, Any] = self._json("GET", "/v1/health")
        return result
