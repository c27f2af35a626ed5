"""A headless Chromium for tests of the web console: Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium's WebDriver.

Every browser gets a profile of its own in a folder it is given, and is quit when its test ends. Both programs are
named by path, so Selenium Manager is never asked to find (or download) a browser or a driver: a machine without
them skips, or fails under CI=true, instead of reaching for the network.

selenium is imported only where a browser is started: where it is missing, ``unavailable_reason`` says so, and the
rest of the suite still runs.
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

INSTALL = "bash tests/install-servers.sh"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
"""The window's width and height, the same on every machine, so that a layout and a screenshot are too. The page
sees less: headless Chromium 156 keeps 143 pixels of the height for what would be its toolbars (``innerHeight`` is
757), and ``screenshot`` allows for that."""
PAGE_LOAD_TIMEOUT = 30
"""Seconds a page (``driver.get``, or a form's submission) may take to load."""
SCRIPT_TIMEOUT = 30
"""Seconds ``driver.execute_async_script`` may run."""
IMPLICIT_WAIT = 5
"""Seconds ``find_element`` waits for an element to appear (after a click, say) before it raises; ``find_elements``
waits as long before it returns an empty list, so a test that expects nothing should lower it first."""
SCREENSHOT_MAX_HEIGHT = 4000
"""The tallest screenshot ``screenshot`` takes, in CSS pixels: a longer page is cut off there."""

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox will not start
    "--disable-dev-shm-usage",  # a container's /dev/shm is often 64 MiB, too small: shared memory goes in /tmp
    "--disable-gpu",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    # Nothing a test does not ask for: no first-run page, no default-browser prompt, no background requests.
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _version(program: Path) -> str:
    """What ``program --version`` prints, or a sentence saying why it printed nothing."""
    try:
        result = subprocess.run(
            [str(program), "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({program} --version failed: {exc})"
    first = result.stdout.strip().splitlines()[:1]
    return first[0] if first else f"({program} --version printed nothing: {result.stderr.strip()})"


def _major(version: str) -> str | None:
    """The major version in ``Chromium 156.0.8078.114 built on Debian...`` or ``ChromeDriver 156.0...``."""
    for word in version.split():
        if word[:1].isdigit() and "." in word:
            return word.split(".")[0]
    return None


@functools.cache
def unavailable_reason() -> str | None:
    """Why a headless Chromium cannot be started here, or None when it can."""
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(program, os.X_OK):
            return f"{package} is not installed (no {program}): run {INSTALL}"
    try:
        importlib.import_module("selenium.webdriver")
    except ImportError as exc:
        return f"the selenium package cannot be imported ({exc}): pip install -e '.[dev]'"
    browser, driver = _version(CHROMIUM), _version(CHROMEDRIVER)
    if _major(browser) is None or _major(browser) != _major(driver):
        return f"{CHROMIUM} and {CHROMEDRIVER} are not the same version ({browser}; {driver}): run {INSTALL}"
    return None


@contextmanager
def open_browser(directory: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium with its profile in ``directory/profile`` and ChromeDriver's log in
    ``directory/chromedriver.log``; quit when the block ends, however it ends.

    Raises:
        selenium.common.exceptions.WebDriverException: when ChromeDriver or Chromium does not start; its log
            says why.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    directory.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={directory / 'profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(directory / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(SCRIPT_TIMEOUT)
        driver.implicitly_wait(IMPLICIT_WAIT)
        yield driver
    finally:
        driver.quit()


def follow(driver: WebDriver, element: WebElement) -> None:
    """Click ``element`` (a link, or a form's button) and return once the page it leads to has loaded.

    A click only starts a navigation: ChromeDriver may return before the form's POST is answered, and then
    ``current_url`` and ``find_element`` still see the page that was clicked. So the old page's root element is
    held, and the wait lasts until it is gone from the document and the new one is complete.

    Raises:
        selenium.common.exceptions.TimeoutException: when no new page has loaded within ``PAGE_LOAD_TIMEOUT``.
    """
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    wait = WebDriverWait(driver, PAGE_LOAD_TIMEOUT)
    wait.until(expected_conditions.staleness_of(page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def screenshot(driver: WebDriver, path: Path) -> Path:
    """Save the whole page as a PNG at ``path`` (up to ``SCREENSHOT_MAX_HEIGHT`` pixels tall): the window is made
    as tall as the page for the picture, then given back its height. Returns ``path``.

    Raises:
        OSError: when the file cannot be written.
    """
    size = driver.get_window_size()
    width, height = size["width"], size["height"]
    # The window's height includes what is not page (143 pixels in headless Chromium 156): keep that margin.
    chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    page = int(
        driver.execute_script(
            "return Math.max(document.body ? document.body.scrollHeight : 0, document.documentElement.scrollHeight)"
        )
    )
    driver.set_window_size(width, min(max(page, 1), SCREENSHOT_MAX_HEIGHT) + max(chrome, 0))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(path)):
            raise OSError(f"could not write the screenshot to {path}")
    finally:
        driver.set_window_size(width, height)
    return path
