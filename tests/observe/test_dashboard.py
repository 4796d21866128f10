"""The web dashboard of a running `sensormesh up --dashboard` in a real browser (Debian's
headless chromium driven by Playwright, no browser download), and its Prometheus /metrics."""
import os
import shutil
import time
import urllib.request

import pytest

from uprun import BOARD, PC, Up, pipeline_file

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEPS = ["count", "scaled", "mean", "high", "means", "alarms"]


def need_browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing: run `bash scripts/dev test` (installs it for these tests)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright (Python) is missing: run `bash scripts/dev setup`")


def scrape(url):
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def pipe_values(families):
    f = families.get("sensormesh_pipe_values")
    assert f is not None and f.type == "counter", sorted(families)
    return {(s.labels["device"], s.labels["pipe"]): s.value for s in f.samples if s.name.endswith("_total")}


@pytest.fixture
def running(tmp_path):
    need_browser()
    path = pipeline_file(tmp_path)
    up = Up(path, "--dashboard", "127.0.0.1:0", "--metrics-out", str(tmp_path / "run.sqlite"), "--insecure",
            cwd=str(tmp_path))
    try:
        line = up.wait_for(lambda l: l.startswith("dashboard: "))
        url = line.split()[1]
        up.wait_for(lambda l: l.startswith("running"))
        yield up, url
    finally:
        code = up.stop()
    assert code == 0, up.text()


def test_dashboard_in_a_browser_shows_every_device_and_step_and_live_rates(running, tmp_path):
    from playwright.sync_api import sync_playwright
    up, url = running
    edge = "mean->" + PC
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"), executable_path=CHROMIUM,
                                                    headless=True, args=FLAGS, viewport={"width": 1400, "height": 1600})
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.goto(url, timeout=30_000)
            page.wait_for_function("document.querySelectorAll('#steps-table tbody tr').length >= %d" % len(STEPS),
                                   timeout=30_000)
            page.wait_for_selector("#graph svg", timeout=30_000)
            page.wait_for_selector("#live.on", timeout=30_000)        # the event stream is open
            text = page.inner_text("body")
            for name in [BOARD, PC] + STEPS:
                assert name in text, "%s is not on the page" % name
            graph = page.inner_text("#graph")
            for name in [BOARD, PC, "count", "mean", "high"]:
                assert name in graph, "%s is not in the graph" % name
            rate = ("() => { const r = [...document.querySelectorAll('#pipes-table tbody tr')]"
                    ".find(tr => tr.cells[0].textContent === %r && tr.cells[1].textContent === %r);"
                    " return r ? r.cells[3].textContent : null; }" % (edge, BOARD))
            page.wait_for_function("(%s)() && (%s)() !== '-'" % (rate, rate), timeout=30_000)
            first = page.evaluate(rate)
            page.wait_for_function("(%s)() !== %r" % (rate, first), timeout=30_000)   # updated live
            second = page.evaluate(rate)
            assert float(second.split()[0]) > 0, (first, second)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            ctx.close()
    assert os.path.getsize(tmp_path / "dashboard.png") > 10_000


def test_metrics_endpoint_parses_and_its_counters_grow(running):
    up, url = running
    key = (BOARD, "mean->" + PC)
    first = {}
    for _ in range(30):                           # bounded: one round per poll of the controller
        first = pipe_values(scrape(url))
        if first.get(key):
            break
        next_update(url)
    assert first.get(key), first
    fams = scrape(url)
    for name in ("sensormesh_step_values_in", "sensormesh_step_values_out", "sensormesh_pipe_values"):
        assert fams[name].type == "counter"
    assert fams["sensormesh_device_heap_free_bytes"].type == "gauge"
    assert {s.labels["device"] for s in fams["sensormesh_device_heap_free_bytes"].samples} == {BOARD}
    grown = None
    for _ in range(30):
        next_update(url)
        later = pipe_values(scrape(url))
        if later[key] > first[key]:
            grown = later
            break
    assert grown is not None, "the pipe's counter did not grow between two scrapes"
    assert all(grown[k] >= v for k, v in first.items())


def next_update(url):
    """Wait for the dashboard's event stream to carry a new view (the controller polled again):
    its first message is the current view, the second a newer one."""
    with urllib.request.urlopen(url + "events", timeout=15) as r:
        seen = 0
        for line in r:
            if line.startswith(b"data: "):
                seen += 1
                if seen == 2:
                    return
