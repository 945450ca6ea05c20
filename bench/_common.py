"""Helpers shared by the benchmarks: fair ordering, medians, load average, the JSON last line.

Every benchmark alternates its sides, repeats, reports medians, prints the load average
before and after, and ends with one JSON object (see /work/shared/BENCHMARKS.md).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson

__all__ = [
    "alternating",
    "load_average",
    "median",
    "print_json_line",
    "ratio",
    "say",
    "wait_until",
]


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages, rounded for printing."""
    return [round(x, 2) for x in os.getloadavg()]


def alternating(sides: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, side) in an order that rotates who goes first: A B C, B C A, C A B, ...

    Rotating spreads the machine's drift (other work, thermal, caches) over every side.
    """
    for r in range(rounds):
        shift = r % len(sides)
        for side in list(sides[shift:]) + list(sides[:shift]):
            yield r, side


def median(values: Iterable[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def ratio(ours: float | None, theirs: float | None, digits: int = 2) -> float | None:
    if not ours or not theirs:
        return None
    return round(ours / theirs, digits)


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.01
) -> float | None:
    """Poll until predicate() is true; seconds waited, or None on timeout."""
    start = time.perf_counter()
    deadline = start + timeout
    while True:
        if predicate():
            return time.perf_counter() - start
        if time.perf_counter() >= deadline:
            return None
        time.sleep(interval)


def say(*parts: Any) -> None:
    """Progress to stderr so stdout stays the report (and its JSON last line)."""
    print(*parts, file=sys.stderr, flush=True)


def print_json_line(result: dict[str, Any]) -> None:
    """The benchmark's last line: one JSON object with every figure and ratio."""
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
