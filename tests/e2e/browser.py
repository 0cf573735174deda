"""A real headless Chromium (Debian's, driven by Playwright) for the UI tests.

Playwright's own browser download does not work on our machines, so it always launches
`/usr/bin/chromium` (`scripts/setup.sh` installs Debian's package). The flags keep Chromium
off the network it cannot reach (background updates, sync, QUIC), which would otherwise
make it retry refused connections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Page

from tests.e2e.conftest import DagsterDeployment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
VIEWPORT = {"width": 1800, "height": 1100}

# The UI asks a first-time visitor on localhost to join the community (a modal over every
# page); this is what its "Skip" button stores, as an operator who dismissed it once has.
DISMISS_COMMUNITY_PROMPT = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"

# What the Dagster UI shows when something broke: a PythonError panel, the "Unexpected
# error" page state, error toasts (GraphQL and network errors are toasted).
ERROR_PANEL = '[class*="PythonErrorInfo_"]'
ERROR_TEXT = re.compile(
    r"Unexpected (GraphQL )?error|An unexpected error|PythonError|DagsterUserCodeLoadError"
)
TOAST = "[data-sonner-toast]"


@dataclass
class PageErrors:
    """Errors of one page: uncaught exceptions, GraphQL errors the UI logged, error UI."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self.seen.append(f"uncaught: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and "graphql error" in msg.text.lower():
            self.seen.append(f"console: {msg.text[:500]}")

    def on_screen(self, page: Page) -> list[str]:
        found = []
        if page.locator(ERROR_PANEL).count():
            found.append("a PythonError panel: " + page.locator(ERROR_PANEL).first.inner_text())
        for toast in page.locator(TOAST).all_inner_texts():
            if "error" in toast.lower():
                found.append(f"an error toast: {toast}")
        body = page.locator("body").inner_text()
        found += [f"error text on the page: {m.group(0)!r}" for m in ERROR_TEXT.finditer(body)]
        return found

    def assert_none(self, page: Page, where: str) -> None:
        problems = self.seen + self.on_screen(page)
        assert not problems, f"{where} ({page.url}) shows errors:\n" + "\n".join(problems)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


@contextmanager
def evidence_on_failure(page: Page, deployment: DagsterDeployment) -> Iterator[None]:
    """On any failure: a screenshot of the current page and the services' log tails."""
    try:
        yield
    except BaseException as exc:
        try:
            shot = str(screenshot(page, "failure.png"))
        except Error as shot_error:
            shot = f"(no screenshot: {shot_error})"
        raise AssertionError(
            f"{type(exc).__name__}: {exc}\npage: {page.url}\nscreenshot: {shot}\n"
            f"--- webserver log ---\n{deployment.log_tail('webserver', 40)}\n"
            f"--- daemon log ---\n{deployment.log_tail('daemon', 80)}"
        ) from exc
