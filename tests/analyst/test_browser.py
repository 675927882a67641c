"""The report in a real browser: headless Chromium driven by Selenium.

Skipped only where no Chromium and chromedriver are installed (``.ci/run``
installs Debian's ``chromium`` and ``chromium-driver``) or Selenium is
missing. The report is built from sample_recordings by the commands of the
README; a screenshot of each page is saved in the test's temporary folder
(its path is printed; run pytest with ``-s`` or ``-rA`` to see it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callsort.cli import app

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_recordings"


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = os.environ.get("CALLSORT_CHROMIUM") or _find(
    "chromium", "chromium-browser", "google-chrome", "chrome"
)
CHROMEDRIVER = os.environ.get("CALLSORT_CHROMEDRIVER") or _find("chromedriver")

# .ci/run sets CALLSORT_REQUIRE_BROWSER=1 once it has installed Chromium: then a browser
# that cannot be found or started fails the test instead of skipping it.
REQUIRED = os.environ.get("CALLSORT_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not REQUIRED,
    reason="no Chromium and chromedriver installed",
)


def invoke(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def driver():
    if REQUIRED:
        from selenium import webdriver
    else:
        webdriver = pytest.importorskip("selenium.webdriver")
    assert CHROMIUM and CHROMEDRIVER, "CALLSORT_REQUIRE_BROWSER=1 but no chromium/chromedriver"
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(120)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory) -> Path:
    """callsort label sample_recordings/ --out r && callsort report r --out r/report.html"""
    out = tmp_path_factory.mktemp("browser") / "r"
    invoke("label", SAMPLES, "--out", out, "--jobs", 2, "-q", "--channel-names", "agent,customer")
    invoke("report", out, "--out", out / "report.html")
    return out / "report.html"


def table_expectations(report: Path) -> dict[str, object]:
    """What the page must show, read with pandas from the calls table it was made from."""
    from callsort.dataset.reading import read_dataset

    calls = read_dataset(report.parent).calls
    calls = calls[calls["status"] == "ok"]
    escalated = calls["escalated"].astype(bool)
    agent = calls[calls["channel"] == "agent"]
    return {
        "escalated": calls[escalated]["recording"].nunique(),
        "angry": sorted(calls[calls["dominant_label"] == "angry"]["recording"].unique()),
        "agent_escalated": agent[agent["escalated"].astype(bool)]["recording"].nunique(),
        "recordings": calls["recording"].nunique(),
        "with_agent": sorted(agent["recording"].unique()),
    }


def open_report(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # forget what an earlier page logged
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'")
    )


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def ranked_names(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#ranked tbody tr td.name')].map(td => td.textContent)"
    )


def choose(driver, select_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_visible_text(text)


def screenshot(driver, path: Path) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height, 800), 6000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1600)
    assert path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def test_sample_report_renders_and_filters(driver, sample_report):
    from selenium.webdriver.common.by import By

    expected = table_expectations(sample_report)
    assert expected["escalated"] >= 1 and "call_01_escalation.wav" in expected["angry"]
    open_report(driver, sample_report)
    # headline figures
    assert driver.find_element(By.CSS_SELECTOR, "#fig-calls .value").text == str(
        expected["recordings"]
    )
    assert driver.find_element(By.CSS_SELECTOR, "#fig-escalated .value").text == str(
        expected["escalated"]
    )
    # the stacked chart: plotly drew one trace of bars per label with data
    n_bar_traces = driver.execute_script(
        "return document.querySelectorAll('#shares-chart .barlayer .trace').length"
    )
    assert n_bar_traces == 4
    assert (
        driver.execute_script(
            "return document.querySelectorAll('#shares-chart .barlayer path').length"
        )
        >= 4
    )
    # the ranked list: every call, an escalated customer first, with its badge: the demo
    # escalation's, stereo or its mono sum (whose speakers --speakers auto tells apart)
    names = ranked_names(driver)
    assert len(names) == expected["recordings"]
    assert names[0] in ("call_01_escalation.wav", "call_06_mono.wav")
    first = driver.find_element(By.CSS_SELECTOR, "#ranked tbody tr")
    assert "escalated" in first.get_attribute("class")
    assert first.find_element(By.CSS_SELECTOR, ".badge.customer").text == "customer"
    # timelines: drawn with one bar per segment, customer lane on top
    driver.execute_script("document.getElementById('timelines').scrollIntoView()")
    driver.implicitly_wait(0)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: (
            d.execute_script("return document.querySelectorAll('.timeline .main-svg').length") >= 2
        )
    )
    lanes = driver.execute_script(
        "const card = document.querySelector('.timeline');"
        "return [...card.querySelectorAll('.yaxislayer-above .ytick text')].map(t => t.textContent)"
    )
    assert sorted(lanes) == ["agent", "customer"]
    n_bars = driver.execute_script(
        "return document.querySelector('.timeline').querySelectorAll('.barlayer path').length"
    )
    assert n_bars > 10

    # a filter changes what is shown: calls whose dominant emotion is angry
    choose(driver, "f-label", "angry")
    angry = expected["angry"]
    assert ranked_names(driver)[0] in ("call_01_escalation.wav", "call_06_mono.wav")
    assert sorted(ranked_names(driver)) == angry
    assert driver.find_element(By.CSS_SELECTOR, "#fig-calls .value").text == str(len(angry))
    assert (
        f"showing {len(angry)} of {expected['recordings']} calls"
        in driver.find_element(By.ID, "status").text
    )
    choose(driver, "f-label", "any")
    choose(driver, "f-channel", "agent")
    assert sorted(ranked_names(driver)) == expected["with_agent"]
    assert "voicemail_05_mono.flac" not in expected["with_agent"]
    assert driver.find_element(By.CSS_SELECTOR, "#fig-escalated .value").text == str(
        expected["agent_escalated"]
    )
    driver.find_element(By.ID, "f-escalated").click()
    assert len(ranked_names(driver)) == expected["agent_escalated"]
    driver.find_element(By.ID, "f-reset").click()
    assert len(ranked_names(driver)) == expected["recordings"]

    # a link in the ranked list leads to the call's timeline
    driver.find_element(By.LINK_TEXT, "voicemail_05_mono.flac").click()
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script(
            "const c = document.querySelector('.timeline.focus');"
            "return c && c.querySelector('h3').textContent === 'voicemail_05_mono.flac'"
            " && c.querySelector('.main-svg') !== null"
        )
    )
    screenshot(driver, sample_report.parent / "report.png")
    assert console_errors(driver) == []


def test_dated_report_filters_by_date(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from callsort.analyst.report import write_report
    from callsort.dataset.reading import read_dataset
    from callsort.dataset.synthetic import synthetic_tables, write_partitioned

    tables = synthetic_tables(120, days=6, seed=11, mean_segments=6)
    days = sorted(set(tables[2].values()))
    page = write_report(
        read_dataset(write_partitioned(tmp_path / "nightly", *tables)),
        tmp_path / "report.html",
        max_timelines=20,
    ).path
    open_report(driver, page)
    assert driver.find_element(By.ID, "folder-filter").is_displayed() is False
    ticks = driver.execute_script(
        "return [...document.querySelectorAll('#shares-chart .xtick text')].map(t => t.textContent)"
    )
    assert ticks == days
    before = int(driver.find_element(By.CSS_SELECTOR, "#fig-calls .value").text)
    assert before == 120
    driver.execute_script(
        "const f = document.getElementById('f-from'); f.value = arguments[0];"
        "f.dispatchEvent(new Event('change'));",
        days[3],
    )
    after = int(driver.find_element(By.CSS_SELECTOR, "#fig-calls .value").text)
    expected = sum(1 for d in tables[2].values() if d >= days[3])
    assert after == expected < before
    ticks = driver.execute_script(
        "return [...document.querySelectorAll('#shares-chart .xtick text')].map(t => t.textContent)"
    )
    assert ticks == days[3:]
    # a call without an embedded timeline says so instead of drawing nothing
    last = driver.execute_script(
        "const rows = document.querySelectorAll('#ranked tbody tr td.name a');"
        "return rows[rows.length - 1].getAttribute('href')"
    )
    driver.execute_script("location.hash = arguments[0]", last)
    card = driver.find_element(By.CSS_SELECTOR, ".timeline.focus")
    assert "Timeline not embedded" in card.text
    screenshot(driver, tmp_path / "dated.png")
    assert console_errors(driver) == []
