"""What the console's tests share: a site (the demo's Maildir, a private copy of the shipped templates, a store and a
config file), accounts on it, and signing in through the test client."""

from __future__ import annotations

import mailbox
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from starlette.testclient import TestClient

from mailtriage.console.app import create_app
from mailtriage.console.auth import hash_password
from mailtriage.demo import build_maildir
from mailtriage.settings import Settings, load_settings
from mailtriage.store import Account, Store
from tests.helpers import TEMPLATES, now

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Site:
    root: Path
    config: Path
    settings: Settings
    store: Store

    @property
    def templates(self) -> Path:
        return self.root / "templates"


def make_site(
    root: Path, *, store_url: str | None = None, console: str = "", mail: bool = True, extra: str = ""
) -> Site:
    """A kept-demo-like site in ``root``: the demo's mail in a Maildir (unless ``mail`` is False), the shipped
    templates copied (their approvals are written there, never into the source tree), a store (SQLite in ``root``
    unless ``store_url``), and a config whose ``[console]`` table holds ``console``, followed by ``extra``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TEMPLATES, root / "templates")
    if mail:
        build_maildir(root / "Maildir")
    else:
        mailbox.Maildir(root / "Maildir", create=True)
    url = store_url or f"sqlite:///{root / 'mailtriage.db'}"
    config = root / "mailtriage.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "demo"\nmaildir = "Maildir"\n\n[store]\nurl = "{url}"\n\n'
        '[intake]\nown_addresses = ["support@example.com"]\n\n'
        '[drafts]\nfrom_address = "Support <support@example.com>"\ntemplates = "templates"\n\n'
        f"[console]\n{console}\n\n{extra}\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    return Site(root, config, settings, Store(url))


def add_account(site: Site, name: str, role: str, *, password: str | None = PASSWORD, display: str = "") -> Account:
    at = now()
    account = Account(name, display or name.title(), role, hash_password(password) if password else None, at, at, None)
    assert site.store.accounts.add(account, by="test")
    return account


def client(site: Site, clock: Callable[[], datetime] = now, peer: str = "testclient") -> TestClient:
    """A test client of the console on ``site``, over https (its cookies are Secure), from address ``peer``."""
    app = create_app(site.settings, site.store, clock)
    return TestClient(app, base_url="https://testserver", client=(peer, 50000))


def csrf(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def login(web: TestClient, name: str, password: str = PASSWORD) -> int:
    """Sign in through the login form: the status of the form's answer (303 when signed in)."""
    page = web.get("/login")
    answer = web.post("/login", data={"name": name, "password": password, "csrf": csrf(page.text)},
                      follow_redirects=False)  # fmt: skip
    return answer.status_code


def run_once(site: Site) -> str:
    """``mailtriage run --once`` on the site: its output."""
    from click.testing import CliRunner

    from mailtriage.cli import main

    result = CliRunner().invoke(main, ["--config", str(site.config), "run", "--once"])
    assert result.exit_code == 0, result.output
    return result.stdout
