"""Figures as medians over repetitions with their range, and the rows the report prints."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Stat:
    """Median and min-max of repeated measurements."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        """The stat of ``samples`` (at least one)."""
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def fmt(self, digits: int = 2) -> str:
        """``median (lo-hi)``, or just the value for a single sample."""
        if self.n == 1 or self.lo == self.hi:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.lo:.{digits}f}-{self.hi:.{digits}f})"


def ratios(values: Sequence[float], baselines: Sequence[float]) -> Stat:
    """Paired ratios value/baseline per repetition."""
    return Stat.of([v / b for v, b in zip(values, baselines, strict=True) if b])


@dataclass
class Row:
    """One line of the report: a measured figure, its baseline, their ratio, the goal."""

    figure: str
    label: str
    value: Stat
    unit: str
    baseline: Stat | None = None
    baseline_label: str = ""
    ratio: Stat | None = None
    goal: str = ""
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """JSON-shaped for bench-results.json."""
        return asdict(self)


def within(stat: Stat | None, limit: float) -> bool | None:
    """Goal of the form ``<= limit`` on a median."""
    return None if stat is None else stat.median <= limit


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Seconds ``fn`` took, and its result."""
    started = time.perf_counter()
    out = await fn()
    return time.perf_counter() - started, out
