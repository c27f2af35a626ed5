"""The web console through Starlette's test client: sign-in, sessions, CSRF, roles, approvals and rejections
recorded under the signed-in account, and every page's escaping of what customers wrote."""

from __future__ import annotations

import json
import logging
import mailbox
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from markupsafe import escape
from starlette.routing import Route

from mailtriage.compliance import read_approvals
from mailtriage.console import lead_pages
from mailtriage.console.app import SESSION_COOKIE, create_app
from mailtriage.console.auth import LoginLimit
from mailtriage.store import AuditEvent, Filters
from tests.consoles import PASSWORD, Site, add_account, client, csrf, login, make_site, run_once
from tests.helpers import now

APPEND = " Our accounts team reads every message."
"""A sentence the lint finds nothing in, to change a template with."""
BINDING = " We guarantee a full refund within 3 days."


class Clock:
    """A console clock the test moves."""

    def __init__(self) -> None:
        self.at = now()

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = make_site(tmp_path / "site")
    add_account(site, "amartin", "compliance", display="A. Martin")
    add_account(site, "lead", "lead", display="Lee Lead")
    add_account(site, "root", "admin")
    return site


def change(site: Site, name: str, sentence: str) -> None:
    path = site.templates / f"{name}.txt.j2"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("get back to you.", "get back to you." + sentence, 1), encoding="utf-8")


def decide(web: object, name: str, verb: str, note: str = "", *, token: str | None = None) -> object:
    """POST the approve or reject form of template ``name`` as its page shows it (its CSRF token and hash)."""
    folder = name.partition("/")[0]
    page = web.get(f"/templates/{folder}")  # type: ignore[attr-defined]
    section = page.text.split(f'action="/templates/{name}/{verb}"', 1)[1]
    sha = section.split('name="sha256" value="', 1)[1].split('"', 1)[0]
    data = {"sha256": sha, "note": note, "csrf": token if token is not None else csrf(page.text)}
    return web.post(f"/templates/{name}/{verb}", data=data, follow_redirects=False)  # type: ignore[attr-defined]


def audit(site: Site, action: str) -> list[dict[str, object]]:
    return [event.detail for event in site.store.audit.recent([action], 100)]


# --- signing in ---------------------------------------------------------------------------------------------------


def test_no_page_opens_without_a_session_every_route_sends_to_the_login(site: Site) -> None:
    app = create_app(site.settings, site.store, now)
    routes = [r for r in app.app.router.routes if isinstance(r, Route) and r.path != "/login"]  # type: ignore[attr-defined]
    web = client(site)
    assert len(routes) >= 9
    for route in routes:
        path = route.path.replace("{folder}", "billing").replace("{language}", "en")
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            answer = web.request(method, path, follow_redirects=False)
            if method == "GET":
                assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), path
            else:
                assert answer.status_code == 403, path
            assert "Lee Lead" not in answer.text and "billing/en" not in answer.text


def test_signing_in_opens_the_role_s_home_and_a_wrong_password_is_refused_and_audited(site: Site) -> None:
    web = client(site)
    assert login(web, "lead", "not the password") == 401
    assert login(web, "nobody", PASSWORD) == 401
    assert web.get("/waiting", follow_redirects=False).status_code == 303
    page = web.get("/login")
    answer = web.post("/login", data={"name": "lead", "password": PASSWORD, "csrf": csrf(page.text)},
                      follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/waiting"
    assert web.get("/waiting").status_code == 200
    refused = audit(site, "console-login-refused")
    assert [(r["account"], r["why"]) for r in refused] == [("nobody", "wrong name or password"),
                                                          ("lead", "wrong name or password")]  # fmt: skip
    assert [r["account"] for r in audit(site, "console-login")] == ["lead"]


def test_a_login_without_the_form_s_csrf_token_is_refused(site: Site) -> None:
    web = client(site)
    web.get("/login")
    answer = web.post("/login", data={"name": "lead", "password": PASSWORD, "csrf": "forged"}, follow_redirects=False)
    assert answer.status_code == 403 and SESSION_COOKIE not in answer.cookies
    other = client(site)  # a page of another site posting the form: it has no login cookie at all
    assert other.post("/login", data={"name": "lead", "password": PASSWORD, "csrf": ""}).status_code == 403


def test_after_too_many_failures_even_the_right_password_waits_for_the_window(site: Site) -> None:
    clock = Clock()
    web = client(site, clock)
    for _ in range(site.settings.console.login_attempts):
        assert login(web, "amartin", "guess") == 401
    page = web.get("/login")
    answer = web.post("/login", data={"name": "amartin", "password": PASSWORD, "csrf": csrf(page.text)})
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert "Too many failed logins" in answer.text
    assert login(client(site, clock, peer="192.0.2.7"), "lead") == 303, "another account from elsewhere is not held"
    assert login(client(site, clock), "amartin") == 429, "a console started again remembers the failures"
    clock.at += timedelta(minutes=site.settings.console.login_window_minutes + 1)
    assert login(web, "amartin") == 303
    assert audit(site, "console-login-refused")[0]["why"] == "too many failed logins"


def test_the_login_limit_waits_until_fewer_than_its_attempts_are_in_the_window() -> None:
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def event(minute: int, action: str = "console-login-refused", why: str = "wrong name or password") -> AuditEvent:
        detail = {"account": "AMartin", "address": "192.0.2.7", "why": why}
        return AuditEvent(start + timedelta(minutes=minute), "", None, action, detail)

    limit = LoginLimit(attempts=3, window=timedelta(minutes=15))
    failures = [event(minute) for minute in (5, 4, 3, 2)]  # newest first, as the audit log reads them
    at = start + timedelta(minutes=6)
    assert limit.wait(failures, "amartin", None, at) == timedelta(minutes=3 + 15 - 6)  # the third newest goes out
    assert limit.wait(failures[:2], "amartin", None, at) is None
    assert limit.wait([event(5, why="too many failed logins"), *failures[1:3]], "amartin", None, at) is None
    cleared = [failures[0], event(4, "console-login"), *failures[1:]]  # signed in after the failure at minute 4
    assert limit.wait(cleared, "amartin", None, at) is None
    assert limit.wait(cleared, "someone-else", "192.0.2.7", at) == timedelta(minutes=3 + 15 - 6)  # not the address
    assert limit.wait(failures, "amartin", None, start + timedelta(minutes=18)) is None


def test_an_address_that_guessed_too_often_waits_whatever_account_it_tries(site: Site) -> None:
    clock = Clock()
    guesser = client(site, clock, peer="198.51.100.4")
    for n in range(site.settings.console.login_attempts):
        assert login(guesser, f"someone-{n}", "guess") == 401
    assert login(guesser, "lead") == 429, "a new name from the same address"
    assert login(client(site, clock, peer="192.0.2.7"), "lead") == 303, "the account itself is not held up"
    assert login(guesser, "lead") == 429, "nor does another's login clear the address"


def test_passwords_are_never_stored_nor_logged_in_clear(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    web = client(site)
    login(web, "amartin", "a-wrong-guess-of-mine")
    login(web, "amartin")
    stored = b"".join(path.read_bytes() for path in site.root.glob("mailtriage.db*"))
    for secret in (PASSWORD, "a-wrong-guess-of-mine"):
        assert secret.encode() not in stored and secret not in caplog.text
    assert b"$argon2id$" in stored
    token = web.cookies[SESSION_COOKIE]
    assert token.encode() not in stored, "the store keeps the session token's hash, not the token"


def test_a_session_is_refused_after_logout_idle_time_and_its_lifetime(site: Site) -> None:
    clock = Clock()
    web = client(site, clock)
    login(web, "lead")
    cookie = web.cookies[SESSION_COOKIE]
    page = web.get("/waiting")
    assert web.post("/logout", data={"csrf": csrf(page.text)}, follow_redirects=False).status_code == 303
    replay = client(site, clock)
    replay.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local")
    assert replay.get("/waiting", follow_redirects=False).status_code == 303, "an ended session stays ended"

    login(web, "lead")
    clock.at += timedelta(minutes=site.settings.console.idle_minutes + 1)
    assert web.get("/waiting", follow_redirects=False).status_code == 303, "idle too long"
    login(web, "lead")
    for _ in range(int(site.settings.console.session_hours * 60 / 20) + 1):
        clock.at += timedelta(minutes=20)
        web.get("/waiting", follow_redirects=False)
    assert web.get("/waiting", follow_redirects=False).status_code == 303, "past its lifetime, however used"
    assert [e["why"] for e in audit(site, "console-logout")] == ["logout"]


def test_the_session_cookie_is_secure_http_only_and_strict_and_pages_carry_security_headers(site: Site) -> None:
    web = client(site)
    page = web.get("/login")
    answer = web.post("/login", data={"name": "lead", "password": PASSWORD, "csrf": csrf(page.text)},
                      follow_redirects=False)  # fmt: skip
    cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    for path in ("/waiting", "/login", "/static/console.css", "/no-such-page"):
        headers = web.get(path).headers
        assert "script-src 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store", path


def test_the_login_never_sends_anyone_to_another_site(site: Site) -> None:
    web = client(site)
    page = web.get("/login?next=//evil.example/x")
    data = {"name": "lead", "password": PASSWORD, "csrf": csrf(page.text), "next": "//evil.example/x"}
    answer = web.post("/login", data=data, follow_redirects=False)
    assert answer.headers["location"] == "/waiting"


def test_a_trusted_proxy_s_header_signs_in_its_account_and_any_other_sender_s_is_ignored(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", console='proxy_header = "X-Forwarded-User"\ntrusted_proxies = ["10.0.0.0/8"]')
    add_account(site, "jdoe", "lead", password=None)
    proxied = client(site, peer="10.1.2.3")
    assert proxied.get("/waiting", headers={"X-Forwarded-User": "jdoe"}).status_code == 200
    assert audit(site, "console-login")[0]["method"] == "proxy"
    assert proxied.get("/waiting", headers={"X-Forwarded-User": "mallory"}, follow_redirects=False).status_code == 303
    direct = client(site, peer="192.0.2.7")
    assert direct.get("/waiting", headers={"X-Forwarded-User": "jdoe"}, follow_redirects=False).status_code == 303
    assert login(direct, "jdoe", "") == 401, "a proxy-only account has no password to sign in with"


# --- roles and CSRF -----------------------------------------------------------------------------------------------


def test_a_form_without_its_session_s_csrf_token_changes_nothing(site: Site) -> None:
    change(site, "billing/en", APPEND)
    web = client(site)
    login(web, "amartin")
    before = (site.templates / "approvals.json").read_bytes()
    for token in ("", "forged"):
        assert decide(web, "billing/en", "approve", token=token).status_code == 403  # type: ignore[attr-defined]
    other = client(site)
    login(other, "root")
    other_token = csrf(other.get("/templates").text)
    assert decide(web, "billing/en", "approve", token=other_token).status_code == 403  # type: ignore[attr-defined]
    assert (site.templates / "approvals.json").read_bytes() == before
    assert web.post("/logout", data={}).status_code == 403


def test_a_lead_cannot_approve_and_the_attempt_is_audited(site: Site) -> None:
    change(site, "billing/en", APPEND)
    web = client(site)
    login(web, "lead")
    page = web.get("/templates/billing")
    assert page.status_code == 200 and "Approve this text" not in page.text
    sha = read_approvals(site.templates)["billing/en"].sha256
    answer = web.post("/templates/billing/en/approve", data={"csrf": csrf(page.text), "sha256": sha, "note": ""})
    assert answer.status_code == 403
    assert read_approvals(site.templates)["billing/en"].sha256 == sha
    assert audit(site, "console-refused")[0]["account"] == "lead"


def test_compliance_reads_templates_but_not_customers_mail(site: Site) -> None:
    web = client(site)
    login(web, "amartin")
    assert web.get("/templates/billing").status_code == 200
    for path in ("/waiting", "/report", "/report/chart.svg", "/decisions", "/accounts"):
        assert web.get(path).status_code == 403, path


# --- templates ----------------------------------------------------------------------------------------------------


def test_a_template_page_shows_each_language_s_text_variables_sample_and_approval(site: Site) -> None:
    web = client(site)
    login(web, "amartin")
    page = web.get("/templates/billing").text
    for language in ("en", "fr", "de"):
        assert f'id="{language}"' in page
    assert "first_name" in page and "Hello Renée," in page and "references" in page
    assert "category billing" in page
    assert read_approvals(site.templates)["billing/en"].sha256 in page


def test_a_finding_is_shown_with_its_rule_and_reason_and_blocks_the_approval(site: Site) -> None:
    change(site, "billing/en", BINDING)
    web = client(site)
    login(web, "amartin")
    page = web.get("/templates/billing").text
    assert "fails the lint" in page and "<mark>guarantee</mark>" in page
    assert "a guarantee or an assurance can be read as a contractual promise" in page
    answer = decide(web, "billing/en", "approve")
    assert answer.status_code == 409 and "refused, it fails the lint" in answer.text  # type: ignore[attr-defined]
    assert read_approvals(site.templates)["billing/en"].via == ""


def test_an_approval_in_the_console_names_the_signed_in_account_in_the_manifest_and_the_audit_log(site: Site) -> None:
    change(site, "billing/en", APPEND)
    web = client(site)
    login(web, "amartin")
    page = web.get("/templates/billing").text
    assert "changed since its approval" in page
    added = page.split('<span class="add">+', 1)[1].split("</span>", 1)[0]
    assert APPEND.strip() in added, "the diff against the approved text shows the new sentence"
    answer = decide(web, "billing/en", "approve", "checked the new sentence")
    assert answer.status_code == 303  # type: ignore[attr-defined]
    approval = read_approvals(site.templates)["billing/en"]
    assert (approval.approved_by, approval.account, approval.via) == ("A. Martin", "amartin", "console")
    assert approval.note == "checked the new sentence" and APPEND in approval.texts["billing/en.txt.j2"]
    [event] = audit(site, "template-approved")
    assert event["account"] == "amartin" and event["sha256"] == approval.sha256 and event["via"] == "console"
    page = web.get("/templates/billing").text
    assert "approved by A. Martin (amartin) in the console" in page and "checked the new sentence" in page


def test_the_daemon_drafts_from_the_text_approved_in_the_console(site: Site) -> None:
    change(site, "billing/en", APPEND)
    run_once(site)
    drafts = Path(site.root / "Maildir" / ".Drafts" / "cur")
    assert not any(APPEND.strip() in p.read_text(errors="replace") for p in drafts.iterdir())
    web = client(site)
    login(web, "amartin")
    decide(web, "billing/en", "approve", "ok")
    box = mailbox.Maildir(site.root / "Maildir")
    box.add(
        "From: Hal <hal@example.org>\r\nTo: support@example.com\r\nSubject: Invoice without VAT number\r\n"
        f"Message-ID: <vat-2@example.org>\r\nDate: {format_datetime(now())}\r\n\r\n"
        "Hello, my invoice INV-2291 does not show our VAT number. Could you send a corrected invoice?\r\n"
    )
    run_once(site)
    [draft] = [p for p in drafts.iterdir() if APPEND.strip() in p.read_text(errors="replace")]
    assert "Hal" in draft.read_text(errors="replace")


def test_a_template_changed_after_it_was_opened_is_not_approved_unread(site: Site) -> None:
    change(site, "billing/en", APPEND)
    web = client(site)
    login(web, "amartin")
    page = web.get("/templates/billing")
    sha = page.text.split('action="/templates/billing/en/approve"', 1)[1].split('name="sha256" value="')[1][:64]
    change(site, "billing/en", " And a second sentence.")
    answer = web.post("/templates/billing/en/approve", data={"csrf": csrf(page.text), "sha256": sha, "note": ""})
    assert answer.status_code == 409 and "changed since you opened it" in answer.text
    assert read_approvals(site.templates)["billing/en"].via == ""


def test_a_rejection_needs_a_note_and_withdraws_an_approved_text_s_approval(site: Site) -> None:
    web = client(site)
    login(web, "amartin")
    assert decide(web, "billing/de", "reject").status_code == 400  # type: ignore[attr-defined]
    assert "billing/de" in read_approvals(site.templates)
    assert decide(web, "billing/de", "reject", "no dates, please").status_code == 303  # type: ignore[attr-defined]
    assert "billing/de" not in read_approvals(site.templates)
    [event] = audit(site, "template-rejected")
    assert (event["account"], event["note"], event["withdrawn"]) == ("amartin", "no dates, please", True)
    page = web.get("/templates/billing").text
    assert "approval withdrawn" in page and "no dates, please" in page


def test_a_template_name_outside_the_folder_is_not_found(site: Site) -> None:
    web = client(site)
    login(web, "root")
    for path in ("/templates/%2e%2e%2fetc", "/templates/Billing", "/templates/nope", "/templates/billing%2Fen"):
        assert web.get(path).status_code == 404, path
    token = csrf(web.get("/templates").text)
    answer = web.post("/templates/billing/xx/approve", data={"csrf": token, "sha256": "", "note": ""})
    assert answer.status_code == 404


# --- what leads see -----------------------------------------------------------------------------------------------

HOSTILE = "<script>alert('x')</script>"


def hostile_mail(site: Site, at: datetime) -> None:
    mailbox.Maildir(site.root / "Maildir").add(
        f'From: "{HOSTILE}" <evil@example.org>\r\nTo: support@example.com\r\nSubject: Order <b>A-1</b> {HOSTILE}\r\n'
        f"Message-ID: <hostile-1@example.org>\r\nDate: {format_datetime(at)}\r\n\r\n"
        "Hello, my order A-1 has not arrived yet. Where is it?\r\n"
    )


def test_a_message_appears_in_the_warning_state_on_the_waiting_page_after_a_sweep(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", mail=False, extra="[deadlines]\nwarn_hours_left = 23.5\n")
    add_account(site, "lead", "lead")
    clock = Clock()
    web = client(site, clock)
    login(web, "lead")
    assert "0 messages waiting" in web.get("/waiting").text
    hostile_mail(site, now())
    run_once(site)
    page = web.get("/waiting").text
    assert "1 message waiting" in page and page.count('class="message state-on-track"') == 1
    for _ in range(3):  # an hour later, the lead's session kept alive
        clock.at += timedelta(minutes=20)
        page = web.get("/waiting").text
    assert page.count('class="message state-warning"') == 1 and 'class="message state-on-track"' not in page


def test_customer_text_is_escaped_on_every_page_that_shows_it(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    add_account(site, "root", "admin", display=f"Admin {HOSTILE}")
    hostile_mail(site, now() - timedelta(hours=2))
    run_once(site)
    web = client(site)
    login(web, "root")
    for path in ("/waiting", "/decisions", "/report", "/accounts", "/templates"):
        page = web.get(path)
        assert page.status_code == 200 and HOSTILE not in page.text and "<b>A-1</b>" not in page.text, path
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in web.get("/decisions").text


def test_the_report_page_shows_the_categories_the_chart_and_what_agents_did_with_drafts(site: Site) -> None:
    run_once(site)
    web = client(site)
    login(web, "lead")
    page = web.get("/report").text
    assert "billing" in page and "order-delivery" in page and 'src="/report/chart.svg"' in page
    chart = web.get("/report/chart.svg?since=2020-01-01")
    assert chart.headers["content-type"].startswith("image/svg+xml") and b"<svg" in chart.content
    assert "since: a day as YYYY-MM-DD" in web.get("/report?since=yesterday").text


def test_decisions_are_shown_a_page_at_a_time_newest_first_keeping_the_filters(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_once(site)
    monkeypatch.setattr(lead_pages, "PAGE", 3)
    web = client(site)
    login(web, "lead")
    recorded = site.store.messages.recent(Filters(limit=1000))
    page = web.get("/decisions")
    assert "Newest" not in page.text
    pages = [_DECISION.findall(page.text)]
    while older := _OLDER.search(page.text):
        page = web.get(older.group(1).replace("&amp;", "&"))
        assert 'href="/decisions?">Newest</a>' in page.text
        pages.append(_DECISION.findall(page.text))
    assert len(pages) > 1 and all(len(rows) == 3 for rows in pages[:-1]) and 0 < len(pages[-1]) <= 3
    seen = [subject for rows in pages for subject in rows]
    assert seen == [str(escape(record.subject)) for record in recorded]  # newest first, each once

    category, count = Counter(r.category for r in recorded if r.category).most_common(1)[0]
    assert count > 3
    narrowed = web.get(f"/decisions?category={category}&status=nonsense")  # an unknown status: any
    assert len(_DECISION.findall(narrowed.text)) == 3
    older = _OLDER.search(narrowed.text)
    assert older is not None and f"category={category}&amp;before=" in older.group(1)


_DECISION = re.compile(r'<tr class="decision"><td>[^<]*</td><td>[^<]*</td><td>([^<]*)</td>')
_OLDER = re.compile(r'<a rel="next" href="(/decisions\?[^"]+)">Older decisions</a>')


def test_the_admin_sees_accounts_and_the_console_s_audit(site: Site) -> None:
    web = client(site)
    login(web, "root")
    page = web.get("/accounts").text
    assert "amartin" in page and "A. Martin" in page and "console-login" in page
    assert json.dumps(PASSWORD) not in page and "$argon2" not in page


# --- the command line ---------------------------------------------------------------------------------------------


def cli(site: Site, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from mailtriage.cli import main

    result = CliRunner().invoke(main, ["--config", str(site.config), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_console_user_add_hashes_the_password_and_refuses_a_short_one(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", mail=False)
    code, out, err = cli(site, "console", "user", "add", "amartin", "--role", "compliance", "--name", "A. Martin",
                         "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0 and PASSWORD not in out + err
    account = site.store.accounts.get("amartin")
    assert account is not None and account.role == "compliance" and account.password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    assert cli(site, "console", "user", "add", "short", "--role", "lead", "--password-stdin", stdin="abc\n")[0] == 1
    code, out, _ = cli(site, "console", "user", "list")
    assert "amartin\tcompliance\tpassword\tactive\tA. Martin" in out and "short" not in out
    assert login(client(site), "amartin") == 303
    assert cli(site, "console", "user", "disable", "amartin")[0] == 0
    assert login(client(site), "amartin") == 401


def test_the_command_line_approves_as_a_console_account_only_with_its_password(site: Site) -> None:
    change(site, "billing/en", APPEND)
    args = ("templates", "approve", "billing/en", "--by", "amartin", "--password-stdin")
    code, _, err = cli(site, *args, stdin="wrong password\n")
    assert code == 1 and "wrong password for console account amartin" in err
    assert read_approvals(site.templates)["billing/en"].via == ""
    code, out, _ = cli(site, *args, stdin=PASSWORD + "\n")
    assert code == 0 and "approved by A. Martin (amartin) from the command line, password checked" in out
    approval = read_approvals(site.templates)["billing/en"]
    assert (approval.account, approval.via) == ("amartin", "command line")
    assert audit(site, "template-approved")[0]["account"] == "amartin"


def test_wrong_passwords_at_the_command_line_count_toward_the_console_s_login_limit(site: Site) -> None:
    change(site, "billing/en", APPEND)
    args = ("templates", "approve", "billing/en", "--by", "amartin", "--password-stdin")
    for _ in range(site.settings.console.login_attempts):
        assert cli(site, *args, stdin="wrong password\n")[0] == 1
    code, _, err = cli(site, *args, stdin=PASSWORD + "\n")
    assert code == 1 and "too many wrong passwords for console account amartin: try again in" in err
    assert read_approvals(site.templates)["billing/en"].via == "", "still the approval from before the change"
    assert login(client(site), "amartin") == 429, "nor may the console be tried instead"


def test_the_command_line_marks_an_approval_by_a_name_without_an_account_as_unchecked(site: Site) -> None:
    change(site, "billing/en", APPEND)
    code, out, err = cli(site, "templates", "approve", "billing/en", "--by", "Somebody Else")
    assert code == 0 and "is no console account" in err
    assert "approved from the command line as 'Somebody Else', a name not checked" in out
    approval = read_approvals(site.templates)["billing/en"]
    assert (approval.approved_by, approval.account, approval.via) == ("Somebody Else", "", "command line")
    code, _, err = cli(site, "templates", "approve", "billing/en", "--by", "lead", "--password-stdin", stdin=PASSWORD)
    assert code == 1 and "only compliance and admin accounts approve" in err
    web = client(site)
    login(web, "amartin")
    assert "a name not checked" in web.get("/templates/billing").text
