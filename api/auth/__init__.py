"""API keys: creation, revocation and bearer authentication."""
