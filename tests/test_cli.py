from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mailtriage.cli import main

IMAP = """
[[mailboxes]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
secret = {{ file = "{secret}" }}
"""


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, extra: str = "", secret: str = "secret.txt") -> Path:
    (tmp_path / "secret.txt").write_text("hunter2-not-shown\n")
    path = tmp_path / "mailtriage.toml"
    path.write_text(IMAP.format(secret=secret) + extra)
    return path


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = [(prefix, group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append(((*prefix, name), command))
    return found


@pytest.mark.parametrize("path,command", all_commands(main), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help_with_an_example(path: tuple[str, ...], command: click.Command) -> None:
    code, out, _ = invoke(*path, "--help")
    assert code == 0
    assert "Example:" in out and "mailtriage " in out.split("Example:")[1]


BAD = [
    ('[schedule]\npoll_interval = "often"\n', "schedule.poll_interval = 'often': expected a valid number"),
    ("[schedule]\ncolour = 3\n", "schedule.colour = 3: expected no such setting"),
    ("[intake]\nbatch_size = 0\n", "intake.batch_size = 0: expected greater than or equal to 1"),
    ('[logging]\nlevel = "LOUD"\n', "logging.level = 'LOUD': expected one of 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
    ("[store]\nurl = 'no url'\n", "store.url = 'no url': expected a database URL"),
    ("[schedule\n", "(syntax) = (missing): expected valid TOML"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_a_bad_config_value_is_one_line_naming_file_key_value_and_expectation_with_exit_2(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = write(tmp_path, extra)
    code, out, err = invoke("config", "check", str(path))
    assert code == 2 and out == ""
    assert err == f"mailtriage: {path}: {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1


def test_a_missing_mailbox_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "mailtriage.toml"
    path.write_text("[schedule]\nidle = false\n")
    code, _, err = invoke("--config", str(path), "run", "--once")
    assert (code, err) == (2, f"mailtriage: {path}: mailboxes = (missing): expected at least one [[mailboxes]] table\n")


def test_an_unreadable_secret_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, secret="no-such-file.txt")
    code, _, err = invoke("--config", str(path), "run", "--once")
    assert code == 2
    assert err == (
        f"mailtriage: {path}: mailboxes[0].secret.file = '{tmp_path / 'no-such-file.txt'}': "
        "expected a readable file (No such file or directory)\n"
    )


def test_an_imap_mailbox_without_credentials_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mailtriage.toml"
    path.write_text('[[mailboxes]]\nname = "x"\nhost = "imap.example.com"\n')
    code, _, err = invoke("config", "check", str(path))
    assert code == 2 and "mailboxes[0]" in err and "username, secret set" in err


def test_a_missing_config_file_says_how_to_make_one(tmp_path: Path) -> None:
    code, _, err = invoke("config", "check", str(tmp_path / "nope.toml"))
    assert code == 2 and "copy config.example.toml" in err


def test_environment_overrides_win_over_the_file_and_bad_ones_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[schedule]\npoll_interval = 60\n")
    code, out, _ = invoke("config", "check", str(path), env={"MAILTRIAGE_SCHEDULE__POLL_INTERVAL": "15"})
    assert code == 0 and '"poll_interval": 15.0' in out
    code, _, err = invoke("config", "check", str(path), env={"MAILTRIAGE_SCHEDULE__POLL_INTERVAL": "soon"})
    assert code == 2 and err.startswith("mailtriage: environment MAILTRIAGE_SCHEDULE__POLL_INTERVAL: ")


def test_config_check_masks_every_secret(tmp_path: Path) -> None:
    path = tmp_path / "mailtriage.toml"
    path.write_text(
        '[[mailboxes]]\nname = "o"\nhost = "imap.example.com"\nusername = "u@example.com"\nauth = "xoauth2"\n'
        'secret = { command = "oauth-helper --client-secret s3cr3t-value" }\n'
        '[store]\nurl = "postgresql://triage:pg-pass-word@db.example.com/mailtriage"\n'
    )
    code, out, _ = invoke("config", "check", str(path))
    assert code == 0
    assert "s3cr3t-value" not in out and "pg-pass-word" not in out
    assert '"secret": "command (hidden)"' in out and "triage:***@db.example.com" in out


def test_config_check_resolves_relative_paths_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "mailtriage.toml"
    path.write_text('[[mailboxes]]\nname = "local"\nmaildir = "mail"\n')
    code, out, _ = invoke("config", "check", str(path))
    assert code == 0
    assert f'"maildir": "{tmp_path / "mail"}"' in out and f"sqlite:///{tmp_path / 'mailtriage.db'}" in out


def test_the_demo_triages_the_sample_mail_and_prints_a_table(tmp_path: Path) -> None:
    code, out, _ = invoke("demo", "--keep", str(tmp_path / "demo"))
    assert code == 0
    assert "demo: 27 new, 3 skipped, 0 failed" in out
    drafts = list((tmp_path / "demo" / "Maildir" / ".Drafts" / "cur").iterdir())
    assert f"{len(drafts)} reply drafts written" in out and len(drafts) >= 20
    assert "auto-reply" in out and "bounce" in out and "bulk" in out
    assert (tmp_path / "demo" / "mailtriage.db").exists()
