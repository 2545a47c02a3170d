"""Controls that keep the suite honest: gold replays score 1, mutated replays score 0.

Every scenario has its mutations: an extra write; for each write, the write dropped and the
write with a wrong argument; for each figure of the final world the scenario checks, an
answer and each written record that state another figure instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.llm.references import render
from evals.metrics import score
from evals.scenario import Call, Figure, Scenario, load_suite
from evals.world import _match, gold_shape, prepare, replay, snapshot, writes

SCENARIOS = load_suite()
EXTRA_WRITE = {
    "support": Call(tool="issue_refund", args={"order_id": "O-5003", "amount_usd": 10.0,
                                                "reason": "an extra refund"}),
    "incident": Call(tool="restart_service", args={"service": "inventory-api"}),
}


# The free-text argument that writes each record table's text.
RECORD_TEXT = {"outbox": ("send_email", "body"), "ticket_updates": ("update_ticket", "note"),
               "incident_updates": ("post_incident_update", "message")}


def reference_answer(s: Scenario) -> str:
    return s.reference.answer or " ".join(s.expect.answer_mentions)


def replayed(s: Scenario, actions: list[Call], tmp: Path,
             gold: dict[str, tuple[int, int, int]] | None = None,
             answer: str | None = None) -> dict[str, Any]:
    db = tmp / "replay.db"
    prepare(db, s.fixture)
    before = snapshot(db)
    replay(db, actions, key="replay")
    answer = reference_answer(s) if answer is None else answer
    return score(s, {"status": s.expect.status, "stop_reason": s.expect.stop_reason[0],
                     "final_answer": answer, "before": before, "after": snapshot(db),
                     "asked": s.expect.approvals,
                     "events": [{"type": "tool_called", "data": {"tool": a.tool, "args": a.args}}
                                for a in actions]}, gold or gold_shape(s, tmp))


def wrong(action: Call) -> Call:
    """The same call with one argument that matters changed."""
    args = dict(action.args)
    for key in ("amount_usd", "replicas"):
        if key in args:
            args[key] = float(args[key]) + 1 if key == "amount_usd" else int(args[key]) + 1
            return Call(tool=action.tool, args=args)
    swaps = {"C-1001": "C-1002", "C-1002": "C-1003", "C-1003": "C-1001", "T-9001": "T-9002",
             "T-9002": "T-9003", "T-9003": "T-9001", "O-5001": "O-5003", "O-5002": "O-5003",
             "O-5004": "O-5003", "checkout-api": "search-api", "search-api": "checkout-api",
             "payments-worker": "checkout-api", "inventory-api": "checkout-api",
             "mitigated": "resolved", "resolved": "mitigated"}
    for key in ("status", "customer_id", "ticket_id", "order_id", "service"):
        if args.get(key) in swaps:
            args[key] = swaps[args[key]]
            return Call(tool=action.tool, args=args)
    raise AssertionError(f"no argument of {action.tool} to mutate")


def gold_figure(s: Scenario, f: Figure, tmp: Path) -> str:
    """The figure as the gold replay leaves it in the world."""
    db = tmp / "figure.db"
    prepare(db, s.fixture)
    replay(db, s.reference.actions, key="replay")
    rows = [r for _, r in sorted(snapshot(db)[f.table].items()) if _match(r, f.where)]
    return render(rows[0][f.column], f.format)


def other(value: str, fmt: str) -> str:
    """A figure that is not ``value``: the amount plus one, the count plus one, other text."""
    if fmt == "money":
        return f"{float(value) + 1:.2f}"
    if fmt == "int":
        return str(int(value) + 1)
    return "unknown"


def misstated(text: str, value: str, fmt: str) -> str:
    assert value.lower() in text.lower(), f"{value!r} is not stated in {text!r}"
    return text.replace(value, other(value, fmt))


def inconsistent(s: Scenario, tmp: Path) -> dict[str, tuple[list[Call], str]]:
    """Mutants (actions, answer) that state another figure than the final world's."""
    out: dict[str, tuple[list[Call], str]] = {}
    actions, answer = s.reference.actions, reference_answer(s)
    for f in s.expect.consistent:
        value = gold_figure(s, f, tmp)
        for place in f.mentioned_in:
            if place == "answer":
                out[f"answer misstates {f.table}.{f.column}"] = (
                    actions, misstated(answer, value, f.format))
                continue
            tool, field = RECORD_TEXT[place.split(".")[0]]
            i = next(i for i, a in enumerate(actions) if a.tool == tool)
            args = {**actions[i].args, field: misstated(actions[i].args[field], value,
                                                        f.format)}
            out[f"{place} misstates {f.table}.{f.column}"] = (
                [*actions[:i], Call(tool=tool, args=args), *actions[i + 1:]], answer)
    return out


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_controls_gold_replay_scores_one(s: Scenario, tmp_path: Path) -> None:
    record = replayed(s, s.reference.actions, tmp_path)

    assert record["task_success"], record["problems"]
    assert record["trajectory_match"]


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_controls_mutated_replays_score_zero(s: Scenario, tmp_path: Path) -> None:
    actions = s.reference.actions
    mutants: dict[str, list[Call]] = {"extra write": [*actions, EXTRA_WRITE[s.team]]}
    for i in writes(s):
        mutants[f"dropped {actions[i].tool}"] = actions[:i] + actions[i + 1:]
        mutants[f"wrong argument to {actions[i].tool}"] = [
            *actions[:i], wrong(actions[i]), *actions[i + 1:]]

    gold = gold_shape(s, tmp_path)
    for name, mutant in mutants.items():
        record = replayed(s, mutant, tmp_path, gold)
        assert not record["task_success"], f"{name} still scored 1"
    for name, (acts, answer) in inconsistent(s, tmp_path).items():
        record = replayed(s, acts, tmp_path, gold, answer)
        assert not record["task_success"], f"{name} still scored 1"
        assert any("does not state" in p for p in record["problems"]), record["problems"]


WRITING = [s for s in SCENARIOS if writes(s)]


@pytest.mark.parametrize("s", WRITING, ids=[s.id for s in WRITING])
def test_every_scenario_with_a_write_has_each_control_class(s: Scenario, tmp_path: Path) -> None:
    # Dropped write and wrong argument come from the writes; inconsistent answer and
    # inconsistent record from the world figures the scenario checks.
    assert s.expect.consistent, "no figure of the final world is checked"
    assert any("answer" in f.mentioned_in for f in s.expect.consistent)
    for i in writes(s):
        wrong(s.reference.actions[i])  # raises when no argument can be mutated
    records = {p.split(".")[0] for f in s.expect.consistent for p in f.mentioned_in}
    written = {RECORD_TEXT_TABLE[a.tool] for i in writes(s)
               if (a := s.reference.actions[i]).tool in RECORD_TEXT_TABLE}
    assert written <= records, f"written records {written - records} are not checked"
    assert inconsistent(s, tmp_path)


RECORD_TEXT_TABLE = {tool: table for table, (tool, _) in RECORD_TEXT.items()}
