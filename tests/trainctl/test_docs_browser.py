"""The docs dashboard in a real browser: Debian's headless chromium submits the example job from /docs.

scripts/test installs chromium and chromium-driver (apt) when they are missing and it runs as root; no
browser is ever downloaded. Without them the test skips, except under CI, where it must run.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.harness import REPO_ROOT
from tests.trainctl.conftest import LiveServer
from trainctl.client import Client

pytestmark = pytest.mark.slow

ARTIFACTS = REPO_ROOT / "test-artifacts"
SUBMIT = "#operations-jobs-submit_job"
GRADIENTS = "#operations-jobs-plot_job_gradients"


def authorize(browser: Any, wait: Any, key: str) -> None:
    """The bearer key goes into the ApiKey scheme's dialog."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize"))).click()
    field = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#auth-bearer-value")))
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button.btn-done"))).click()


def test_a_plot_renders_as_an_image_in_swagger_ui(live_server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with Client(live_server.url, live_server.key) as client:
        job = client.submit(
            {"dataset": {"name": "iris"}, "network": {"hidden_layers": [8]}, "training": {"epochs": 2}}
        )
        client.wait(job["id"], timeout=120)
    wait = WebDriverWait(browser, 30)
    browser.get(f"{live_server.url}/docs")
    authorize(browser, wait, live_server.key)
    operation = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, GRADIENTS)))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"{GRADIENTS} button.try-out__btn"))).click()
    job_field = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"{GRADIENTS} tr[data-param-name='job_id'] input"))
    )
    job_field.send_keys(job["id"])
    browser.find_element(By.CSS_SELECTOR, f"{GRADIENTS} button.execute").click()
    image = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"{GRADIENTS} .live-responses-table img"))
    )
    # Swagger UI shows an image response from a blob: URL, which the page's CSP must allow (img-src blob:).
    wait.until(lambda _driver: browser.execute_script("return arguments[0].naturalWidth", image) > 0)
    assert image.get_attribute("src").startswith("blob:")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView();", image)
    browser.save_screenshot(str(ARTIFACTS / "docs-plot.png"))


def test_submit_the_example_job_from_the_docs_page(live_server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(f"{live_server.url}/docs")
    assert "trainctl" in browser.title

    authorize(browser, wait, live_server.key)

    # POST /v1/jobs: Try it out with the example body, then Execute.
    operation = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, SUBMIT)))
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"{SUBMIT} button.try-out__btn"))).click()
    body = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f"{SUBMIT} textarea.body-param__text"))
    )
    assert '"iris"' in body.get_attribute("value")
    browser.find_element(By.CSS_SELECTOR, f"{SUBMIT} button.execute").click()

    status = wait.until(
        ec.presence_of_element_located(
            (By.CSS_SELECTOR, f"{SUBMIT} .live-responses-table tbody .response-col_status")
        )
    )
    wait.until(lambda _driver: status.text.strip())
    response = browser.find_element(
        By.CSS_SELECTOR, f"{SUBMIT} .live-responses-table tbody .response-col_description"
    ).text

    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -160);", status)
    screenshot = ARTIFACTS / "docs-submit.png"
    browser.save_screenshot(str(screenshot))

    assert status.text.strip() == "202", response[:2000]
    assert '"status": "queued"' in response and '"name": "iris-adam"' in response
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    job_id = response.split('"id": "', 1)[1].split('"', 1)[0]
    with Client(live_server.url, live_server.key) as client:  # the job really runs, in seconds
        assert client.wait(job_id, timeout=120)["status"] == "succeeded"
    # Nothing but the server itself was asked for anything.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {live_server.url}, origins


def test_redoc_renders_offline(live_server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{live_server.url}/redoc")
    WebDriverWait(browser, 30).until(
        ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Submit a training job')]"))
    )
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {live_server.url}, origins
