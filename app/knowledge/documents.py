"""Reading documents (markdown, text, PDF) and cutting them into overlapping chunks."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = frozenset({".md", ".markdown", ".txt", ".pdf"})

_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


class DocumentError(ValueError):
    """A file that cannot be read as a document (corrupt PDF, binary, empty)."""


@dataclass(frozen=True)
class Document:
    """A document's text, title and content checksum."""

    text: str
    title: str
    checksum: str


@dataclass(frozen=True)
class Chunk:
    """A slice of a document: ``start``/``end`` are character offsets, lines are 1-based."""

    text: str
    start: int
    end: int
    line_start: int
    line_end: int


def read_document(path: Path) -> Document:
    """Read one file; raises ``DocumentError`` naming what is wrong."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DocumentError(f"unsupported file type {suffix or '(none)'}")
    raw = path.read_bytes()
    checksum = hashlib.sha256(raw).hexdigest()
    if suffix == ".pdf":
        text, title = _pdf_text(path)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DocumentError(f"not UTF-8 text ({e.reason} at byte {e.start})") from e
        if "\x00" in text:
            raise DocumentError("binary content in a text file")
        heading = _HEADING.search(text)
        title = heading.group(1) if heading else ""
    if not text.strip():
        raise DocumentError("no text in the document")
    return Document(text=text.replace("\r\n", "\n"), title=title or _title_of(path),
                    checksum=checksum)


def _pdf_text(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, OSError) as e:
        raise DocumentError(f"unreadable PDF ({type(e).__name__}: {e})") from e
    return "\n\n".join(p.strip() for p in pages), str(meta_title or "")


def _title_of(path: Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize()


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """Character spans of blank-line separated blocks (headings stay with what follows)."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S(?:.*?\S)?(?=\n\s*\n|\s*\Z)",
                                                        text, re.DOTALL)]
    return spans


def chunk_text(text: str, size: int = 800, overlap: int = 160) -> list[Chunk]:
    """Pack whole paragraphs into chunks of about ``size`` characters; each chunk after the
    first starts with the last ``overlap`` characters' worth of paragraphs of the previous one,
    so a fact that straddles a boundary is whole in at least one chunk. A paragraph longer
    than ``size`` is cut on its own with the same overlap."""
    if size <= overlap:
        raise ValueError("chunk size must exceed the overlap")
    pieces: list[tuple[int, int]] = []
    for start, end in _paragraphs(text):
        while end - start > size:
            cut = text.rfind(" ", start + overlap, start + size)
            cut = cut if cut > start else start + size
            pieces.append((start, cut))
            start = max(cut - overlap, start + 1)
        pieces.append((start, end))
    chunks: list[tuple[int, int]] = []
    group: list[tuple[int, int]] = []
    for piece in pieces:
        if group and piece[1] - group[0][0] > size:
            chunks.append((group[0][0], group[-1][1]))
            # Carry trailing paragraphs (within the overlap budget) into the next chunk.
            carry: list[tuple[int, int]] = []
            for prev in reversed(group):
                if group[-1][1] - prev[0] > overlap or piece[1] - prev[0] > size:
                    break
                carry.insert(0, prev)
            group = carry
        group.append(piece)
    if group:
        chunks.append((group[0][0], group[-1][1]))
    return [Chunk(text=text[s:e], start=s, end=e, line_start=text.count("\n", 0, s) + 1,
                  line_end=text.count("\n", 0, e) + 1) for s, e in chunks]
