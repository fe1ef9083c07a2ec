"""The submit page: a spec editor pre-filled from the examples, Validate (normalized spec, warnings,
parameter count, field errors by line) and Submit."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from api.deps import SessionDep, SettingsDep
from api.errors import AppError
from api.jobs import service as jobs
from api.jobs.schemas import JobCreate
from api.specs.schemas import SpecReport
from api.specs.service import validate_spec
from api.ui.pages import FormDep, HtmlRoute, UserDep, field, redirect, render
from training.spec import EXAMPLE_SPEC, FieldError, describe_errors

router = APIRouter(prefix="/ui", route_class=HtmlRoute, include_in_schema=False)

DEFAULT_EXAMPLE = "iris-adam"
# The repository's examples/specs, when the package runs from a checkout or an image that ships them.
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "specs"
MAX_SPEC_CHARS = 200_000


@cache
def examples() -> dict[str, dict[str, Any]]:
    """Example specs by name: the API's own example first, then examples/specs/*.json."""
    found: dict[str, dict[str, Any]] = {DEFAULT_EXAMPLE: EXAMPLE_SPEC}
    for path in sorted(EXAMPLES_DIR.glob("*.json")) if EXAMPLES_DIR.is_dir() else []:
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


@dataclass(frozen=True)
class SpecProblem:
    """A field error, with the line of the editor it points at (when it can be found)."""

    field: str
    message: str
    line: int | None = None
    text: str = ""


def locate(spec_text: str, path: str) -> tuple[int | None, str]:
    """(1-based line, its text) of the key a dotted spec path ends in, found key by key down the JSON."""
    position, found = 0, False
    for part in path.split(".")[1:]:
        if part.isdigit():
            continue
        at = spec_text.find(f'"{part}"', position)
        if at < 0:
            break
        position, found = at, True
    if not found:
        return None, ""
    number = spec_text.count("\n", 0, position) + 1
    return number, spec_text.splitlines()[number - 1].strip()


def _problems(errors: list[FieldError], spec_text: str) -> list[SpecProblem]:
    problems = []
    for error in errors:
        line, text = locate(spec_text, error.field) if error.field.startswith("spec") else (None, "")
        problems.append(SpecProblem(field=error.field, message=error.message, line=line, text=text))
    return problems


def parse_request(name: str, tags: str, spec_text: str) -> tuple[JobCreate | None, list[SpecProblem]]:
    """The form as a JobCreate, or every problem with it at once."""
    if len(spec_text) > MAX_SPEC_CHARS:
        return None, [SpecProblem("spec", f"the spec is over {MAX_SPEC_CHARS:,} characters")]
    try:
        spec = json.loads(spec_text)
    except json.JSONDecodeError as error:
        line = spec_text.splitlines()[error.lineno - 1].strip() if spec_text.strip() else ""
        message = f"not JSON: {error.msg} (column {error.colno})"
        return None, [SpecProblem("spec", message, line=error.lineno, text=line)]
    raw = {
        "name": name.strip() or None,
        "tags": [t.strip() for t in tags.split(",") if t.strip()],
        "spec": spec,
    }
    try:
        return JobCreate.model_validate(raw), []
    except ValidationError as error:
        return None, _problems(describe_errors(error.errors()), spec_text)


def _page(request: Request, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("idempotency_key", secrets.token_urlsafe(16))
    return render(request, "submit.html", status_code=status_code, examples=list(examples()), **context)


@router.get("/submit")
def submit_page(
    request: Request, user: UserDep, example: Annotated[str, Query(max_length=100)] = DEFAULT_EXAMPLE
) -> Response:
    """The editor with an example spec."""
    spec = examples().get(example, EXAMPLE_SPEC)
    chosen = example if example in examples() else DEFAULT_EXAMPLE
    return _page(request, spec_text=json.dumps(spec, indent=2), name=chosen, tags="", example=chosen)


@router.post("/submit")
def submit(
    request: Request, user: UserDep, session: SessionDep, settings: SettingsDep, form: FormDep
) -> Response:
    """Validate (show what the service makes of the spec) or submit (then go to the new job)."""
    assert user.owner is not None
    name, tags, spec_text = field(form, "name"), field(form, "tags"), field(form, "spec")
    key = field(form, "idempotency_key")[:255] or None
    context: dict[str, Any] = {"name": name, "tags": tags, "spec_text": spec_text, "example": ""}
    job_request, problems = parse_request(name, tags, spec_text)
    report: SpecReport | None = None
    if job_request is not None:
        try:
            report = validate_spec(session, owner=user.owner, spec=job_request.spec, settings=settings)
            if field(form, "action") == "submit":
                job, _created = jobs.submit_job(
                    session,
                    owner=user.owner,
                    request=job_request,
                    settings=settings,
                    celery_app=request.app.state.celery,
                    idempotency_key=key,
                )
                return redirect(request, f"/ui/jobs/{job.id}")
        except AppError as error:
            errors = error.errors or [FieldError(field="spec", message=error.detail)]
            problems = _problems(errors, spec_text)
            if error.status not in (422,):
                problems = [SpecProblem("form", error.detail)]
    if problems:
        context["idempotency_key"] = key or secrets.token_urlsafe(16)
        return _page(request, status_code=422, problems=problems, **context)
    normalized = json.dumps(report.spec.model_dump(mode="json"), indent=2) if report else None
    return _page(request, report=report, normalized=normalized, idempotency_key=key, **context)
