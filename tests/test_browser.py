"""The browser harness catches what a report must not do: errors, requests, empty figures, overflow."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import pytest
from PIL import Image

from tests.browser import MAX_SCREENSHOT_HEIGHT, inspect_page, requests_from_log

pytestmark = pytest.mark.slow

# 127.0.0.1:9 (discard) has no listener; the harness blocks http anyway, so nothing is waited for.
UNREACHABLE = "http://127.0.0.1:9"


def write_page(tmp_path, body: str, head: str = "", name: str = "index.html"):
    """A UTF-8 HTML5 file in ``tmp_path`` with ``head`` and ``body``; returns its path."""
    path = tmp_path / name
    path.write_text(
        f'<!doctype html><html><head><meta charset="utf-8"><title>t</title>{head}</head>'
        f"<body>{body}</body></html>",
        encoding="utf-8",
    )
    return path


def svg_figure(figure_id: str, title: str, width: int, height: int) -> str:
    return (
        f'<figure id="{figure_id}"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{title}</title>'
        f'<rect width="{width}" height="{height}" fill="steelblue"/></svg>'
        f"<figcaption>{title}, caption</figcaption></figure>"
    )


CLEAN_BODY = (
    "<h1>Sweep demo</h1><h2>1 Attacks</h2>"
    + svg_figure("asr", "Attack success rate", 320, 200)
    + "<h3>1.1 By trigger</h3><h2>2 Defenses</h2>"
    + svg_figure("der", "Defense effectiveness", 400, 240)
    + "<p>Inline only; a data: image is part of the file.</p>"
    + '<img id="pixel" alt="one pixel" width="8" height="8" '
    + 'src="data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==">'
)


def test_clean_page_has_no_findings_and_lists_headings_and_figures(tmp_path):
    page = inspect_page(write_page(tmp_path, CLEAN_BODY, head="<style>body { font-family: sans-serif; }</style>"))

    assert page.console_errors == ()
    assert page.console_warnings == ()
    assert page.requests == ()
    assert page.headings == ("Sweep demo", "1 Attacks", "1.1 By trigger", "2 Defenses")
    assert [(f.tag, f.id, f.title) for f in page.figures] == [
        ("svg", "asr", "Attack success rate"),
        ("svg", "der", "Defense effectiveness"),
        ("img", "pixel", "one pixel"),
    ]
    assert [(f.width, f.height) for f in page.figures] == [(320, 200), (400, 240), (8, 8)]
    assert page.empty_figures == []
    assert not page.wider_than_viewport


@pytest.mark.parametrize(
    "head, body, url",
    [
        ("", f'<img src="{UNREACHABLE}/x.png" alt="remote">', f"{UNREACHABLE}/x.png"),
        (f'<link rel="stylesheet" href="{UNREACHABLE}/style.css">', "<p>styled</p>", f"{UNREACHABLE}/style.css"),
        ("", "<script>fetch('https://cdn.example.com/data.json').catch(() => {});</script>",
         "https://cdn.example.com/data.json"),
        ("", '<img src="figures/asr.svg" alt="beside the file">', "figures/asr.svg"),
    ],
    ids=["img", "stylesheet", "fetch", "local-file"],
)
def test_every_request_off_the_file_is_reported(tmp_path, head, body, url):
    page = inspect_page(write_page(tmp_path, body, head=head))

    expected = (tmp_path / url).as_uri() if "://" not in url else url
    assert page.requests == (expected,)


def test_requests_are_blocked_not_sent(tmp_path):
    hits = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/leak.png"
        page = inspect_page(write_page(tmp_path, f'<img src="{url}" alt="leak">'))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    assert page.requests == (url,)
    assert hits == []


def test_script_error_is_a_console_error(tmp_path):
    page = inspect_page(write_page(tmp_path, "<h1>x</h1><script>throw new Error('figure data missing');</script>"))

    assert len(page.console_errors) == 1
    assert "figure data missing" in page.console_errors[0]
    assert page.headings == ("x",)


def test_console_warning_is_kept_apart_from_errors(tmp_path):
    page = inspect_page(write_page(tmp_path, "<script>console.warn('rounded to 3 digits');</script>"))

    assert page.console_errors == ()
    assert len(page.console_warnings) == 1
    assert "rounded to 3 digits" in page.console_warnings[0]


def test_table_wider_than_the_page_is_caught(tmp_path):
    page = inspect_page(
        write_page(tmp_path, '<table style="width: 3000px"><tr><td>wide</td></tr></table>'), width=1000
    )

    assert page.wider_than_viewport
    assert page.scroll_width > 3000 > page.viewport_width
    assert page.viewport_width <= 1000


def test_zero_size_and_nested_svg(tmp_path):
    body = (
        '<figure id="empty"><svg width="0" height="0"></svg></figure>'
        '<figure id="flat"><svg width="300" height="0"></svg></figure>'
        # A nested <svg> is part of its figure, not a figure of its own.
        '<figure id="outer"><div><svg width="50" height="40"><svg width="5" height="5"></svg></svg></div></figure>'
    )
    page = inspect_page(write_page(tmp_path, body))

    assert [(f.id, f.width, f.height) for f in page.figures] == [("empty", 0, 0), ("flat", 300, 0), ("outer", 50, 40)]
    assert [f.id for f in page.empty_figures] == ["empty", "flat"]


def test_screenshot_is_a_png_of_the_whole_page(tmp_path):
    # A page three viewports tall whose last 100 px are red: the PNG must reach them.
    body = (
        '<div style="height: 2500px; background: white"></div>'
        '<div style="height: 100px; background: rgb(255, 0, 0)"></div>'
    )
    screenshot = tmp_path / "page.png"
    page = inspect_page(write_page(tmp_path, body, head="<style>body { margin: 0; }</style>"), screenshot, width=640)

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(screenshot) as image:
        assert image.size == (640, page.scroll_height)
        pixels = np.asarray(image.convert("RGB"))
    assert page.scroll_height == 2600
    assert tuple(pixels[-50, 100]) == (255, 0, 0)
    assert tuple(pixels[100, 100]) == (255, 255, 255)


def test_screenshot_height_is_capped(tmp_path):
    screenshot = tmp_path / "tall.png"
    page = inspect_page(
        write_page(tmp_path, f'<div style="height: {MAX_SCREENSHOT_HEIGHT + 4000}px"></div>'), screenshot, width=320
    )

    assert page.scroll_height > MAX_SCREENSHOT_HEIGHT
    with Image.open(screenshot) as image:
        assert image.size == (320, MAX_SCREENSHOT_HEIGHT)


def test_selenium_manager_is_never_called(tmp_path, monkeypatch):
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def refuse(*args, **kwargs):
        raise AssertionError("Selenium Manager was asked for a driver or browser")

    monkeypatch.setattr(SeleniumManager, "binary_paths", refuse)
    monkeypatch.setenv("SE_OFFLINE", "true")

    page = inspect_page(write_page(tmp_path, "<h1>offline</h1>"))

    assert page.headings == ("offline",)


def test_driver_is_quit_when_the_page_cannot_be_read(tmp_path, monkeypatch):
    import selenium.webdriver

    quit_calls = []
    original_quit = selenium.webdriver.Chrome.quit

    def recording_quit(self):
        quit_calls.append(self)
        original_quit(self)

    def failing_get(self, url):
        raise RuntimeError("navigation failed")

    monkeypatch.setattr(selenium.webdriver.Chrome, "quit", recording_quit)
    monkeypatch.setattr(selenium.webdriver.Chrome, "get", failing_get)

    with pytest.raises(RuntimeError, match="navigation failed"):
        inspect_page(write_page(tmp_path, "<h1>x</h1>"))
    assert len(quit_calls) == 1
    assert quit_calls[0].service.process is None or quit_calls[0].service.process.poll() is not None


def test_requests_from_log_skips_the_page_and_data_uris():
    def event(url, method="Network.requestWillBeSent"):
        return {"message": f'{{"message": {{"method": "{method}", "params": {{"request": {{"url": "{url}"}}}}}}}}'}

    log = [
        event("file:///r/index.html"),
        event("data:image/png;base64,AAAA"),
        event("http://a/x.png"),
        event("file:///r/index.html#attacks"),
        event("http://a/x.png"),
        event("http://b/y.css", method="Network.responseReceived"),
        event("file:///r/figures/a.svg"),
    ]

    assert requests_from_log(log, "file:///r/index.html") == ("http://a/x.png", "file:///r/figures/a.svg")
