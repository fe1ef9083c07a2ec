"""The OpenAPI document as a generated client reads it: names, binary bodies and responses, problems."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_every_operation_has_a_short_explicit_id(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    ids = [op.get("operationId", "") for _method, _path, op in operations(schema)]
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+){0,3}", op_id) for op_id in ids), ids
    assert len(set(ids)) == len(ids)
    assert {"list_jobs", "get_job_metrics", "upload_dataset", "compare_jobs", "list_workers"} <= set(ids)
    names = set(schema["components"]["schemas"])
    assert not [name for name in names if name.startswith("Body") or "_" in name], names
    assert {"DatasetUpload", "EpochRecord", "RunResult", "JobSpec", "CompareMode", "OutputFormat"} <= names


def test_files_are_binary_in_both_directions(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    upload = schema["components"]["schemas"]["DatasetUpload"]["properties"]["file"]
    assert (upload["type"], upload["format"]) == ("string", "binary") and "contentMediaType" not in upload
    paths = schema["paths"]
    binary = {"type": "string", "format": "binary"}
    png = paths["/v1/compare/plot.png"]["get"]["responses"]["200"]["content"]
    assert png == {"image/png": {"schema": binary}}
    checkpoint = paths["/v1/jobs/{job_id}/checkpoints/{name}"]["get"]["responses"]["200"]["content"]
    assert checkpoint == {"application/octet-stream": {"schema": binary}}
    events = paths["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert events["text/event-stream"]["schema"] == {"type": "string"}


def test_problem_responses_show_their_own_example(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for _method, _path, op in operations(schema):
        for status, response in op["responses"].items():
            if not status.startswith(("4", "5")) or "application/problem+json" not in response.get(
                "content", {}
            ):
                continue
            content = response["content"]
            assert list(content) == ["application/problem+json"]  # no application/json twin
            assert content["application/problem+json"]["example"]["status"] == int(status)
    responses = schema["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    assert responses["404"]["content"]["application/problem+json"]["example"]["title"] == "Not found"
    assert responses["401"]["content"]["application/problem+json"]["example"]["title"] == "Unauthorized"
