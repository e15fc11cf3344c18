"""The dashboard in real headless Chromium: start it, drive it, time it.

Shared by the browser test (tests/test_e2e.py) and `make bench ARGS="--steps browser"`, so the
timing and the test walk the same pages the same way. Needs Debian's `chromium` and
`chromium-driver` (.ci/run installs them).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")

# True once the Explore scatter (a WebGL scatter, unlike Overview's bar charts) is drawn.
EXPLORE_DRAWN_JS = """return Array.from(document.querySelectorAll('.js-plotly-plot')).some(gd =>
    gd._fullData && gd._fullData.some(t => t.type === 'scattergl') && gd.querySelector('canvas'));"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(store: Path, tags: Path, port: int | None = None, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """`artlens dashboard` on `store` in a child process; returns (process, url) once healthy."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "artlens", "dashboard", "--store", str(store), "--port", str(port),
                             "--tags", str(tags)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("dashboard did not start: " + (proc.stdout.read() if proc.stdout else ""))


def chromium(width: int = 1500, height: int = 1100):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def wait_for(driver, xpath: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(EC.element_to_be_clickable((By.XPATH, xpath)))


# What the page shows, cheaply: its markup's size, its element count and how many images have loaded
# (an image that finishes loading changes the pixels, not the markup).
PAGE_STATE_JS = """return [document.body.innerHTML.length, document.getElementsByTagName('*').length,
    Array.from(document.images).filter(i => i.complete).length].join(':');"""


def settle(driver, seconds: float = 1.5, quiet: float = 0.6):
    """Wait until Streamlit has finished rerunning (no 'Running...' status widget) and the page
    has stopped changing for `quiet` seconds (the frontend still draws after the script ends:
    charts, images), at most `seconds` after the rerun."""
    from selenium.webdriver.common.by import By
    time.sleep(0.5)                  # a rerun shows its status widget after a moment
    deadline = time.time() + 60
    while time.time() < deadline and driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']"):
        time.sleep(0.3)
    end = time.time() + seconds
    last, still_since = driver.execute_script(PAGE_STATE_JS), time.time()
    while time.time() < end:
        time.sleep(0.15)
        state = driver.execute_script(PAGE_STATE_JS)
        if state != last:
            last, still_since = state, time.time()
        elif time.time() - still_since >= quiet:
            return


def page_link(driver, page: str):
    """The sidebar's link to a page (st.navigation's page list)."""
    return wait_for(driver, f"//section[@data-testid='stSidebar']//a[@data-testid='stSidebarNavLink']"
                            f"[.//p[text()='{page}']]")


def goto(driver, page: str):
    page_link(driver, page).click()
    settle(driver)


def time_until(driver, js: str, timeout: float = 120, poll: float = 0.02) -> float:
    """Seconds until `js` returns true (polled), from now."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if driver.execute_script(js):
            return time.perf_counter() - t0
        time.sleep(poll)
    raise TimeoutError(f"not true after {timeout}s: {js[:80]}")


def time_explore(driver, url: str) -> dict:
    """Seconds from the click on Explore until its scatter is drawn: cold (first visit after the
    server started: query + figure + transfer + WebGL) and warm (back from Overview, data cached)."""
    driver.get(url)
    wait_for(driver, "//h1[contains(., 'Overview')]", 180)
    settle(driver, 2)
    out = {}
    for kind in ("cold", "warm", "warm2"):
        link = page_link(driver, "Explore")
        t0 = time.perf_counter()
        link.click()
        out[f"{kind}_s"] = time.perf_counter() - t0 + time_until(driver, EXPLORE_DRAWN_JS)
        settle(driver, 1)
        goto(driver, "Overview")
        settle(driver, 1)
    return {"cold_s": out["cold_s"], "warm_s": min(out["warm_s"], out["warm2_s"])}


def explore_point_position(driver) -> list[dict]:
    """Every drawn Explore point: {id, x, y} in pixels from the plot element's centre (for clicks)."""
    return driver.execute_script("""
        const gd = Array.from(document.querySelectorAll('.js-plotly-plot')).find(g =>
            g._fullData && g._fullData.some(t => t.type === 'scattergl'));
        const fl = gd._fullLayout, r = gd.getBoundingClientRect(), out = [];
        for (const t of gd._fullData) {
            if (t.type !== 'scattergl' || !t.visible) continue;
            for (let i = 0; i < t.x.length; i++) {
                out.push({id: t.customdata[i][0],
                          x: fl.xaxis.l2p(t.x[i]) + fl._size.l - r.width / 2,
                          y: fl.yaxis.l2p(t.y[i]) + fl._size.t - r.height / 2});
            }
        }
        return out;""")
