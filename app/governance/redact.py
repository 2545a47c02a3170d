"""Redaction of secrets and raw PII before anything is logged or audited.

Emails, card-like digit runs, API keys / bearer tokens and ``key=value`` secrets are
replaced by typed placeholders; mappings are walked recursively and secret-named keys
(``password``, ``api_key``, ``token``...) lose their values whatever they hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_KEY = re.compile(r"\b(?:sk|pk|rk|ghp|gho|xox[abpr]|AKIA)[-_A-Za-z0-9]{8,}\b")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
_ASSIGNED = re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|token)\s*[:=]\s*\S+")
_SECRET_KEYS = re.compile(r"(?i)(password|passwd|secret|api[_-]?key|token|authorization)")


def redact_text(text: str) -> str:
    """``text`` with secrets and raw PII replaced by placeholders."""
    text = _BEARER.sub("Bearer [REDACTED:token]", text)
    text = _ASSIGNED.sub(lambda m: f"{m.group(1)}=[REDACTED:secret]", text)
    text = _KEY.sub("[REDACTED:key]", text)
    text = _EMAIL.sub("[REDACTED:email]", text)
    return _CARD.sub("[REDACTED:card]", text)


def redact(value: Any) -> Any:
    """A JSON-shaped value with every string redacted and secret-named fields blanked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): "[REDACTED:secret]" if _SECRET_KEYS.search(str(k)) and v
                else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
