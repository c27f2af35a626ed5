"""Routing and drafts against a real Dovecot: folders, keywords, threaded drafts, exactly one draft, failures."""

from __future__ import annotations

import email
import json
import logging
import re
import shutil
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from click.testing import CliRunner

from mailtriage import classify
from mailtriage.cli import main
from mailtriage.compliance import Approval, content_hash, template_names, write_approvals
from mailtriage.corrections import scan_keyword_corrections
from mailtriage.deadlines import policy_from_settings
from mailtriage.draft import ANSWERS_HEADER
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.pipeline import CycleOptions, run_cycle
from mailtriage.settings import (
    DEFAULT_CATEGORIES,
    ClassifierSettings,
    DraftSettings,
    Rule,
    Security,
    Settings,
    SmtpSettings,
    StoreSettings,
)
from mailtriage.store import Status, Store
from mailtriage.training import store_examples
from mailtriage.watch import sweep_deadlines
from mailtriage.wiring import daemon_from_settings, triage_from_settings
from tests.dovecot import Account, free_port
from tests.helpers import TEMPLATES, now
from tests.helpers import settings_for as shared_settings

pytestmark = pytest.mark.dovecot
FRENCH_RETURN = (
    "From: =?utf-8?q?Ren=C3=A9e_Lef=C3=A8vre?= <renee@example.org>\r\nTo: support@example.com\r\n"
    "Subject: Retour de ma cafetière, commande A-10487\r\nMessage-ID: <retour-1@example.org>\r\n"
    "Date: Mon, 23 Nov 2026 08:15:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\n"
    "Bonjour,\r\nJe souhaite retourner la cafetière reçue la semaine dernière (commande A-10487) et être "
    "remboursée. Comment dois-je procéder pour le renvoi du colis ?\r\nMerci, Renée\r\n"
).encode()
OUT_OF_OFFICE = (
    b"From: Max <max@example.com>\r\nSubject: Abwesenheitsnotiz\r\nAuto-Submitted: auto-replied\r\n"
    b"Message-ID: <oof-1@example.com>\r\n\r\nIch bin bis Montag nicht im Buero.\r\n"
)


def settings_for(account: Account, templates: Path = TEMPLATES, rules: tuple[Rule, ...] = ()) -> Settings:
    """Returns filed in Support/Returns with $Returns, billing in Support/Billing; the rest stays in the inbox."""
    return shared_settings(
        account, folders={"return-refund": "Support/Returns", "billing": "Support/Billing"},
        keywords={"return-refund": ("$Returns",)}, rules=rules,
        drafts=DraftSettings(from_address="Support <support@example.com>", templates=templates),
    )  # fmt: skip


def cycle(account: Account, store: Store, model: Path, settings: Settings) -> None:
    classifier = classify.load(model, settings.category_names())
    predictor = classify.Predictor(classifier, settings.classifier.threshold, settings.classifier.fallback)
    run_cycle(ImapMailbox(account.settings()), store, now=now, stages=triage_from_settings(settings, predictor))


def folder_messages(account: Account, folder: str) -> list[tuple[email.message.EmailMessage, tuple[bytes, ...]]]:
    client = account.client()
    try:
        client.select_folder(folder, readonly=True)
        found = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
        return [(email.message_from_bytes(v[b"BODY[]"], policy=policy.default), v[b"FLAGS"]) for v in found.values()]
    finally:
        client.logout()


def test_a_french_return_request_is_filed_with_its_keyword_and_gets_a_threaded_french_draft(
    account: Account, store: Store, seed_model: Path
) -> None:
    account.append_many([FRENCH_RETURN])
    cycle(account, store, seed_model, settings_for(account))
    assert folder_messages(account, "INBOX") == []
    [(original, flags)] = folder_messages(account, "Support.Returns")  # Dovecot separates levels with "."
    assert original["Message-ID"] == "<retour-1@example.org>" and b"$Returns" in flags and b"\\Seen" not in flags
    [(draft, draft_flags)] = folder_messages(account, "Drafts")
    assert b"\\Draft" in draft_flags
    assert draft["In-Reply-To"] == "<retour-1@example.org>" and draft[ANSWERS_HEADER] == "<retour-1@example.org>"
    assert draft["Subject"] == "Re: Retour de ma cafetière, commande A-10487"
    assert draft["To"].addresses[0].display_name == "Renée Lefèvre"
    body = draft.get_content()
    assert "Bonjour Renée Lefèvre" in body and "A-10487" in body and "> Je souhaite retourner la cafetière" in body
    [record] = store.messages.all()
    assert (record.category, record.status, record.decided_by) == ("return-refund", Status.ROUTED, "model")


def test_a_restart_after_the_drafts_append_leaves_exactly_one_draft(
    account: Account, store: Store, seed_model: Path
) -> None:
    settings = settings_for(account).model_copy(update={"categories": DEFAULT_CATEGORIES})  # no move: stays put
    account.append_many([FRENCH_RETURN])
    cycle(account, store, seed_model, settings)
    # What a kill between the APPEND and the store's commit leaves: the draft is on the server, while the store
    # still says the message's changes are pending.
    [record] = store.messages.all()
    store.messages.set_status(record, Status.PENDING, now=now())
    cycle(account, store, seed_model, settings)
    drafts = folder_messages(account, "Drafts")
    assert [d[ANSWERS_HEADER] for d, _ in drafts] == ["<retour-1@example.org>"]
    assert store.messages.all()[0].status == Status.ROUTED
    assert [e.action for e in store.audit.all() if e.action.startswith("draft")] == [
        "draft-appending",
        "draft-appended",
        "draft-exists",  # searched for only because an APPEND had been begun
    ]


def test_a_draft_an_agent_edited_or_deleted_is_never_written_again(
    account: Account, store: Store, seed_model: Path
) -> None:
    settings = settings_for(account).model_copy(
        update={  # the daemon shares the cycles' store and model
            "store": StoreSettings(url=store.url),
            "classifier": ClassifierSettings(model=seed_model),
        }
    )
    account.append_many([FRENCH_RETURN, FRENCH_CHASER])
    cycle(account, store, seed_model, settings)
    client = account.client()
    client.select_folder("Drafts")
    edited, deleted = sorted(client.search(["ALL"]))
    client.append("Drafts", b"From: support@example.com\r\nSubject: Re: edited\r\n\r\nEdited by Tom.\r\n")
    client.delete_messages([edited, deleted])  # an agent's client saves an edit as a new draft, then deletes the old
    client.expunge()
    client.logout()
    for _ in range(2):
        cycle(account, store, seed_model, settings)
        daemon_from_settings(settings).run_once()
    assert [m["Subject"] for m, _ in folder_messages(account, "Drafts")] == ["Re: edited"]


def test_an_override_rule_beats_the_classifier_and_review_shows_it(
    account: Account, store: Store, seed_model: Path, tmp_path: Path
) -> None:
    rule = Rule(name="key account", sender=r"@example\.org$", category="billing")
    account.append_many([FRENCH_RETURN])
    cycle(account, store, seed_model, settings_for(account, rules=(rule,)))
    [record] = store.messages.all()
    assert (record.category, record.decided_by) == ("billing", "rule:key account")
    assert [m["Message-ID"] for m, _ in folder_messages(account, "Support.Billing")] == ["<retour-1@example.org>"]
    config = tmp_path / "review.toml"
    config.write_text(f'[[mailboxes]]\nname = "x"\nmaildir = "{tmp_path}"\n[store]\nurl = "{store.url}"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "review", "--decided-by", "rule", "--json"])
    [row] = json.loads(result.stdout)
    assert (row["category"], row["decided_by"], row["draft"]) == ("billing", "rule:key account", True)
    assert row["reason"] == "rule 'key account' matched"


def test_an_out_of_office_reply_a_bounce_and_an_unsure_message_get_no_draft(
    account: Account, store: Store, seed_model: Path
) -> None:
    settings = settings_for(account).model_copy(
        update={"classifier": settings_for(account).classifier.model_copy(update={"threshold": 1.01})}
    )
    account.append_many([OUT_OF_OFFICE, FRENCH_RETURN])
    cycle(account, store, seed_model, settings)
    assert folder_messages(account, "Drafts") == []
    assert sorted((r.kind, r.category) for r in store.messages.all()) == [
        ("auto-reply", None),
        ("customer", "needs-triage"),
    ]


def test_a_mail_the_server_marked_as_spam_is_recorded_and_gets_no_draft(
    account: Account, store: Store, seed_model: Path
) -> None:
    spam = FRENCH_RETURN.replace(b"Message-ID: <retour-1@", b"X-Spam-Flag: YES\r\nMessage-ID: <spam-1@")
    account.append_many([spam])
    cycle(account, store, seed_model, settings_for(account))
    assert folder_messages(account, "Drafts") == []
    [record] = store.messages.all()
    assert (record.kind, record.kind_reason, record.status, record.category) == (
        "spam",
        "X-Spam-Flag: YES",
        "skipped",
        None,
    )
    [(_, flags)] = folder_messages(account, "INBOX")
    assert b"\\Seen" not in flags


MEDIATOR = (
    "From: Claire Martin <claire@example.org>\r\nTo: support@example.com\r\nSubject: Remboursement refusé\r\n"
    "Message-ID: <mediateur-1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\nBonjour,\r\nCela fait trois semaines que j'attends le remboursement de "
    "ma commande A-20931. Sans réponse de votre part sous huit jours, je saisirai le médiateur de la consommation.\r\n"
    "Claire Martin\r\n"
).encode()
FIRE = (
    b"From: Tom Baker <tom@example.org>\r\nTo: support@example.com\r\nSubject: Charger problem\r\n"
    b"Message-ID: <fire-1@example.org>\r\n\r\nHello,\r\nThe charger of my vacuum cleaner caught fire last night "
    b"while charging in the hallway. Luckily I was at home. What should I do now?\r\nTom\r\n"
)


def test_a_mediator_threat_and_a_charger_that_caught_fire_get_no_draft_and_are_flagged_urgent(
    account: Account, store: Store, seed_model: Path
) -> None:
    account.append_many([MEDIATOR, FIRE])
    cycle(account, store, seed_model, settings_for(account))
    assert folder_messages(account, "Drafts") == []
    client = account.client()
    folders = [name for marks, _, name in client.list_folders()
               if name not in ("Drafts", "Sent") and b"\\Noselect" not in marks]  # fmt: skip
    client.logout()
    flagged = [message for folder in folders for message in folder_messages(account, folder)]
    assert len(flagged) == 2
    for _, flags in flagged:
        assert b"\\Flagged" in flags and b"$Urgent" in flags and b"\\Seen" not in flags
    decided = {r.message_id: r.decided_by for r in store.messages.all()}
    assert decided == {"<mediateur-1@example.org>": "rule:mediator or consumer body (fr)",
                       "<fire-1@example.org>": "rule:safety hazard (en)"}  # fmt: skip
    recorded = [e.detail for e in store.audit.all() if e.action == "recorded"]
    assert all("escalated" in str(detail) for detail in recorded)


def test_a_template_with_an_undefined_variable_leaves_that_message_flagged_in_the_inbox(
    account: Account, store: Store, seed_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(TEMPLATES, broken)
    for category in DEFAULT_CATEGORIES:
        for language in ("en", "fr", "de"):
            (broken / category.name / f"{language}.txt.j2").write_text("Hello {{ customer_nmae }}")
    approved = {  # approved as they are, so that the render itself is what fails
        name: Approval(content_hash(broken / f"{name}.txt.j2"), "test", "2026-11-23", "")
        for name in template_names(broken)
    }
    write_approvals(broken, approved)
    account.append_many([FRENCH_RETURN])
    with caplog.at_level(logging.WARNING):
        cycle(account, store, seed_model, settings_for(account, templates=broken))
    [(original, flags)] = folder_messages(account, "INBOX")
    assert b"\\Flagged" in flags and b"$NeedsHuman" in flags
    assert folder_messages(account, "Drafts") == []
    [record] = store.messages.all()
    assert record.status == Status.NEEDS_HUMAN and "customer_nmae" in (record.error or "")
    assert "customer_nmae" in caplog.text
    assert any(
        e.action == f"status:{Status.NEEDS_HUMAN}" and "customer_nmae" in e.detail["error"] for e in store.audit.all()
    )


def test_an_agents_move_to_another_categorys_folder_is_a_correction_that_training_learns(
    account: Account, store: Store, seed_model: Path
) -> None:
    settings = settings_for(account).model_copy(
        update={
            "store": StoreSettings(url=store.url),
            "classifier": ClassifierSettings(model=seed_model),
        }
    )
    account.append_many([FRENCH_RETURN])
    daemon_from_settings(settings).run_once()
    client = account.client()
    client.create_folder("Support.Billing")
    client.select_folder("Support.Returns")
    client.move(client.search(["ALL"]), "Support.Billing")  # what an agent does in their mail client
    client.logout()
    daemon_from_settings(settings).run_once()  # its sweep after the cycle reads the categories' folders
    [record] = store.messages.all()
    assert (record.category, record.corrected, record.folder) == ("return-refund", "billing", "Support/Billing")
    assert [e.detail for e in store.audit.all() if e.action == "corrected"] == [
        {"from": "return-refund", "to": "billing", "by": "folder", "folder": "Support/Billing"}
    ]
    [example] = store_examples(store, fallback="needs-triage")
    assert example.label == "billing" and "cafetière" in example.text
    daemon_from_settings(settings).run_once()  # nothing new: the correction is recorded once
    assert len([e for e in store.audit.all() if e.action == "corrected"]) == 1


def the_draft_for(account: Account, store: Store, model: Path, sender: str, subject: str, body: str) -> EmailMessage:
    """The one draft a cycle writes for a customer's mail from ``sender`` (Message-ID <asked-1@example.com>)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "support@example.com", subject
    message["Message-ID"] = "<asked-1@example.com>"
    message.set_content(body)
    account.append_many([message.as_bytes()])
    cycle(account, store, model, settings_for(account))
    [(draft, _)] = folder_messages(account, "Drafts")
    return draft


OTHERS = [
    # language, From header, subject, body, what the greeting must read
    ("en", "Tom Whitaker <tom@example.com>", "Refund for order A-20001",
     "Hello, I would like to return the toaster from order A-20001 and get my money back. How do I send it back?",
     "Tom Whitaker"),
    ("de", "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>", "Rücksendung Bestellung A-30001",
     "Guten Tag, ich möchte den Wasserkocher aus Bestellung A-30001 zurückschicken und mein Geld zurück. "
     "Wie funktioniert die Rücksendung?", "Jürgen Müller"),
    ("en", "<nobody@example.com>", "Return of my kettle, order A-40001",
     "Hi, I want to send back the kettle from order A-40001 and be refunded. Where do I get a return label?", None),
]  # fmt: skip


@pytest.mark.parametrize("language,sender,subject,body,name", OTHERS, ids=["english", "german-umlauts", "no-name"])
def test_return_requests_get_a_draft_in_their_language_greeting_the_customer_by_name_when_there_is_one(
    account: Account,
    store: Store,
    seed_model: Path,
    language: str,
    sender: str,
    subject: str,
    body: str,
    name: str | None,
) -> None:
    draft = the_draft_for(account, store, seed_model, sender, subject, body)
    assert draft["In-Reply-To"] == "<asked-1@example.com>" and draft["Subject"] == f"Re: {subject}"
    assert draft["Content-Language"] == language
    text = draft.get_content()
    greeting = text.splitlines()[0]
    if name:
        greeted = name.split()[0] if language == "en" else name  # English greets by the first name
        assert greeted in greeting and draft["To"].addresses[0].display_name == name
    else:
        assert greeting in ("Hello,", "Dear customer,") or greeting.endswith(",") and "@" not in greeting
    assert subject.split()[-1] in text  # the order number found in the mail


ENGLISH_WORDS = {"the", "and", "kind", "regards", "dear", "hello", "thank", "thanks", "you", "your", "please",
                 "order", "return", "we", "our", "best", "customer", "with", "for"}  # fmt: skip


@pytest.mark.parametrize("language,sender,subject,body,signature", [
    ("fr", "=?utf-8?q?Ren=C3=A9e_Lef=C3=A8vre?= <renee@example.org>", "Retour de ma cafetière, commande A-10487",
     "Bonjour, je souhaite retourner la cafetière reçue la semaine dernière (commande A-10487) et être remboursée. "
     "Comment dois-je procéder ?", "Bien cordialement,\nL'équipe du service client"),
    ("de", "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>", "Rücksendung Bestellung A-30001",
     "Guten Tag, ich möchte den Wasserkocher aus Bestellung A-30001 zurückschicken und mein Geld zurück. "
     "Wie funktioniert die Rücksendung?", "Mit freundlichen Grüßen\nIhr Kundenservice"),
], ids=["french", "german"])  # fmt: skip
def test_a_french_or_german_draft_has_no_english_word_outside_the_quoted_original(
    account: Account, store: Store, seed_model: Path, language: str, sender: str, subject: str, body: str,
    signature: str,
) -> None:  # fmt: skip
    draft = the_draft_for(account, store, seed_model, sender, subject, body)
    ours = draft.get_content().replace("\r\n", "\n").split("\n>")[0].rsplit("\n", 1)[0]  # without the quote
    assert draft["Content-Language"] == language and signature in ours
    words = {word.lower() for word in re.findall(r"[A-Za-zÀ-ÿ]+", ours)}
    assert words & ENGLISH_WORDS == set(), ours


def test_a_mail_giving_its_order_number_model_and_a_photo_gets_a_draft_asking_for_none_of_them(
    account: Account, store: Store, seed_model: Path
) -> None:
    message = EmailMessage()
    message["From"], message["To"] = "Karin Vogel <karin@example.com>", "support@example.com"
    message["Subject"], message["Message-ID"] = "Defekter Wasserkocher, Bestellung A-30417", "<facts-1@example.com>"
    text = "Guten Tag, mein Wasserkocher NC-700 aus Bestellung A-30417 ist seit gestern defekt: er schaltet sich "
    message.set_content(text + "nicht mehr ein und die Kontrollleuchte blinkt. Ein Foto hänge ich an.")
    message.add_attachment(b"\xff\xd8\xff\xe0 a photo", maintype="image", subtype="jpeg", filename="kocher.jpg")
    account.append_many([message.as_bytes()])
    settings = settings_for(account)
    predictor = classify.Predictor(classify.load(seed_model, settings.category_names()), 0.0, "needs-triage")
    triage = triage_from_settings(settings, predictor)
    run_cycle(ImapMailbox(account.settings()), store, now=now, stages=triage)
    [(draft, _)] = folder_messages(account, "Drafts")
    ours = draft.get_content().replace("\r\n", "\n").split("\n>")[0]
    [record] = store.messages.all()
    assert record.category in ("defect-complaint", "repair", "spare-parts", "return-refund"), record.category
    assert "NC-700" in ours and "A-30417" in ours
    for asked in ("Foto", "Modell", "Bestellnummer"):
        assert asked not in ours, ours


FRENCH_CHASER = FRENCH_RETURN.replace(b"<retour-1@", b"<relance-1@").replace(
    "Je souhaite retourner la cafetière reçue la semaine dernière (commande A-10487) et être remboursée.".encode(),
    "J'ai renvoyé la cafetière il y a trois semaines et je n'ai toujours pas été remboursée.".encode(),
)


def test_a_refund_chaser_and_a_return_request_get_different_approved_variants(
    account: Account, store: Store, seed_model: Path
) -> None:
    account.append_many([FRENCH_RETURN, FRENCH_CHASER])
    returns = Rule(name="returns", message="rembours", category="return-refund")
    cycle(account, store, seed_model, settings_for(account, rules=(returns,)))
    drafts = {m["In-Reply-To"]: m.get_content() for m, _ in folder_messages(account, "Drafts")}
    assert "le motif de votre demande" in drafts["<retour-1@example.org>"]
    assert "où en est votre dossier" in drafts["<relance-1@example.org>"]
    audited = {e.detail["template"] for e in store.audit.all() if e.action == "draft-appended"}
    assert audited == {"return-refund/fr", "return-refund-status/fr"}


def test_an_agents_reply_in_sent_is_compared_with_the_draft_and_the_report_counts_it(
    account: Account, store: Store, seed_model: Path, tmp_path: Path
) -> None:
    account.append_many([FRENCH_RETURN, FRENCH_CHASER])
    returns = Rule(name="returns", message="rembours", category="return-refund")
    settings = settings_for(account, rules=(returns,))
    predictor = classify.Predictor(classify.load(seed_model, settings.category_names()), 0.5, "needs-triage")
    options = CycleOptions(deadlines=policy_from_settings(settings))  # answers are looked for in Sent
    run_cycle(ImapMailbox(account.settings()), store, now=now, stages=triage_from_settings(settings, predictor),
              options=options)  # fmt: skip
    drafts = {m["In-Reply-To"]: m for m, _ in folder_messages(account, "Drafts")}
    sent_as_is = drafts["<retour-1@example.org>"]
    del sent_as_is["X-Mailtriage-Answers-Hash"]
    own = EmailMessage()
    own["From"], own["To"], own["Subject"] = "support@example.com", "renee@example.org", "Re: relance"
    own["In-Reply-To"] = own["References"] = "<relance-1@example.org>"
    own.set_content("Bonjour Renée, votre remboursement est parti hier, vous le verrez sous peu.\nTom\n")
    account.append_many([sent_as_is.as_bytes(), own.as_bytes()], folder="Sent")
    sweep_deadlines(ImapMailbox(account.settings()), store, policy_from_settings(settings), now)
    used = {e.detail["template"]: e.detail["use"] for e in store.audit.all() if e.action == "draft-used"}
    assert used == {"return-refund/fr": "unchanged", "return-refund-status/fr": "unused"}
    config = tmp_config(store, account, tmp_path)
    result = CliRunner().invoke(main, ["--config", str(config), "report", "--json"])
    assert json.loads(result.stdout)["drafts"] == {
        "return-refund": {"unchanged": 1, "edited": 0, "rewritten": 0, "unused": 0},
        "return-refund-status": {"unchanged": 0, "edited": 0, "rewritten": 0, "unused": 1},
    }


def tmp_config(store: Store, account: Account, folder: Path) -> Path:
    config = folder / "mailtriage.toml"
    config.write_text(f'[[mailboxes]]\nname = "{account.settings().name}"\nmaildir = "{config.parent}"\n'
                      f'[store]\nurl = "{store.url}"\n')  # fmt: skip
    return config


def test_a_categorys_team_is_notified_once_through_smtp(account: Account, store: Store, seed_model: Path) -> None:
    received: list[bytes] = []

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:  # noqa: N802
            received.append(envelope.content if isinstance(envelope.content, bytes) else b"")
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        base = settings_for(account)
        categories = tuple(
            c.model_copy(update={"notify": "returns-team@example.com"}) if c.name == "return-refund" else c
            for c in base.categories
        )
        smtp = SmtpSettings(host="127.0.0.1", port=controller.port, security=Security.NONE)
        settings = base.model_copy(update={"categories": categories, "smtp": smtp})
        account.append_many([FRENCH_RETURN])
        cycle(account, store, seed_model, settings)
        [record] = store.messages.all()
        store.messages.set_status(record, Status.PENDING, now=now())  # as if a crash came before the status was saved
        cycle(account, store, seed_model, settings)
    finally:
        controller.stop()
    assert len(received) == 1
    notification = email.message_from_bytes(received[0], policy=policy.default)
    assert notification["To"] == "returns-team@example.com" and "return-refund" in notification["Subject"]
    assert notification["Auto-Submitted"] == "auto-generated"
    assert [e.action for e in store.audit.all()].count("notified") == 1


def test_an_agents_change_of_category_keyword_is_a_correction(account: Account, store: Store, seed_model: Path) -> None:
    settings = settings_for(account).model_copy(update={"categories": tuple(
        c.model_copy(update={"keywords": (f"${c.name}",)}) for c in DEFAULT_CATEGORIES
    )})  # fmt: skip
    account.append_many([FRENCH_RETURN])
    cycle(account, store, seed_model, settings)
    client = account.client()
    client.select_folder("INBOX")
    client.remove_flags(client.search(["ALL"]), ["$return-refund"])
    client.add_flags(client.search(["ALL"]), ["$billing"])  # what an agent does in their mail client
    client.logout()
    keywords = {f"${c.name}": c.name for c in DEFAULT_CATEGORIES}
    mailbox = ImapMailbox(account.settings())
    assert scan_keyword_corrections(mailbox, store, keywords, now, timedelta(days=14)) == 1
    assert scan_keyword_corrections(mailbox, store, keywords, now, timedelta(days=14)) == 0
    [record] = store.messages.all()
    assert (record.category, record.corrected) == ("return-refund", "billing")
    assert [e.detail for e in store.audit.all() if e.action == "corrected"] == [
        {"from": "return-refund", "to": "billing", "by": "keyword"}
    ]
    assert [e.label for e in store_examples(store, fallback="needs-triage")] == ["billing"]


def test_an_edited_template_stops_drafting_and_fails_the_check_until_it_is_approved_again(
    account: Account, store: Store, seed_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    french = folder / "return-refund" / "fr.txt.j2"
    french.write_text(french.read_text().replace("Bonjour", "Bonjour!", 1))  # one character
    config = tmp_path / "c.toml"
    config.write_text(f'[[mailboxes]]\nname = "x"\nmaildir = "{tmp_path}"\n[drafts]\ntemplates = "{folder}"\n')
    check = CliRunner().invoke(main, ["--config", str(config), "templates", "check"])
    assert check.exit_code == 1 and "FAIL return-refund/fr: template return-refund/fr changed since" in check.stdout
    settings = settings_for(account, templates=folder)
    account.append_many([FRENCH_RETURN])
    cycle(account, store, seed_model, settings)
    assert folder_messages(account, "Drafts") == []
    [record] = store.messages.all()
    assert record.status == Status.NEEDS_HUMAN and "changed since" in (record.error or "")
    approve = ["--config", str(config), "templates", "approve", "return-refund/fr", "--by", "A. Martin"]
    assert CliRunner().invoke(main, approve).exit_code == 0
    assert CliRunner().invoke(main, ["--config", str(config), "templates", "check"]).exit_code == 0
    account.append_many([FRENCH_RETURN.replace(b"retour-1@", b"retour-2@")])
    cycle(account, store, seed_model, settings)
    [(draft, _)] = folder_messages(account, "Drafts")
    assert draft["In-Reply-To"] == "<retour-2@example.org>"
    with_store = config.read_text() + f'[store]\nurl = "{store.url}"\n'
    config.write_text(with_store)
    rows = json.loads(CliRunner().invoke(main, ["--config", str(config), "review", "--json"]).stdout)
    [provenance] = [draft for row in rows for draft in row["drafts"]]
    assert provenance["template"] == "return-refund/fr" and provenance["approved_by"] == "A. Martin"
    assert provenance["sha256"] == content_hash(french)
