"""Path settings are taken relative to the config file's folder, every one of them, found by type."""

from __future__ import annotations

import types
import typing
from pathlib import Path

from pydantic import BaseModel

from mailtriage.settings import Settings, load_settings

CONFIG = """
[[mailboxes]]
name = "local"
maildir = "mail/local"

[[mailboxes]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
ca_file = "certs/ca.pem"
secret = { file = "secrets/imap" }

[store]
url = "sqlite:///var/store.db"

[classifier]
model = "models/ours.npz"

[drafts]
templates = "our-templates"

[smtp]
host = "smtp.example.com"
secret = { file = "secrets/smtp" }

[health]
heartbeat_file = "run/heartbeat.json"
"""


def path_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field of the configuration that holds a path, as dotted names."""
    found = set()
    for name, field in model.model_fields.items():
        for kind in _kinds(field.annotation):
            if kind is Path:
                found.add(prefix + name)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= path_fields(kind, f"{prefix}{name}.")
    return found


def _kinds(annotation: object) -> list[object]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, tuple):
        return [kind for argument in typing.get_args(annotation) for kind in _kinds(argument)]
    return [annotation]


def paths_in(model: BaseModel, prefix: str = "") -> dict[str, Path]:
    found = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, Path):
                found[prefix + name] = item
            elif isinstance(item, BaseModel):
                found |= paths_in(item, f"{prefix}{name}.")
    return found


def test_every_path_setting_is_taken_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    for secret in ("imap", "smtp"):
        (tmp_path / "secrets" / secret).write_text("hunter2\n")
    config = tmp_path / "etc" / "mailtriage.toml"
    config.parent.mkdir()
    config.write_text(CONFIG.replace('"secrets/', '"../secrets/'))
    settings = load_settings(config)
    found = paths_in(settings)
    assert set(found) == path_fields(Settings)  # a new path setting must be added above
    for name, path in found.items():
        assert path.is_absolute() and path.is_relative_to(tmp_path), name
    assert settings.smtp.secret is not None and settings.smtp.secret.read("c", "smtp.secret") == "hunter2"
    assert settings.store.url == f"sqlite:///{tmp_path / 'etc' / 'var' / 'store.db'}"
