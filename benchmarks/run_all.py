"""Run every benchmark in benchmarks/ and print one summary table: benchmark, figure, value, target, verdict.

The benchmarks run one after the other (side by side they would disturb each other's timings), each as a
subprocess of its own from the repository root, each with ``--json FILE`` into a temporary folder: the summary's
rows are the headline figures each benchmark wrote there, with the targets and verdicts it decided
(``benchmarks/common.py`` describes the JSON). Each benchmark's own table is printed when it finishes, the summary
at the end; their progress goes to stderr as it comes.

Run it from the repository root, as root (``intake.py``, ``pipeline.py``, ``scale.py`` and ``soak.py`` start a
private Dovecot, which needs root and dovecot-imapd, and ``scale.py`` a private PostgreSQL; without them their rows
say why they did not run)::

    sudo .venv/bin/python benchmarks/run_all.py                              # everything: about 30 minutes
    sudo .venv/bin/python benchmarks/run_all.py --skip classifier            # without the classifier's minutes
    sudo .venv/bin/python benchmarks/run_all.py --quick --skip classifier    # a short check: about 6 minutes
    sudo .venv/bin/python benchmarks/run_all.py --json all.json              # the summary and every run's JSON

``--quick`` passes each benchmark's quick options: ``intake.py --messages 1000 --repeat 1``, ``deadlines.py --repeat
10``, ``pipeline.py --quick``, ``lint.py --repeat 50``, ``suite.py --once``, ``scale.py --quick``, ``soak.py --mails
200 --kills 6 --restarts 1 --readonly-seconds 10 --seconds 60``; ``classifier.py`` has none (it takes a few
minutes: ``--skip classifier``).
Without it the soak runs with its own defaults (600 mails, 20 kills, 2 Dovecot restarts, 15 s of read-only store:
about 3 minutes). ``--json FILE`` writes the summary rows (each naming its benchmark) and, under ``figures.runs``,
each benchmark's command, exit status and the JSON it wrote.
Exit status 0 when every benchmark that was not skipped ran, whatever its verdicts (the soak's exit status 1, with
its JSON written, means it ran and found something: its rows say what); 1 when one failed to run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import BELOW, INFO, MEETS, ROOT, Machine, argument_parser, log, options_of, write_json

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    value: str
    target: str
    verdict: str


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    quick: tuple[str, ...]
    findings_status: int | None = None
    """An exit status that means it ran and found something wrong (its figures say what), not that it failed."""


BENCHMARKS = (
    Benchmark("deadlines", "deadlines.py", ("--repeat", "10")),
    Benchmark("intake", "intake.py", ("--messages", "1000", "--repeat", "1")),
    Benchmark("pipeline", "pipeline.py", ("--quick",)),
    Benchmark("classifier", "classifier.py", ()),
    Benchmark("demo", "demo.py", ("--repeat", "1")),
    Benchmark("lint", "lint.py", ("--repeat", "50")),
    Benchmark("suite", "suite.py", ("--once",)),
    Benchmark("scale", "scale.py", ("--quick",)),
    Benchmark("soak", "soak.py", ("--mails", "200", "--kills", "6", "--restarts", "1", "--readonly-seconds", "10",
                                  "--seconds", "60"), findings_status=1),
)  # fmt: skip


@dataclass
class Outcome:
    benchmark: Benchmark
    command: list[str]
    returncode: int
    stdout: str
    last_errors: list[str]
    seconds: float
    data: dict[str, Any] | None
    """The JSON it wrote; None when it wrote none, or none that parses."""

    @property
    def ran(self) -> bool:
        return self.data is not None and self.returncode in (0, self.benchmark.findings_status)


def run(benchmark: Benchmark, quick: bool, folder: Path) -> Outcome:
    """Run one benchmark, its stderr passed on as it comes (and its last lines kept), its stdout kept, its JSON
    read."""
    path = folder / f"{benchmark.name}.json"
    command = [sys.executable, str(HERE / benchmark.script), "--json", str(path),
               *(benchmark.quick if quick else ())]  # fmt: skip
    log(f"run_all: {' '.join(command[1:])}")
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.read()) if process.stdout else None)
    reader.start()
    last: list[str] = []
    for line in process.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        last = [*last[-4:], line.rstrip()]
    reader.join()
    process.wait()
    seconds = time.perf_counter() - start
    return Outcome(benchmark, command, process.returncode, "".join(out), last, seconds, read_json(path))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def rows_of(outcome: Outcome) -> list[Row]:
    name = outcome.benchmark.name
    if not outcome.ran or outcome.data is None:
        reason = next((line for line in reversed(outcome.last_errors) if line.strip()), "no message")
        return [Row(name, "did not run", f"exit status {outcome.returncode}", "", f"not run: {reason[-100:]}")]
    try:
        return [Row(name, **row) for row in outcome.data["summary"]]
    except (KeyError, TypeError) as exc:
        return [Row(name, "its JSON was not understood", f"{type(exc).__name__}: {exc}"[:60], "", "?")]


def summary(rows: Sequence[Row], outcomes: Sequence[Outcome], machine: Machine, quick: bool) -> str:
    headers = Row("benchmark", "figure", "value", "target", "verdict")
    widths = [max(len(getattr(r, f)) for r in (headers, *rows)) for f in ("benchmark", "figure", "value", "target")]

    def line(r: Row) -> str:
        cells = (r.benchmark, r.figure, r.value, r.target)
        return " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + f" | {r.verdict}"

    took = ", ".join(f"{o.benchmark.script} {o.seconds / 60:.1f} min" for o in outcomes)
    counts = {v: sum(r.verdict == v for r in rows) for v in (MEETS, BELOW)}
    return "\n".join([
        *machine.lines(f"mailtriage benchmarks{' --quick' if quick else ''}"),
        f"took: {took}",
        "",
        line(headers),
        "-" * len(line(headers)),
        *(line(r) for r in rows),
        "",
        f"{counts[MEETS]} figures meet their target, {counts[BELOW]} are below it; '-': for information, no target",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    names = [b.name for b in BENCHMARKS]
    parser.add_argument("--skip", action="append", default=[], choices=names, help="leave a benchmark out (repeat)")
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick options, where it has them")
    args = parser.parse_args(argv)

    machine = Machine()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="mailtriage-run-all-") as folder:
        for benchmark in BENCHMARKS:
            if benchmark.name in args.skip:
                continue
            outcome = run(benchmark, args.quick, Path(folder))
            outcomes.append(outcome)
            print(f"== {' '.join([benchmark.script, *outcome.command[2:]])} ({outcome.seconds / 60:.1f} min) ==")
            print(outcome.stdout.rstrip() or f"(no output; exit status {outcome.returncode})")
            print(flush=True)
    rows = [row for outcome in outcomes for row in rows_of(outcome)]
    rows += [Row(name, "skipped (--skip)", "", "", INFO) for name in names if name in args.skip]
    print(summary(rows, outcomes, machine, args.quick))
    runs = [{"benchmark": o.benchmark.name, "command": o.command[1:], "returncode": o.returncode, "ran": o.ran,
             "seconds": round(o.seconds, 1), "json": o.data} for o in outcomes]  # fmt: skip
    write_json(args.json, "run_all", machine, options_of(args), rows, {"runs": runs})
    return 0 if all(o.ran for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
