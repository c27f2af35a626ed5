"""Reply templates: plain files under ``templates/<category>/<language>.txt.j2``, rendered in a sandbox where an
undefined variable is an error, never an empty string. A template may include, import or extend others by name;
what is rendered is what was read (``Sources``), so an approval covers every file that makes the text. The
variables are those ``draft.Drafter`` gives: greeting_name, first_name, subject, references, models, photos,
documents, reason, signature and due."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from mailtriage.errors import TemplateError


class Templates:
    """The templates of one folder."""

    def __init__(self, folder: Path, fallback_language: str) -> None:
        self.folder = folder
        self.fallback_language = fallback_language

    def path(self, name: str, language: str) -> tuple[str, str]:
        """The template file for ``name`` in ``language``, else in the fallback language: (file, its language)."""
        for candidate in (language, self.fallback_language):
            relative = f"{name}/{candidate}.txt.j2"
            if (self.folder / relative).is_file():
                return relative, candidate
        raise TemplateError(name, f"no template {name}/{language}.txt.j2 nor {name}/{self.fallback_language}.txt.j2")

    def render(self, name: str, language: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """The rendered text and the language it is in.

        Raises:
            TemplateError: the template is missing, broken, uses an undefined variable or something the sandbox
                refuses.
        """
        relative, used = self.path(name, language)
        return render_sources(read_sources(self.folder, relative.removesuffix(".txt.j2")), context), used


@dataclass(frozen=True)
class Sources:
    """A template and every template it includes, imports or extends, as read at one moment: what is hashed for
    an approval is exactly what is rendered."""

    name: str
    """'category/language'."""
    files: dict[str, str]
    """Path relative to the template folder -> text; the template itself first."""

    @property
    def hashes(self) -> dict[str, str]:
        return {path: hashlib.sha256(text.encode("utf-8")).hexdigest() for path, text in self.files.items()}

    @property
    def sha256(self) -> str:
        """The template's own hash when it stands alone (as approvals always were), else one over every file."""
        hashes = self.hashes
        if len(hashes) == 1:
            return next(iter(hashes.values()))
        return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()

    @property
    def main(self) -> str:
        return next(iter(self.files))


def read_sources(folder: Path, name: str) -> Sources:
    """Template ``name`` and, recursively, every template it names in ``include``, ``import``, ``from`` or
    ``extends``, read once.

    Raises:
        TemplateError: a file is missing or unreadable, a template does not parse, or one names another by an
            expression: what it would include is not known until it runs, so it cannot be approved.
    """
    environment = jinja2.Environment()
    files: dict[str, str] = {}
    waiting = [f"{name}.txt.j2"]
    while waiting:
        path = waiting.pop(0)
        if path in files:
            continue
        target = folder / path
        if not target.resolve().is_relative_to(folder.resolve()):
            raise TemplateError(name, f"{path} lies outside the template folder")
        try:
            files[path] = target.read_bytes().decode("utf-8")  # as it is: no newline translation in the hash
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(name, f"cannot read {path}: {exc}") from None
        try:
            named = list(meta.find_referenced_templates(environment.parse(files[path])))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(name, f"{path}: line {exc.lineno}: {exc.message}") from None
        if None in named:
            raise TemplateError(
                name, f"{path} includes a template named by an expression: name it literally, so that what is "
                "approved is what is drafted",
            )  # fmt: skip
        waiting += [str(other) for other in named]
    return Sources(name, files)


def render_sources(sources: Sources, context: Mapping[str, Any]) -> str:
    """Render a template from the very text its approval was checked against (never re-read from disk, so a file
    changed since the check cannot slip in), in the sandbox, with undefined variables as errors.

    Raises:
        TemplateError: it is broken, uses an undefined variable or something the sandbox refuses.
    """
    try:
        template = _compiled(tuple(sources.files.items())).get_template(sources.main)
        text = template.render(**context)
    except jinja2.TemplateError as exc:
        raise TemplateError(sources.name, f"{sources.main}: {type(exc).__name__}: {exc}") from None
    return text.strip() + "\n"


@lru_cache(maxsize=256)
def _compiled(files: tuple[tuple[str, str], ...]) -> SandboxedEnvironment:
    """A sandbox holding exactly these files; kept per content, so each text is compiled once."""
    return SandboxedEnvironment(
        loader=jinja2.DictLoader(dict(files)), undefined=jinja2.StrictUndefined, autoescape=False,
        keep_trailing_newline=False,
    )  # fmt: skip
