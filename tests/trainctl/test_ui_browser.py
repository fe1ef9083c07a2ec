"""The /ui dashboard in a real browser (Debian's headless chromium, as the docs test): sign in, submit the
example spec, watch its epochs arrive live, read a two-group sweep, sign out.

Screenshots are saved under the test's temporary directory; the path is printed (pytest -s shows it).
"""

from __future__ import annotations

import sqlite3
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.trainctl.conftest import LiveServer
from trainctl.client import Client
from training.spec import EXAMPLE_SPEC

pytestmark = pytest.mark.slow

# Records when each epoch row is added to the table (and marks the page: a reload would lose it).
ARRIVALS = """
window.__arrivals = {};
new MutationObserver(() => {
  for (const row of document.querySelectorAll('#epoch-rows tr')) {
    const epoch = row.querySelector('th').textContent.trim();
    if (!(epoch in window.__arrivals)) window.__arrivals[epoch] = Date.now() / 1000;
  }
}).observe(document.getElementById('epoch-rows'), {childList: true});
"""
SWEEP_SPEC = {**EXAMPLE_SPEC, "training": {**EXAMPLE_SPEC["training"], "epochs": 40}}


def _rows(browser: Any) -> int:
    from selenium.webdriver.common.by import By

    return len(browser.find_elements(By.CSS_SELECTOR, "#epoch-rows tr"))


def epoch_delays(data_dir: Path, job_id: str, arrivals: dict[str, float]) -> list[float]:
    """Seconds from each epoch record's insert (the server's clock: the same machine) to its row showing."""
    with sqlite3.connect(data_dir / "trainctl.db") as db:
        stored = dict(db.execute("SELECT epoch, created_at FROM epoch_metric WHERE job_id = ?", (job_id,)))
    delays = []
    for epoch, shown in arrivals.items():
        created = datetime.fromisoformat(stored[int(epoch)]).replace(tzinfo=UTC).timestamp()
        delays.append(shown - created)
    return delays


def _text(browser: Any, css: str) -> str:
    """An element's text, read in one step (SSE swaps replace elements between two WebDriver calls)."""
    text = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e && e.textContent;", css
    )
    return str(text or "")


def _console_errors(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_dashboard_sign_in_submit_watch_compare_sign_out(
    live_server: LiveServer, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\ndashboard screenshots: {shots}")
    wait = WebDriverWait(browser, 120, poll_frequency=0.1)
    url, key = live_server.url, live_server.key

    # A sweep first: its jobs keep the worker busy, so the example job is still queued when its page opens.
    with Client(url, key) as client:
        sweep = client.sweep(SWEEP_SPEC, {"activation": ["relu", "tanh"]}, seeds=2, name="relu-vs-tanh")

    # Sign in: / goes to /ui, which asks for a key.
    browser.get(f"{url}/")
    wait.until(ec.url_contains("/ui/signin"))
    browser.find_element(By.ID, "api_key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "form[action='/ui/signin'] button").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.jobs")))
    assert key not in browser.page_source and key not in browser.current_url
    cookie = browser.get_cookie("trainctl_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and key not in cookie["value"]

    # Submit the example spec: Validate shows the parameter count, Submit opens the job's page.
    browser.find_element(By.LINK_TEXT, "Submit").click()
    spec = wait.until(ec.presence_of_element_located((By.ID, "spec")))
    assert '"iris"' in spec.get_attribute("value")
    browser.find_element(By.CSS_SELECTOR, "button[value='validate']").click()
    report = wait.until(ec.presence_of_element_located((By.ID, "report")))
    assert "Trainable parameters" in report.text and "131" in report.text  # 4·16+16 + 16·3+3
    browser.find_element(By.CSS_SELECTOR, "button[value='submit']").click()
    wait.until(ec.url_contains("/ui/jobs/job_"))
    job_id = browser.current_url.rsplit("/", 1)[1]

    # The epochs arrive over SSE: no reload (the marker survives), the rows grow until the job succeeds.
    browser.execute_script(ARRIVALS)
    first = _rows(browser)
    wait.until(lambda driver: "succeeded" in _text(driver, ".status-line"))
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#outcome .facts"))
    arrivals = browser.execute_script("return window.__arrivals;")
    assert arrivals is not None, "the page was reloaded"
    with Client(url, key) as client:
        job = client.get(job_id)
    epochs = job["result"]["epochs_run"]
    assert first < epochs == _rows(browser), (first, epochs, _rows(browser))
    charts = browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart polyline.series")
    assert len(charts) >= 4  # loss and accuracy: train and val each
    assert browser.find_element(By.PARTIAL_LINK_TEXT, "best.safetensors")
    # Each row appeared within 2 s of its epoch's record being stored (the hub polls once a second).
    delays = epoch_delays(live_server.data_dir, job_id, arrivals)
    median, worst = statistics.median(delays), max(delays)
    print(f"epoch row delays (s): median {median:.2f}, max {worst:.2f}, n={len(delays)}")
    assert delays and max(delays) < 2.0, delays
    gradients = browser.find_element(By.CSS_SELECTOR, "img[src*='plots/gradients.png']")
    wait.until(lambda _driver: browser.execute_script("return arguments[0].naturalWidth", gradients) == 800)
    browser.save_screenshot(str(shots / "ui-job.png"))

    # Predict a row: the answer replaces the prediction section only (htmx), the epochs stay.
    browser.find_element(By.ID, "rows").send_keys("5.1, 3.5, 1.4, 0.2\n6.7, 3.0, 5.2, 2.3")
    browser.find_element(By.CSS_SELECTOR, "#predict button").click()
    prediction = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#prediction table")))
    assert len(prediction.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2 and "best" in prediction.text
    assert browser.execute_script("return window.__arrivals !== undefined;")

    # The sweep's page: progress, groups table with both activations, and the curves plot.
    with Client(url, key) as client:
        client_sweep = client.get_sweep(sweep["id"])
        for sweep_job in client_sweep["jobs"]:
            client.wait(sweep_job["id"], timeout=120)
    browser.get(f"{url}/ui/sweeps/{sweep['id']}")
    table = wait.until(ec.presence_of_element_located((By.ID, "groups-table")))
    assert "relu" in table.text and "tanh" in table.text and "★ best" in table.text
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    plot = browser.find_element(By.CSS_SELECTOR, "img.wide")
    wait.until(lambda _driver: browser.execute_script("return arguments[0].naturalWidth", plot) == 900)
    browser.save_screenshot(str(shots / "ui-sweep.png"))
    browser.get(f"{url}/ui")
    browser.save_screenshot(str(shots / "ui-jobs.png"))

    # Filtering swaps the table in place (htmx) and puts the filter in the address for a reload or a link.
    browser.execute_script("window.__same_table_page = true;")
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")) == 5
    browser.find_element(By.ID, "f-name").send_keys("iris")
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")) == 1)
    wait.until(ec.url_contains("name=iris"))
    assert "iris-adam" in _text(browser, "table.jobs tbody")
    assert browser.execute_script("return window.__same_table_page === true;")

    # Nothing but the server was asked for anything, and no CSP violation or script error was logged.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {url}, origins
    assert _console_errors(browser) == []

    # Sign out: the cookie is gone and the job's page asks for a key again.
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait.until(ec.url_contains("/ui/signin"))
    assert "You are signed out" in browser.page_source
    browser.get(f"{url}/ui/jobs/{job_id}")
    wait.until(ec.url_contains("/ui/signin"))
    assert job_id not in browser.page_source
    for shot in ("ui-job.png", "ui-sweep.png", "ui-jobs.png"):
        assert (shots / shot).read_bytes().startswith(b"\x89PNG")
