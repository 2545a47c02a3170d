"""Plans are checked before use: repaired where the reading is obvious, else sent back."""

from __future__ import annotations

from typing import Any

import pytest

from graphs.plan_check import check_plan, normalise_id

AGENTS = ["researcher", "billing", "communications", "ticketing"]


def ledger(*steps: dict[str, Any]) -> Any:
    return {"facts": {"given": [], "to_look_up": [], "to_derive": [], "guesses": []},
            "plan": [{"depends_on": [], **s} for s in steps]}


@pytest.mark.parametrize(("raw", "expected"), [
    ("S1", "S1"), ("s1", "S1"), ("1", "S1"), ("Step 1", "S1"), ("step S1", "S1"),
    ("S-1", "S1"), ("S01", "S1"), ("S1: look up the order", "S1"), ("after S2 is done", "S2"),
    (2, "S2"), ("order O-5003's shipping status", None), ("", None), ("S9", None),
    ("X1", None), (None, None),
])
def test_plan_check_normalises_step_ids(raw: Any, expected: str | None) -> None:
    assert normalise_id(raw, ["S1", "S2", "S3"]) == expected


def test_plan_check_drops_a_dependency_phrase_that_names_no_step() -> None:
    checked = check_plan(ledger(
        {"id": "S1", "agent": "researcher", "goal": "Find the shipping status",
         "depends_on": ["order O-5003's shipping status"]}), AGENTS)
    assert not checked.errors
    assert checked.ledger["plan"][0]["depends_on"] == []
    assert checked.changes == ["step S1: dependency \"order O-5003's shipping status\" "
                               "dropped (names no step)"]
    assert checked.ledger["changes"] == checked.changes  # the plan view says it too


def test_plan_check_repairs_what_has_one_reading() -> None:
    checked = check_plan(ledger(
        {"id": "S1", "agent": "Researcher", "goal": "look up"},
        {"id": "S1", "agent": "researcher", "goal": "look up"},  # a plain repeat
        {"id": "S1", "agent": "billing", "goal": "refund", "depends_on": ["step 1", "S2"]},
        {"id": "", "agent": "communications", "goal": "email", "depends_on": ["S3"]},
    ), AGENTS)
    assert not checked.errors
    plan = checked.ledger["plan"]
    assert [(s["id"], s["agent"]) for s in plan] == [
        ("S1", "researcher"), ("S2", "billing"), ("S3", "communications")]
    assert plan[1]["depends_on"] == ["S1"]  # "step 1" read as S1; its own new id dropped
    assert plan[2]["depends_on"] == []  # S3 was its own id once renumbered
    assert any("read as 'researcher'" in c for c in checked.changes)
    assert any("renumbered S2" in c for c in checked.changes)


def test_plan_check_sends_back_what_it_cannot_repair() -> None:
    checked = check_plan(ledger(
        {"id": "S1", "agent": "lawyer", "goal": "sue"},
        {"id": "S2", "agent": "billing", "goal": "  "},
        {"id": "S3", "agent": "researcher", "goal": "a", "depends_on": ["S4"]},
        {"id": "S4", "agent": "ticketing", "goal": "b", "depends_on": ["S3"]},
    ), AGENTS)
    assert any("unknown agent 'lawyer'" in e for e in checked.errors)
    assert any("S2 has an empty goal" in e for e in checked.errors)
    assert any("cycle" in e and "S3" in e and "S4" in e for e in checked.errors)


def test_plan_check_forced_repair_drops_and_breaks_cycles() -> None:
    checked = check_plan(ledger(
        {"id": "S1", "agent": "lawyer", "goal": "sue"},
        {"id": "S3", "agent": "researcher", "goal": "a", "depends_on": ["S4"]},
        {"id": "S4", "agent": "ticketing", "goal": "b", "depends_on": ["S3", "S1"]},
    ), AGENTS, force=True)
    assert not checked.errors
    plan = checked.ledger["plan"]
    assert [s["id"] for s in plan] == ["S3", "S4"]
    assert plan[0]["depends_on"] == [] and plan[1]["depends_on"] == ["S3"]
    assert any("dropped: unknown agent 'lawyer'" in c for c in checked.changes)
    assert any("closed a cycle" in c for c in checked.changes)
