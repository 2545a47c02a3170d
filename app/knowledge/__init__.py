"""Shared knowledge: documents chunked, embedded and stored in Chroma, searched per tenant."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DOCS = Path(__file__).parent / "docs"
"""The knowledge bases shipped with Foreman, one folder (= collection) per bundled team."""
