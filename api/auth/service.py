"""API keys: random secrets shown once, stored only as a sha256 hash (no FastAPI here)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import NotFound, Unauthorized
from core.db import utcnow
from core.models import ApiKey

SECRET_PREFIX = "tc_"


def hash_secret(secret: str) -> str:
    """The stored form of a key: sha256 hex (the secret has 256 random bits, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, owner: str) -> tuple[ApiKey, str]:
    """Create and commit a key for `owner`; returns the row and the plaintext secret (shown once)."""
    owner = owner.strip()
    if not owner:
        raise ValueError("owner must not be empty")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id="key_" + secrets.token_hex(8), owner=owner, key_hash=hash_secret(secret))
    session.add(key)
    session.commit()
    return key, secret


def revoke_key(session: Session, *, key_id: str) -> None:
    """Revoke a key at once and commit; revoking twice is harmless; an unknown id raises NotFound."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()


def list_keys(session: Session, *, owner: str | None = None) -> list[ApiKey]:
    """Keys (never their secrets), oldest first, optionally of one owner."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if owner is not None:
        query = query.where(ApiKey.owner == owner)
    return list(session.scalars(query))


def authenticate(session: Session, *, secret: str) -> str:
    """The owner of a valid, unrevoked key; Unauthorized otherwise."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_secret(secret)))
    if key is None:
        raise Unauthorized(
            "Unknown API key. Send 'Authorization: Bearer <key>' with a key from `trainctl keys create`."
        )
    if key.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.")
    return key.owner
