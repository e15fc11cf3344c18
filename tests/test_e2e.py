"""End to end: `python -m dashboard` in a subprocess, real headless Chromium, tag one painting."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from db.store import TagLog

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = Path(os.environ.get("ARTLENS_SCREENSHOTS", ROOT / "tests" / "screenshots"))
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
                                reason="chromium + chromium-driver not installed (.ci/run installs them)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(request, tmp_path):
    # ARTLENS_E2E_STORE runs the same walk-through over another store (the README screenshots use the
    # full wikiart-mini store); its tags go to a scratch copy so the walk-through never adds real tags.
    other = os.environ.get("ARTLENS_E2E_STORE")
    if other:
        store = {"store": Path(other), "tags": tmp_path / "scratch.tags.duckdb"}
    else:
        store = request.getfixturevalue("store")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dashboard", "--store", str(store["store"]), "--port", str(port),
                             "--tags", str(store["tags"])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("dashboard did not start: " + (proc.stdout.read() if proc.stdout else ""))
    yield url, store
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1500,1100"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def wait_for(driver, xpath: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(EC.element_to_be_clickable((By.XPATH, xpath)))


def settle(driver, seconds: float = 1.5):
    """Wait until Streamlit has finished rerunning (no 'Running...' status widget)."""
    from selenium.webdriver.common.by import By
    time.sleep(0.5)
    deadline = time.time() + 60
    while time.time() < deadline and driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']"):
        time.sleep(0.3)
    time.sleep(seconds)


def goto(driver, page: str):
    wait_for(driver, f"//section[@data-testid='stSidebar']//label[.//p[text()='{page}']]").click()
    settle(driver)


def test_review_in_chromium_tags_one_painting(server, browser):
    from selenium.webdriver.common.keys import Keys
    url, store = server
    SHOTS.mkdir(exist_ok=True)
    browser.get(url)
    wait_for(browser, "//h1[contains(., 'Overview')]", 120)
    settle(browser, 3)
    browser.save_screenshot(str(SHOTS / "overview.png"))
    for page in ("Explore", "Neighbours", "Outliers"):
        goto(browser, page)
        wait_for(browser, f"//h1[contains(., '{page}')]")
        if page == "Neighbours":
            box = wait_for(browser, "//input[@aria-label='path, artist or title contains']")
            box.send_keys("fish-market", Keys.ENTER)
            wait_for(browser, "//p[contains(., 'nearest paintings')] | //h3[contains(., 'nearest paintings')]")
        settle(browser, 2.5)
        browser.save_screenshot(str(SHOTS / f"{page.lower()}.png"))
    name = wait_for(browser, "//input[@aria-label='reviewer name']")
    name.send_keys("chromium-e2e", Keys.ENTER)
    settle(browser)
    goto(browser, "Review")
    heading = wait_for(browser, "//h3[starts-with(normalize-space(.), '#')]")
    path = heading.find_element("xpath", "following::code[1]").text
    settle(browser, 2)
    browser.save_screenshot(str(SHOTS / "review.png"))
    wait_for(browser, "//button[.//p[text()='mislabel']]").click()
    deadline = time.time() + 60
    tagged = None
    while time.time() < deadline:
        latest = TagLog(store["tags"]).latest()
        mine = latest[latest.reviewer == "chromium-e2e"]
        if len(mine):
            tagged = mine.iloc[0]
            break
        time.sleep(0.5)
    assert tagged is not None, "no tag reached DuckDB"
    assert tagged.path == path and tagged.decision == "mislabel" and tagged.task == "style"
    settle(browser)
    goto(browser, "Export")
    browser.save_screenshot(str(SHOTS / "export.png"))
