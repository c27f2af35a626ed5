"""Demo benchmark: how soon ``mailtriage demo`` says something, and how long it takes, as a newcomer meets it.

What it measures, in one run, each time in a fresh empty folder:

1. The first run after install: a cache folder of its own, empty, so the default model is built from the seed set.
2. The next runs (``--repeat``, 3 by default): the same cache, so the model is loaded.

For each: the seconds until the demo's first line reaches its output, and until it ends. The targets are the
issue's, in seconds on a 2-core machine: the first line within 2 s, the first run done within 15 s, a later one
within 8 s. As a baseline from the same run, ``python -c "import mailtriage.cli"`` (what any command costs before
it does anything) is timed too, and every figure is also given as a ratio to it.

Run it from the repository root (about a minute)::

    .venv/bin/python benchmarks/demo.py
    .venv/bin/python benchmarks/demo.py --repeat 5 --json demo.json

The demo runs as a subprocess of the checkout's venv (``sys.executable -m mailtriage demo``); its own output is
read from a pipe, so the first line is timed when the demo wrote it, not when a terminal drew it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from common import Figure, Machine, argument_parser, log, options_of, write_json

FIRST_LINE, FIRST_RUN, LATER_RUN = 2.0, 15.0, 8.0


@dataclass(frozen=True)
class Timing:
    first_line: float
    done: float
    exit_code: int


def timed_demo(cache: Path) -> Timing:
    """One ``mailtriage demo`` in a fresh empty folder with ``cache`` as the user's cache folder."""
    with tempfile.TemporaryDirectory(prefix="mailtriage-bench-demo-") as empty:
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "120"}
        started = time.perf_counter()
        demo = subprocess.Popen([sys.executable, "-m", "mailtriage", "demo"], cwd=empty, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        assert demo.stdout is not None
        demo.stdout.readline()
        first = time.perf_counter() - started
        demo.stdout.read()
        code = demo.wait()
        return Timing(first, time.perf_counter() - started, code)


def baseline(repeat: int) -> float:
    """The median seconds of importing the command, the least any command costs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mailtriage.cli"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def headlines(first: Timing, later: list[Timing], base: float) -> list[Figure]:
    later_done = statistics.median(t.done for t in later)
    first_line = max([first.first_line, *(t.first_line for t in later)])
    return [
        Figure.check("first line, slowest run (s)", f"{first_line:.2f} ({first_line / base:.1f}x import)",
                     f"< {FIRST_LINE:.0f}", first_line < FIRST_LINE),
        Figure.check("first run after install, model built (s)", f"{first.done:.1f} ({first.done / base:.1f}x import)",
                     f"< {FIRST_RUN:.0f}", first.done < FIRST_RUN and first.exit_code == 0),
        Figure.check("a later run, median (s)", f"{later_done:.1f} ({later_done / base:.1f}x import)",
                     f"< {LATER_RUN:.0f}", later_done < LATER_RUN and all(t.exit_code == 0 for t in later)),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="later runs, with the model cached (default 3)")
    args = parser.parse_args(argv)
    machine = Machine()
    base = baseline(3)
    with tempfile.TemporaryDirectory(prefix="mailtriage-bench-cache-") as cache:
        log("the first run after install: the default model is built")
        first = timed_demo(Path(cache))
        later = []
        for number in range(args.repeat):
            log(f"a later run ({number + 1} of {args.repeat}): the model is loaded from the cache")
            later.append(timed_demo(Path(cache)))
    rows = headlines(first, later, base)
    for line in machine.lines("mailtriage demo benchmark"):
        print(line)
    print(f"baseline: importing the command takes {base:.2f} s (median of 3)")
    for row in rows:
        print(f"{row.figure}: {row.value} (target {row.target}): {row.verdict}")
    figures = {"baseline_import_seconds": base, "first": asdict(first), "later": [asdict(t) for t in later]}
    write_json(args.json, "demo", machine, options_of(args), rows, figures)
    return 0 if first.exit_code == 0 and all(t.exit_code == 0 for t in later) else 1


if __name__ == "__main__":
    sys.exit(main())
