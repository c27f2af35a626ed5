from __future__ import annotations

import csv
import io
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mailtriage.cli import main
from mailtriage.models import RawMessage
from mailtriage.parse import parse_message
from mailtriage.store import DaemonRecord, Filters, Outcome, Status, Store

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


def test_the_kept_demo_has_a_config_on_which_the_daemon_runs_and_triages_new_mail(tmp_path: Path) -> None:
    import mailbox

    code, out, _ = invoke("demo", "--keep", str(tmp_path / "demo"))
    config = tmp_path / "demo" / "mailtriage.toml"
    assert code == 0 and f"mailtriage --config {config} run" in out
    mailbox.Maildir(tmp_path / "demo" / "Maildir").add(
        b"From: Ann <ann@example.org>\r\nSubject: Kettle leaks\r\nMessage-ID: <new-1@example.org>\r\n\r\n"
        b"My new kettle leaks from the bottom, can I get a replacement?\r\n"
    )
    code, out, _ = invoke("--config", str(config), "run", "--once")
    assert code == 0 and out.strip() == "demo: 1 new, 0 skipped, 0 failed"
    code, _, _ = invoke("--config", str(config), "status")
    assert code == 0 and (tmp_path / "demo" / "mailtriage.heartbeat.json").exists()


def test_a_mail_added_to_the_kept_demo_is_always_one_the_daemon_drafts_to(tmp_path: Path) -> None:
    import random

    from mailtriage import demo

    invoke("demo", "--keep", str(tmp_path / "demo"))
    config = tmp_path / "demo" / "mailtriage.toml"
    random.seed(0)  # 12 picks from 27 customer mails, 3 of them escalated: a bad pick would show
    for _ in range(12):
        demo.add_mail(tmp_path / "demo")
    code, out, _ = invoke("--config", str(config), "run", "--once")
    assert code == 0 and out.strip() == "demo: 12 new, 0 skipped, 0 failed"
    store = Store(f"sqlite:///{tmp_path / 'demo' / 'mailtriage.db'}")
    newest = sorted(store.messages.recent(Filters(limit=12)), key=lambda record: record.id)
    assert len(newest) == 12 and all(store.audit.has(record.id, "draft-appended") for record in newest)
    store.close()


MAILDIR = """
[[mailboxes]]
name = "support"
maildir = "mail"

[store]
url = "sqlite:///{store}"
"""


def store_config(tmp_path: Path, extra: str = "") -> tuple[Path, Store]:
    path = tmp_path / "mailtriage.toml"
    path.write_text(MAILDIR.format(store=tmp_path / "store.db") + extra)
    return path, Store(f"sqlite:///{tmp_path / 'store.db'}")


def record_waiting(store: Store, number: int, received: datetime) -> None:
    data = (
        f"From: customer{number}@example.org\r\nSubject: Question {number}\r\n"
        f"Message-ID: <q{number}@example.org>\r\n\r\nWhere is my order?\r\n"
    ).encode()
    raw = RawMessage("INBOX", 1, number, data, frozenset(), received)
    parsed = parse_message(data, internal_date=received)
    outcome = Outcome(Status.UNCLASSIFIED, due_at=received + timedelta(hours=24))
    store.messages.record("support", raw, parsed, outcome, received)


def test_deadlines_lists_waiting_mail_soonest_first_and_at_a_later_time_shows_what_will_be_overdue(
    tmp_path: Path,
) -> None:
    path, store = store_config(tmp_path)
    now = datetime.now(UTC)
    record_waiting(store, 1, now - timedelta(hours=2))  # due in 22 hours
    record_waiting(store, 2, now - timedelta(hours=21))  # due in 3 hours: a warning
    record_waiting(store, 3, now - timedelta(hours=30))  # overdue
    record_waiting(store, 4, now - timedelta(hours=1))
    store.deadlines.answer(store.messages.all()[3], now, "reply in Sent", now=now)
    code, out, _ = invoke("--config", str(path), "deadlines", "--json")
    assert code == 0
    rows = json.loads(out)["messages"]
    assert [(r["subject"], r["state"]) for r in rows] == [
        ("Question 3", "breached"),
        ("Question 2", "warning"),
        ("Question 1", "on-track"),
    ]
    code, out, _ = invoke("--config", str(path), "deadlines", "--at", "+21h", "--json")
    assert [r["state"] for r in json.loads(out)["messages"]] == ["breached", "breached", "warning"]
    code, out, _ = invoke("--config", str(path), "deadlines")
    assert code == 0 and "Question 2" in out and "warning" in out and "Question 4" not in out
    code, _, err = invoke("--config", str(path), "deadlines", "--at", "next blue moon")
    assert code == 2 and "is not a time" in err


def test_report_prints_tables_json_and_csv_and_draws_a_png_chart(tmp_path: Path) -> None:
    from PIL import Image

    from tests.test_report import populate

    path, store = store_config(tmp_path)
    populate(store, 300, datetime.now(UTC))
    code, out, _ = invoke("--config", str(path), "report")
    assert code == 0 and "What customers write about" in out and "return-refund" in out
    code, out, _ = invoke("--config", str(path), "report", "--json")
    totals = {row["category"]: row for row in json.loads(out)["totals"]}
    assert code == 0 and sum(row["volume"] for row in totals.values()) > 200
    code, out, _ = invoke("--config", str(path), "report", "--csv")
    lines = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {line["language"] for line in lines} >= {"en", "fr", "de"}
    chart = tmp_path / "charts" / "report.png"
    code, out, _ = invoke("--config", str(path), "report", "--since", "2026-01-01", "--png", str(chart))
    assert code == 0 and str(chart) in out
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size[0] >= 600
        image.verify()


def test_status_reports_each_mailboxs_last_good_cycle_and_exits_5_once_it_is_stale(
    tmp_path: Path, seed_model: Path
) -> None:
    import mailbox

    inbox = mailbox.Maildir(tmp_path / "mail")
    inbox.add(b"From: ann@example.org\r\nSubject: Broken kettle\r\nMessage-ID: <k1@example.org>\r\n\r\n"
              b"My kettle stopped working after two days, it does not heat at all.\r\n")  # fmt: skip
    extra = f'\n[classifier]\nmodel = "{seed_model}"\n\n[health]\nheartbeat_file = "beat.json"\nstale_after = 600\n'
    path, _ = store_config(tmp_path, extra)
    code, out, _ = invoke("--config", str(path), "status", "--json")
    state = json.loads(out)
    assert code == 5 and state["healthy"] is False and state["mailboxes"][0]["last_ok_at"] is None

    code, _, _ = invoke("--config", str(path), "run", "--once")
    assert code == 0
    beat = json.loads((tmp_path / "beat.json").read_text())
    assert beat["mailboxes"]["support"]["failures"] == 0 and beat["mailboxes"]["support"]["last_ok_at"]
    code, out, _ = invoke("--config", str(path), "status", "--json")
    state = json.loads(out)
    assert code == 0 and state["healthy"] is True
    [box] = state["mailboxes"]
    assert box["failures"] == 0 and box["last_24h"]["open:on-track"] == 1
    assert state["model"]["problem"] is None and state["model"]["version"]
    assert state["heartbeat"]["written_at"] is not None
    code, out, _ = invoke("--config", str(path), "status")
    assert code == 0 and "healthy" in out and "support" in out

    code, out, _ = invoke("--config", str(path), "status", env={"MAILTRIAGE_HEALTH__STALE_AFTER": "0.001"})
    assert code == 5 and "not healthy" in out


def test_status_shows_which_daemon_works_each_mailbox_and_run_once_leaves_another_daemons_mailbox_alone(
    tmp_path: Path, seed_model: Path
) -> None:
    path, store = store_config(tmp_path, f'\n[classifier]\nmodel = "{seed_model}"\n')
    now = datetime.now(UTC)
    until = now + timedelta(seconds=30)
    store.leases.join(DaemonRecord("triage-b", "elsewhere.example", 4242, now, now, until, "0.1.0"))
    store.leases.offer(["support"])
    assert store.leases.acquire("support", "triage-b", now, 30) is not None
    code, out, _ = invoke("--config", str(path), "run", "--once")
    assert code == 0 and "support: not read, daemon triage-b holds it" in out
    state = json.loads(invoke("--config", str(path), "status", "--json")[1])
    [box] = state["mailboxes"]
    assert box["owner"] == "triage-b" and box["owner_since"] is not None
    [daemon] = state["daemons"]  # the run --once above left, and gave back what it held
    assert (daemon["name"], daemon["host"], daemon["alive"], daemon["mailboxes"]) == ("triage-b", "elsewhere.example",
                                                                                     True, 1)  # fmt: skip
    _, out, _ = invoke("--config", str(path), "status", env={"COLUMNS": "200"})
    assert "triage-b, since" in out and "daemons sharing the store" in out and "elsewhere.example, 4242" in out


def test_status_names_a_model_that_was_altered(tmp_path: Path, seed_model: Path) -> None:
    import shutil

    model = tmp_path / "model.npz"
    shutil.copy(seed_model, model)
    shutil.copy(seed_model.with_suffix(".json"), model.with_suffix(".json"))
    with model.open("ab") as file:
        file.write(b"tampered")
    path, _ = store_config(tmp_path, f'\n[classifier]\nmodel = "{model}"\n')
    code, out, _ = invoke("--config", str(path), "status", "--json")
    assert code == 5 and "altered or corrupted" in json.loads(out)["model"]["problem"]


def test_the_daemon_serves_prometheus_metrics_of_its_cycles_messages_and_deadlines(
    tmp_path: Path, seed_model: Path
) -> None:
    import mailbox
    import threading
    import time
    import urllib.request

    from mailtriage.settings import load_settings
    from mailtriage.wiring import daemon_from_settings
    from tests.dovecot import free_port

    inbox = mailbox.Maildir(tmp_path / "mail")
    inbox.add(b"From: ann@example.org\r\nSubject: Broken kettle\r\nMessage-ID: <k1@example.org>\r\n\r\n"
              b"My kettle stopped working after two days, it does not heat at all.\r\n")  # fmt: skip
    port = free_port()
    path, store = store_config(tmp_path, f'\n[classifier]\nmodel = "{seed_model}"\n\n[health]\nmetrics_port = {port}\n')
    daemon = daemon_from_settings(load_settings(path))
    runner = threading.Thread(target=daemon.run_forever, kwargs={"install_signals": False})
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not store.health.all().get("support") and time.monotonic() < deadline:
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        daemon.stop.set()
        runner.join(timeout=30)
    assert 'mailtriage_cycle_seconds_count{mailbox="support"} 1.0' in text
    assert 'mailtriage_open_deadlines{mailbox="support",state="on-track"} 1.0' in text
    assert re.search(r'mailtriage_messages\{category="[a-z-]+",mailbox="support",status="routed"\} 1\.0', text)
    assert 'mailtriage_last_success_timestamp_seconds{mailbox="support"}' in text


def test_commands_that_never_log_in_work_without_the_mailbox_secret(tmp_path: Path) -> None:
    path = tmp_path / "mailtriage.toml"
    store = tmp_path / "store.db"
    path.write_text(
        '[[mailboxes]]\nname = "support"\nhost = "imap.example.com"\nusername = "s@example.com"\n'
        f'secret = {{ env = "NOT_SET_HERE" }}\n\n[store]\nurl = "sqlite:///{store}"\n'
    )
    for command in (["deadlines"], ["report", "--json"], ["review"], ["status", "--json"]):
        code, _, err = invoke("--config", str(path), *command, env={"NOT_SET_HERE": ""})
        assert code in (0, 5) and "NOT_SET_HERE" not in err, (command, err)
    code, _, err = invoke("--config", str(path), "run", "--once", env={"NOT_SET_HERE": ""})
    assert code == 2 and "NOT_SET_HERE" in err


def test_imapclient_says_nothing_at_info_and_traces_the_protocol_at_debug() -> None:
    from mailtriage.cli import setup_logging

    setup_logging("INFO")
    assert not logging.getLogger("imapclient").isEnabledFor(logging.INFO)
    setup_logging("DEBUG")
    assert logging.getLogger("imapclient").isEnabledFor(logging.DEBUG)
    setup_logging("INFO")


def test_init_writes_a_deployment_that_checks_once_its_one_secret_is_set_and_never_overwrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke("init", str(tmp_path / "site"))
    config = tmp_path / "site" / "mailtriage.toml"
    assert code == 0 and f"mailtriage --config {config} config check --connect" in out
    assert (tmp_path / "site" / "templates" / "policy.toml").exists() and (tmp_path / "site" / "models").is_dir()
    monkeypatch.setenv("SUPPORT_IMAP_PASSWORD", "example")
    code, out, err = invoke("--config", str(config), "config", "check")
    assert code == 0 and f'"templates": "{tmp_path / "site" / "templates"}"' in out, err
    code, _, _ = invoke("--config", str(config), "templates", "check")
    assert code == 0  # the deployment's own copy, approved as shipped
    code, _, err = invoke("init", str(tmp_path / "site"))
    assert code == 2 and "never overwrites" in err


def test_version_says_the_model_and_templates_state() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.startswith("mailtriage ") and "default model:" in out and "33 of 33 approved" in out


def test_a_misspelt_setting_is_answered_with_the_one_it_was_probably_meant_to_be(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[mailboxes]]\nname = "x"\nmaildir = "m"\n[schedule]\npoll_intervall = 5\n')
    code, _, err = invoke("config", "check", str(path))
    assert code == 2 and "schedule.poll_intervall = 5: expected no such setting (did you mean poll_interval?)" in err
