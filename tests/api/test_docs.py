"""The docs dashboard: /docs and /redoc load nothing from another host, and the API documents itself."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from training.spec import EXAMPLE_SPEC, JobSpec

URL = re.compile(r"""https?://[^\s"'<>)]+""")
ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    external = [url for url in URL.findall(html) if not url.startswith(str(client.base_url))]
    assert not external, f"{page} refers to other hosts: {external}"
    assets = ASSET.findall(html)
    scripts = [asset for asset in assets if asset.endswith(".js")]
    assert scripts, f"{page} loads no script"
    for asset in assets:
        assert asset.startswith("/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset
    assert "/openapi.json" in html
    # The browser is told the same: nothing from another host, whatever the bundles would fetch.
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data: blob:" in policy
    assert "http" not in policy and "*" not in policy


def test_the_cdn_pages_of_fastapi_are_off(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "cdn.jsdelivr.net" not in html and "fastapi.tiangolo.com" not in html
    assert "swagger-ui-bundle.js" in html and "SwaggerUIBundle" in html
    assert "redoc.standalone.js" in client.get("/redoc").text
    assert "fonts.googleapis.com" not in client.get("/redoc").text
    bundle = client.get("/docs-assets/redoc.standalone.js")
    assert bundle.status_code == 200 and len(bundle.content) > 500_000
    assert b"cdn.redoc.ly" not in bundle.content  # its logo would be fetched from there at run time


def resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_endpoint_has_a_summary_a_description_and_a_described_tag(client: TestClient) -> None:
    openapi = client.get("/openapi.json").json()
    tags = {tag["name"]: tag.get("description") for tag in openapi.get("tags", [])}
    assert all(tags.values()), tags
    found = operations(openapi)
    assert len(found) >= 10
    for method, path, operation in found:
        where = f"{method} {path}"
        assert operation.get("summary"), f"{where} has no summary"
        assert operation.get("description"), f"{where} has no description"
        assert operation.get("tags"), f"{where} has no tag"
        assert set(operation["tags"]) <= set(tags), f"{where}: tag without a description"


def test_every_json_body_has_a_ready_example(client: TestClient) -> None:
    openapi = client.get("/openapi.json").json()
    for method, path, operation in operations(openapi):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        media = content["application/json"]
        schema = resolve(openapi, media.get("schema", {}))
        examples = [*schema.get("examples", []), *([schema["example"]] if "example" in schema else [])]
        examples += [item.get("value") for item in media.get("examples", {}).values()]
        assert examples, f"{method} {path} has no example body"


def test_the_submit_example_is_a_complete_spec_that_runs_in_seconds(client: TestClient) -> None:
    openapi = client.get("/openapi.json").json()
    body = openapi["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    (example,) = resolve(openapi, body["schema"])["examples"]
    assert example["spec"] == EXAMPLE_SPEC
    spec = JobSpec.model_validate(example["spec"])
    assert spec.dataset.name == "iris" and spec.training.epochs <= 50


def test_authorize_takes_the_bearer_key(client: TestClient) -> None:
    openapi = client.get("/openapi.json").json()
    (name, scheme), *_ = openapi["components"]["securitySchemes"].items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    secured = [path for _m, path, op in operations(openapi) if {name: []} in op.get("security", [])]
    assert "/v1/jobs" in secured


def test_records_results_and_specs_are_typed_in_the_schema(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"EpochRecord", "LayerDiagnostics", "RunResult", "JobSpec"} <= set(schemas)
    detail = schemas["JobDetail"]["properties"]
    assert detail["spec"] == {"$ref": "#/components/schemas/JobSpec"}
    assert {"$ref": "#/components/schemas/RunResult"} in detail["result"]["anyOf"]
    items = schemas["MetricsPage"]["properties"]["items"]["items"]
    assert items == {"$ref": "#/components/schemas/EpochRecord"}
    layers = schemas["EpochRecord"]["properties"]["layers"]["items"]
    assert layers == {"$ref": "#/components/schemas/LayerDiagnostics"}
