"""Test-suite benchmark: the wall time of the README's test command, with CI=true, against 4 minutes.

What it measures: the last line of ``.ci/run`` (the README's test command: ``python -m pytest -n auto
--durations=20``) run from the repository root with ``CI=true``, so that a missing server fails rather than
skips; its wall time, and the same with ``-n 2`` in place of ``-n auto`` (what a 2-core CI machine gets; on a
2-core machine the two are one). The suite's own 20 slowest tests are printed from its output. The target is
under 4 minutes on a 2-core machine; the figure is a measured value, not a ratio: it is the suite's whole cost.

Run it from the repository root, as root, with the servers of ``tests/install-servers.sh``::

    sudo .venv/bin/python benchmarks/suite.py              # both runs: 5-10 minutes
    sudo .venv/bin/python benchmarks/suite.py --once       # the README's command alone
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

from common import ROOT, Figure, Machine, argument_parser, log, options_of, write_json

TARGET_S = 240.0


def readme_command() -> list[str]:
    """The pytest arguments of .ci/run's last line (which the README gives)."""
    last = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    found = re.search(r"-m pytest(.*)$", last)
    if found is None:
        raise SystemExit(f"no pytest command on .ci/run's last line: {last!r}")
    return found.group(1).split()


def timed_suite(arguments: Sequence[str]) -> tuple[float, int, str]:
    """(seconds, exit status, the slowest-durations part of the output)."""
    log(f"pytest {' '.join(arguments)} (CI=true)")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *arguments], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "CI": "true"})  # fmt: skip
    seconds = time.perf_counter() - started
    slowest = done.stdout.partition("slowest")[2].partition("\n\n")[0]
    log(f"  {seconds:.0f} s, exit status {done.returncode}: {done.stdout.strip().splitlines()[-1]}")
    return seconds, done.returncode, slowest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--once", action="store_true", help="the README's command alone, not -n 2 beside it")
    args = parser.parse_args(argv)
    machine = Machine()
    command = readme_command()
    runs = {"README's command": timed_suite(command)}
    if not args.once and "auto" in command:
        runs["-n 2 (a 2-core machine)"] = timed_suite([("2" if part == "auto" else part) for part in command])
    machine.done()
    print("\n".join(machine.lines("mailtriage test-suite benchmark")))
    rows = []
    for name, (seconds, status, _) in runs.items():
        passed = status == 0
        print(f"  {name:<28} {seconds:7.0f} s   exit status {status}   target < {TARGET_S:.0f} s")
        rows.append(Figure.check(f"test suite, {name}, CI=true", f"{seconds:.0f} s" + ("" if passed else " (failed)"),
                                 f"< {TARGET_S:.0f} s, passing", passed and seconds < TARGET_S))  # fmt: skip
    print(f"\nslowest{next(iter(runs.values()))[2]}")
    figures = {name: {"seconds": round(s, 1), "status": st} for name, (s, st, _) in runs.items()}
    write_json(args.json, "suite", machine, options_of(args), rows, figures | {"cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
