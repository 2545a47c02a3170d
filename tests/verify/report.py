"""Turn the JSON lines the verification sweeps wrote into the table of docs/reliability.md.

    python -m tests.verify.report RESULTS.jsonl [MORE.jsonl ...] docs/reliability.md

Several results files are merged (the crash sweep may run on its own); when two lines name
the same test, the later file's wins. Every part `make verify` runs has a row: one that wrote
no line is marked missing, and makes the exit status 1 as a failure does. Only the table
between the markers is replaced; the prose around it is kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- verify:begin -->"
END = "<!-- verify:end -->"
# The parts of `make verify`, each matched by the start of its lines' test names (the
# crash sweep writes one line per mode: embedded on each backend, distributed).
PARTS = ["crash sweep (embedded, SQLite)", "crash sweep (embedded, PostgreSQL)",
         "crash sweep (distributed, killed worker or API)",
         "crash sweep (distributed, a second crash during recovery)", "schemathesis",
         "approvals state machine", "injection corpus",
         "audit mutations", "provider faults", "budget interleavings"]

Line = dict[str, Any]


def load(paths: list[Path]) -> list[Line]:
    """The lines of every results file, the later file's line winning for one test name."""
    merged: dict[str, Line] = {}
    for path in paths:
        for text in path.read_text(encoding="utf-8").splitlines():
            if text.strip():
                line = json.loads(text)
                merged[str(line["test"])] = line
    return list(merged.values())


def missing(lines: list[Line]) -> list[str]:
    """The parts no line reports."""
    return [p for p in PARTS if not any(str(x["test"]).startswith(p) for x in lines)]


def _wall(line: Line) -> str:
    wall = line.get("wall_s")
    if wall is None:
        return "–"
    load = line.get("load")
    return f"{float(wall):.0f} s" + ("" if load is None else f" (load {load})")


def table(lines: list[Line]) -> str:
    """The Markdown table of the merged results, a row per part that did not run."""
    stamps = sorted(str(x["at"]) for x in lines if x.get("at"))
    when = (f"{stamps[0]} to {stamps[-1]}" if stamps and stamps[0] != stamps[-1]
            else stamps[0] if stamps else "unknown")
    small = sorted({str(x["test"]) for x in lines if x.get("scale", "full") != "full"})
    rows = [f"Recorded {when}; wall time with the 1-minute load average when the part ended"
            " (2 cores)."]
    if small:
        rows.append(f"Not at full size (the `make test` slice): {', '.join(small)}.")
    rows += ["", "| test | cases | failures | wall time | what it proves |",
             "|---|---:|---:|---:|---|"]
    order = {p: i for i, p in enumerate(PARTS)}

    def rank(line: Line) -> int:
        return next((order[p] for p in PARTS if str(line["test"]).startswith(p)), len(PARTS))

    for line in sorted(lines, key=rank):
        rows.append(f"| {line['test']} | {line['cases']} | {line['failures']} "
                    f"| {_wall(line)} | {line['proves']} |")
    for part in missing(lines):
        rows.append(f"| {part} | – | – | – | **missing: did not run, proves nothing** |")
    return "\n".join(rows)


def main(results: list[Path], doc: Path) -> int:
    """Rewrite the table in ``doc``; 1 when a part failed or is missing."""
    lines = load(results)
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table(lines)}\n{END}{tail}", encoding="utf-8")
    print(table(lines))
    failed = any(int(x["failures"]) for x in lines)
    return 1 if failed or missing(lines) else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m tests.verify.report RESULTS.jsonl [MORE.jsonl ...] DOC.md")
    sys.exit(main([Path(p) for p in sys.argv[1:-1]], Path(sys.argv[-1])))
