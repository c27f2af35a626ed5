"""Run every benchmark in benchmarks/ and print one summary table: benchmark, figure, value, target, verdict.

The benchmarks run one after the other (side by side they would disturb each other's timings), each as a
subprocess of its own from the repository root: ``deadlines.py``, ``pipeline.py`` and ``soak.py`` with ``--json``,
whose figures are read from the JSON they print after their table; ``intake.py`` and ``classifier.py``, which have
no JSON, are read from their tables. Each benchmark's own table is printed when it finishes, the summary at the
end; their progress goes to stderr as it comes.

Run it from the repository root, as root (``intake.py``, ``pipeline.py`` and ``soak.py`` start a private Dovecot,
which needs root and dovecot-imapd; without them their rows say why they did not run)::

    sudo .venv/bin/python benchmarks/run_all.py                              # everything: about 30 minutes
    sudo .venv/bin/python benchmarks/run_all.py --skip classifier            # without the classifier's minutes
    sudo .venv/bin/python benchmarks/run_all.py --quick --skip classifier    # a short check: about 5 minutes
    sudo .venv/bin/python benchmarks/run_all.py --json                       # the summary as JSON too

``--quick`` passes each benchmark's quick options: ``intake.py --messages 500 --repeat 1``, ``deadlines.py
--repeat 10``, ``pipeline.py --quick``, ``soak.py --mails 200 --kills 6 --restarts 1 --readonly-seconds 10
--seconds 60``; ``classifier.py`` has none (it takes a few minutes: ``--skip classifier``). Without it the soak runs
with its own defaults (600 mails, 20 kills, 2 Dovecot restarts, 15 s of read-only store: about 3 minutes).
Exit status 0 when every benchmark that was not skipped ran, whatever its verdicts (the soak's exit status 1, with
its figures printed, means it ran and found something: its rows say what); 1 when one failed to run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common import BELOW, FLAT, INFO, MEETS, ROOT, Machine, log, verdict

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Row:
    benchmark: str
    figure: str
    value: str
    target: str
    verdict: str


def split_json(stdout: str) -> tuple[str, dict[str, Any]]:
    """A benchmark's table and the JSON object it printed after it (``--json``)."""
    start = stdout.find("\n{")
    if start < 0:
        raise ValueError("no JSON after the table")
    return stdout[:start], json.loads(stdout[start:])


def number(text: str) -> float:
    return float(text.replace(",", ""))


# --- reading each benchmark's figures ------------------------------------------------------------------------------


def read_intake(stdout: str) -> list[Row]:
    backlog = re.search(r"intake throughput, ([\d,]+)-message backlog", stdout)
    baseline = re.search(r"baseline imapclient fetch \+ email\.policy\.default parse\s+([\d,]+) msg/s", stdout)
    pipeline = re.search(r"mailtriage run_cycle \(fetch, parse, record\)\s+([\d,]+) msg/s", stdout)
    ratios = re.findall(r"^\s+ratio\s+([\d.]+)\s+\(target ([^)]*)\)", stdout, re.MULTILINE)
    if not (backlog and baseline and pipeline) or len(ratios) != 3:
        raise ValueError("the intake table is not as expected")
    (throughput, _), (idle, _), (memory, _) = ratios
    n = backlog.group(1)
    return [
        Row("intake", f"run_cycle (fetch, parse, record) / imapclient + stdlib parse, {n} msgs",
            f"{throughput} ({pipeline.group(1)} vs {baseline.group(1)} msg/s)", ">= 0.5",
            verdict(number(throughput) >= 0.5)),
        Row("intake", f"idle cycle time, {n} vs 100 messages", idle, f"~1 (<= {FLAT})", verdict(number(idle) <= FLAT)),
        Row("intake", "peak traced memory of run_cycle, 5x vs 1x the messages", memory, f"~1 (<= {FLAT})",
            verdict(number(memory) <= FLAT)),
    ]  # fmt: skip


def read_classifier(stdout: str) -> list[Row]:
    accuracy = re.search(r"accuracy ≥ ([\d.]+) on held-out data: CV accuracy ([\d.]+) -> (meets|below target)", stdout)
    latencies = re.findall(
        r"< (\d+) ms per message \((.+?)\): p50 ([\d.]+) ms -> (meets|below target); p99 ([\d.]+) ms -> "
        r"(meets|below target)",
        stdout,
    )
    train = re.search(r"classify\.train\(examples, folds=5\) = ([\d.]+) s.*?Target < (\d+) s: (meets|below target)",
                      stdout, re.DOTALL)  # fmt: skip
    if not (accuracy and latencies and train):
        raise ValueError("the classifier table is not as expected")
    rows = [Row("classifier", "accuracy, Banking77 5-fold CV (the test split is absent)", accuracy.group(2),
                f">= {accuracy.group(1)} (held out)", accuracy.group(3))]  # fmt: skip
    for limit, model, p50, p50_verdict, p99, p99_verdict in latencies:
        rows.append(Row("classifier", f"{model}, p50 per message", f"{p50} ms", f"< {limit} ms", p50_verdict))
        rows.append(Row("classifier", f"{model}, p99 per message", f"{p99} ms", f"< {limit} ms", p99_verdict))
    rows.append(Row("classifier", "training: classify.train(folds=5)", f"{train.group(1)} s", f"< {train.group(2)} s",
                    train.group(3)))  # fmt: skip
    return rows


def read_deadlines(stdout: str) -> list[Row]:
    _, data = split_json(stdout)
    rows = data["rows"]
    base = next(r for r in rows if f"{r['messages']}-{r['open']}" == data["baseline"] and not r["control"])
    peers = [r for r in rows if not r["control"] and r["open"] == base["open"]]
    largest = max(peers, key=lambda r: r["messages"])
    found = [
        Row("deadlines", f"one sweep, store of {base['messages']:,} ({base['open']:,} open): median",
            f"{base['median_ms']:.2f} ms", "(baseline)", INFO),
        Row("deadlines", f"one sweep, store of {largest['messages']:,} vs {base['messages']:,}, {base['open']:,} open",
            f"{largest['ratio_to_baseline']:.2f}", f"~1 (<= {FLAT})", verdict(largest["ratio_to_baseline"] <= FLAT)),
    ]  # fmt: skip
    for control in (r for r in rows if r["control"]):
        peer = next((r for r in peers if r["messages"] == control["messages"]), None)
        if peer is not None:
            ratio = control["median_ms"] / peer["median_ms"]
            figure = f"control: {control['open']:,} vs {peer['open']:,} open, store of {control['messages']:,}"
            found.append(Row("deadlines", figure, f"{ratio:.2f}", "> 1 (follows the open set)", INFO))
    return found


def read_pipeline(stdout: str) -> list[Row]:
    _, data = split_json(stdout)
    latency, tp, memory = data["latency"], data["throughput"], data["memory"]
    idle, poll, notice = latency["idle"], latency["poll"], latency["dovecot_idle_notice"]
    baseline = sorted(tp["baseline_msg_s"])[len(tp["baseline_msg_s"]) // 2]
    pipeline = sorted(tp["pipeline_msg_s"])[len(tp["pipeline_msg_s"]) // 2]
    points = memory["points"]
    first, last = f"{points[0]['messages']:,.0f}", f"{points[-1]['messages']:,.0f}"
    rows = [
        Row("pipeline", f"arrival-to-draft with IDLE, p95 ({idle['timed']} mails one by one)", f"{idle['p95_s']:.3f} s",
            f"< {latency['target_p95_s']:.0f} s", verdict(latency["meets"])),
        Row("pipeline", "arrival-to-draft with IDLE, p50", f"{idle['p50_s']:.3f} s", "", INFO),
        Row("pipeline", "  of which Dovecot's IDLE notice alone, p50", f"{notice['p50_s']:.3f} s", "", INFO),
        Row("pipeline", f"arrival-to-draft with a {poll['poll_interval_s']:.0f} s poll, p50 / p95 ({poll['timed']} "
            f"mails over {poll['window_s']:.0f} s)", f"{poll['p50_s']:.1f} / {poll['p95_s']:.1f} s", "(comparison)",
            INFO),
        Row("pipeline", f"throughput classify+route+draft / imapclient fetch + APPEND, {tp['messages']:,} msgs",
            f"{tp['ratio']:.2f} ({pipeline:,.0f} vs {baseline:,.0f} msg/s)", f">= {tp['target']}",
            verdict(tp["meets"])),
    ]  # fmt: skip
    for key, name in (("current", "traced memory now"), ("rss", "RSS now"), ("max_rss", "max RSS")):
        ratio = memory["ratios"][key]
        rows.append(Row("pipeline", f"{name}, after {last} vs {first} messages", f"{ratio:.2f}",
                        f"~1 (<= {memory['target']:.1f})", verdict(ratio <= memory["target"])))  # fmt: skip
    return rows


def read_soak(stdout: str) -> list[Row]:
    _, data = split_json(stdout)
    checks, args = data["checks"], data["args"]
    kills = sum(data["kills"].values())
    found = [
        ("lost (delivered, not recorded)", len(checks["lost"])),
        ("duplicated (recorded more than once)", checks["duplicated"]),
        (f"missing drafts (of {checks['expected_drafts']} owed)", len(checks["missing_drafts"])),
        ("duplicate drafts", checks["duplicate_drafts"]),
        ("\\Seen set or taken off by mailtriage", len(checks["seen_set"]) + len(checks["seen_dropped"])),
        ("mails not exactly once on the server", len(checks["not_once_on_server"])),
        ("pending at the end (decided, not done)", checks["statuses"].get("pending", 0)),
    ]
    restarts = len(data["dovecot_restarts"])
    run = (
        f"{sum(data['delivered'].values()):,} mails, {kills} SIGKILLs, Dovecot restarted {restarts}x, "
        f"{args['readonly_seconds']:g} s of read-only store; {data['wall_s'] / 60:.1f} min"
    )
    return [
        Row("soak", "chaos run", run, "", INFO),
        *(Row("soak", figure, str(value), "0", verdict(value == 0)) for figure, value in found),
        Row("soak", "the last daemon finished the backlog", "yes" if data["drained"] else "no", "yes",
            verdict(data["drained"])),
    ]  # fmt: skip


# --- running them --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    read: Callable[[str], list[Row]]
    has_json: bool = False
    findings_status: int | None = None
    """An exit status that means it ran and found something wrong (its figures say what), not that it failed."""

    def ran(self, returncode: int, stdout: str) -> bool:
        return returncode == 0 or (returncode == self.findings_status and "\n{" in stdout)


BENCHMARKS = (
    Benchmark("deadlines", "deadlines.py", ("--json",), ("--repeat", "10"), read_deadlines, has_json=True),
    Benchmark("intake", "intake.py", (), ("--messages", "500", "--repeat", "1"), read_intake),
    Benchmark("pipeline", "pipeline.py", ("--json",), ("--quick",), read_pipeline, has_json=True),
    Benchmark("classifier", "classifier.py", (), (), read_classifier),
    Benchmark("soak", "soak.py", ("--json",), ("--mails", "200", "--kills", "6", "--restarts", "1",
              "--readonly-seconds", "10", "--seconds", "60"), read_soak, has_json=True, findings_status=1),
)  # fmt: skip


@dataclass
class Outcome:
    benchmark: Benchmark
    command: list[str]
    returncode: int
    stdout: str
    last_errors: list[str]
    seconds: float

    @property
    def ran(self) -> bool:
        return self.benchmark.ran(self.returncode, self.stdout)


def run(benchmark: Benchmark, quick: bool) -> Outcome:
    """Run one benchmark, its stderr passed on as it comes (and its last lines kept), its stdout kept."""
    command = [sys.executable, str(HERE / benchmark.script), *benchmark.args, *(benchmark.quick if quick else ())]
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
    return Outcome(benchmark, command, process.returncode, "".join(out), last, time.perf_counter() - start)


def rows_of(outcome: Outcome) -> list[Row]:
    name = outcome.benchmark.name
    if not outcome.ran:
        reason = next((line for line in reversed(outcome.last_errors) if line.strip()), "no message")
        return [Row(name, "did not run", f"exit status {outcome.returncode}", "", f"not run: {reason[-100:]}")]
    try:
        return outcome.benchmark.read(outcome.stdout)
    except (ValueError, KeyError, StopIteration, json.JSONDecodeError) as exc:
        return [Row(name, "its output was not understood", str(exc)[:60], "", "?")]


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    names = [b.name for b in BENCHMARKS]
    parser.add_argument("--skip", action="append", default=[], choices=names, help="leave a benchmark out (repeat)")
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick options, where it has them")
    parser.add_argument("--json", action="store_true", help="print the summary rows as JSON after the table")
    args = parser.parse_args(argv)

    machine = Machine()
    outcomes: list[Outcome] = []
    for benchmark in BENCHMARKS:
        if benchmark.name in args.skip:
            continue
        outcome = run(benchmark, args.quick)
        outcomes.append(outcome)
        table = split_json(outcome.stdout)[0] if benchmark.has_json and "\n{" in outcome.stdout else outcome.stdout
        print(f"== {' '.join([benchmark.script, *outcome.command[2:]])} ({outcome.seconds / 60:.1f} min) ==")
        print(table.rstrip() or f"(no output; exit status {outcome.returncode})")
        print(flush=True)
    rows = [row for outcome in outcomes for row in rows_of(outcome)]
    rows += [Row(name, "skipped (--skip)", "", "", INFO) for name in names if name in args.skip]
    print(summary(rows, outcomes, machine, args.quick))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False))
    return 0 if all(o.ran for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
