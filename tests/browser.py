"""Open a local HTML file in headless Chromium and report what a reader's browser would see.

The report tests use :func:`inspect_page` to check that ``index.html`` renders without console
errors, that every figure has a size, that every section heading is there, that nothing is wider
than the page, and that no request leaves the file.

The browser and its driver are Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them with apt-get). Both paths are given to Selenium explicitly, so Selenium Manager never runs and
never downloads a browser or a driver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# Debian's /usr/bin/chromium is a shell wrapper that sources /etc/chromium.d: it turns on remote
# extensions (which fetch from the network) and its /dev/shm check breaks in some containers. The
# real binary beside it starts with only the flags below.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium")
CHROMEDRIVER_CANDIDATES = ("/usr/lib/chromium/chromedriver", "chromedriver")

# Running as root in a container: no sandbox, no small /dev/shm, no GPU.
HEADLESS_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu")
# Nothing may reach the network: no update checks, extensions, sync or first-run pages.
QUIET_FLAGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-default-browser-check",
    "--no-first-run",
)
# Requests to these schemes are blocked in the browser: they are still reported (the page asked
# for them), but none leaves the machine.
BLOCKED_URL_PATTERNS = ("http://*", "https://*", "ws://*", "wss://*", "ftp://*")

# Chromium cannot capture a texture taller than about 16k px; a longer page is cut there.
MAX_SCREENSHOT_HEIGHT = 16_000
INITIAL_VIEWPORT_HEIGHT = 900
# Requests a script starts right after the load event still land in the log within this time.
SETTLE_SECONDS = 0.25

# Top-level <svg> elements (an <svg> nested in another is part of that figure) and every <img>.
FIGURES_SCRIPT = """
const figures = [];
for (const element of document.querySelectorAll('svg, img')) {
  if (element.tagName.toLowerCase() === 'svg' && element.parentElement.closest('svg')) continue;
  const box = element.getBoundingClientRect();
  const figure = element.closest('figure');
  const titleNode = element.tagName.toLowerCase() === 'svg' ? element.querySelector(':scope > title') : null;
  const caption = figure ? figure.querySelector('figcaption') : null;
  const title = (titleNode && titleNode.textContent.trim())
    || element.getAttribute('alt') || element.getAttribute('title')
    || (caption && caption.textContent.trim()) || null;
  figures.push({
    tag: element.tagName.toLowerCase(),
    id: element.id || (figure && figure.id) || null,
    title: title,
    width: box.width,
    height: box.height,
  });
}
return figures;
"""
HEADINGS_SCRIPT = "return Array.from(document.querySelectorAll('h1, h2, h3'), h => h.textContent.trim());"
EXTENT_SCRIPT = """
const root = document.documentElement;
return [root.scrollWidth, root.clientWidth, Math.max(root.scrollHeight, document.body ? document.body.scrollHeight : 0)];
"""


@dataclass(frozen=True)
class RenderedFigure:
    """One figure as laid out: ``tag`` is ``svg`` or ``img``; ``id`` its own id, else its
    ``<figure>``'s; ``title`` its ``<title>``, ``alt`` or ``title`` attribute, else the figure's
    caption (None when it has none); ``width`` and ``height`` in CSS pixels."""

    tag: str
    id: str | None
    title: str | None
    width: float
    height: float


@dataclass(frozen=True)
class PageInspection:
    """What :func:`inspect_page` saw.

    Attributes
    ----------
    console_errors : browser-log messages of level SEVERE (uncaught exceptions, console.error,
        failed loads), in order
    console_warnings : browser-log messages of level WARNING, in order
    requests : URLs the page requested other than the file itself, in order of first request
        (``data:`` URIs are part of the file and not listed; other local files are listed)
    headings : the text of every h1, h2 and h3, whitespace-trimmed, in document order
    figures : every top-level ``<svg>`` and every ``<img>``, in document order
    scroll_width : the document's scrollWidth, CSS px
    viewport_width : the document's clientWidth (the viewport less any scrollbar), CSS px
    scroll_height : the document's full height, CSS px
    """

    console_errors: tuple[str, ...]
    console_warnings: tuple[str, ...]
    requests: tuple[str, ...]
    headings: tuple[str, ...]
    figures: tuple[RenderedFigure, ...]
    scroll_width: int
    viewport_width: int
    scroll_height: int

    @property
    def empty_figures(self) -> list[RenderedFigure]:
        """Figures laid out with zero width or zero height."""
        return [figure for figure in self.figures if figure.width <= 0 or figure.height <= 0]

    @property
    def wider_than_viewport(self) -> bool:
        """True when something (a wide table, a figure) makes the page scroll sideways."""
        return self.scroll_width > self.viewport_width


def find_executable(candidates: tuple[str, ...], package: str) -> str:
    """The first of ``candidates`` (absolute paths or names on PATH) that is an executable file.

    Raises FileNotFoundError naming the Debian ``package`` to install when none is.
    """
    for candidate in candidates:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        f"none of {', '.join(candidates)} found; install Debian's {package} "
        f"(apt-get install chromium chromium-driver, as .ci/run does)"
    )


def start_chromium(width: int) -> webdriver.Chrome:
    """A headless Debian Chromium under chromedriver, its viewport ``width`` CSS px wide, logging
    the console and the network, with every request off the machine blocked."""
    options = webdriver.ChromeOptions()
    options.binary_location = find_executable(CHROMIUM_CANDIDATES, "chromium")
    for flag in HEADLESS_FLAGS + QUIET_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{INITIAL_VIEWPORT_HEIGHT}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path is what keeps Selenium Manager (and its downloads) out.
    service = Service(
        executable_path=find_executable(CHROMEDRIVER_CANDIDATES, "chromium-driver"),
        log_output=subprocess.DEVNULL,
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        set_viewport(driver, width, INITIAL_VIEWPORT_HEIGHT)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": list(BLOCKED_URL_PATTERNS)})
    except BaseException:
        driver.quit()
        raise
    return driver


def set_viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    """Make the layout viewport exactly ``width`` × ``height`` CSS px at device scale 1 (window
    sizes in headless Chromium include borders that differ between versions)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def requests_from_log(performance_log: list[dict], page_url: str) -> tuple[str, ...]:
    """URLs of ``Network.requestWillBeSent`` events in a chromedriver performance log, without
    ``page_url`` itself (fragment ignored) and ``data:`` URIs, each once, in order."""
    page = page_url.split("#", 1)[0]
    urls: dict[str, None] = {}
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.requestWillBeSent":
            continue
        url = message["params"]["request"]["url"]
        if url.startswith("data:") or url.split("#", 1)[0] == page:
            continue
        urls.setdefault(url, None)
    return tuple(urls)


def inspect_page(html_path: str | Path, screenshot: str | Path | None = None, width: int = 1280) -> PageInspection:
    """Open ``html_path`` in headless Chromium and report what it shows and what it asked for.

    Parameters
    ----------
    html_path : a local HTML file
    screenshot : where to write a PNG of the whole page (``width`` px wide, as tall as the page,
        at most MAX_SCREENSHOT_HEIGHT px); none when None
    width : viewport width, CSS px

    Returns
    -------
    A :class:`PageInspection`. The browser is quit before this returns or raises.
    """
    page_url = Path(html_path).resolve().as_uri()
    driver = start_chromium(width)
    try:
        driver.get(page_url)  # returns after the load event
        time.sleep(SETTLE_SECONDS)
        headings = tuple(driver.execute_script(HEADINGS_SCRIPT))
        figures = tuple(RenderedFigure(**figure) for figure in driver.execute_script(FIGURES_SCRIPT))
        scroll_width, viewport_width, scroll_height = driver.execute_script(EXTENT_SCRIPT)
        if screenshot is not None:
            set_viewport(driver, width, min(max(int(scroll_height), 1), MAX_SCREENSHOT_HEIGHT))
            Path(screenshot).write_bytes(driver.get_screenshot_as_png())
        browser_log = driver.get_log("browser")
        requests = requests_from_log(driver.get_log("performance"), page_url)
    finally:
        driver.quit()
    return PageInspection(
        console_errors=tuple(entry["message"] for entry in browser_log if entry["level"] == "SEVERE"),
        console_warnings=tuple(entry["message"] for entry in browser_log if entry["level"] == "WARNING"),
        requests=requests,
        headings=headings,
        figures=figures,
        scroll_width=int(scroll_width),
        viewport_width=int(viewport_width),
        scroll_height=int(scroll_height),
    )


def assert_reads_well(page: PageInspection, sections) -> None:
    """The checks every report page passes: no console error, no request, each section's numbered
    heading, at least one drawn figure per report figure and none empty, nothing wider than the page."""
    assert page.console_errors == ()
    assert page.requests == (), "nothing is fetched: figures and styles are inline"
    for number, section in enumerate(sections, start=1):
        assert f"{number}. {section.title}" in page.headings
    n_figures = sum(block.__class__.__name__ == "Figure" for section in sections for block in section.blocks)
    assert len(page.figures) >= n_figures > 0
    assert page.empty_figures == [], "every figure renders with a size"
    assert not page.wider_than_viewport, f"page {page.scroll_width}px wide in a {page.viewport_width}px window"
