"""How fast the Dagster UI answers an operator on a bench's instance (`scale_bench.py --ui`).

A Dagster webserver on the bench's DAGSTER_HOME and stack, and a real headless Chromium
driven by Playwright, as the browser tests do (`tests/e2e/browser.py`). For each page:
the time from navigation until the page shows what an operator came for (the partition's
materialization metadata; the newest run in the runs list): the median of three loads,
each in a fresh browser context (cold: nothing cached), and the median of warm loads, with
the slowest GraphQL answers of a cold load (the queries an operator waits for). The very
first page after the webserver started (the asset list) is timed apart: it also waits for
the code server. A screenshot of each page goes to `test-artifacts/ui/bench_*.png`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.e2e.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DISMISS_COMMUNITY_PROMPT,
    VIEWPORT,
)
from unde_local.dagster_services import DagsterServices
from unde_local.postgres import free_port

TIMEOUT_MS = 60_000
TARGET_S = 2.0


@dataclass
class PageTiming:
    name: str
    url: str
    cold_s: list[float]
    warm_s: list[float]
    slowest_queries: list[tuple[str, float]] = field(default_factory=list)
    """(GraphQL operation, ms from request to response end) of the first cold load."""
    first_query_s: float = 0.0
    """When the first cold load sent its first GraphQL request, s after navigation: until
    then the browser only loads and runs the UI's scripts, none of the server's work."""
    main_thread_s: float = 0.0
    """The renderer's main thread busy during the first cold load (CDP TaskDuration)."""

    @property
    def warm_median_s(self) -> float:
        return statistics.median(self.warm_s)

    @property
    def cold_median_s(self) -> float:
        return statistics.median(self.cold_s)


@dataclass
class UiFigures:
    pages: list[PageTiming]
    peak_rss_kb: list[tuple[str, int]]  # the webserver and its code server, after the pages


def server_peaks(pid: int) -> list[tuple[str, int]]:
    """(command, VmHWM kB) of the webserver and of the processes it started (its code
    server, `dagster api grpc`)."""
    from bench.scale_bench import _descendants, _process_table, _status

    out = []
    for proc in [pid, *_descendants(pid, _process_table())]:
        try:
            argv = Path(f"/proc/{proc}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [Path(a.decode(errors="replace")).name for a in argv[:4] if a]
        out.append((" ".join(words)[:60], _status(proc).get("VmHWM", 0)))
    return out


def time_pages(env: dict[str, str], run_dir: Path, brand: str, newest_run_id: str,
               warm_rounds: int = 5, cold_rounds: int = 3) -> UiFigures:
    from playwright.sync_api import Page, sync_playwright

    services = DagsterServices(run_dir, env, port=free_port())
    t0 = time.monotonic()
    services.start(("webserver",))
    print(f"  webserver up in {time.monotonic() - t0:.1f} s on {services.url}", flush=True)
    base = services.url
    checks: list[tuple[str, str, Callable[[Page], None]]] = [
        ("product_collages partition page",
         f"{base}/assets/product_collages?view=partitions&partition={brand}",
         lambda page: page.get_by_text("collages_made").first.wait_for()),
        ("runs page", f"{base}/runs",
         lambda page: page.get_by_text(newest_run_id[:8]).first.wait_for()),
    ]
    timings = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # The first page after the webserver started also pays for the code
                # server's first answers: timed on its own, before the pages under test.
                context = browser.new_context(viewport=VIEWPORT)
                context.add_init_script(DISMISS_COMMUNITY_PROMPT)
                page = context.new_page()
                start = time.monotonic()
                page.goto(f"{base}/assets")
                page.get_by_text("product_collages").first.wait_for(timeout=TIMEOUT_MS)
                timings.append(PageTiming("first page after start (asset list)", base,
                                          [time.monotonic() - start], [0.0]))
                context.close()
                for name, url, ready in checks:
                    colds, queries, boot = [], [], (0.0, 0.0)
                    for _ in range(cold_rounds):  # each in a fresh context: nothing cached
                        context = browser.new_context(viewport=VIEWPORT)
                        context.set_default_timeout(TIMEOUT_MS)
                        context.add_init_script(DISMISS_COMMUNITY_PROMPT)
                        page = context.new_page()
                        first = not queries
                        if first:
                            page.on("requestfinished", lambda r, q=queries: q.append(r))
                            busy = MainThreadBusy(context.new_cdp_session(page))
                        start = time.monotonic()
                        page.goto(url)
                        ready(page)
                        colds.append(time.monotonic() - start)
                        if first:
                            boot = (page.evaluate(FIRST_GRAPHQL_MS) / 1000, busy.seconds())
                        context.close()
                    slowest = graphql_timings(queries)
                    context = browser.new_context(viewport=VIEWPORT)
                    context.set_default_timeout(TIMEOUT_MS)
                    context.add_init_script(DISMISS_COMMUNITY_PROMPT)
                    page = context.new_page()
                    page.goto(url)
                    ready(page)
                    loads = []
                    for _ in range(warm_rounds):
                        start = time.monotonic()
                        page.goto(url)
                        ready(page)
                        loads.append(time.monotonic() - start)
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    shot = "bench_" + name.split()[0].replace("_", "-") + ".png"
                    page.screenshot(path=str(ARTIFACTS / shot))
                    context.close()
                    timings.append(PageTiming(name, url, colds, loads, slowest, *boot))
            finally:
                browser.close()
        webserver = services.pid("webserver")
        peaks = server_peaks(webserver) if webserver else []
    finally:
        services.stop()
    return UiFigures(timings, peaks)


FIRST_GRAPHQL_MS = """Math.min(...performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/graphql')).map(e => e.startTime))"""


class MainThreadBusy:
    """The renderer main thread's busy time from here on (Chrome DevTools Protocol)."""

    def __init__(self, cdp: Any) -> None:
        self.cdp = cdp
        cdp.send("Performance.enable")
        self.start = self._task_s()

    def _task_s(self) -> float:
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "TaskDuration")

    def seconds(self) -> float:
        return self._task_s() - self.start


def graphql_timings(requests: list[Any], top: int = 5) -> list[tuple[str, float]]:
    """The slowest GraphQL operations among finished requests (the UI names each one in
    the ``op`` query parameter)."""
    out = []
    for r in requests:
        op = parse_qs(urlsplit(r.url).query).get("op")
        timing = r.timing
        if op and timing.get("responseEnd", -1) >= 0:
            out.append((op[0], timing["responseEnd"]))
    return sorted(out, key=lambda t: -t[1])[:top]


def print_ui(figures: UiFigures) -> None:
    print(f"\n  Dagster UI, navigation -> content shown (headless Chromium; target < "
          f"{TARGET_S:g} s):")
    first, *pages = figures.pages
    print(f"    {first.name:<34} {first.cold_s[0]:5.2f} s (the webserver's first answers)")
    for t in pages:
        verdict = "ok" if max(t.cold_median_s, t.warm_median_s) < TARGET_S else "OVER"
        print(f"    {t.name:<34} cold median {t.cold_median_s:5.2f} s of "
              f"{', '.join(f'{c:.2f}' for c in t.cold_s)} (fresh browser contexts), warm "
              f"median {t.warm_median_s:5.2f} s (max {max(t.warm_s):.2f}) {verdict}")
        print(f"      first cold load: first GraphQL request {t.first_query_s:.2f} s after "
              f"navigation (until then the browser loads and runs the UI's scripts), renderer "
              f"main thread busy {t.main_thread_s:.2f} s")
        print("      slowest GraphQL answers of the first cold load: "
              + ", ".join(f"{op} {ms:.0f} ms" for op, ms in t.slowest_queries))
    print("  peak RSS (MiB) of the webserver and its code server after these pages:")
    for command, kb in figures.peak_rss_kb:
        print(f"    {command:<60} {kb / 1024:8.1f}")
