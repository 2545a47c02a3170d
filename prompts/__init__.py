"""Prompt templates as package files, rendered by a sandboxed Jinja with StrictUndefined."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

PROMPTS_DIR = Path(__file__).parent


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(PROMPTS_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **variables: Any) -> str:
    """Render ``prompts/<name>``; a missing variable is an error, never an empty string."""
    return _env().get_template(name).render(**variables).strip()


def read(relative: str) -> str:
    """Read a plain prompt file (e.g. an agent's instructions) below ``prompts/``."""
    path = (PROMPTS_DIR / relative).resolve()
    if PROMPTS_DIR.resolve() not in path.parents:
        raise ValueError(f"prompt path escapes the prompts folder: {relative}")
    return path.read_text(encoding="utf-8").strip()
