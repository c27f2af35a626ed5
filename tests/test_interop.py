"""One end-to-end scenario on every IMAP server family in the suite: Dovecot (namespace '', MOVE, SPECIAL-USE),
Cyrus (personal namespace ``INBOX.``, lower-case SPECIAL-USE markers, MOVE) and Courier (``INBOX.``, no
SPECIAL-USE, no MOVE, UIDPLUS). The configuration writes folders as ``config.example.toml`` does
(``Support/Defects``); nothing in it names a server."""

from __future__ import annotations

import email
import logging
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtriage.cli import main
from mailtriage.demo import SUPPORT_ADDRESS, sample_mail
from mailtriage.draft import ANSWERS_HEADER
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.models import MessageKind
from mailtriage.settings import (
    ClassifierSettings,
    DraftSettings,
    IntakeSettings,
    Settings,
    StoreSettings,
)
from mailtriage.store import Status, Store
from mailtriage.wiring import daemon_from_settings
from tests.cyrus import CyrusServer
from tests.dovecot import Account, write_config
from tests.helpers import settings_for as shared_settings

SERVERS = ["dovecot", "cyrus", "courier"]
FOLDERS = {
    "defect-complaint": "Support/Defects", "return-refund": "Support/Returns", "repair": "Support/Repairs",
    "how-to": "Support/How-to", "spare-parts": "Support/Parts", "order-delivery": "Support/Orders",
    "billing": "Support/Billing", "feedback": "Support/Feedback",
}  # fmt: skip
DELETED_BY_AN_AGENT = (  # our own mail: recorded, never triaged, so it stays in the inbox
    b"From: Support <support@shop.example.com>\r\nTo: support@shop.example.com\r\nSubject: note to self\r\n"
    b"Message-ID: <note-1@shop.example.com>\r\n\r\nDeleted in a mail client, not expunged yet.\r\n"
)


@pytest.fixture(params=SERVERS)
def server_account(request: pytest.FixtureRequest) -> Account:
    """A fresh account on each server family in turn."""
    fixture = "account" if request.param == "dovecot" else f"{request.param}_account"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


def settings_for(account: Account, tmp_path: Path, model: Path) -> Settings:
    keywords = {name: (f"${name.title().replace('-', '')}",) for name in FOLDERS}
    return shared_settings(
        account, name="support", folders=FOLDERS, keywords=keywords,
        store=StoreSettings(url=f"sqlite:///{tmp_path / 'store.db'}"),
        intake=IntakeSettings(own_addresses=(SUPPORT_ADDRESS,)),
        classifier=ClassifierSettings(model=model),
        drafts=DraftSettings(from_address=f"Support <{SUPPORT_ADDRESS}>"),
    )  # fmt: skip


def everything(account: Account) -> dict[str, list[tuple[str, str, frozenset[bytes]]]]:
    """Every folder on the server: (Message-ID, X-Mailtriage-Answers, flags) of each of its messages."""
    client = account.client()
    try:
        found = {}
        for flags, _, name in client.list_folders():
            if b"\\Noselect" in flags or b"\\NoSelect" in flags:
                continue
            client.select_folder(name, readonly=True)
            items = client.fetch(client.search("ALL"), ["FLAGS", "BODY.PEEK[HEADER]"])
            messages = []
            for item in items.values():
                header = email.message_from_bytes(item[b"BODY[HEADER]"], policy=policy.compat32)
                answers = " ".join(str(header[ANSWERS_HEADER] or "").split())  # unfolded
                messages.append((str(header["Message-ID"]), answers, frozenset(item[b"FLAGS"])))
            found[name] = sorted(messages, key=lambda m: (m[0], m[1]))
        return found
    finally:
        client.logout()


def server_name(account: Account, path: str) -> str:
    mailbox = ImapMailbox(account.settings())
    try:
        return dict((p, n) for p, n, _ in mailbox.profile([path]).folders)[path]
    finally:
        mailbox.close()


def test_thirty_mixed_mails_are_triaged_alike_on_every_server(
    server_account: Account, tmp_path: Path, seed_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    account = server_account
    mails = sample_mail()
    account.append_many(mails)
    account.append_many([DELETED_BY_AN_AGENT], flags=["\\Deleted"])
    settings = settings_for(account, tmp_path, seed_model)

    with caplog.at_level(logging.INFO):
        reports = daemon_from_settings(settings).run_once()
    assert [r.error for r in reports] == [None]
    store = Store(settings.store.url)
    records = store.messages.all()
    after_first = everything(account)

    # Every message recorded once; every customer mail triaged, the rest never.
    assert len(records) == len(mails) + 1
    assert len({(r.message_id, r.content_hash) for r in records}) == len(records)
    customers = [r for r in records if r.kind == MessageKind.CUSTOMER.value]
    assert len(customers) >= 20
    routed = [r for r in customers if r.status == Status.ROUTED]
    assert {r.status for r in customers} == {Status.ROUTED}, {r.message_id: (r.status, r.error) for r in customers}

    # One threaded draft each, in the server's own drafts folder.
    drafts_folder = server_name(account, ImapMailbox(account.settings()).special_folder("drafts") or "")
    drafts = [answers for _, answers, _ in after_first[drafts_folder]]
    drafted = sorted(r.message_id for r in routed if r.route and r.route.template)
    assert sorted(drafts) == drafted and len(drafted) == len(set(drafted)) > 0
    others = [r.message_id for r in records if r.kind != MessageKind.CUSTOMER.value]
    assert not set(others) & set(drafts)  # auto-replies, bounces and bulk mail get no draft

    # Routed into the category folders, under the server's namespace; the rest stays in the inbox.
    for record in routed:
        folder = server_name(account, FOLDERS[record.category or ""]) if record.category in FOLDERS else "INBOX"
        assert record.message_id in [m for m, _, _ in after_first[folder]], (record.category, folder)
    created = [r.getMessage() for r in caplog.records if "created the folder" in r.getMessage()]
    used = {FOLDERS[r.category] for r in routed if r.category in FOLDERS}
    assert sorted(line.split("created the folder ")[1].split(" (")[0] for line in created) == sorted(used)
    inbox_ids = [m for m, _, _ in after_first["INBOX"]]
    assert sorted(inbox_ids) == sorted([*others, *(r.message_id for r in routed if r.category not in FOLDERS)])

    # Nothing read by mailtriage became \Seen; the agent's own \Deleted message was not expunged with ours.
    for name, messages in after_first.items():
        if name != drafts_folder:
            assert not [m for m, _, flags in messages if b"\\Seen" in flags], name
    assert ("<note-1@shop.example.com>", "", frozenset({b"\\Deleted"})) in [
        (m, a, flags - {b"\\Recent"}) for m, a, flags in after_first["INBOX"]
    ]

    # A second run changes nothing.
    again = daemon_from_settings(settings).run_once()
    assert [(r.new, r.failed, r.error) for r in again] == [(0, 0, None)]
    assert everything(account) == after_first


def test_a_drafts_folder_named_entwuerfe_marked_drafts_in_lower_case_is_found_on_cyrus(
    cyrus: CyrusServer, tmp_path: Path, seed_model: Path
) -> None:
    account = cyrus.new_account(drafts="Entwürfe")
    mailbox = ImapMailbox(account.settings())
    assert mailbox.special_folder("drafts") == "Entwürfe"
    profile = mailbox.profile()
    assert profile.drafts is not None and (profile.drafts.name, profile.drafts.how) == (
        "INBOX.Entwürfe",
        "marked \\Drafts",
    )
    account.append_many(sample_mail()[:3])
    settings = settings_for(account, tmp_path, seed_model)
    assert [r.error for r in daemon_from_settings(settings).run_once()] == [None]
    drafts = everything(account)["INBOX.Entwürfe"]
    assert len(drafts) == 3 and all(answers for _, answers, _ in drafts)


EXPECTED = {
    "dovecot": ["offers MOVE: yes", "offers SPECIAL-USE: yes", "separator '.'", "(MOVE)", "drafts folder: Drafts"],
    "cyrus": [
        "offers MOVE: yes", "personal prefix 'INBOX.', separator '.'", "drafts folder: INBOX.Drafts (marked \\Drafts)",
        "folder Support/Defects -> INBOX.Support.Defects",
    ],
    "courier": [
        "offers MOVE: no", "offers UIDPLUS: yes", "offers SPECIAL-USE: no", "personal prefix 'INBOX.'",
        "no MOVE, but UIDPLUS: routed messages are moved by COPY", "drafts folder: INBOX.Drafts (by its name",
        "folder Support/Defects -> INBOX.Support.Defects (created when first used)",
    ],
}  # fmt: skip


def test_config_check_connect_prints_what_each_server_offers_and_what_mailtriage_will_do(
    request: pytest.FixtureRequest, server_account: Account, tmp_path: Path, seed_model: Path
) -> None:
    family = request.node.callspec.params["server_account"]
    config = write_config(tmp_path / "c.toml", [server_account], tmp_path / "s.db", seed_model)
    with config.open("a") as toml:
        toml.write('[[categories]]\nname = "defect-complaint"\nfolder = "Support/Defects"\n')
        toml.write('[[categories]]\nname = "billing"\n')
    result = CliRunner().invoke(main, ["config", "check", "--connect", str(config)])
    assert result.exit_code == 0, result.output
    for expected in EXPECTED[family]:
        assert expected in result.output, (expected, result.output)
    assert "offers IDLE: yes" in result.output and "offers NAMESPACE: yes" in result.output
    assert "keywords: kept" in result.output
