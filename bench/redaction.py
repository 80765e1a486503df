"""Benchmark: redaction time against input size, printed as measured / goal / ratio.

``redact_text`` runs on every value a plan shows (tags of up to 5,000 characters, descriptions
of any size) and on every message and log line. Its user-info pattern used to backtrack: 0.6 /
10 / 44 / 201 s for 5k / 20k / 40k / 80k characters of one long word. Each input here is
hostile in one way (a long word, schemes without user info, scheme characters only, many URLs
with credentials) at 5k .. 1M characters; the goal is linear time: 0.5 s per million characters
at every size (measured on a 2-core machine: a ratio of 0.1 to 0.4, the same at 5k as at 1M; a
quadratic pattern's ratio grows with the size). The old pattern is measured
too, up to 20k characters (beyond that it takes minutes), for comparison.

Run it with ``.venv/bin/python bench/redaction.py``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.core.secrets import redact_text

SIZES = (5_000, 20_000, 40_000, 80_000, 200_000, 1_000_000)
GOAL_SECONDS_PER_CHAR = 0.5 / 1_000_000

INPUTS: dict[str, Callable[[int], str]] = {
    "one long word": lambda n: "a" * n,
    "a scheme, then a word": lambda n: "a://" + "b" * (n - 4),
    "schemes, no user info": lambda n: "a://" * (n // 4),
    "scheme characters": lambda n: "a.b-c+d1" * (n // 8),
    "URLs with credentials": lambda n: "http://u:p@h " * (n // 13),
}

_OLD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def _old(text: str) -> str:
    return _OLD.sub(lambda m: f"{m.group('scheme')}(redacted)@", text)


def timed(fn: Callable[[str], str], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    print(f"{'input':<24} {'chars':>9} {'measured s':>11} {'goal s':>8} {'ratio':>7}")
    worst = 0.0
    for name, make in INPUTS.items():
        for n in SIZES:
            text = make(n)
            measured = timed(redact_text, text)
            goal = GOAL_SECONDS_PER_CHAR * len(text)
            worst = max(worst, measured / goal)
            print(
                f"{name:<24} {len(text):>9} {measured:>11.4f} {goal:>8.4f} {measured / goal:>7.3f}"
            )
    print(f"worst ratio: {worst:.3f} (goal: below 1)")
    print("\nthe old user-info pattern, for comparison (one long word):")
    for n in (5_000, 10_000, 20_000):
        text = "a" * n
        print(f"{'old, one long word':<24} {n:>9} {timed(_old, text):>11.4f}")


if __name__ == "__main__":
    main()
