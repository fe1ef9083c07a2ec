"""The OpenAPI document as generated clients need it: file fields as binary, problems only as problem+json,
and the multipart body under a real name."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from api.errors import PROBLEM_MEDIA_TYPE

# FastAPI names a multipart body after its operation; a generated client would call it Body<Operation>.
RENAMED_SCHEMAS = {"Body_upload_dataset": "DatasetUpload"}


def _binary_files(node: Any) -> None:
    """UploadFile fields: `format: binary` (OpenAPI 3.0 style), which generators send as a file part."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("contentMediaType") == "application/octet-stream":
            node.pop("contentMediaType")
            node["format"] = "binary"
        for value in node.values():
            _binary_files(value)
    elif isinstance(node, list):
        for value in node:
            _binary_files(value)


def _problems_only(schema: dict[str, Any]) -> None:
    """Error responses are application/problem+json; FastAPI also lists application/json for their model."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content") or {}
                if PROBLEM_MEDIA_TYPE in content:
                    content.pop("application/json", None)


def _rename(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.get("components", {}).get("schemas", {})
    for old, new in RENAMED_SCHEMAS.items():
        if old in components:
            components[new] = components.pop(old) | {"title": new}
    text = json.dumps(schema)
    for old, new in RENAMED_SCHEMAS.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    renamed: dict[str, Any] = json.loads(text)
    return renamed


def install_openapi(app: FastAPI) -> None:
    """Serve FastAPI's document with the fixes above, computed once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _binary_files(schema)
            _problems_only(schema)
            app.openapi_schema = _rename(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
