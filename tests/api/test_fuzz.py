"""schemathesis against the service's own OpenAPI schema with a valid key: no 5xx, every response conforms.

Each operation gets TRAINCTL_FUZZ_EXAMPLES generated requests per backend (default FUZZ_EXAMPLES, sized
for CI), schema-valid and schema-violating alike; path ids are random or those of real rows (a finished
job with metrics and a checkpoint, an upload, a sweep), so the code behind the 404 runs too.
`bench/fuzz.py` runs the same test with a larger budget.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from schemathesis import GenerationMode, checks

from api.auth.service import create_key
from api.main import create_app
from core.config import Settings
from core.db import utcnow
from core.migrate import upgrade_database
from core.models import Checkpoint, EpochMetric, Job
from tests.api.conftest import epoch_record
from tests.api.test_sweeps import sweep_body
from tests.conftest import TEST_DATABASE_ENV
from tests.e2e.harness import postgres_database
from training.spec import EXAMPLE_SPEC

FUZZ_EXAMPLES = int(os.environ.get("TRAINCTL_FUZZ_EXAMPLES", "100"))
# Whether the service keeps its word: no 5xx; documented statuses, content types, bodies and headers; a
# request without the key refused. Not positive_data_acceptance: a schema-valid request may still be refused
# for what a schema cannot say (a cursor the service never issued, a dataset id that does not exist); not
# negative_data_rejection: unknown query parameters and headers are ignored, as HTTP APIs do.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.ignored_auth,
]
SKIPPED = {"/v1/jobs/{job_id}/events"}  # a live stream: it does not end while the job is queued

pytestmark = pytest.mark.slow


def _operations() -> list[tuple[str, str]]:
    schema = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    return [
        (method.upper(), path)
        for path, methods in schema["paths"].items()
        if path not in SKIPPED
        for method in methods
    ]


@dataclass
class Fuzzed:
    app: FastAPI
    client: TestClient
    headers: dict[str, str]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """One app and database per backend for all operations (a fresh one each costs more than fuzzing)."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'trainctl.db'}"
        else:
            server = os.environ.get(TEST_DATABASE_ENV)
            if not server:
                pytest.skip(f"PostgreSQL tests need {TEST_DATABASE_ENV}")
            url = stack.enter_context(postgres_database(server))
        upgrade_database(url)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp / "var",
            database_url=url,
            artifacts_url=str(tmp / "artifacts"),
            default_queue=f"fuzz-{tmp.name}",  # jobs stay queued: no worker takes this queue
        )
        app = create_app(settings)
        client = stack.enter_context(TestClient(app))
        with app.state.session_factory() as session:
            _key, secret = create_key(session, owner="alice")
        yield Fuzzed(app, client, {"Authorization": f"Bearer {secret}"})


def real_ids(fuzzed: Fuzzed) -> dict[str, str]:
    """Fresh rows of the key's owner for path parameters (an earlier operation may have deleted the last)."""
    client, headers = fuzzed.client, fuzzed.headers
    job = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=headers)
    csv = b"a,b,label\n" + b"".join(f"{i},{i % 5},{i % 2}\n".encode() for i in range(30))
    dataset = client.post("/v1/datasets", files={"file": ("d.csv", csv)}, headers=headers)
    sweep = client.post("/v1/sweeps", json=sweep_body(seeds=1), headers=headers)
    assert job.status_code == 202 and dataset.status_code == 201 and sweep.status_code == 202
    job_id = job.json()["id"]
    with fuzzed.app.state.session_factory() as session:  # as a worker would have left it
        row = session.get(Job, job_id)
        assert row is not None
        row.status, row.epoch, row.started_at, row.finished_at = "succeeded", 3, utcnow(), utcnow()
        row.result = {
            "status": "succeeded",
            "epochs_run": 3,
            "best_epoch": 3,
            "final": {"epoch": 3, "val_loss": 0.4},
        }
        session.add_all(
            EpochMetric(job_id=job_id, epoch=epoch, record=epoch_record(epoch)) for epoch in (1, 2, 3)
        )
        key = f"jobs/{job_id}/checkpoints/best.safetensors"
        fuzzed.app.state.artifacts.put_bytes(b"not a safetensors file", key)  # damaged: predict must say so
        session.add(Checkpoint(job_id=job_id, name="best", uri=key, epoch=3, size_bytes=22))
        session.commit()
    return {
        "job_id": job_id,
        "name": "best",
        "dataset_id": dataset.json()["id"],
        "sweep_id": sweep.json()["id"],
    }


@pytest.mark.parametrize(("method", "path"), _operations())
def test_generated_requests_get_no_5xx_and_conform_to_the_schema(
    fuzzed: Fuzzed, method: str, path: str
) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)[path][method]
    known = {name: value for name, value in real_ids(fuzzed).items() if "{" + name + "}" in path}
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(mode) for mode in modes]
    if known:
        strategies += [operation.as_strategy(mode, path_parameters=known) for mode in modes]

    @given(case=st.one_of(strategies))
    @hypothesis_settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def call(case: Any) -> None:
        case.call_and_validate(headers=fuzzed.headers, checks=CHECKS)

    call()


NPZ_DTYPES = st.one_of(
    hnp.scalar_dtypes(),  # bool, (unsigned) integers, floats, complex, datetime64, timedelta64
    hnp.unicode_string_dtypes(),
    hnp.byte_string_dtypes(),
    hnp.array_dtypes(),  # structured records
)
NPZ_ARRAYS = NPZ_DTYPES.flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12))
)


def test_generated_npz_uploads_of_every_dtype_get_no_5xx(fuzzed: Fuzzed) -> None:
    """X and y of any dtype and shape (0-d, empty, complex, dates, records, text): 201, 413 or 422."""

    @given(X=NPZ_ARRAYS, y=NPZ_ARRAYS)
    @hypothesis_settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def call(X: np.ndarray, y: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, X=X, y=y)
        response = fuzzed.client.post(
            "/v1/datasets", files={"file": ("fuzz.npz", buffer.getvalue())}, headers=fuzzed.headers
        )
        assert response.status_code in (201, 413, 422), (X.dtype, X.shape, y.dtype, y.shape, response.text)
        if response.status_code != 201:
            assert response.json()["errors"][0]["field"] == "file", response.text

    call()
