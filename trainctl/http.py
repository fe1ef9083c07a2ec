"""uvicorn with a read timeout: a connection whose request stops arriving is closed."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.process import freeze_startup_heap


def read_timeout_protocol(read_timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing connections silent for `read_timeout` s mid-request.

    uvicorn times out idle keep-alive connections only after a response; a client that connects and
    sends nothing, or half a request, would hold its connection (and a file descriptor) forever.
    """

    class ReadTimeoutProtocol(HttpToolsProtocol):
        _read_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            self._arm()  # bytes arrived: the client is still sending, restart its clock
            super().data_received(data)

        def on_message_complete(self) -> None:
            self._disarm()  # the whole request is in: what follows is the server's time
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(read_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _timed_out(self) -> None:
            self._read_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return ReadTimeoutProtocol


def run_api(app: Any, *, host: str, port: int, read_timeout: float) -> None:
    """Serve the app until a signal stops it."""
    freeze_startup_heap()  # the app and every module it imported live as long as this process
    uvicorn.run(app, host=host, port=port, log_level="info", http=read_timeout_protocol(read_timeout))
