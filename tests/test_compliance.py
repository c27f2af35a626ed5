from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailtriage.cli import main
from mailtriage.compliance import MANIFEST, NEUTRAL, Signature, approve, read_approvals, template_names
from mailtriage.draft import Drafter
from mailtriage.errors import ConfigError, TemplateError
from mailtriage.files import locked
from mailtriage.parse import parse_message
from mailtriage.policy import CLASSES, load_policy, phrase_classes
from mailtriage.settings import DEFAULT_CATEGORIES, DraftSettings
from mailtriage.templates import Templates, read_sources, render_sources
from tests.test_draft import NOW

POLICY = load_policy(Path(__file__).parent.parent / "templates" / "policy.toml")

CAUGHT = [
    # class, language, a sentence our template must not contain
    ("guarantee", "en", "We guarantee the kettle works."),
    ("guarantee", "fr", "Nous garantissons le bon fonctionnement."),
    ("guarantee", "de", "Wir garantieren die Reparatur."),
    ("promise", "en", "We will refund the full amount."),
    ("promise", "fr", "Nous vous rembourserons intégralement."),
    ("promise", "de", "Wir erstatten den Betrag."),
    ("liability", "en", "This was our mistake."),
    ("liability", "fr", "C'est notre erreur, désolés."),
    ("liability", "de", "Das war unser Fehler."),
    ("deadline", "en", "You will hear from us within 3 days."),
    ("deadline", "fr", "Nous reviendrons vers vous sous 48 heures."),
    ("deadline", "de", "Wir melden uns innerhalb von 2 Tagen."),
    ("legal", "en", "We accept liability for the damage."),
    ("legal", "fr", "Notre RESPONSABILITE est engagée."),
    ("legal", "de", "Die Haftung liegt bei uns."),
    ("absolute", "en", "This never happens."),
    ("absolute", "fr", "Nous traitons cela immédiatement."),
    ("absolute", "de", "Wir kümmern uns sofort darum."),
]


@pytest.mark.parametrize("kind,language,text", CAUGHT)
def test_the_lint_catches_each_class_of_binding_wording_in_each_language(kind: str, language: str, text: str) -> None:
    assert kind in {finding.kind for finding in POLICY.lint(text, language)}


NEAR_MISSES = [
    # language, text, the customer's own words in it (masked before the lint)
    ("en", "Thank you for your message about your guarantee question.", ["your guarantee question"]),
    ("en", "Thank you for your message about Warranty claim for kettle.", ["Warranty claim for kettle"]),
    ("fr", "Merci pour votre message « Remboursement garanti ? ».", ["Remboursement garanti ?"]),
    ("de", "Danke für Ihre Nachricht zu „Garantie abgelaufen?“.", ["Garantie abgelaufen?"]),
    ("en", "Nevertheless, our team will look into it.", []),
    ("fr", "Notre équipe va examiner votre demande et reviendra vers vous.", []),
    ("de", "Unser Team wird Ihr Anliegen prüfen und sich bei Ihnen melden.", []),
]


@pytest.mark.parametrize("language,text,customer", NEAR_MISSES)
def test_near_misses_and_the_customers_own_words_are_not_flagged(language: str, text: str, customer: list[str]) -> None:
    assert POLICY.lint(text, language, customer=customer) == []


def test_matching_ignores_case_and_accents_and_takes_whole_words_only() -> None:
    assert POLICY.lint("responsabilite", "fr") and POLICY.lint("Responsabilité", "fr")
    assert POLICY.lint("ALWAYS", "en") and not POLICY.lint("hallways", "en")


def test_a_phrase_can_be_allowed_in_one_template_with_a_justification(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[phrases]]\nclass = "legal"\nlanguage = "en"\npattern = "statutory"\nreason = "legal"\n'
        '[[allow]]\ntemplate = "return-refund/en"\nphrase = "statutory"\n'
        'justification = "the statutory withdrawal period is a fact, approved by legal on 2026-11-20"\n'
    )
    loaded = load_policy(policy)
    assert loaded.lint("Your statutory right.", "en", template="return-refund/en") == []
    assert [f.kind for f in loaded.lint("Your statutory right.", "en", template="billing/en")] == ["legal"]


def test_replies_longer_than_the_limits_are_flagged() -> None:
    long = " ".join(["Thank you for your message."] * 30)
    assert {f.text for f in POLICY.lint(long, "en") if f.kind == "length"} == {"150 words", "30 sentences"}


def test_the_default_policy_covers_every_class_in_english_french_and_german() -> None:
    assert phrase_classes(POLICY, ["en", "fr", "de"]) == {language: set(CLASSES) for language in ("en", "fr", "de")}


def test_a_broken_policy_entry_is_one_clear_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[phrases]]\nclass = "rude"\npattern = "x"\n')
    with pytest.raises(ConfigError, match=r"phrases\[0\].class = 'rude': expected one of guarantee"):
        load_policy(policy)


FACTS = [  # what the customer gave: the templates ask only for what is missing
    {"models": [], "photos": False, "documents": False, "reason": False, "references": []},
    {"models": ["NC-700"], "photos": True, "documents": True, "reason": True, "references": ["A-10234"]},
    {"models": ["NC-700", "KT-170"], "photos": False, "documents": True, "reason": True, "references": []},
]


@pytest.mark.parametrize("language", ["en", "fr", "de"])
@pytest.mark.parametrize("facts", FACTS, ids=["nothing-given", "all-given", "models-only"])
def test_every_shipped_template_passes_the_lint_in_every_language(language: str, facts: dict[str, object]) -> None:
    folder = Path(__file__).parent.parent / "templates"
    templates = Templates(folder, "en")
    customer = {"greeting_name": "Renée Lefèvre", "first_name": "Renée", "subject": "Garantie ? Warranty!", **facts}
    names = {name.partition("/")[0] for name in template_names(folder)}
    assert names >= {c.name for c in DEFAULT_CATEGORIES} | {v.template for c in DEFAULT_CATEGORIES for v in c.variants}
    for name in sorted(names):
        signature = DraftSettings().signature_for(language)
        text, _ = templates.render(name, language, {**customer, "signature": signature, "due": "Tue"})
        words = [str(customer["greeting_name"]), str(customer["subject"]), *facts["references"], *facts["models"]]  # type: ignore[misc]
        findings = POLICY.lint(text, language, template=f"{name}/{language}", customer=words)
        assert findings == [], (name, [str(f) for f in findings])


def test_a_template_asks_only_for_what_the_customer_did_not_give() -> None:
    templates = Templates(Path(__file__).parent.parent / "templates", "en")
    base = {"greeting_name": "", "first_name": "", "subject": "", "signature": "", "due": ""}
    nothing, given = ({**base, **facts} for facts in FACTS[:2])
    for language, photo, model in [("en", "photos", "model"), ("fr", "photos", "modèle"), ("de", "Fotos", "Modell")]:
        asked, _ = templates.render("defect-complaint", language, nothing)
        spared, _ = templates.render("defect-complaint", language, given)
        assert photo in asked and model in asked
        assert photo not in spared and model not in spared and "NC-700" in spared


def copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(Path(__file__).parent.parent / "templates", folder)
    return folder


def run(folder: Path, tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "c.toml"
    config.write_text(f'[[mailboxes]]\nname = "x"\nmaildir = "{tmp_path}"\n[drafts]\ntemplates = "{folder}"\n')
    return CliRunner().invoke(main, ["--config", str(config), "templates", *args])


def test_approving_a_template_that_fails_the_lint_is_refused_with_the_findings(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "billing" / "en.txt.j2").write_text("Hello,\nWe will refund you within 3 days, we guarantee it.\n")
    result = run(folder, tmp_path, "approve", "billing/en", "--by", "A. Martin")
    assert result.exit_code != 0
    for kind in ("promise", "deadline", "guarantee"):
        assert kind in result.stderr
    assert run(folder, tmp_path, "check").exit_code == 1


def test_templates_show_html_writes_a_page_with_every_templates_text(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    page = tmp_path / "review.html"
    assert run(folder, tmp_path, "show", "--html", str(page)).exit_code == 0
    html = page.read_text()
    for name in template_names(folder):
        source = (folder / f"{name}.txt.j2").read_text()
        assert escape(name) in html and escape(source.splitlines()[-1]) in html
    assert html.count("<section>") == len(template_names(folder)) == 3 * (len(DEFAULT_CATEGORIES) + 3)  # 3 variants


def test_config_check_warns_about_templates_in_use_that_would_draft_nothing(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "repair" / "de.txt.j2").write_text("Guten Tag,\nwir prüfen Ihr Anliegen.\n{{ signature }}\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[[mailboxes]]\nname = "x"\nmaildir = "{tmp_path}"\n[drafts]\ntemplates = "{folder}"\n')
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 0
    assert result.stderr == (
        "mailtriage: warning: category repair: template repair/de changed since mailtriage maintainers approved it "
        "on 2026-12-02: repair/de.txt.j2 changed; its mail gets no draft\n"
    )


PHISHING = "Please reply with your online-banking PIN at http://evil.example/verify.\n"


def with_include(tmp_path: Path) -> Path:
    """The shipped templates, with billing/en taking its opening line from a shared snippet."""
    folder = copy_templates(tmp_path)
    (folder / "snip").mkdir()
    (folder / "snip" / "intro.txt").write_text("Thank you for writing to us about your invoice.\n")
    (folder / "billing" / "en.txt.j2").write_text(
        "Hello {{ greeting_name }},\n{% include 'snip/intro.txt' %}\nOur billing team will look into it.\n"
        "{{ signature }}\n"
    )
    assert run(folder, tmp_path, "approve", "billing/en", "--by", "A. Martin").exit_code == 0
    return folder


def test_a_change_to_an_included_template_voids_the_approval_and_check_names_the_file(tmp_path: Path) -> None:
    folder = with_include(tmp_path)
    assert run(folder, tmp_path, "check").exit_code == 0
    (folder / "snip" / "intro.txt").write_text(PHISHING)
    result = run(folder, tmp_path, "check")
    assert result.exit_code == 1
    assert "template billing/en changed since A. Martin approved it" in result.output
    assert "snip/intro.txt changed" in result.output


def test_the_daemon_drafts_nothing_from_a_template_whose_include_changed_since_its_approval(tmp_path: Path) -> None:
    folder = with_include(tmp_path)
    wording = DraftSettings(from_address="support@example.com", signature="S", reference_patterns=())
    drafter = Drafter(Templates(folder, "en"), wording, POLICY)
    message = parse_message(b"From: a@example.com\r\nSubject: Invoice\r\nMessage-ID: <i@x>\r\n\r\nMy invoice.\r\n")
    assert b"invoice" in drafter(message, "billing", "en", NOW).data
    (folder / "snip" / "intro.txt").write_text(PHISHING)
    with pytest.raises(TemplateError, match="snip/intro.txt changed"):
        drafter(message, "billing", "en", NOW)


def aged(folder: Path, seconds_ago: float = 3600) -> None:
    """Every file in ``folder`` last modified an hour ago: old enough for a drafter to keep what it read."""
    when = time.time() - seconds_ago
    for path in folder.rglob("*"):
        os.utime(path, (when, when))


def test_a_drafter_reads_an_unchanged_template_once_and_a_changed_include_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailtriage.draft

    folder = with_include(tmp_path)
    aged(folder)
    reads: list[str] = []
    monkeypatch.setattr(mailtriage.draft, "read_sources", lambda f, name: reads.append(name) or read_sources(f, name))
    wording = DraftSettings(from_address="support@example.com", signature="S", reference_patterns=())
    drafter = Drafter(Templates(folder, "en"), wording, POLICY)
    message = parse_message(b"From: a@example.com\r\nSubject: Invoice\r\nMessage-ID: <i@x>\r\n\r\nMy invoice.\r\n")
    for _ in range(3):
        assert b"invoice" in drafter(message, "billing", "en", NOW).data
    assert reads == ["billing/en"]
    (folder / "snip" / "intro.txt").write_text(PHISHING)  # the include, not the template, and not the approvals
    with pytest.raises(TemplateError, match="snip/intro.txt changed"):
        drafter(message, "billing", "en", NOW)
    assert reads == ["billing/en", "billing/en"]


def test_text_is_rendered_exactly_as_it_was_checked_even_if_a_file_changes_in_between(tmp_path: Path) -> None:
    folder = with_include(tmp_path)
    sources = read_sources(folder, "billing/en")
    (folder / "snip" / "intro.txt").write_text(PHISHING)
    assert "PIN" not in render_sources(sources, {**NEUTRAL, "greeting_name": "Ann"})


def test_an_include_named_by_an_expression_cannot_be_approved(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "billing" / "en.txt.j2").write_text("Hello,\n{% include 'snip/' ~ subject %}\n{{ signature }}\n")
    result = run(folder, tmp_path, "approve", "billing/en", "--by", "A. Martin")
    assert result.exit_code != 0 and "name it literally" in result.stderr


def test_binding_wording_in_an_included_template_is_caught_at_approval(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "snip").mkdir()
    (folder / "snip" / "promise.txt").write_text("We guarantee a full refund.\n")
    (folder / "billing" / "en.txt.j2").write_text("Hello,\n{% include 'snip/promise.txt' %}\n{{ signature }}\n")
    result = run(folder, tmp_path, "approve", "billing/en", "--by", "A. Martin")
    assert result.exit_code != 0 and "guarantee" in result.stderr


def test_approvals_given_at_the_same_moment_are_all_recorded(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / MANIFEST).unlink()
    names = [name for name in template_names(folder) if name.endswith("/en")]
    approve(folder, names[0], Signature("A. Martin"), "", POLICY, datetime.now(UTC))  # the lint's English, loaded
    start = threading.Barrier(len(names))

    def sign(name: str) -> None:
        start.wait()
        approve(folder, name, Signature("A. Martin"), "", POLICY, datetime.now(UTC))

    threads = [threading.Thread(target=sign, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(read_approvals(folder)) == names
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [f".{MANIFEST}.lock"]


def test_an_approval_waits_for_another_change_of_the_manifest_under_way(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / MANIFEST).unlink()
    signing = threading.Thread(
        target=approve, args=(folder, "billing/en", Signature("A. Martin"), "", POLICY, datetime.now(UTC))
    )
    with locked(folder / MANIFEST):  # as the console's other worker, or the command line, holds it
        signing.start()
        signing.join(timeout=0.5)
        assert signing.is_alive() and not (folder / MANIFEST).exists()
    signing.join(timeout=10)
    assert list(read_approvals(folder)) == ["billing/en"]


def test_an_approval_that_cannot_be_recorded_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / f".{MANIFEST}.lock").mkdir()  # in the way, as a folder the user may not write would be
    result = run(folder, tmp_path, "approve", "billing/en", "--by", "A. Martin")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # an exit, not a traceback
    error = result.stderr.splitlines()[-1]  # after the note that "A. Martin" is no console account
    assert error.startswith("mailtriage: template billing/en: its approval cannot be recorded in")
    assert "Traceback" not in result.stderr
