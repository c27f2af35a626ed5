from __future__ import annotations

import csv
import io
import itertools
import json
import random
import statistics
from dataclasses import fields
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image
from rich.console import Console

from mailtriage.deadlines import Calendar, Policy, State
from mailtriage.models import Classification, RawMessage, RouteDecision
from mailtriage.parse import parse_message
from mailtriage.report import Report, Row, build_report, chart, render, to_csv, to_json
from mailtriage.store import Filters, MessageRecord, Outcome, Status, Store

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Paris
OFFICE = Calendar("Europe/Paris", {day: ((time(9), time(17)),) for day in range(5)})  # Monday to Friday
_ids = itertools.count(1)


def _message(**overrides: Any) -> MessageRecord:
    number = next(_ids)
    values: dict[str, Any] = {
        "id": number, "mailbox": "support", "folder": "INBOX", "uidvalidity": 1, "uid": number,
        "message_id": f"<m{number}@example.com>", "content_hash": f"{number:064x}", "sender": "ann@example.com",
        "subject": "Help", "kind": "customer", "kind_reason": "written by a person", "status": Status.ROUTED,
        "received_at": RECEIVED, "recorded_at": RECEIVED,
        "defects": (), "error": None, "category": "billing", "language": "en", "confidence": 0.9,
        "decided_by": "model",
    }  # fmt: skip
    return MessageRecord(**(values | overrides))


def _answered(hours: float, **overrides: Any) -> MessageRecord:
    at = (overrides.get("received_at") or RECEIVED) + timedelta(hours=hours)
    return _message(answered_at=at, deadline_state="answered", **overrides)


def _report(*records: MessageRecord, policy: Policy | None = None, **options: Any) -> Report:
    return build_report(records, policy=policy, threshold=options.pop("threshold", 0.5), now=NOW, **options)


def _total(report: Report, category: str) -> Row:
    [found] = [row for row in report.totals if row.category == category]
    return found


def test_only_customer_mail_that_was_not_skipped_and_is_no_follow_up_is_counted() -> None:
    report = _report(
        _message(),
        _message(kind="bulk"),
        _message(kind="auto-reply"),
        _message(status="skipped"),
        _message(thread_of=1),
        _message(language="fr"),
    )
    assert [(row.category, row.language, row.volume) for row in report.totals] == [("billing", "all", 2)]
    assert {(row.language, row.volume) for row in report.rows} == {("en", 1), ("fr", 1)}


def test_mail_received_before_since_is_left_out_and_without_a_receive_time_its_recording_time_counts() -> None:
    since = RECEIVED + timedelta(days=1)
    report = _report(
        _message(),
        _message(received_at=since),
        _message(received_at=None, recorded_at=since + timedelta(hours=1)),
        _message(received_at=None, recorded_at=RECEIVED),
        since=since,
    )
    assert _total(report, "billing").volume == 2
    assert report.since == since


def test_a_message_counts_under_the_category_an_agent_corrected_it_to() -> None:
    report = _report(
        _message(category="billing", corrected="delivery"),
        _message(category="billing"),
        _message(category=None, language=None),
    )
    assert [(row.category, row.volume) for row in report.totals] == [
        ("billing", 1), ("delivery", 1), ("unclassified", 1)
    ]  # fmt: skip
    assert _total(report, "delivery").corrections == 1
    assert [row.language for row in report.rows if row.category == "unclassified"] == ["unknown"]


def test_the_median_and_90th_percentile_response_times_are_exact_for_one_to_ten_hours() -> None:
    report = _report(*[_answered(hours) for hours in range(1, 11)], _message(deadline_state="on-track"))
    total = _total(report, "billing")
    assert (total.volume, total.answered) == (11, 10)
    assert total.median_hours == 5.5
    assert total.p90_hours == pytest.approx(9.1)  # linear between the 9th and 10th values


def test_one_answer_is_its_own_median_and_90th_percentile_and_none_gives_no_times() -> None:
    one = _total(_report(_answered(2.5)), "billing")
    assert (one.median_hours, one.p90_hours) == (2.5, 2.5)
    none = _total(_report(_message(deadline_state="on-track")), "billing")
    assert (none.answered, none.median_hours, none.p90_hours) == (0, None, None)


def test_the_median_response_time_is_counted_in_business_hours_under_a_business_calendar() -> None:
    friday_evening = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # 16:00 in Paris: one working hour left
    records = (
        _answered(3),  # Tuesday 10:00 to 13:00 in Paris: three hours on either clock
        _answered(66, received_at=friday_evening),  # answered Monday 10:00 in Paris: two working hours
    )
    wall = _report(*records)
    business = _report(*records, policy=Policy(calendar=OFFICE))
    assert (wall.clock, _total(wall, "billing").median_hours) == ("wall-clock", 34.5)
    assert (business.clock, _total(business, "billing").median_hours) == ("business hours (Europe/Paris)", 2.5)
    assert _report(*records, policy=Policy()).clock == "wall-clock"


def test_within_target_counts_answers_by_the_due_time_and_answers_after_it_are_breaches() -> None:
    due = RECEIVED + timedelta(hours=24)
    report = _report(
        _answered(5, due_at=due),  # on time
        _answered(24, due_at=due),  # on the dot: on time
        _answered(30, due_at=due),  # late
        _message(due_at=due, deadline_state="breached"),  # late and still waiting
        _message(due_at=NOW + timedelta(hours=4), deadline_state="on-track"),  # not decided yet
        _message(due_at=NOW + timedelta(hours=1), deadline_state="warning"),
        _answered(50),  # no deadline
    )
    total = _total(report, "billing")
    assert total.within_target == 0.5
    assert (total.breaches, total.open) == (2, 3)


def test_within_target_is_none_when_no_message_with_a_due_time_was_answered_or_breached() -> None:
    total = _total(_report(_answered(5), _message(due_at=NOW, deadline_state="on-track")), "billing")
    assert (total.within_target, total.breaches, total.open) == (None, 0, 1)


def test_the_automatic_share_counts_model_decisions_at_or_above_the_threshold() -> None:
    report = _report(
        _message(decided_by="model", confidence=0.8),
        _message(decided_by="model", confidence=0.7),
        _message(decided_by="model", confidence=0.69),
        _message(decided_by="rule:vip", confidence=0.95),
        _message(decided_by="fallback", confidence=0.3),
        threshold=0.7,
    )
    assert _total(report, "billing").auto_share == 0.4


def test_corrections_count_messages_an_agent_gave_another_category() -> None:
    report = _report(
        _message(category="needs-triage", corrected="billing"),
        _message(category="delivery", corrected="billing"),
        _message(category="billing", corrected="billing"),  # filed where it already was
        _message(category="billing"),
    )
    assert (_total(report, "billing").volume, _total(report, "billing").corrections) == (4, 2)


def test_rows_are_per_language_with_the_largest_categories_and_languages_first() -> None:
    report = _report(
        _message(category="delivery", language="fr"),
        *[_message(category="billing", language=language) for language in ("de", "en", "en")],
        _message(category="delivery", language="en"),
        _answered(2, category="delivery", language="en"),
    )
    assert [(row.category, row.volume) for row in report.totals] == [("billing", 3), ("delivery", 3)]
    assert [(row.category, row.language, row.volume) for row in report.rows] == [
        ("billing", "en", 2), ("billing", "de", 1), ("delivery", "en", 2), ("delivery", "fr", 1)
    ]  # fmt: skip
    assert [row.answered for row in report.rows] == [0, 0, 1, 0]


GREETED = {
    "return-refund": (
        "Help, the kettle arrived broken, I would like a refund.",
        "Help, when do I get my refund for the returned kettle?",
        "Help, I sent the blender back, please refund me.",
        "Help, the refund for my blender has not arrived.",
        "Hallo, ich möchte eine Rückerstattung für den Wasserkocher.",
        "Guten Tag, wann kommt meine Rückerstattung?",
    ),
    "delivery": (
        "Help, my parcel has not arrived, where is the delivery?",
        "Help, the tracking shows no delivery since Monday.",
        "Help, the courier left my parcel at the wrong address.",
        "Help, the delivery never came and the courier did not ring.",
    ),
    "billing": (
        "Help, the invoice shows the wrong amount.",
        "Help, I was charged twice, please check the invoice.",
        "Help, can you send the invoice with my company address?",
        "Help, I was charged for an invoice I already paid.",
    ),
    "account": (
        "Help, I cannot log in to my account.",
        "Help, please delete my account and my data.",
        "Help, the password reset link for my account has expired.",
        "Help, how do I change the password of my account?",
    ),
}


def test_a_word_every_category_uses_sinks_below_each_categorys_own_words() -> None:
    records = [_message(category=category, new_text=text) for category, texts in GREETED.items() for text in texts]
    phrases = {category: [p for p, _ in found] for category, found in _report(*records, top=20).phrases.items()}
    # "help" is in as many refund mails as "refund" (plain counts would tie them), and in every other category.
    assert phrases["return-refund"][0] == "refund"
    assert "rückerstattung" in phrases["return-refund"]  # accented words stay whole
    assert phrases["delivery"][0] == "delivery" and phrases["account"][:2] == ["account", "password"]
    assert all(found[-1] == "help" for found in phrases.values())
    top = _report(*records, top=2).phrases
    assert all(len(found) == 2 and "help" not in dict(found) for found in top.values())
    for found in top.values():
        assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)


def test_categories_with_no_words_or_a_single_message_get_no_phrases() -> None:
    report = _report(
        _message(category="billing", new_text=""),
        _message(category="billing", new_text="OK 42 :)"),
        _message(category="delivery", new_text="Where is my parcel?"),
    )
    assert report.phrases == {"billing": (), "delivery": ()}
    assert _report().phrases == {}


REFUND_TEXTS = ("I want a refund for the kettle.", "Refund please, the kettle leaks.", "Where is my refund?")


def _sample() -> Report:
    due = RECEIVED + timedelta(hours=24)
    return _report(
        *[
            _answered(hours, category="return-refund", due_at=due, new_text=REFUND_TEXTS[hours % 3])
            for hours in range(1, 11)
        ],
        _message(category="billing", language="fr", new_text="Ma facture est fausse."),
        _message(category="billing", language="fr", new_text="La facture est en double."),
        since=RECEIVED - timedelta(days=7),
    )


def test_the_csv_has_a_header_and_one_line_per_category_and_language() -> None:
    report = _sample()
    reader = csv.DictReader(io.StringIO(to_csv(report)))
    lines = list(reader)
    assert reader.fieldnames == [field.name for field in fields(Row)]
    assert len(lines) == len(report.rows) == 2
    refunds, billing = lines
    assert (refunds["category"], refunds["language"], refunds["volume"], refunds["median_hours"]) == (
        "return-refund", "en", "10", "5.5"
    )  # fmt: skip
    assert (billing["median_hours"], billing["within_target"]) == ("", "")


def test_the_json_survives_a_round_trip() -> None:
    report = _sample()
    data = to_json(report)
    assert json.loads(json.dumps(data)) == data
    assert data["since"] == "2026-11-10T09:00:00+00:00" and data["clock"] == "wall-clock"
    assert [row["category"] for row in data["totals"]] == ["return-refund", "billing"]
    assert data["phrases"]["return-refund"][0] == {"phrase": "refund", "score": report.phrases["return-refund"][0][1]}


def test_the_chart_is_a_png_of_a_useful_size_in_a_folder_it_makes(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "november.png"
    chart(_sample(), path)
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"
        assert image.size[0] >= 800 and image.size[1] >= 400


def test_an_empty_report_still_renders_and_charts(tmp_path: Path) -> None:
    report = _report()
    console = Console(record=True, width=200)
    render(report, console)
    assert "What customers write about" in console.export_text()
    assert to_csv(report).strip() == ",".join(field.name for field in fields(Row))
    chart(report, tmp_path / "empty.png")
    with Image.open(tmp_path / "empty.png") as image:
        assert image.format == "PNG"


def test_the_rendered_report_shows_each_category_its_languages_and_numbers() -> None:
    console = Console(record=True, width=200)
    render(_sample(), console)
    text = console.export_text()
    assert "2026-11-10 09:00 UTC to 2026-11-23 09:00 UTC" in text and "wall-clock" in text
    [refunds] = [line for line in text.splitlines() if "return-refund" in line and "all" in line]
    assert all(value in refunds.split() for value in ("10", "5.5", "9.1", "100%"))
    [french] = [line for line in text.splitlines() if " fr " in line]
    assert "–" in french
    assert "What customers write about" in text and "refund, kettle" in text
    assert "facture" in text


# --- a real store ----------------------------------------------------------------------------------------------------

CATEGORIES = ("return-refund", "delivery", "billing")
LANGUAGES = ("en", "fr", "de")
POLICY = Policy(target=timedelta(hours=24))
THRESHOLD = 0.5
GREETINGS = {
    "en": ("Hello,", "Hi,", "Good morning,"),
    "fr": ("Bonjour,", "Bonjour madame,"),
    "de": ("Hallo,", "Guten Tag,"),
}
CLOSINGS = {
    "en": ("Thanks", "Thank you", "Kind regards"),
    "fr": ("Merci", "Cordialement"),
    "de": ("Danke", "Viele Grüße"),
}
SENTENCES = {
    "return-refund": {
        "en": (
            "The kettle arrived broken and I would like a refund.",
            "I sent the blender back two weeks ago. When do I get my refund?",
            "Can I return the jacket for a refund? It is too small.",
            "The refund for my returned order has still not arrived.",
        ),
        "fr": (
            "La bouilloire est arrivée cassée, je voudrais un remboursement.",
            "J'ai renvoyé le mixeur il y a deux semaines, quand aurai-je mon remboursement ?",
            "Puis-je retourner la veste ? Elle est trop petite.",
            "Le remboursement de ma commande retournée n'est toujours pas arrivé.",
        ),
        "de": (
            "Der Wasserkocher kam kaputt an, ich möchte eine Rückerstattung.",
            "Wann bekomme ich die Rückerstattung für meine Rücksendung?",
            "Kann ich die Jacke zurückschicken? Sie ist zu klein.",
        ),
    },
    "delivery": {
        "en": (
            "My parcel has not arrived yet, where is my delivery?",
            "The tracking number of my parcel shows no movement since Monday.",
            "The courier left the parcel at the wrong address.",
        ),
        "fr": (
            "Mon colis n'est toujours pas livré, où en est la livraison ?",
            "Le suivi du colis ne bouge plus depuis lundi.",
            "Le livreur a déposé le colis à la mauvaise adresse.",
        ),
        "de": (
            "Mein Paket ist noch nicht angekommen, wo bleibt die Lieferung?",
            "Die Sendungsverfolgung zeigt seit Montag keine Bewegung, wo ist mein Paket?",
            "Der Paketbote hat das Paket an der falschen Adresse abgegeben.",
        ),
    },
    "billing": {
        "en": (
            "The invoice shows the wrong amount.",
            "I was charged twice for the same order, please check the invoice.",
            "Can you send me an invoice with my company address?",
        ),
        "fr": (
            "La facture indique un mauvais montant.",
            "J'ai été débité deux fois pour la même commande, pouvez-vous vérifier la facture ?",
            "Pouvez-vous m'envoyer une facture au nom de ma société ?",
        ),
        "de": (
            "Die Rechnung zeigt den falschen Betrag.",
            "Mir wurde die Bestellung zweimal abgebucht, bitte prüfen Sie die Rechnung.",
            "Können Sie mir eine Rechnung mit meiner Firmenadresse schicken?",
        ),
    },
}
SUBJECTS = {"return-refund": "Return", "delivery": "Where is my order", "billing": "Invoice"}


def _mail(number: int, category: str, text: str, *, bulk: bool = False) -> bytes:
    headers = [
        f"From: Customer {number} <customer{number}@example.com>", "To: support@example.com",
        f"Subject: {SUBJECTS[category]}", f"Message-ID: <m{number}@example.com>", "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
    ]  # fmt: skip
    if bulk:
        headers.append("Precedence: bulk")
    return ("\n".join(headers) + "\n\n" + text + "\n").encode()


def populate(store: Store, count: int, now: datetime) -> None:
    """Record ``count`` messages received over the four weeks before ``now`` in the "support" mailbox, as the
    pipeline would, then answer, breach and re-file some of them: mail across three categories in English, French
    and German, some of it bulk, skipped or a follow-up; the model unsure about a few, which go to "needs-triage"
    and are mostly re-filed by an agent; deadlines of 24 wall-clock hours (``POLICY``)."""
    rng = random.Random(7)
    received = sorted(now - timedelta(minutes=rng.randrange(28 * 24 * 60)) for _ in range(count))
    intended: dict[int, str] = {}
    with store.batch():
        for number, at in enumerate(received, start=1):
            category, language = rng.choice(CATEGORIES), rng.choice(LANGUAGES)
            draw = rng.random()
            text = " ".join(rng.choice(words[language]) for words in (GREETINGS, SENTENCES[category], CLOSINGS))
            data = _mail(number, category, text, bulk=draw < 0.04)
            raw = RawMessage("INBOX", 1, number, data, internal_date=at)
            parsed = parse_message(data, internal_date=at)
            if draw < 0.04:
                store.messages.record("support", raw, parsed, Outcome(Status.SKIPPED), at)
                continue
            if draw < 0.08:
                store.messages.record("support", raw, parsed, Outcome(Status.SKIPPED), at)
                continue
            confidence = round(rng.uniform(0.35, 0.99), 3)
            classification = Classification(
                category if confidence >= THRESHOLD else "needs-triage", category, confidence, language, "m1"
            )
            decided_by = "model" if confidence >= THRESHOLD else "fallback"
            decision = RouteDecision(classification.category, decided_by, f"{category} at {confidence}")
            if draw < 0.16 and intended:
                thread = rng.choice(list(intended))
                outcome = Outcome(Status.ROUTED, classification, decision, thread_of=thread)
                store.messages.record("support", raw, parsed, outcome, at)
                continue
            due_at = POLICY.due(at, decision.category)
            outcome = Outcome(Status.ROUTED, classification, decision, due_at=due_at)
            message = store.messages.record("support", raw, parsed, outcome, at)
            intended[message] = category
    with store.batch():
        for record in store.messages.all("support"):
            if record.id in intended:
                _follow(store, record, intended[record.id], rng, now)


def _follow(store: Store, record: MessageRecord, intended: str, rng: random.Random, now: datetime) -> None:
    """What happened to a message after it was recorded: re-filed, answered (on time or late), breached."""
    assert record.received_at is not None and record.due_at is not None
    if record.category == "needs-triage" and rng.random() < 0.8:
        store.messages.correct(record, intended, by="keyword", now=record.received_at + timedelta(hours=1))
    elif rng.random() < 0.05:
        store.messages.correct(
            record, rng.choice(CATEGORIES), by="keyword", now=record.received_at + timedelta(hours=1)
        )
    late = rng.random() < 0.2
    answered = record.received_at + timedelta(hours=rng.uniform(24, 60) if late else rng.uniform(0.3, 23))
    if rng.random() < 0.85 and answered <= now:
        if answered > record.due_at:
            store.deadlines.transition(record, State.BREACHED, (), now=record.due_at)
        store.deadlines.answer(record, answered, "sent-reply", now=answered)
    elif record.due_at <= now:
        store.deadlines.transition(record, State.BREACHED, (), now=record.due_at)


COUNTED = "kind = 'customer' AND status != 'skipped' AND thread_of IS NULL"
TOTALS = f"""
    SELECT coalesce(corrected, category, 'unclassified') AS category, count(*) AS volume,
           count(answered_at) AS answered,
           sum(CASE WHEN deadline_state = 'breached' OR answered_at > due_at THEN 1 ELSE 0 END) AS breaches,
           sum(CASE WHEN deadline_state IN ('on-track', 'warning', 'breached') THEN 1 ELSE 0 END) AS open,
           sum(CASE WHEN decided_by = 'model' AND confidence >= {THRESHOLD} THEN 1 ELSE 0 END) AS automatic,
           sum(CASE WHEN corrected IS NOT NULL AND corrected != category THEN 1 ELSE 0 END) AS corrections,
           sum(CASE WHEN answered_at <= due_at THEN 1 ELSE 0 END) AS on_time,
           sum(CASE WHEN due_at IS NOT NULL AND (answered_at IS NOT NULL OR deadline_state = 'breached')
                    THEN 1 ELSE 0 END) AS decided
    FROM messages WHERE {COUNTED} GROUP BY 1
"""
"""The report's totals computed by the database from the stored rows (SQL both SQLite and PostgreSQL run), to
check the report against."""


def test_a_report_on_a_real_store_matches_what_was_recorded(store: Store) -> None:
    populate(store, 300, NOW)
    report = build_report(store.messages.recent(Filters(limit=10_000)), policy=POLICY, threshold=THRESHOLD, now=NOW)
    with store.engine.connect() as db:
        expected = {row.category: row for row in db.execute(sa.text(TOTALS))}
        query = f"SELECT id, coalesce(corrected, category) FROM messages WHERE {COUNTED}"
        categories = {number: category for number, category in db.execute(sa.text(query))}
        everything = db.execute(sa.text("SELECT count(*) FROM messages")).scalar_one()
    assert set(CATEGORIES) <= set(expected) and sum(row.volume for row in expected.values()) < everything
    answers: dict[str, list[float]] = {}
    for event in store.audit.all("support"):
        if event.action == "answered" and event.message in categories:
            answers.setdefault(categories[event.message], []).append(event.detail["response_seconds"] / 3600)
    for total in report.totals:
        row = expected[total.category]
        assert (total.volume, total.answered, total.breaches, total.open, total.corrections) == (
            row.volume, row.answered, row.breaches, row.open, row.corrections
        )  # fmt: skip
        assert total.auto_share == pytest.approx(row.automatic / row.volume, abs=1e-4)
        assert total.within_target == pytest.approx(row.on_time / row.decided, abs=1e-4)
        if total.category in answers:
            assert total.median_hours == pytest.approx(statistics.median(answers[total.category]), abs=1e-3)
    assert {row.language for row in report.rows} == set(LANGUAGES)
    assert sum(row.volume for row in report.rows) == sum(total.volume for total in report.totals)
    assert "refund" in [phrase for phrase, _ in report.phrases["return-refund"]]


def test_a_chart_with_nothing_answered_yet_says_so_instead_of_drawing_an_empty_axis() -> None:
    import matplotlib.pyplot as plt

    from mailtriage.report import draw

    figure = draw(_report(_message(), _message(category="repair")))
    try:
        assert [text.get_text() for text in figure.axes[1].texts] == ["nothing answered yet"]
        assert not figure.axes[1].patches  # no bars
    finally:
        plt.close(figure)
