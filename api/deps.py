"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth.service import authenticate
from api.errors import Unauthorized
from core.artifacts import ArtifactStore
from core.config import Settings

# auto_error=False: a missing key becomes our 401 problem, not FastAPI's plain 403.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `trainctl keys create --owner NAME` (or DATA_DIR/api-key).",
)


def get_settings_from_app(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; services commit what they change, anything else is rolled back."""
    with request.app.state.session_factory() as session:
        yield session


def get_artifacts(request: Request) -> ArtifactStore:
    """The app's artifact store."""
    store: ArtifactStore = request.app.state.artifacts
    return store


SettingsDep = Annotated[Settings, Depends(get_settings_from_app)]
# scope="function": the session (and its pooled connection) is closed when the route returns, not after a
# streamed response has been sent; routes return schemas, never rows that could lazy-load later.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]


def get_owner(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The owner of the bearer key; 401 without a valid, unrevoked key."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    return authenticate(session, secret=credentials.credentials)


OwnerDep = Annotated[str, Depends(get_owner)]
