"""End to end: `artlens dashboard` in a subprocess, real headless Chromium: tag one painting, open one from the
plot, upload a photograph, open a shared link."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench.browser import (CHROMIUM, DRIVER, EXPLORE_DRAWN_JS, chromium, explore_point_position, goto, settle,
                           start_dashboard, time_until, wait_for)
from conftest import HEIC, ROOT
from db.tags import open_tag_log

SHOTS = Path(os.environ.get("ARTLENS_SCREENSHOTS", ROOT / "tests" / "screenshots"))
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
                                reason="chromium + chromium-driver not installed (.ci/run installs them)")


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    # One dashboard for the module's tests (each opens its own browser session); a server start
    # costs seconds of imports. ARTLENS_E2E_STORE runs the same walk-through over another store (the
    # docs screenshots use the full wikiart-mini store); its tags go to a scratch copy so the
    # walk-through never adds real tags.
    other = os.environ.get("ARTLENS_E2E_STORE")
    if other:
        store = {"store": Path(other), "tags": tmp_path_factory.mktemp("e2e") / "scratch.tags.duckdb"}
    else:
        store = request.getfixturevalue("store")
    proc, url = start_dashboard(store["store"], store["tags"])
    yield url, store
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_review_in_chromium_tags_one_painting(server, browser):
    from selenium.webdriver.common.keys import Keys
    url, store = server
    SHOTS.mkdir(exist_ok=True)
    browser.get(url)
    wait_for(browser, "//h1[contains(., 'Overview')]", 120)
    settle(browser, 3)
    browser.save_screenshot(str(SHOTS / "overview.png"))
    # the image quality table: every flag with its meaning and count
    quality = wait_for(browser, "//h3[contains(., 'Image quality')]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", quality)
    settle(browser, 2)
    browser.save_screenshot(str(SHOTS / "overview_quality.png"))
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
    heading = wait_for(browser, "//h3[starts-with(normalize-space(.), 'Rank ')]")
    path = heading.find_element("xpath", "following::code[1]").text
    # the card says why the painting is there, one line per kind of evidence
    why = wait_for(browser, "//p[contains(., 'Why it is here:')]")
    wait_for(browser, "//p[contains(., 'Model (never saw this label)')]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", why)
    settle(browser, 2)
    browser.save_screenshot(str(SHOTS / "review.png"))
    wait_for(browser, "//button[.//p[text()='mislabel']]").click()
    deadline = time.time() + 60
    tagged = None
    while time.time() < deadline:
        latest = open_tag_log(store["tags"]).latest()
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


def _open_at(browser, url: str, page: str):
    """Load the dashboard, wait for its first page, then go to `page`."""
    SHOTS.mkdir(exist_ok=True)
    browser.get(url)
    wait_for(browser, "//h1[contains(., 'Overview')]", 120)
    settle(browser)
    goto(browser, page)


def test_clicking_a_point_in_chromium_opens_that_painting(server, browser):
    """A real click on one point of the Explore scatter (WebGL) opens that painting with its Grad-CAM."""
    from selenium.webdriver.common.action_chains import ActionChains
    _open_at(browser, server[0], "Explore")
    time_until(browser, EXPLORE_DRAWN_JS, 60)
    settle(browser)
    pts = explore_point_position(browser)
    xy = np.array([[p["x"], p["y"]] for p in pts])
    gap = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.fill_diagonal(gap, np.inf)
    pick = pts[int(gap.min(1).argmax())]          # the most isolated point: the click cannot hit another
    plot = browser.find_element("css selector", ".js-plotly-plot")
    ActionChains(browser).move_to_element_with_offset(plot, round(pick["x"]), round(pick["y"])).click().perform()
    heading = wait_for(browser, f"//h3[starts-with(normalize-space(.), '#{pick['id']} ')]")
    wait_for(browser, "//*[contains(text(), 'given:') or contains(text(), \"model's top:\")]")
    browser.execute_script("arguments[0].scrollIntoView();", heading)
    settle(browser, 2)
    browser.save_screenshot(str(SHOTS / "explore_click.png"))


def _scroll_to_gradcam(browser, shot: str):
    """Wait for a Grad-CAM caption, scroll it to the middle of the window and take a screenshot."""
    cap = wait_for(browser, "//*[starts-with(normalize-space(text()), 'given:') or "
                            "starts-with(normalize-space(text()), \"model's top:\")]", 120)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", cap)
    settle(browser, 2)
    browser.save_screenshot(str(SHOTS / shot))
    return cap


def test_gradcam_shows_on_review_outliers_and_neighbours_in_chromium(server, browser):
    from selenium.webdriver.common.keys import Keys
    _open_at(browser, server[0], "Review")
    wait_for(browser, "//h3[starts-with(normalize-space(.), 'Rank ')]")
    _scroll_to_gradcam(browser, "gradcam_review.png")
    goto(browser, "Outliers")
    wait_for(browser, "//h1[contains(., 'Outliers')]")
    settle(browser, 2)                           # the Review page's panels are gone
    wait_for(browser, "//label[.//p[starts-with(., 'Grad-CAM')]]").click()
    settle(browser, 2)
    _scroll_to_gradcam(browser, "gradcam_outliers.png")
    assert len(browser.find_elements("xpath", "//*[starts-with(normalize-space(text()), 'given:')]")) >= 12
    goto(browser, "Neighbours")
    settle(browser, 2)
    box = wait_for(browser, "//input[@aria-label='path, artist or title contains']")
    box.send_keys("fish-market", Keys.ENTER)
    _scroll_to_gradcam(browser, "gradcam_neighbours.png")


def test_a_phones_heic_photograph_uploaded_in_chromium_finds_its_painting(server, browser):
    """Neighbours' upload through the browser's own file input: a phone's HEIC photograph, stored on
    its side, of a painting in the store finds that painting first (turned upright, it is a copy)."""
    if os.environ.get("ARTLENS_E2E_STORE"):
        pytest.skip("the photograph is of a painting in the test store")
    phone = HEIC / "bartolome-esteban-murillo_a-girl-and-her-duenna-1670.heic"
    _open_at(browser, server[0], "Neighbours")
    wait_for(browser, "//label[.//p[normalize-space(.)='upload']]").click()
    settle(browser)
    browser.find_element("css selector", "input[type='file']").send_keys(str(phone))
    wait_for(browser, "//h3[contains(., 'nearest paintings')]", 180)
    settle(browser, 3)
    first = browser.find_elements("xpath", "//*[@data-testid='stCaptionContainer']"
                                           "[starts-with(normalize-space(.), '#')]")
    assert first and first[0].text.endswith("Baroque/" + phone.stem + ".jpg"), [c.text for c in first[:3]]
    similarity = float(browser.find_element("xpath", "//p[contains(., 'similarity:')]").text.split("similarity:")[1])
    assert similarity > 0.9, similarity
    browser.save_screenshot(str(SHOTS / "neighbours_upload.png"))


def test_a_shared_link_as_a_fresh_servers_first_request(server, browser):
    """/review?task=genre&painting=N as the first request a new server sees opens painting N for
    genre under the app's own page list (Streamlit's pages/-folder mode used to take over here)."""
    store = server[1]
    proc, url = start_dashboard(store["store"], store["tags"])   # its own server: the link comes first
    try:
        browser.get(f"{url}/review?task=genre&painting=3")
        wait_for(browser, "//h3[contains(., '#3 · ')]", 120)
        settle(browser, 2)
        current = wait_for(browser, "//a[@data-testid='stSidebarNavLink'][@aria-current='page']")
        assert current.text == "Review"
        names = [a.text for a in browser.find_elements("xpath", "//a[@data-testid='stSidebarNavLink']")]
        assert names == ["Overview", "Explore", "Neighbours", "Outliers", "Review", "Export"], names
        assert "task=genre" in browser.current_url
        wait_for(browser, "//p[contains(., 'What the evidence says:')]")
        SHOTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(SHOTS / "shared_link.png"))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
