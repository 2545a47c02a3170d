"""The sandbox as evals see it: fixtures, snapshots, diffs, state checks and the gold replay."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.llm.references import render
from evals.scenario import Call, Figure, Fixture, Scenario, StateCheck
from tools import sandbox
from tools.catalog import get_tool
from tools.demo import context as demo_context
from tools.spec import ToolError

Snapshot = dict[str, dict[str, dict[str, Any]]]
"""table → primary key → row."""


def _key(table: str) -> str:
    return "name" if table == "services" else "id"


def prepare(db: Path, fixture: Fixture) -> None:
    """A freshly seeded sandbox with the scenario's fixture applied."""
    sandbox.reset(db)
    conn = sandbox.connect(db)
    try:
        for table, rows in fixture.rows.items():
            if table not in sandbox.TABLES:
                raise ValueError(f"fixture names unknown table {table!r}")
            for row in rows:
                cols = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                conn.execute(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608
                             list(row.values()))
        for stmt in fixture.sql:
            conn.execute(stmt)
        conn.commit()
    finally:
        conn.close()


def snapshot(db: Path) -> Snapshot:
    """Every row of every sandbox table."""
    conn = sandbox.connect(db)
    try:
        return {t: {str(r[_key(t)]): dict(r) for r in conn.execute(f"SELECT * FROM {t}")}  # noqa: S608
                for t in sandbox.TABLES}
    finally:
        conn.close()


def diff(before: Snapshot, after: Snapshot) -> dict[str, dict[str, Any]]:
    """Per changed table: rows added, removed and changed (with the changed columns)."""
    out: dict[str, dict[str, Any]] = {}
    for table in sandbox.TABLES:
        old, new = before.get(table, {}), after.get(table, {})
        added = [new[k] for k in new if k not in old]
        removed = [old[k] for k in old if k not in new]
        changed = [{"key": k, **{c: [old[k][c], v] for c, v in new[k].items() if old[k][c] != v}}
                   for k in new if k in old and new[k] != old[k]]
        if added or removed or changed:
            out[table] = {"added": added, "removed": removed, "changed": changed}
    return out


def shape(d: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """How many rows each table gained, lost and changed."""
    return {t: (len(v["added"]), len(v["removed"]), len(v["changed"])) for t, v in d.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) < 1e-6
    return bool(a == b)


def _match(row: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(c in row and _same(row[c], v) for c, v in want.items())


def check(c: StateCheck, before: Snapshot, after: Snapshot) -> str | None:
    """None when the check holds, else what is wrong."""
    rows = list(after.get(c.table, {}).values())
    if c.present is not None and not any(_match(r, c.present) for r in rows):
        return f"{c.table}: no row with {c.present}"
    if c.absent is not None and any(_match(r, c.absent) for r in rows):
        return f"{c.table}: unexpected row with {c.absent}"
    if c.changed is not None:
        old = before.get(c.table, {})
        hits = [r for r in rows if _match(r, c.where or {}) and _match(r, c.changed)
                and (str(r[_key(c.table)]) not in old
                     or old[str(r[_key(c.table)])] != r)]
        if not hits:
            return f"{c.table}: no row {c.where or {}} changed to {c.changed}"
    if c.count is not None:
        n = sum(1 for r in rows if _match(r, c.where or {}))
        if n != c.count:
            return f"{c.table}: {n} rows{' ' + str(c.where) if c.where else ''}, want {c.count}"
    return None


def written(table: str, before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """Rows of ``table`` the run added or changed."""
    old = before.get(table, {})
    return [r for k, r in sorted(after.get(table, {}).items()) if old.get(k) != r]


def consistency(figures: list[Figure], before: Snapshot, after: Snapshot,
                answer: str) -> list[str]:
    """What the answer and the written records fail to state of the final world's figures."""
    problems: list[str] = []
    for f in figures:
        rows = [r for _, r in sorted(after.get(f.table, {}).items()) if _match(r, f.where)]
        values = sorted({render(r.get(f.column), f.format) for r in rows if f.column in r})
        if len(values) != 1:
            problems.append(f"world: {f.table} {f.where or ''} has {len(values)} values of "
                            f"{f.column} ({', '.join(values) or 'no row'}), want one to check")
            continue
        value = values[0]
        for place in f.mentioned_in:
            if place == "answer":
                if value.lower() not in answer.lower():
                    problems.append(f"answer does not state {f.table}.{f.column} = {value} "
                                    "(the final world's figure)")
                continue
            table, _, column = place.partition(".")
            rows = written(table, before, after)
            if not rows:
                problems.append(f"no {table} row was written to state {value}")
            problems += [f"{table}.{column} of {r.get(_key(table))} does not state "
                         f"{f.table}.{f.column} = {value}" for r in rows
                         if value.lower() not in str(r.get(column, "")).lower()]
    return problems


def resolve(args: dict[str, Any], context: str) -> dict[str, Any]:
    """Fill ``{ref:PREFIX}`` placeholders from ids seen in earlier results."""
    def sub(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return re.sub(r"\{ref:([A-Z]+)\}", lambda m: (
            found.group(0) if (found := re.search(rf"\b{m.group(1)}-[0-9A-F]{{6,}}\b", context))
            else m.group(0)), value)
    return {k: sub(v) for k, v in args.items()}


def replay(db: Path, actions: list[Call], key: str = "gold") -> list[dict[str, Any]]:
    """Run tool calls straight against the sandbox (no models, no gate); their results."""
    results: list[dict[str, Any]] = []
    context = ""
    for i, action in enumerate(actions):
        if action.tool == "search_knowledge":
            results.append({"skipped": True})
            continue
        spec = get_tool(action.tool)
        ctx = demo_context(db, f"{key}:{i}")
        try:
            data = spec.run(ctx, spec.validate(resolve(action.args, context)))
        except (ToolError, ValidationError) as e:  # a failed call writes nothing
            data = {"error": str(e)}
        results.append(data)
        context += json.dumps(data, default=str) + "\n"
    return results


def gold_shape(scenario: Scenario, workdir: Path) -> dict[str, tuple[int, int, int]]:
    """The per-table change counts of the scenario's reference actions."""
    db = workdir / "gold.db"
    prepare(db, scenario.fixture)
    before = snapshot(db)
    replay(db, scenario.reference.actions)
    return shape(diff(before, snapshot(db)))


def writes(scenario: Scenario) -> list[int]:
    """Indexes of the reference actions that change the sandbox."""
    from tools.spec import SideEffect

    return [i for i, a in enumerate(scenario.reference.actions)
            if a.tool != "search_knowledge" and get_tool(a.tool).side_effect == SideEffect.WRITE]
