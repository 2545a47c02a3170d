"""Reading documents and chunking them with overlap."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from app.knowledge.documents import DocumentError, chunk_text, read_document
from tests.fakes import pdf_bytes


def test_read_document_markdown_takes_title_from_heading(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text("# Shipping FAQ\n\nStandard shipping takes 3 days.\n")

    doc = read_document(path)

    assert doc.title == "Shipping FAQ"
    assert "3 days" in doc.text
    assert len(doc.checksum) == 64


def test_read_document_pdf_extracts_text_and_title(tmp_path: Path) -> None:
    path = tmp_path / "lost.pdf"
    path.write_bytes(pdf_bytes(["Lost parcels are refunded in full."], title="Lost parcels"))

    doc = read_document(path)

    assert doc.title == "Lost parcels"
    assert "refunded in full" in doc.text


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("bad.pdf", b"%PDF-1.4 not really", "unreadable PDF"),
    ("latin.txt", b"\xff\xfe caf\xe9", "not UTF-8"),
    ("empty.md", b"  \n\n", "no text"),
    ("image.png", b"\x89PNG", "unsupported file type"),
])
def test_read_document_bad_file_raises_named_error(tmp_path: Path, name: str, content: bytes,
                                                   reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DocumentError, match=reason):
        read_document(path)


def test_chunk_text_covers_everything_with_overlap_and_line_spans() -> None:
    paragraphs = [f"Paragraph {i}" + " word" * 30 for i in range(12)]
    text = "\n\n".join(paragraphs)

    chunks = chunk_text(text, size=400, overlap=200)

    assert len(chunks) > 3
    assert all(len(c.text) <= 400 for c in chunks)
    for p in paragraphs:  # nothing is lost
        assert any(p in c.text for c in chunks)
    for a, b in pairwise(chunks):  # consecutive chunks overlap
        assert b.start < a.end
    assert chunks[0].line_start == 1
    assert chunks[-1].line_end == text.count("\n") + 1
    assert all(text[c.start:c.end] == c.text for c in chunks)


def test_chunk_text_cuts_an_overlong_paragraph() -> None:
    text = "x" * 50 + " " + "y " * 600

    chunks = chunk_text(text, size=300, overlap=50)

    assert all(len(c.text) <= 300 for c in chunks)
    assert chunks[-1].end == len(text.rstrip())
