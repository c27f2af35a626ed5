"""Compliance's pages: every template with its state; a template folder with, per language, its text, variables,
lint findings, a sample rendering, its approval and what changed since; approving and rejecting with a note,
recorded under the signed-in account in the approvals manifest and the audit log."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailtriage.compliance import CONSOLE, Signature, approve, read_approvals, reject, template_names
from mailtriage.console.app import Console, Visitor, endpoint
from mailtriage.console.auth import APPROVE, READ_TEMPLATES
from mailtriage.errors import TemplateError
from mailtriage.policy import Policy, load_policy
from mailtriage.store import AuditEvent
from mailtriage.store.accounts import NO_MAILBOX
from mailtriage.template_review import TemplateReview, review

DECISIONS = ("template-approved", "template-rejected")
NOTE_LENGTH = 2000
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


def routes() -> list[Route]:
    return [
        Route("/templates", endpoint(READ_TEMPLATES)(_templates)),
        Route("/templates/{folder}", endpoint(READ_TEMPLATES)(_folder)),
        Route("/templates/{folder}/{language}/approve", endpoint(APPROVE, form=True)(_approve), methods=["POST"]),
        Route("/templates/{folder}/{language}/reject", endpoint(APPROVE, form=True)(_reject), methods=["POST"]),
    ]


@dataclass(frozen=True)
class Listed:
    folder: str
    used_by: tuple[str, ...]
    """The categories and variants that draft from it."""
    reviews: tuple[TemplateReview, ...]


def _templates(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    folder, policy = _where(console)
    approvals = read_approvals(folder)
    names = template_names(folder)
    listed = [
        Listed(name, _used_by(console, name),
               tuple(review(folder, n, policy, approvals) for n in names if n.partition("/")[0] == name))
        for name in sorted({n.partition("/")[0] for n in names})
    ]  # fmt: skip
    pending = sum(1 for entry in listed for r in entry.reviews if r.state != "approved")
    return console.render(request, "templates.html", listed=listed, pending=pending, total=len(names))


def _folder(
    console: Console, request: Request, visitor: Visitor, form: FormData | None, *, error: str = "", status: int = 200
) -> Response:
    folder, policy = _where(console)
    name = request.path_params["folder"]
    names = [n for n in template_names(folder) if n.partition("/")[0] == name] if _NAME.fullmatch(name) else []
    if not names:
        return console.render(request, "error.html", 404, title="No such template", message=f"No template {name}.")
    approvals = read_approvals(folder)
    reviews = [review(folder, n, policy, approvals) for n in names]
    history = _history(console, names)
    done = request.query_params.get("done", "")
    return console.render(
        request, "template.html", status, folder=name, used_by=_used_by(console, name), reviews=reviews,
        history=history, may_approve=visitor.account.role in APPROVE, error=error,
        done=done if done in ("approved", "rejected") else "", csrf=visitor.session.csrf,
    )  # fmt: skip


def _approve(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    return _decide(console, request, visitor, form, approving=True)


def _reject(console: Console, request: Request, visitor: Visitor, form: FormData | None) -> Response:
    return _decide(console, request, visitor, form, approving=False)


def _decide(
    console: Console, request: Request, visitor: Visitor, form: FormData | None, *, approving: bool
) -> Response:
    assert form is not None
    folder, policy = _where(console)
    name = f"{request.path_params['folder']}/{request.path_params['language']}"
    if name not in template_names(folder):
        return console.render(request, "error.html", 404, title="No such template", message=f"No template {name}.")
    note = str(form.get("note", "")).strip()[:NOTE_LENGTH]
    seen = str(form.get("sha256", ""))
    current = review(folder, name, policy, read_approvals(folder))
    account, now = visitor.account, console.clock()
    if seen != current.sources.sha256:
        why = f"{name} changed since you opened it: read it again before you decide"
        return _folder(console, request, visitor, None, error=why, status=409)
    if not approving and not note:
        return _folder(console, request, visitor, None, error=f"Say why {name} is rejected.", status=400)
    detail = {"template": name, "sha256": seen, "by": account.display_name, "account": account.name,
              "via": CONSOLE, "note": note}  # fmt: skip
    try:
        if approving:
            approval = approve(folder, name, Signature(account.display_name, account.name, CONSOLE), note, policy, now)
            console.store.audit.add(NO_MAILBOX, "template-approved", {**detail, "files": approval.files}, now=now)
        else:
            _, withdrawn = reject(folder, name)
            withdrew = {**detail, "withdrawn": withdrawn is not None}
            console.store.audit.add(NO_MAILBOX, "template-rejected", withdrew, now=now)
    except TemplateError as exc:  # a finding, or the manifest could not be written
        return _folder(console, request, visitor, None, error=exc.reason, status=409)
    done = "approved" if approving else "rejected"
    language = request.path_params["language"]
    return RedirectResponse(f"/templates/{request.path_params['folder']}?done={done}#{language}", status_code=303)


def _where(console: Console) -> tuple[Path, Policy]:
    folder: Path = console.settings.drafts.templates
    return folder, load_policy(folder / "policy.toml")


def _used_by(console: Console, folder: str) -> tuple[str, ...]:
    used = []
    for category in console.settings.categories:
        if category.template_name == folder:
            used.append(f"category {category.name}")
        used += [f"variant {v.name} of {category.name}" for v in category.variants if v.template == folder]
    return tuple(used)


def _history(console: Console, names: list[str]) -> list[AuditEvent]:
    """The approvals and rejections of these templates, newest first."""
    wanted = set(names)
    return [e for e in console.store.audit.recent(DECISIONS, 1000) if e.detail.get("template") in wanted][:50]
