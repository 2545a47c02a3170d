"""Checkpointer size and pruning of finished threads."""

from __future__ import annotations

from typing import Any

from app.checkpoint import thread_size
from app.services import open_services
from app.settings import Settings

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


async def test_prune_finished_drops_specialist_checkpoints_and_keeps_the_root_history(
        settings: Settings) -> None:
    kept = settings.model_copy(update={"prune_checkpoints": False})
    async with open_services(kept) as s:
        await s.runner.start(TASK, "support", thread_id="t-full")
        full = await thread_size(s.runner.saver, "t-full")
    async with open_services(settings) as services:
        result = await services.runner.start(TASK, "support", thread_id="t-prune")
        size = await thread_size(services.runner.saver, "t-prune")
        history = [h async for h in services.runner.graph("support").aget_state_history(
            {"configurable": {"thread_id": "t-prune"}})]
        snapshot = await services.runner.graph("support").aget_state(
            {"configurable": {"thread_id": "t-prune"}})

    assert result.status == "success"
    assert full is not None and size is not None
    assert 1 < size.checkpoints < full.checkpoints
    assert size.writes < full.writes
    assert len(history) == size.checkpoints  # every root checkpoint is still there
    assert snapshot.values["final_answer"] == result.final_answer
    assert not snapshot.next


async def test_prune_finished_lets_the_thread_run_again(services: Any) -> None:
    await services.runner.start(TASK, "support", thread_id="t-again")
    second = await services.runner.start(TASK, "support", thread_id="t-again")

    assert second.status == "success"
    assert "189" in (second.final_answer or "")


async def test_prune_checkpoints_off_keeps_the_history(settings: Settings) -> None:
    kept = settings.model_copy(update={"prune_checkpoints": False})
    async with open_services(kept) as s:
        await s.runner.start(TASK, "support", thread_id="t-keep")
        size = await thread_size(s.runner.saver, "t-keep")

    assert size is not None and size.checkpoints > 10 and size.bytes > 0
