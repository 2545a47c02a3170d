"""``foreman kb``: ingest with a report of bad files, then search with citations."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.main import app
from app.knowledge import embed
from tests.fakes import HashingEmbedder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOREMAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(embed, "E5Embedder", HashingEmbedder)


def test_kb_ingest_reports_bad_files_and_search_cites(tmp_path: Path) -> None:
    docs = tmp_path / "policies"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds reach the card in 5 business days.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    cli = CliRunner()
    config = ["--config", str(ROOT / "foreman.yaml")]

    first = cli.invoke(app, ["kb", "ingest", str(docs), "--collection", "policies",
                             "--tenant", "acme", *config])
    again = cli.invoke(app, ["kb", "ingest", str(docs), "--collection", "policies",
                             "--tenant", "acme", *config])
    found = cli.invoke(app, ["kb", "search", "refund card", "--tenant", "acme", *config])
    other = cli.invoke(app, ["kb", "search", "refund card", "--tenant", "globex", *config])

    assert first.exit_code == 1  # a file was skipped
    assert "1 added" in first.output and "skipped policies/broken.pdf" in first.output
    assert "1 unchanged" in again.output
    assert "policies/refunds.md:L1-L3" in found.output
    assert other.output == ""
