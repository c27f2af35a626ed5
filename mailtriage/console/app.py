"""The console's web application (Starlette): who is signed in, logins and logouts, and what every page shares.

Every page goes through ``endpoint``: it resolves the visitor from the session cookie (or the trusted proxy's
header), refuses anyone without a role the page allows, checks the CSRF token of every form, and runs the page's
own code, plain synchronous code reading the store and the template folder, in a worker thread.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailtriage.console.auth import LoginLimit, check_password, login_wait, trusted
from mailtriage.sections import ConsoleSettings
from mailtriage.store import Account, Session, Store
from mailtriage.store.accounts import NO_MAILBOX

if TYPE_CHECKING:
    from mailtriage.settings import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "mailtriage_session"
LOGIN_COOKIE = "mailtriage_login"
"""A random value the login form must repeat (a double-submit token: there is no session yet to hold one)."""
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every response: no scripts at all, no framing, nothing cached (pages show customers' mail)."""
HOME = {"compliance": "/templates", "lead": "/waiting", "admin": "/templates"}


@dataclass(frozen=True)
class Visitor:
    """Who is signed in, through which session."""

    account: Account
    session: Session
    cookie: str | None = None
    """A new session's token, to set as the cookie (a proxy identity seen for the first time)."""


View = Callable[["Console", Request, Visitor, FormData | None], Response]


class Console:
    """What every page needs: the settings, the store, the clock, the login limit and the page templates."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.config: ConsoleSettings = settings.console
        self.store = store
        self.clock = clock
        self.limit = LoginLimit.of(self.config)
        self.pages = jinja2.Environment(
            loader=jinja2.PackageLoader("mailtriage.console", "pages"), autoescape=True,
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )  # fmt: skip

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=self.config.session_hours)

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.config.idle_minutes)

    def render(self, request: Request, page: str, code: int = 200, **context: Any) -> HTMLResponse:
        visitor: Visitor | None = getattr(request.state, "visitor", None)
        html = self.pages.get_template(page).render(visitor=visitor, path=request.url.path, **context)
        return HTMLResponse(html, status_code=code)

    # --- who is this ----------------------------------------------------------------------------------------------

    def address(self, request: Request) -> str:
        """The client's address: the peer's, or the one a trusted proxy forwarded for."""
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded and trusted(peer, self.config.trusted_proxies):
            return forwarded.rsplit(",", 1)[-1].strip()[:100]
        return peer

    def identify(self, request: Request) -> Visitor | None:
        """The signed-in visitor, or None: from the proxy's header when it is configured and sent by a trusted
        proxy (the header wins over an older session of someone else), else from the session cookie."""
        now = self.clock()
        token = request.cookies.get(SESSION_COOKIE, "")
        session = self.store.accounts.session(token, now, self.idle) if token else None
        named = self._proxy_name(request)
        if named is not None:
            account = self.store.accounts.get(named)
            if account is None or not account.active:
                log.warning("console: the proxy names %r, who has no active console account", named)
                return None
            if session is not None and session.account == account.name and session.method == "proxy":
                self.store.accounts.touch(session, now)
                return Visitor(account, session)
            if session is not None:
                self.store.accounts.end_session(session, now, "the proxy names someone else")
            token, session = self.store.accounts.open_session(account.name, "proxy", self.address(request), now,
                                                              self.lifetime)  # fmt: skip
            return Visitor(account, session, cookie=token)
        if session is None:
            return None
        found = self.store.accounts.get(session.account)
        if found is None or not found.active:
            return None
        self.store.accounts.touch(session, now)
        return Visitor(found, session)

    def _proxy_name(self, request: Request) -> str | None:
        """The account name a trusted proxy sent in ``proxy_header``; None without one."""
        header = self.config.proxy_header
        if not header or header not in request.headers:
            return None
        peer = request.client.host if request.client else ""
        if not trusted(peer, self.config.trusted_proxies):
            log.warning("console: ignored the %s header from %s, not a trusted proxy", header, peer)
            return None
        return request.headers[header].strip()[:100]

    def serve(self, request: Request, view: View, roles: frozenset[str], form: FormData | None) -> Response:
        """Run ``view`` for a visitor with one of ``roles``, its form's CSRF token checked."""
        visitor = self.identify(request)
        if visitor is None:
            if request.method != "GET":
                return self.render(request, "error.html", 403, title="Signed out", message="Sign in first.")
            return RedirectResponse(f"/login?next={_local(request.url.path)}", status_code=303)
        request.state.visitor = visitor
        if form is not None and not secrets.compare_digest(str(form.get("csrf", "")), visitor.session.csrf):
            return self.refuse(request, visitor, "the form's CSRF token is missing or wrong")
        if visitor.account.role not in roles:
            return self.refuse(request, visitor, f"a {visitor.account.role} may not open this page")
        response = view(self, request, visitor, form)
        if visitor.cookie is not None:
            self.set_session_cookie(response, visitor.cookie)
        return response

    def refuse(self, request: Request, visitor: Visitor, why: str) -> Response:
        if request.method != "GET":
            detail = {"account": visitor.account.name, "path": request.url.path[:200], "why": why}
            self.store.audit.add(NO_MAILBOX, "console-refused", detail, now=self.clock())
        return self.render(request, "error.html", 403, title="Not allowed", message=f"Refused: {why}.")

    def set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, max_age=int(self.lifetime.total_seconds()), path="/",
                            secure=self.config.secure_cookie, httponly=True, samesite="strict")  # fmt: skip


Endpoint = Callable[[Request], Awaitable[Response]]


def endpoint(roles: frozenset[str], *, form: bool = False) -> Callable[[View], Endpoint]:
    """Make ``view`` a route endpoint open to ``roles``; ``form``: it takes a POSTed form (CSRF-checked)."""

    def wrap(view: View) -> Endpoint:
        async def run(request: Request) -> Response:
            console: Console = request.app.state.console
            data = await request.form(max_files=0, max_fields=20) if form else None
            return await run_in_threadpool(console.serve, request, view, roles, data)

        run.__name__ = view.__name__
        return run

    return wrap


# --- logging in and out -------------------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    console: Console = request.app.state.console
    if request.method == "GET":
        return _login_form(console, request)
    form = await request.form(max_files=0, max_fields=10)
    return await run_in_threadpool(_login, console, request, form)


def _login_form(console: Console, request: Request, status: int = 200, error: str = "", name: str = "") -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    next_path = _local(request.query_params.get("next", ""))
    response = console.render(request, "login.html", status, csrf=token, error=error, name=name, next=next_path)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/login", secure=console.config.secure_cookie,
                        httponly=True, samesite="strict")  # fmt: skip
    return response


def _login(console: Console, request: Request, form: FormData) -> Response:
    now, address = console.clock(), console.address(request)
    name, password = str(form.get("name", "")).strip()[:100], str(form.get("password", ""))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not secrets.compare_digest(str(form.get("csrf", "")), cookie):
        _refused(console, name, address, "the login form's CSRF token is missing or wrong", now)
        return _login_form(console, request, 403, "The form expired: please sign in again.", name)
    wait = login_wait(console.store, console.limit, name, address, now)
    if wait is not None:
        _refused(console, name, address, "too many failed logins", now)
        minutes = max(1, round(wait.total_seconds() / 60))
        response = _login_form(console, request, 429, f"Too many failed logins: try again in {minutes} min.", name)
        response.headers["Retry-After"] = str(int(wait.total_seconds()) + 1)
        return response
    account = console.store.accounts.get(name) if name else None
    if not check_password(account, password) or account is None:
        _refused(console, name, address, "wrong name or password", now)  # the limit counts it there
        return _login_form(console, request, 401, "Wrong name or password.", name)
    token, _ = console.store.accounts.open_session(account.name, "password", address, now, console.lifetime)
    log.info("console: %s signed in from %s", account.name, address)
    response = RedirectResponse(_local(str(form.get("next", ""))) or HOME[account.role], status_code=303)
    console.set_session_cookie(response, token)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def _refused(console: Console, name: str, address: str, why: str, now: datetime) -> None:
    log.warning("console: login refused for %r from %s: %s", name, address, why)
    console.store.audit.add(NO_MAILBOX, "console-login-refused", {"account": name, "address": address, "why": why},
                            now=now)  # fmt: skip


def _logout(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    console.store.accounts.end_session(visitor.session, console.clock(), "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _home(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    return RedirectResponse(HOME[visitor.account.role], status_code=303)


def _local(path: str) -> str:
    """``path`` if it is a path on this site (never another site's address), else empty."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path and path.isprintable():
        return path
    return ""


# --- the application ----------------------------------------------------------------------------------------------


class SecurityHeaders:
    """Adds ``HEADERS`` to every response, error pages and static files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(
                    (name.lower().encode(), value.encode()) for name, value in HEADERS.items()
                    if name.lower().encode() not in present
                )]  # fmt: skip
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings, store: Store, clock: Callable[[], datetime]) -> ASGIApp:
    """The console for ``settings``, reading and writing ``store``."""
    from importlib.resources import files

    from mailtriage.console import compliance_pages, lead_pages
    from mailtriage.console.auth import READ_TEMPLATES

    everyone = READ_TEMPLATES
    routes: list[BaseRoute] = [
        Route("/", endpoint(everyone)(_home)),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", endpoint(everyone, form=True)(_logout), methods=["POST"]),
        *compliance_pages.routes(),
        *lead_pages.routes(),
        Mount("/static", StaticFiles(directory=str(files("mailtriage.console") / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = Console(settings, store, clock)
    return SecurityHeaders(app)
