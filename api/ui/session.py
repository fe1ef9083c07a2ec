"""Browser sessions: a signed, expiring, HttpOnly cookie that names an API key's id, never the key itself.

The cookie holds {key id, owner, CSRF token}, signed with itsdangerous (HMAC-SHA1 over a timestamp), so it
cannot be forged or extended; every request re-checks that the key still exists and is not revoked, so
revoking a key ends its browser sessions too. Forms that change something carry the session's CSRF token.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.service import authenticate, hash_secret
from core.config import Settings
from core.models import ApiKey

COOKIE_NAME = "trainctl_session"
CSRF_FIELD = "csrf_token"
SECRET_FILE = "session-secret"


@dataclass(frozen=True)
class UiSession:
    """Who is signed in (None: nobody yet) and the token forms must echo."""

    csrf: str
    owner: str | None = None
    key_id: str | None = None

    def csrf_matches(self, token: str | None) -> bool:
        """Whether a submitted form carries this session's CSRF token (constant-time)."""
        return bool(token) and hmac.compare_digest(self.csrf, token or "")


def load_secret(settings: Settings) -> str:
    """TRAINCTL_SESSION_SECRET, else a random secret kept in DATA_DIR/session-secret (made once, 0600)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path: Path = settings.data_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes and both read the same secret.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
    except FileExistsError:
        pass
    return path.read_text().strip()


class SessionCodec:
    """Turns sessions into cookie values and back, refusing tampered or expired ones."""

    def __init__(self, secret: str, *, max_age: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="trainctl-ui-session")
        self.max_age = max_age

    def dumps(self, session: UiSession) -> str:
        """The cookie value."""
        return self._serializer.dumps({"csrf": session.csrf, "owner": session.owner, "key": session.key_id})

    def loads(self, value: str | None) -> UiSession | None:
        """The session in a cookie; None when missing, tampered with, malformed or older than max_age."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        owner, key_id = data.get("owner"), data.get("key")
        if not (isinstance(owner, str) and isinstance(key_id, str)):
            owner = key_id = None
        return UiSession(csrf=data["csrf"], owner=owner, key_id=key_id)


def anonymous() -> UiSession:
    """A session before sign-in: only a CSRF token for the sign-in form."""
    return UiSession(csrf=secrets.token_urlsafe(32))


def sign_in(db: Session, *, secret: str) -> UiSession:
    """A fresh session (new CSRF token) for a valid API key; Unauthorized otherwise."""
    owner = authenticate(db, secret=secret.strip())
    key_id = db.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_secret(secret.strip())))
    return UiSession(csrf=secrets.token_urlsafe(32), owner=owner, key_id=key_id)


def still_valid(db: Session, session: UiSession) -> bool:
    """Whether the session's key still exists, is unrevoked and belongs to the same owner."""
    if session.key_id is None:
        return False
    key = db.get(ApiKey, session.key_id)
    return key is not None and key.revoked_at is None and key.owner == session.owner
