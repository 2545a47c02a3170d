"""Turn the JSON lines `make verify` collected into the table of docs/reliability.md.

    python -m tests.verify.report RESULTS.jsonl docs/reliability.md

Only the table between the markers is replaced; the prose around it is kept.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

BEGIN = "<!-- verify:begin -->"
END = "<!-- verify:end -->"


def table(lines: list[dict[str, object]]) -> str:
    """The Markdown table of one `make verify` run."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [f"Last `make verify`: {stamp}.", "",
            "| test | cases | failures | what it proves |", "|---|---:|---:|---|"]
    for line in lines:
        rows.append(f"| {line['test']} | {line['cases']} | {line['failures']} "
                    f"| {line['proves']} |")
    return "\n".join(rows)


def main(results: Path, doc: Path) -> int:
    lines = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    text = doc.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table(lines)}\n{END}{tail}")
    print(table(lines))
    return 1 if any(int(str(x["failures"])) for x in lines) else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
