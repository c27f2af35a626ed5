from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mailtriage import classify
from mailtriage.cli import main
from mailtriage.errors import ModelError, TrainingError
from mailtriage.language import UNKNOWN, detect
from mailtriage.mailbox.imap import ImapMailbox
from mailtriage.parse import parse_message
from mailtriage.pipeline import Triage, run_cycle
from mailtriage.settings import DEFAULT_CATEGORIES
from mailtriage.store import Store
from tests.dovecot import Account

HELD_OUT = Path(__file__).parent / "fixtures" / "classify"
LANGUAGES = sorted(path.stem for path in HELD_OUT.glob("*.jsonl"))
CATEGORIES = [category.name for category in DEFAULT_CATEGORIES]


def held_out(language: str) -> list[classify.Example]:
    examples = []
    for line in (HELD_OUT / f"{language}.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        examples.append(classify.Example(classify.feature_text(item["subject"], item["body"]), item["label"], language))
    return examples


@pytest.fixture(scope="module")
def model(seed_model: Path) -> classify.Classifier:
    return classify.load(seed_model, CATEGORIES)


def test_the_seed_set_covers_every_default_category_in_every_language_with_25_mails_or_more() -> None:
    examples = classify.seed_examples()
    for language in LANGUAGES:
        for category in CATEGORIES:
            assert sum(e.language == language and e.label == category for e in examples) >= 25, (language, category)


@pytest.mark.parametrize("language", LANGUAGES)
def test_held_out_mails_in_each_language_are_classified_into_their_category(
    model: classify.Classifier, language: str
) -> None:
    examples = held_out(language)
    right = sum(model.predict(e.text)[0] == e.label for e in examples)
    assert right / len(examples) >= 0.8, f"{right} of {len(examples)}"


def test_the_model_metadata_reports_cross_validated_macro_f1_per_language(model: classify.Classifier) -> None:
    cv = model.metadata["cross_validation"]
    assert set(cv["per_language"]) >= set(LANGUAGES)
    for language in LANGUAGES:
        assert cv["per_language"][language]["macro_f1"] > 0.6
    assert model.metadata["categories"] == sorted(CATEGORIES)
    assert model.metadata["sha256"].startswith(model.version)


def test_the_words_that_weighed_most_are_those_of_the_mail(model: classify.Classifier) -> None:
    text = classify.feature_text(
        "Where is my parcel?", "My order A-10 has still not been delivered, tracking is stuck."
    )
    category, confidence = model.predict(text)
    terms = [term for term, _ in model.explain(text, category)]
    assert category == "order-delivery" and confidence > 0.5
    assert terms and all(term.strip("'").lower() in text.lower() for term in terms)


def test_below_the_threshold_a_message_gets_the_fallback_category(model: classify.Classifier) -> None:
    parsed = parse_message(b"From: a@example.com\nSubject: hello\n\nhello\n")
    (sure,) = classify.Predictor(model, 0.0, "needs-triage")([parsed])
    (unsure,) = classify.Predictor(model, 0.99, "needs-triage")([parsed])
    assert sure.category == sure.predicted != "needs-triage"
    assert unsure.category == "needs-triage" and unsure.predicted == sure.predicted and unsure.is_fallback


@pytest.mark.parametrize(
    "text,language",
    [
        ("Bonjour, ma bouilloire ne chauffe plus depuis hier, que dois-je faire ?", "fr"),
        ("Guten Tag, mein Wasserkocher heizt seit gestern nicht mehr, was soll ich tun?", "de"),
        ("Hello, my kettle stopped heating yesterday, what should I do about it?", "en"),
        ("ok", UNKNOWN),
        ("", UNKNOWN),
    ],
)
def test_the_language_is_detected_or_unknown_when_unsure(text: str, language: str) -> None:
    assert detect(text)[0] == language


# --- model files ---------------------------------------------------------------------------------------------------


def copy_model(source: Path, target: Path) -> Path:
    shutil.copy(source, target)
    shutil.copy(classify.metadata_path(source), classify.metadata_path(target))
    return target


def test_a_model_altered_by_one_byte_is_refused(seed_model: Path, tmp_path: Path) -> None:
    path = copy_model(seed_model, tmp_path / "m.npz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="altered or corrupted"):
        classify.load(path)


class Planted:
    """What a pickle would run on loading: a file written where the test can see it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.target, "code ran"))


def with_matching_metadata(path: Path) -> Path:
    classify.metadata_path(path).write_text(json.dumps({"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
    return path


def test_a_model_file_holding_a_pickle_is_refused_unrun_even_with_a_matching_hash(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    with path.open("wb") as file:
        np.savez(file, format=np.asarray([3]), classes=np.asarray([Planted(tmp_path / "ran")], dtype=object))
    with pytest.raises(ModelError, match="not a model this version of mailtriage reads"):
        classify.load(with_matching_metadata(path))
    assert not (tmp_path / "ran").exists()


def test_a_file_holding_something_else_than_a_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    with path.open("wb") as file:
        np.savez(file, weights=np.zeros((3, 2)))
    with pytest.raises(ModelError, match="not a model this version of mailtriage reads"):
        classify.load(with_matching_metadata(path))
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelError, match="not a model this version of mailtriage reads"):
        classify.load(with_matching_metadata(tmp_path / "zip.npz"))


def test_a_model_whose_categories_differ_from_the_config_names_the_difference(seed_model: Path) -> None:
    configured = [c for c in CATEGORIES if c != "feedback"] + ["warranty"]
    with pytest.raises(ModelError) as error:
        classify.load(seed_model, configured)
    assert "configured but not in the model: warranty" in str(error.value)
    assert "in the model but not configured: feedback" in str(error.value)


def test_training_data_with_a_thin_category_is_refused() -> None:
    examples = [classify.Example(f"text {i}", "a", "en") for i in range(5)] + [classify.Example("x", "b", "en")]
    with pytest.raises(TrainingError, match="fewer than 3 examples: b"):
        classify.train(examples)


# --- the commands, without any configuration --------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_train_and_evaluate_work_on_a_csv_file_with_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = ["text,topic"] + [f'"parcel {i} not delivered, where is it",delivery' for i in range(6)]
    rows += [f'"invoice {i} has the wrong amount",billing' for i in range(6)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    code, out, _ = run("train", "--data", "data.csv", "--label-column", "topic", "--out", "m.npz", "--cv", "3")
    assert code == 0 and "2 categories" in out and "macro-F1" in out
    code, out, _ = run("evaluate", "--model", "m.npz", "--data", "data.csv", "--label-column", "topic", "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics["accuracy"] == 1.0 and set(metrics["per_category"]) == {"billing", "delivery"}
    assert [row["threshold"] for row in metrics["thresholds"]] == list(classify.THRESHOLDS)


def test_classify_prints_the_decision_and_the_words_behind_it(seed_model: Path) -> None:
    mail = Path(__file__).parent.parent / "mailtriage" / "demo_mail" / "07-en-invoice-vat-number.eml"
    code, out, _ = run("classify", "--model", str(seed_model), str(mail))
    assert code == 0
    assert ": billing (predicted billing" in out and "language en" in out and "weighed most: " in out


@pytest.mark.parametrize(
    "setup,message",
    [
        ("missing", "no model file"),
        ("no-metadata", "metadata m.json is missing"),
        ("corrupt", "altered or corrupted"),
    ],
)
def test_a_bad_model_is_one_line_and_exit_2(seed_model: Path, tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "m.npz"
    if setup != "missing":
        copy_model(seed_model, path)
    if setup == "no-metadata":
        classify.metadata_path(path).unlink()
    if setup == "corrupt":
        path.write_bytes(b"not a model")
    mail = Path(__file__).parent.parent / "mailtriage" / "demo_mail" / "01-en-broken-kettle.eml"
    code, _, err = run("classify", "--model", str(path), str(mail))
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_french_and_german_mail_arriving_over_imap_is_classified_into_its_category(
    model: classify.Classifier, account: Account, store: Store
) -> None:
    expected = {}
    mails = []
    for language in ("fr", "de"):
        for n, line in enumerate((HELD_OUT / f"{language}.jsonl").read_text(encoding="utf-8").splitlines()):
            item = json.loads(line)
            message = EmailMessage()
            message["From"], message["To"] = f"Client {n} <{language}{n}@example.com>", "support@example.com"
            message["Subject"], message["Message-ID"] = item["subject"], f"<{language}{n}@example.com>"
            message.set_content(item["body"])
            mails.append(message.as_bytes())
            expected[f"<{language}{n}@example.com>"] = (item["label"], language)
    account.append_many(mails)
    predictor = classify.Predictor(model, threshold=0.0, fallback="needs-triage")
    report = run_cycle(
        ImapMailbox(account.settings()), store, now=lambda: datetime.now(UTC), stages=Triage(classify=predictor)
    )
    assert report.new == len(mails)
    records = {r.message_id: r for r in store.messages.all()}
    for language in ("fr", "de"):
        mine = [(records[m], label) for m, (label, lang) in expected.items() if lang == language]
        right = sum(record.category == label for record, label in mine)
        assert right / len(mine) >= 0.8, f"{language}: {right} of {len(mine)}"
        assert sum(record.language == language for record, _ in mine) / len(mine) >= 0.9
        assert all(record.model_version == model.version and record.status == "classified" for record, _ in mine)


def test_a_model_whose_categories_differ_from_the_config_stops_the_daemon_with_one_line(
    seed_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "mailtriage.toml"
    config.write_text(
        f'[[mailboxes]]\nname = "local"\nmaildir = "Maildir"\n[classifier]\nmodel = "{seed_model}"\n'
        '[[categories]]\nname = "billing"\n[[categories]]\nname = "warranty"\n'
    )
    code, _, err = run("--config", str(config), "run", "--once")
    assert code == 2 and err.count("\n") == 1
    assert "configured but not in the model: warranty" in err and "in the model but not configured: " in err


def test_train_reads_a_folder_of_eml_files_per_category(tmp_path: Path) -> None:
    demo = Path(__file__).parent.parent / "mailtriage" / "demo_mail"
    for category, pattern in (("broken", "*-en-*"), ("kaputt", "*-de-*")):
        (tmp_path / "mail" / category).mkdir(parents=True)
        for mail in demo.glob(pattern):
            shutil.copy(mail, tmp_path / "mail" / category)
    code, out, _ = run("train", "--eml", str(tmp_path / "mail"), "--no-seed", "--out", str(tmp_path / "m.npz"))
    assert code == 0 and "20 examples, 2 categories" in out
    assert classify.load(tmp_path / "m.npz").metadata["examples"]["kaputt"]["de"] >= 8


def test_a_model_path_that_cannot_be_written_is_refused_before_any_training(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("a file where the models folder should be")
    messages: list[str] = []
    with pytest.raises(ModelError, match="cannot write a model there .*set classifier.model"):
        classify.load_or_build_default(
            tmp_path / "not-a-folder" / "default.npz", classify.DEFAULT_CATEGORY_NAMES, messages.append
        )
    assert messages == []  # refused before "building the default model" began
