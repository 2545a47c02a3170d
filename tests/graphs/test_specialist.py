"""The specialist loop: allow-list, argument validation, policy gate, tool output as data."""

from __future__ import annotations

import json
from typing import Any

from app.config.settings import Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.services import open_services
from graphs.ports import GateAction, GateDecision, GateRequest, ModelRequest, ToolCall

LOOKUP = ("Look up customer C-1001, order O-5002 (amount, prior refunds) and C-1001's "
          "open tickets.")
REFUND_TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def first_call(tool: str, args: dict[str, Any]) -> Any:
    """Behaviour: the researcher's very first model call makes this tool call instead."""

    fired: list[bool] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "specialist.researcher" and not fired:
            fired.append(True)
            return ProviderReply(content=None, tool_calls=[
                ToolCall(id="call_forbidden", name=tool, arguments=json.dumps(args))])
        return None

    return behaviour


async def test_specialist_allow_list_violation_executes_nothing(settings: Settings,
                                                                sandbox_rows: Any) -> None:
    behaviour = first_call("issue_refund", {"order_id": "O-5002", "amount_usd": 500,
                                            "reason": "researcher overreach"})
    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)
        ledger = s.store.tool_get(f"{result.thread_id}:call_forbidden")

    refused = [e["data"] for e in events if e["type"] == "tool_result"
               and e["data"]["tool_call_id"] == "call_forbidden"]
    assert refused[0]["executed"] is False
    assert "not available to researcher" in refused[0]["error"]
    assert ledger is None  # never reached the executor
    # Only the billing agent's legitimate refund exists, for the order amount.
    assert sandbox_rows("SELECT amount_usd FROM refunds") == [{"amount_usd": 189.0}]
    assert not any(e["type"] == "tool_called" and e["data"]["tool_call_id"] == "call_forbidden"
                   for e in events)


async def test_specialist_invalid_arguments_are_returned_to_the_model(settings: Settings) -> None:
    seen: list[str] = []
    bad_call = first_call("lookup_order", {"order_id": "5002"})

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "specialist.researcher":
            tool_msgs = [m for m in req.messages if m["role"] == "tool"]
            if tool_msgs and not seen:
                seen.append(str(tool_msgs[-1]["content"]))
        return bad_call(req)

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")

    assert result.status == "success"
    assert seen[0].startswith('<data source="tool:lookup_order">')
    assert "invalid arguments: order_id" in seen[0]


async def test_specialist_tool_output_reaches_the_model_as_labelled_data(
        settings: Settings) -> None:
    contents: list[str] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "specialist.billing":
            contents.extend(str(m["content"]) for m in req.messages if m["role"] == "tool")
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        await s.runner.start(REFUND_TASK, "support")

    assert contents
    refund = contents[-1]
    assert refund.startswith('<data source="tool:issue_refund">') and refund.endswith("</data>")
    assert json.loads(refund.split("\n", 1)[1].rsplit("\n", 1)[0])["amount_usd"] == 189.0


class RefundNeedsApproval:
    """Test gate: every refund waits for a human."""

    def check(self, request: GateRequest) -> GateDecision:
        if request.tool == "issue_refund":
            return GateDecision(GateAction.REQUIRE_APPROVAL, reason="refunds need approval",
                                rule="test-refunds", approver_group="billing-leads")
        return GateDecision(GateAction.ALLOW)


async def test_specialist_gate_pauses_before_the_write_and_resumes_on_approval(
        settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(settings, gate=RefundNeedsApproval()) as s:
        paused = await s.runner.start(REFUND_TASK, "support")
        assert paused.status == "interrupted"
        assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 0}]
        (pending,) = paused.interrupts
        value = pending.value
        assert value["action_request"] == {"action": "issue_refund", "args": {
            "order_id": "O-5002", "amount_usd": 189.0, "reason": "Arrived broken (ticket T-9001)"}}
        assert value["policy_rule"] == "test-refunds" and value["risk"] == "high"
        assert len(value["args_sha256"]) == 64

        done = await s.runner.resume(paused.thread_id, {pending.id: [{"type": "accept"}]})

    assert done.status == "success"
    assert sandbox_rows("SELECT amount_usd FROM refunds") == [{"amount_usd": 189.0}]


async def test_specialist_rejection_reaches_the_agent_and_nothing_is_written(
        settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(settings, gate=RefundNeedsApproval()) as s:
        paused = await s.runner.start(REFUND_TASK, "support")
        (pending,) = paused.interrupts
        done = await s.runner.resume(paused.thread_id, {pending.id: {
            "decision": "reject", "message": "refund needs a photo first"}})
        events = s.store.events(done.run_id)

    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 0}]
    refused = [e["data"] for e in events if e["type"] == "tool_result"
               and e["data"]["tool"] == "issue_refund"]
    assert "refund needs a photo first" in refused[-1]["error"]
    # The refund was not made: the run ends with a status a client tells from success.
    assert done.status == "error" and done.stop_reason != "satisfied"


async def test_specialist_edit_within_the_rule_runs_with_the_edited_args(
        settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(settings, gate=RefundNeedsApproval()) as s:
        paused = await s.runner.start(REFUND_TASK, "support")
        (pending,) = paused.interrupts
        edited = {"decisions": [{"type": "edit", "edited_action": {"name": "issue_refund", "args": {
            "order_id": "O-5002", "amount_usd": 150.0, "reason": "partial, approved"}}}]}
        # The edited call is a new gate pass; the same rule decides it, and the editor
        # approved exactly these arguments, so it runs.
        done = await s.runner.resume(paused.thread_id, {pending.id: edited})

    assert done.status == "success"
    assert sandbox_rows("SELECT amount_usd, reason FROM refunds") == [
        {"amount_usd": 150.0, "reason": "partial, approved"}]


async def test_specialist_edit_above_the_approvers_limit_asks_again(
        policy_settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(policy_settings) as s:
        paused = await s.runner.start(REFUND_TASK, "support")
        (pending,) = paused.interrupts
        assert pending.value["policy_rule"] == "refunds-over-50"
        again = await s.runner.resume(paused.thread_id, {pending.id: {
            "decision": "edit", "args": {"order_id": "O-5002", "amount_usd": 600.0,
                                         "reason": "goodwill"}}})
        assert again.status == "interrupted"
        (second,) = again.interrupts
        assert second.value["policy_rule"] == "refunds-over-500"
        assert second.value["approver_group"] == "finance-leads"
        assert second.value["action_request"]["args"]["amount_usd"] == 600.0
        assert second.value["approval_id"] != pending.value["approval_id"]

    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 0}]
