"""``foreman init DIR``: write a project folder that runs at once, offline."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

TEMPLATES = Path(__file__).parent / "templates"
Template = Literal["demo", "blank"]


class InitError(ValueError):
    """The folder cannot be made into a project (it already holds one, or is a file)."""


def init_project(target: Path, template: Template = "demo") -> list[Path]:
    """Copy ``template`` into ``target`` (created if missing); the files written."""
    source = TEMPLATES / template
    if not source.is_dir():
        raise InitError(f"unknown template {template!r}; templates: demo, blank")
    if target.exists() and not target.is_dir():
        raise InitError(f"{target} exists and is not a folder")
    if (target / "foreman.yaml").exists():
        raise InitError(f"{target / 'foreman.yaml'} already exists; not overwriting a project")
    written = []
    for path in sorted(source.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        written.append(dest)
    (target / ".gitignore").write_text(".foreman/\n", encoding="utf-8")
    return written
