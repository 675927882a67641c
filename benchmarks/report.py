"""Report benchmark: size and load time of ``callsort report`` over 10,000 calls.

Run from the repository root (about a minute on 2 cores):

    python benchmarks/report.py
    python benchmarks/report.py --calls 1000 --loads 1     # a quick check

The dataset is synthetic tables, not audio (:mod:`callsort.dataset.synthetic`):
``--calls`` two-channel calls (agent and customer) of 1 to 10 minutes over
``--days`` days, about 24 segments per channel, written in the
date-partitioned layout and read back with ``callsort.read_dataset``. The
report is rendered with the default cap of 1,000 embedded timelines.

Measured:

* time to read the dataset and to render and write the report (this process);
* the report's size, and how it splits between plotly.js and the data;
* in headless Chromium (Debian's ``chromium`` and ``chromedriver``, driven by
  Selenium; skipped when missing), ``--loads`` loads of the file, each in a
  fresh browser (nothing cached, as when an analyst opens it), plus one reload: the
  page's own ready time (``performance.now()`` when the page has parsed its
  data and drawn the figures, the stacked chart, the ranked list and the first
  timelines' placeholders), the wall time from navigation to ready as seen by
  the driver, the time from scrolling to the timelines until the first is drawn, and the time one
  filter change takes to redraw everything; median and all runs.

Prints the figures and writes them to ``benchmarks/results/report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callsort import __version__  # noqa: E402
from callsort.analyst.report import DEFAULT_MAX_TIMELINES, plotly_js, write_report  # noqa: E402
from callsort.dataset.reading import read_dataset  # noqa: E402
from callsort.dataset.synthetic import synthetic_tables, write_partitioned  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "report.json"
LIMIT_BYTES = 20_000_000


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        return None, "no chromium/chromedriver on PATH"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install '.[test]')"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(300)
    return driver, None


def _load(driver, page: Path) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get_log("browser")
    started = time.perf_counter()
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 120, poll_frequency=0.02).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'")
    )
    wall_ready = time.perf_counter() - started
    # timelines are drawn when they scroll into view: scroll to them, time the first one
    started = time.perf_counter()
    driver.execute_script("document.getElementById('timelines').scrollIntoView()")
    WebDriverWait(driver, 120, poll_frequency=0.02).until(
        lambda d: d.execute_script("return document.querySelector('.timeline .main-svg') !== null")
    )
    wall_timeline = time.perf_counter() - started
    page_ready_ms = float(driver.execute_script("return +document.body.dataset.readyMs"))
    nav = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {dom: n.domContentLoadedEventEnd, load: n.loadEventEnd}"
    )
    filter_ms = driver.execute_script(
        "const s = document.getElementById('f-label'); s.value = '0';"
        "const t = performance.now(); s.dispatchEvent(new Event('change'));"
        "const ms = performance.now() - t;"
        "s.value = ''; s.dispatchEvent(new Event('change')); return ms;"
    )
    shown = driver.execute_script(
        "return {rows: document.querySelectorAll('#ranked tbody tr').length,"
        " bars: document.querySelectorAll('#shares-chart .barlayer path').length,"
        " calls: document.querySelector('#fig-calls .value').textContent}"
    )
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {
        "page_ready_ms": round(page_ready_ms),
        "dom_content_loaded_ms": round(nav["dom"]),
        "load_event_ms": round(nav["load"]),
        "wall_to_ready_s": round(wall_ready, 3),
        "scroll_to_first_timeline_s": round(wall_timeline, 3),
        "filter_change_ms": round(filter_ms, 1),
        "shown": shown,
        "console_errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--timelines", type=int, default=DEFAULT_MAX_TIMELINES)
    parser.add_argument("--loads", type=int, default=3, help="browser loads (0: none)")
    parser.add_argument("--keep", type=Path, help="also copy the report here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="callsort-report-bench.") as tmp:
        folder = Path(tmp) / "nightly"
        t = time.perf_counter()
        segments, calls, dates = synthetic_tables(args.calls, days=args.days)
        write_partitioned(folder, segments, calls, dates)
        build_s = time.perf_counter() - t

        t = time.perf_counter()
        data = read_dataset(folder)
        read_s = time.perf_counter() - t
        page = Path(tmp) / "report.html"
        t = time.perf_counter()
        info = write_report(data, page, max_timelines=args.timelines)
        render_s = time.perf_counter() - t
        plotly_bytes = len(plotly_js().encode("utf-8"))
        if args.keep:
            shutil.copyfile(page, args.keep)

        # each load in a fresh browser (a new profile: nothing cached, as when an analyst
        # opens the file), then one reload in the last browser for the warm figure
        loads, reloads, browser_note = [], [], None
        for i in range(args.loads):
            driver, browser_note = _browser()
            if driver is None:
                break
            try:
                browser_note = driver.capabilities.get("browserVersion")
                loads.append(_load(driver, page))
                if i == args.loads - 1:
                    reloads.append(_load(driver, page))
            finally:
                driver.quit()

    def median(key: str) -> float | None:
        return statistics.median(r[key] for r in loads) if loads else None

    result = {
        "command": "python benchmarks/report.py"
        + (f" --calls {args.calls}" if args.calls != 10_000 else ""),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "callsort": __version__,
            "browser": browser_note,
        },
        "dataset": {
            "layout": "partitioned (synthetic tables)",
            "calls": args.calls,
            "call_rows": calls.num_rows,
            "segments": segments.num_rows,
            "days": args.days,
            "build_s": round(build_s, 2),
        },
        "report": {
            "timelines_embedded": info.n_timelines,
            "size_bytes": info.size_bytes,
            "size_mb": round(info.size_bytes / 1e6, 2),
            "plotly_js_bytes": plotly_bytes,
            "data_and_page_bytes": info.size_bytes - plotly_bytes,
            "under_20_mb": info.size_bytes < LIMIT_BYTES,
            "read_dataset_s": round(read_s, 2),
            "render_and_write_s": round(render_s, 2),
        },
        "browser": {
            "loads": len(loads),
            "median_page_ready_ms": median("page_ready_ms"),
            "median_wall_to_ready_s": median("wall_to_ready_s"),
            "median_scroll_to_first_timeline_s": median("scroll_to_first_timeline_s"),
            "median_filter_change_ms": median("filter_change_ms"),
            "runs": loads,
            "reload_in_same_browser": reloads,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    r, b = result["report"], result["browser"]
    print(f"dataset: {args.calls:,} calls, {calls.num_rows:,} call rows, "
          f"{segments.num_rows:,} segments over {args.days} days (built in {build_s:.1f} s)")  # fmt: skip
    print(f"read_dataset: {r['read_dataset_s']} s; render and write: {r['render_and_write_s']} s")
    print(f"report: {r['size_mb']} MB ({plotly_bytes / 1e6:.2f} MB plotly.js, "
          f"{r['data_and_page_bytes'] / 1e6:.2f} MB data and page), "
          f"{r['timelines_embedded']:,} timelines embedded; under 20 MB: {r['under_20_mb']}")  # fmt: skip
    if loads:
        print(f"headless Chromium {browser_note}, {len(loads)} first opens (median): ready "
              f"{b['median_page_ready_ms']:.0f} ms after navigation start, "
              f"{b['median_wall_to_ready_s']:.2f} s wall to ready, "
              f"first timeline drawn {b['median_scroll_to_first_timeline_s']:.2f} s after scrolling to it; "
              f"one filter change redraws in {b['median_filter_change_ms']:.0f} ms")  # fmt: skip
        if reloads:
            print(f"reload in the same browser: ready {reloads[0]['page_ready_ms']} ms")
        errors = sorted({e for run in loads + reloads for e in run["console_errors"]})
        print(f"console errors: {errors or 'none'}")
    else:
        print(f"no browser measurement: {browser_note or '--loads 0'}")
    print(f"written to {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0 if r["under_20_mb"] else 1


if __name__ == "__main__":
    sys.exit(main())
