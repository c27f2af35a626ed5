from __future__ import annotations

import html
import http.server
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import SCREENSHOT_MAX_HEIGHT, WINDOW, follow, screenshot

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = pytest.mark.browser

FORM = """<!doctype html>
<html><head><meta charset="utf-8"><title>Assign</title></head>
<body>
  <h1>Assign a message</h1>
  <form method="post" action="/assign">
    <label>Assignee <input id="assignee" name="assignee"></label>
    <label>Queue <select id="queue" name="queue"><option>billing</option><option>refunds</option></select></label>
    <button id="assign" type="submit">Assign</button>
  </form>
  <div style="height: 2500px">A page taller than the window.</div>
  <p id="end">The end of the page.</p>
</body></html>
"""

DONE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Assigned</title></head>
<body><p id="result">{assignee} now handles {queue}.</p></body></html>
"""


@dataclass
class Site:
    """A tiny web server on a free loopback port, and the forms posted to it."""

    url: str
    posted: list[dict[str, list[str]]] = field(default_factory=list)


@pytest.fixture
def site() -> Iterator[Site]:
    """The form page at ``/`` and its answer at ``/assign``, served from a thread by http.server."""
    posted: list[dict[str, list[str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(FORM)

        def do_POST(self) -> None:
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            posted.append(form)
            self._answer(DONE.format(**{key: html.escape(values[0]) for key, values in form.items()}))

        def _answer(self, page: str) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a request per line in the test's output is noise

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: one the kernel says is free
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Site(f"http://127.0.0.1:{server.server_address[1]}", posted)
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_browser_fills_in_a_form_submits_it_and_shows_the_servers_answer(browser: WebDriver, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(site.url)
    assert browser.title == "Assign"
    browser.find_element(By.ID, "assignee").send_keys("Ada <ops>")
    Select(browser.find_element(By.ID, "queue")).select_by_visible_text("refunds")
    follow(browser, browser.find_element(By.ID, "assign"))

    assert browser.find_element(By.ID, "result").text == "Ada <ops> now handles refunds."
    assert browser.title == "Assigned"
    assert site.posted == [{"assignee": ["Ada <ops>"], "queue": ["refunds"]}]


def test_a_screenshot_is_a_png_of_the_whole_page_and_the_window_keeps_its_size(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    browser.get(site.url)
    page_height = browser.execute_script("return document.documentElement.scrollHeight")
    assert page_height > WINDOW[1]

    saved = screenshot(browser, tmp_path / "shots" / "form.png")

    data = saved.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WINDOW[0], min(page_height, SCREENSHOT_MAX_HEIGHT))
    assert len(data) > 10_000
    assert browser.get_window_size() == {"width": WINDOW[0], "height": WINDOW[1]}
