"""A real `trainctl serve` process (API + worker, SQLite, embedded broker) shared by the client tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import REPO_ROOT, wait_for


@dataclass(frozen=True)
class LiveServer:
    """Where the server answers, its first key, its data dir, and its log."""

    url: str
    key: str
    data_dir: Path
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def env(self) -> dict[str, str]:
        """Environment for a client process: this server and its key."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")}
        return {**clean, "TRAINCTL_URL": self.url, "TRAINCTL_API_KEY": self.key, "PYTHONPATH": str(REPO_ROOT)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _worker_seen(http: httpx.Client) -> bool:
    try:
        response = http.get("/v1/health")
    except httpx.TransportError:
        return False
    return response.status_code == 200 and bool(response.json().get("workers"))


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`trainctl serve` on a free port with a temp data dir, ready once its worker has announced itself."""
    root = tmp_path_factory.mktemp("live-server")
    data_dir = root / "var"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")}
    env |= {"TRAINCTL_REAPER_INTERVAL": "1", "PYTHONPATH": str(REPO_ROOT)}
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "trainctl", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    server = LiveServer(url=url, key="", data_dir=data_dir, log_path=log_path)
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            wait_for(lambda: process.poll() is None and _worker_seen(http), 90, server.output)
        key = (data_dir / "api-key").read_text().strip()
        yield LiveServer(url=url, key=key, data_dir=data_dir, log_path=log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian chromium through chromedriver, fresh profile; skips without them (fails under CI)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = f"{', '.join(missing)} missing: scripts/test installs chromium and chromium-driver as root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors (CSP violations)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
