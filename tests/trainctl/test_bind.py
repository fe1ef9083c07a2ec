"""The embedded default listens on loopback only: nothing on another interface can reach it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tests.trainctl.conftest import LiveServer

LISTEN = "0A"  # TCP state in /proc/net/tcp


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == LISTEN:
                found.add(address)
    return found


def test_serve_binds_127_0_0_1_by_default(live_server: LiveServer) -> None:
    port = urlparse(live_server.url).port
    assert port is not None
    # 0100007F is 127.0.0.1 in /proc's little-endian hex; 00000000 (0.0.0.0) or any IPv6 would be exposed.
    assert listening_addresses(port) == {"0100007F"}
