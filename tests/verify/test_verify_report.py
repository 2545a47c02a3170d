"""tests/verify/report.py: results files merged into the page, missing parts marked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.verify import report


def _results(path: Path, *lines: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _line(test: str, cases: int, failures: int = 0, **extra: object) -> dict[str, object]:
    return {"test": test, "cases": cases, "failures": failures, "proves": f"{test} holds",
            "wall_s": 12.3, "load": 1.5, "scale": "full", "at": "2026-12-02 09:00 UTC",
            **extra}


def _doc(tmp_path: Path) -> Path:
    doc = tmp_path / "reliability.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold table\n{report.END}\nprose after\n")
    return doc


def test_files_merge_and_a_part_that_did_not_run_is_missing(tmp_path: Path) -> None:
    main = _results(tmp_path / "a.jsonl", *(_line(p, 10) for p in report.PARTS
                                            if p not in {"crash sweep", "injection corpus"}))
    crash = _results(tmp_path / "b.jsonl", _line("crash sweep (SQLite)", 200),
                     _line("crash sweep (PostgreSQL)", 48))
    doc = _doc(tmp_path)

    assert report.main([main, crash], doc) == 1  # the injection corpus never ran
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{report.END}\nprose after\n")
    assert "old table" not in text
    assert "| crash sweep (SQLite) | 200 | 0 | 12 s (load 1.5) | crash sweep (SQLite) holds |" \
        in text
    assert "| injection corpus | – | – | – | **missing: did not run, proves nothing** |" in text
    assert text.count("missing: did not run") == 1


def test_all_parts_passed_exits_0_and_a_later_file_wins(tmp_path: Path) -> None:
    first = _results(tmp_path / "a.jsonl", *(_line(p, 10) for p in report.PARTS),
                     _line("audit mutations", 5, failures=2))
    again = _results(tmp_path / "b.jsonl", _line("audit mutations", 1000))
    doc = _doc(tmp_path)

    assert report.main([first], doc) == 1  # a failure in the last line for that test
    assert report.main([first, again], doc) == 0
    text = doc.read_text()
    assert "| audit mutations | 1000 | 0 |" in text and "| audit mutations | 5 |" not in text
    assert "missing" not in text


def test_a_slice_is_named_as_not_full_size(tmp_path: Path) -> None:
    lines = [_line(p, 10) for p in report.PARTS]
    lines[1]["scale"] = "fast"
    doc = _doc(tmp_path)
    report.main([_results(tmp_path / "a.jsonl", *lines)], doc)
    assert f"Not at full size (the `make test` slice): {report.PARTS[1]}." in doc.read_text()
