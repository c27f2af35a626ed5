"""Every real message in ../shared/corpus parses without an exception (read in place; skipped where absent)."""

from __future__ import annotations

from collections import Counter

import pytest

from mailtriage.parse import parse_message
from tests.conftest import SHARED

CORPUS = SHARED / "corpus"


def corpus_files() -> list:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and not p.name.startswith(("LICENSE", "README")))


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared mail corpus is not at {CORPUS}")
def test_every_message_of_the_shared_corpus_parses_and_the_defective_ones_are_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = corpus_files()
    kinds: Counter[str] = Counter()
    defective = 0
    for path in files:
        parsed = parse_message(path.read_bytes())
        kinds[parsed.kind.value] += 1
        defective += bool(parsed.defects)
        assert parsed.message_id.startswith("<") and parsed.content_hash
    assert len(files) > 6000
    with capsys.disabled():
        print(f"\ncorpus: {len(files)} messages parsed, {defective} with defects recorded; kinds {dict(kinds)}")
    assert 0 < defective < len(files)
    assert kinds["bulk"] > 0 and kinds["bounce"] > 0 and kinds["customer"] > 0
