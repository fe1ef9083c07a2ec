"""The data directory of `trainctl serve` is private: folders 0700, files 0600."""

from __future__ import annotations

import io
import stat

import httpx
import numpy as np

from tests.trainctl.conftest import LiveServer


def test_the_database_uploads_and_every_folder_are_private_to_the_owner(live_server: LiveServer) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.ones((20, 3)), y=np.arange(20) % 2)
    headers = {"Authorization": f"Bearer {live_server.key}"}
    response = httpx.post(
        f"{live_server.url}/v1/datasets", files={"file": ("p.npz", buffer.getvalue())}, headers=headers
    )
    assert response.status_code == 201, response.text
    paths = [live_server.data_dir, *live_server.data_dir.rglob("*")]
    names = {path.name for path in paths}
    assert {"trainctl.db", "api-key", f"{response.json()['id']}.npz"} <= names, names
    loose = {
        str(path): oct(stat.S_IMODE(path.stat().st_mode))
        for path in paths
        if stat.S_IMODE(path.stat().st_mode) & 0o077
    }
    assert loose == {}
