"""Figure 14 runs both drivers against the loopback PostgreSQL and checks every transaction
of both phases landed before it prints anything."""

from __future__ import annotations

import pytest

from evals.bench import driver


async def test_both_drivers_store_every_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "TASKS", 3)
    monkeypatch.setattr(driver, "STEPS", 4)
    rows = await driver.driver_figures(reps=1)
    assert [r.label.split(",")[0] for r in rows] == ["CPU per transaction", "wall",
                                                      "loop lag p99"]
    for r in rows[:2]:
        assert r.value.median > 0 and r.baseline is not None and r.baseline.median > 0
    assert rows[0].detail == {"tasks": 3, "steps": 4, "pool": 10,
                              "statements_per_transaction": 3}
