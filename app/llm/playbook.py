"""Playbooks: the scripted offline models' knowledge of the demo tasks and a project's own.

A step's instruction, call arguments, report, figures and the final answer may hold
references (``app/llm/references.py``): the manager fills an instruction from earlier steps'
reported figures, the specialist fills its arguments from what the instruction told it and
its report from what its tools returned.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from app.llm.references import told_by

PLAYBOOK_DIR = Path(__file__).parent / "playbooks"


class Match(BaseModel):
    """Keywords that select a playbook for a task."""

    all: list[str] = Field(default_factory=list)
    any: list[str] = Field(default_factory=list)

    def accepts(self, task: str) -> bool:
        """Every ``all`` keyword and at least one ``any`` keyword occur in the task."""
        text = task.lower()
        return all(k.lower() in text for k in self.all) and (
            not self.any or any(k.lower() in text for k in self.any))


class Call(BaseModel):
    """A tool call the scripted specialist makes."""

    tool: str
    args: dict[str, Any]


class Step(BaseModel):
    """A plan step with the calls that carry it out."""

    id: str
    agent: str
    goal: str
    instruction: str
    depends_on: list[str] = Field(default_factory=list)
    calls: list[Call] = Field(default_factory=list)
    report: str = ""
    figures: dict[str, Any] = Field(default_factory=dict)
    # Id prefixes of the records the step writes: a done report must cite one of each.
    produces: list[str] = Field(default_factory=list)


class Playbook(BaseModel):
    """One demo task: how to recognise it, its ledger, its steps and its final answer."""

    id: str
    team: str
    match: Match
    facts: dict[str, list[str]]
    steps: list[Step]
    final: str

    def step(self, step_id: str) -> Step | None:
        """The step with that id."""
        return next((s for s in self.steps if s.id == step_id), None)


class PlaybookError(ValueError):
    """A project playbook file that cannot be read or does not fit the format."""


def _load_file(path: Path) -> list[Playbook]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        items = raw if isinstance(raw, list) else [raw]
        return [Playbook.model_validate(p) for p in items]
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise PlaybookError(f"{path}: {str(e).splitlines()[0]}") from e


@lru_cache(maxsize=1)
def _bundled() -> tuple[Playbook, ...]:
    found: list[Playbook] = []
    for path in sorted(PLAYBOOK_DIR.glob("*.yaml")):
        found.extend(_load_file(path))
    return tuple(found)


_project: tuple[Playbook, ...] = ()


def load_playbooks(paths: list[Path]) -> tuple[Playbook, ...]:
    """Playbooks from files and folders (``*.yaml``/``*.yml``); ``PlaybookError`` names the file."""
    found: list[Playbook] = []
    for path in paths:
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise PlaybookError(f"{path}: no *.yaml playbook files in this folder")
        for f in files:
            found.extend(_load_file(f))
    return tuple(found)


def use_playbooks(paths: list[Path]) -> None:
    """Make a project's playbooks known to the scripted models (ahead of the bundled ones)."""
    global _project
    _project = load_playbooks(paths)


def playbooks() -> tuple[Playbook, ...]:
    """The project's playbooks, then the bundled ones."""
    return _project + _bundled()


def for_task(task: str) -> Playbook | None:
    """The playbook whose keywords the task matches."""
    return next((p for p in playbooks() if p.match.accepts(task)), None)


def match_step(steps: list[Step], instruction: str) -> tuple[Step, dict[str, str]] | None:
    """The step whose instruction (template) this is, with what it said for each reference."""
    for s in steps:
        told = told_by(s.instruction, instruction)
        if told is not None:
            return s, told
    return None


def for_instruction(instruction: str) -> tuple[Step, dict[str, str]] | None:
    """The playbook step this instruction fills in (whitespace-insensitive), and what it
    told for each of the template's references."""
    for p in playbooks():
        found = match_step(p.steps, instruction)
        if found is not None:
            return found
    return None
