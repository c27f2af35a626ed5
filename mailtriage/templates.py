"""Reply templates: plain files under ``templates/<category>/<language>.txt.j2``, rendered in a sandbox where an
undefined variable is an error, never an empty string. The variables are those ``draft.Drafter`` gives:
greeting_name, subject, references, signature and due."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailtriage.errors import TemplateError


class Templates:
    """The templates of one folder, in a sandboxed Jinja2 environment."""

    def __init__(self, folder: Path, fallback_language: str) -> None:
        self.folder = folder
        self.fallback_language = fallback_language
        self.environment = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

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
        try:
            text = self.environment.get_template(relative).render(**context)
        except jinja2.TemplateError as exc:
            raise TemplateError(name, f"{relative}: {type(exc).__name__}: {exc}") from None
        return text.strip() + "\n", used
