"""The console in a real browser: `mailtriage console` served by uvicorn in its own process, driven by a headless
Chromium. With MAILTRIAGE_SCREENSHOTS=DIR, each main page is also saved there as a PNG (docs/console.md's)."""

from __future__ import annotations

import mailbox
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mailtriage.compliance import read_approvals
from tests import browser as headless
from tests.consoles import PASSWORD, Site, add_account, make_site, run_once
from tests.dovecot import free_port
from tests.helpers import now

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = pytest.mark.browser

BINDING = " We guarantee a full refund within 3 days."
FIXED = " Our accounts team reads every message."


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    """A site with the demo's mail triaged, its console served on a free loopback port: (site, base URL)."""
    site = make_site(tmp_path / "site", extra="[deadlines]\nwarn_hours_left = 24\n")
    add_account(site, "amartin", "compliance", display="A. Martin")
    add_account(site, "lead", "lead", display="Lee Lead")
    run_once(site)
    port = free_port()
    log = (tmp_path / "console.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailtriage", "--config", str(site.config), "console", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(port, process, tmp_path / "console.log")
        yield site, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mailtriage console exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("mailtriage console did not listen within 30 s")


def sign_in(driver: WebDriver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    headless.follow(driver, driver.find_element(By.ID, "sign-in"))


def shot(driver: WebDriver, name: str) -> None:
    folder = os.environ.get("MAILTRIAGE_SCREENSHOTS")
    if folder:
        headless.screenshot(driver, Path(folder) / f"{name}.png")


def test_compliance_signs_in_sees_a_finding_and_approves_the_mended_template(
    served: tuple[Site, str], browser: WebDriver
) -> None:
    from selenium.webdriver.common.by import By

    site, base = served
    template = site.templates / "billing/en.txt.j2"
    original = template.read_text(encoding="utf-8")
    template.write_text(original.replace("get back to you.", "get back to you." + BINDING, 1), encoding="utf-8")
    sign_in(browser, base, "amartin")
    assert browser.current_url == f"{base}/templates"
    assert "A. Martin (compliance)" in browser.find_element(By.ID, "who").text
    shot(browser, "templates")
    headless.follow(browser, browser.find_element(By.LINK_TEXT, "billing"))
    section = browser.find_element(By.ID, "en")
    findings = section.find_element(By.CSS_SELECTOR, "table.findings").text
    assert "guarantee" in findings and "contractual promise" in findings and "en-time-limit" in findings
    assert not section.find_element(By.CSS_SELECTOR, "button.approve").is_enabled()
    shot(browser, "template-finding")

    template.write_text(original.replace("get back to you.", "get back to you." + FIXED, 1), encoding="utf-8")
    browser.refresh()
    section = browser.find_element(By.ID, "en")
    assert (
        "changed since its approval" in section.text
        and FIXED.strip() in section.find_element(By.CSS_SELECTOR, "pre.diff").text
    )
    shot(browser, "template-diff")
    section.find_element(By.CSS_SELECTOR, "form[action$='/approve'] input[name=note]").send_keys("COMP-12 checked")
    headless.follow(browser, section.find_element(By.CSS_SELECTOR, "button.approve"))
    assert "You approved it" in browser.find_element(By.ID, "done").text
    section = browser.find_element(By.ID, "en")
    assert "approved by A. Martin (amartin) in the console" in section.find_element(By.CSS_SELECTOR, ".approval").text
    history = browser.find_element(By.CSS_SELECTOR, "table.history").text
    assert "COMP-12 checked" in history and "amartin" in history
    approval = read_approvals(site.templates)["billing/en"]
    assert (approval.account, approval.via, approval.note) == ("amartin", "console", "COMP-12 checked")
    [event] = site.store.audit.recent(["template-approved"])
    assert event.detail["account"] == "amartin" and event.detail["sha256"] == approval.sha256


def test_a_lead_sees_a_message_in_the_warning_state_appear_after_a_sweep(
    served: tuple[Site, str], browser: WebDriver
) -> None:
    from selenium.webdriver.common.by import By

    site, base = served
    sign_in(browser, base, "lead")
    assert browser.current_url == f"{base}/waiting"
    before = browser.find_elements(By.CSS_SELECTOR, "#warning tr.message")
    assert not any("A-77" in row.text for row in before)
    mailbox.Maildir(site.root / "Maildir").add(
        "From: Nora <nora@example.org>\r\nTo: support@example.com\r\nSubject: Where is order A-77?\r\n"
        f"Message-ID: <a77@example.org>\r\nDate: {format_datetime(now())}\r\n\r\n"
        "Hello, my order A-77 has not arrived yet. Could you tell me where it is?\r\n"
    )
    run_once(site)  # a cycle, then the deadline sweep
    browser.refresh()
    rows = browser.find_elements(By.CSS_SELECTOR, "#warning tr.message")
    assert len(rows) == len(before) + 1
    [row] = [row for row in rows if "A-77" in row.text]
    assert "Where is order A-77?" in row.text and "nora@example.org" in row.text
    shot(browser, "waiting")
    headless.follow(browser, browser.find_element(By.LINK_TEXT, "Report"))
    assert "order-delivery" in browser.find_element(By.CSS_SELECTOR, "table.report").text
    assert browser.execute_script("return document.querySelector('img.chart').naturalWidth") > 0, "the chart is drawn"
    shot(browser, "report")
    headless.follow(browser, browser.find_element(By.LINK_TEXT, "Decisions"))
    assert "Where is order A-77?" in browser.find_element(By.CSS_SELECTOR, "table.decisions").text
    shot(browser, "decisions")
    headless.follow(browser, browser.find_element(By.CSS_SELECTOR, "header .logout button"))
    browser.get(f"{base}/waiting")
    assert browser.current_url.startswith(f"{base}/login")
