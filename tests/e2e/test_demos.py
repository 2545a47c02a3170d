"""Every bundled demo task, run offline through the real graph, policy, tools and sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config.settings import Settings
from app.services import Services, open_services
from tests.fakes import HashingEmbedder, MemoEmbedder

DEMOS = yaml.safe_load((Path(__file__).parents[2] / "evals" / "demos.yaml").read_text())


@pytest.mark.parametrize("demo", DEMOS, ids=[d["id"] for d in DEMOS])
async def test_demo_reaches_expected_sandbox_state(demo: dict[str, Any],
                                                   policy_settings: Settings,
                                                   real_embedder: MemoEmbedder,
                                                   sandbox_rows: Any) -> None:
    # Demos that search the knowledge base run with the real offline embedder.
    embedder = real_embedder if demo.get("knowledge") else HashingEmbedder()
    asked: list[str] = []
    async with open_services(policy_settings, embedder=embedder) as s:
        result = await s.runner.start(demo["task"], demo["team"])
        while result.status == "interrupted":
            asked.extend(p.value["action_request"]["action"] for p in result.interrupts)
            result = await s.runner.resume(result.thread_id, {
                p.id: {"decision": "approve"} for p in result.interrupts})

    assert asked == demo["approvals"]
    assert result.status == "success"
    assert result.stop_reason == "satisfied"
    for check in demo["expect"]:
        assert sandbox_rows(check["sql"]) == check["rows"], check["sql"]
    for fact in demo["answer_mentions"]:
        assert fact in (result.final_answer or ""), fact
    assert result.cost_usd > 0


async def test_demo_unknown_task_answers_honestly_and_changes_nothing(
        services: Services, sandbox_rows: Any) -> None:
    result = await services.runner.start("Translate our FAQ into French", "support")

    # Nothing was done, and the run says so: not a success, and an answer that claims nothing.
    assert result.status == "error" and result.stop_reason == "blocked"
    assert (result.final_answer or "").startswith("Nothing was done")
    assert "offline" in (result.final_answer or "").lower()
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 0}]
    assert sandbox_rows("SELECT COUNT(*) AS n FROM outbox") == [{"n": 0}]
