"""Shared by the verification sweeps: how many cases to run, and where to report them.

`make test` runs each sweep's fast slice; `make verify` sets ``FOREMAN_VERIFY_SCALE=full``
and ``FOREMAN_VERIFY_RESULTS`` (a JSON-lines file that tests/verify/report.py turns into
docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

# When the running test started (tests/verify/conftest.py sets it): a sweep that passes no
# wall time of its own is timed from there.
started: float | None = None


def scale(*, fast: int, full: int) -> int:
    """The case count for this run: ``full`` under `make verify`, else ``fast``."""
    return full if os.environ.get("FOREMAN_VERIFY_SCALE") == "full" else fast


def record(test: str, cases: int, failures: int, proves: str,
           wall_s: float | None = None) -> None:
    """Append one sweep's figures to the results file, when one is set: its cases,
    failures, wall time (``wall_s``, else the time since the test started) and the load
    average when it ended, since wall times on a shared machine mean little without it."""
    target = os.environ.get("FOREMAN_VERIFY_RESULTS")
    if not target:
        return
    if wall_s is None and started is not None:
        wall_s = time.monotonic() - started
    line = {"test": test, "cases": cases, "failures": failures, "proves": proves,
            "wall_s": None if wall_s is None else round(wall_s, 1),
            "load": round(os.getloadavg()[0], 1),
            "scale": os.environ.get("FOREMAN_VERIFY_SCALE", "fast"),
            "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    with Path(target).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
