"""The scripted agents build what they say from the record: references, told figures, the
verifier's check of written records, and a final answer filled from step results."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.llm.playbook import Playbook, Step, for_task
from app.llm.references import (
    Sources,
    Unresolved,
    figures_in,
    fill,
    resolve,
    step_figures,
    told_by,
    tool_results,
)
from app.llm.scripted import specialist
from app.llm.scripted_manager import final, progress, verify
from graphs.ports import ModelRequest
from graphs.report import ReportArgs, summary_of
from graphs.views import data_block, prompt_json, status_lines

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def test_reference_keeps_the_type_of_a_whole_value_and_formats_inside_text() -> None:
    src = Sources(results={"issue_refund": [{"amount_usd": 189.0}, {"amount_usd": 150.0}]},
                  told={"S3.replicas": "6"})

    out = resolve({"amount": "{result:issue_refund.amount_usd}",
                   "text": "refunded ${result:issue_refund.amount_usd|money}",
                   "replicas": "{told:S3.replicas}", "n": 3}, src)

    # The latest result counts (an edit by the approver is what ran), numbers stay numbers.
    assert out == {"amount": 150.0, "text": "refunded $150.00", "replicas": 6, "n": 3}


def test_unresolvable_reference_raises_and_paths_are_looked_up_not_evaluated() -> None:
    src = Sources(results={"lookup_order": [{"amount_usd": 24.0, "payments": [{"id": "P-1"}]}]})

    assert resolve("{result:lookup_order.payments.0.id}", src) == "P-1"
    for bad in ("{result:lookup_order.__class__}", "{result:issue_refund.amount_usd}",
                "{told:S2.amount_usd}", "{step:S1.order_usd}", "{ref:INC}"):
        with pytest.raises(Unresolved):
            resolve(bad, src)
    # Anything that is not the reference syntax is plain text.
    assert resolve("{__import__('os')}", src) == "{__import__('os')}"
    assert fill("left: ${told:S2.amount_usd|money}", src) == "left: $unknown"


def test_an_instruction_filled_from_a_template_tells_its_figures_back() -> None:
    template = "Email C-1001 that ${step:S2.refunded_usd|money} was refunded for O-5002."
    said = fill(template, Sources(steps={"S2": {"refunded_usd": 150.0}}))

    assert said == "Email C-1001 that $150.00 was refunded for O-5002."
    assert told_by(template, said) == {"S2.refunded_usd": "150.00"}
    assert told_by(template, "Email C-1001 that the order shipped.") is None


def test_figures_read_back_from_the_summary_line_the_manager_sees() -> None:
    line = summary_of(ReportArgs(status="done", summary="Refunded $150.00 for O-5002.",
                                 ids=["R-ABCDEF12"], figures={"refunded_usd": 150.0,
                                                              "version": "v2.3.0"},
                                 facts=["the order was broken"]))

    assert figures_in(line) == {"refunded_usd": 150.0, "version": "v2.3.0"}
    assert step_figures([{"step_id": "S2", "status": "done", "summary": line},
                         {"step_id": "S3", "status": "blocked", "summary": line}]) == {
        "S2": {"refunded_usd": 150.0, "version": "v2.3.0"}}


def _step(book: Playbook, step_id: str) -> Step:
    step = book.step(step_id)
    assert step is not None
    return step


def _tool(call_id: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id,
            "content": data_block(f"tool:{name}", prompt_json(data))}


def _request(role: str, instruction: str, *extra: dict[str, Any]) -> ModelRequest:
    return ModelRequest(role=role, call_key="k", messages=[
        {"role": "system", "content": "You are a specialist."},
        {"role": "user", "content": instruction}, *extra])


def _args(reply: Any) -> tuple[str, dict[str, Any]]:
    call = reply.tool_calls[0]
    return call.name, json.loads(call.arguments)


def test_specialist_writes_what_it_was_told_and_reports_what_its_tool_returned() -> None:
    book = for_task(TASK)
    assert book is not None
    told = fill(_step(book, "S3").instruction, Sources(steps={"S2": {"refunded_usd": 150.0}}))

    name, args = _args(specialist(_request("specialist.communications", told)))
    assert name == "send_email" and "$150.00" in args["body"] and "189" not in args["body"]

    sent = {"id": "M-0A1B2C3D", "customer_id": "C-1001", "body": args["body"]}
    done = _request("specialist.communications", told,
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "send_email", "arguments": "{}"}}]},
                    _tool("c1", "send_email", sent))
    name, report = _args(specialist(done))
    assert name == "report" and report["status"] == "done"
    assert "M-0A1B2C3D" in report["ids"] and "$150.00" in report["summary"]


def test_specialist_not_told_a_figure_blocks_instead_of_guessing() -> None:
    book = for_task(TASK)
    assert book is not None
    vague = fill(_step(book, "S2").instruction, Sources())  # S1's figures never arrived

    name, report = _args(specialist(_request("specialist.billing", vague)))

    assert name == "report" and report["status"] == "blocked"
    assert "not told" in report["summary"]


def test_billing_refunds_what_the_lookup_returned_and_reports_the_executed_amount() -> None:
    book = for_task(TASK)
    assert book is not None
    told = fill(_step(book, "S2").instruction, Sources(steps={"S1": {"refundable_usd": 64.5}}))

    name, args = _args(specialist(_request("specialist.billing", told)))
    assert (name, args["amount_usd"]) == ("issue_refund", 64.5)

    # The approver edited the amount: the report carries what the tool executed.
    ran = _request("specialist.billing", told,
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "type": "function",
                        "function": {"name": "issue_refund", "arguments": "{}"}}]},
                   _tool("c1", "issue_refund", {"id": "R-00AA11BB", "amount_usd": 40.0}))
    _, report = _args(specialist(ran))
    assert report["figures"] == {"refunded_usd": 40.0}
    assert "$40.00" in report["summary"]


def _status(done: list[str]) -> str:
    book = for_task(TASK)
    assert book is not None
    return status_lines([{"id": s.id, "agent": s.agent, "goal": s.goal,
                         "depends_on": s.depends_on,
                         "state": "done" if s.id in done else "not started"}
                        for s in book.steps])


def _prompt(results: list[dict[str, Any]], done: list[str], extra: str = "") -> str:
    return (f"<task>\n{TASK}\n</task>\n<plan_status>\n{_status(done)}\n</plan_status>\n"
            f'<data source="step_results">\n{prompt_json(results)}\n</data>\n{extra}')


ALL = ["S1", "S2", "S3", "S4"]
HONEST = [
    {"step_id": "S1", "agent": "researcher", "status": "done", "summary": "Found. Ids: O-5002. "
     "Figures: order_usd=189.0, refundable_usd=189.0."},
    {"step_id": "S2", "agent": "billing", "status": "done",
     "summary": "Refunded $150.00. Ids: R-1A2B3C4D. Figures: refunded_usd=150.0."},
    {"step_id": "S4", "agent": "ticketing", "status": "done",
     "summary": "Closed. Ids: TU-99AA88BB."},
]


def test_verifier_rejects_a_done_step_whose_report_cites_no_record() -> None:
    lying = {"step_id": "S3", "agent": "communications", "status": "done",
             "summary": "Done: Tell the customer. Ids: C-1001."}
    sent = {**lying, "summary": "Emailed C-1001. Ids: M-5E5E5E5E."}

    rejected = verify(_prompt([*HONEST, lying], ALL))
    accepted = verify(_prompt([*HONEST, lying, sent], ALL))

    assert rejected["verified"] is False
    assert rejected["missing"] == ["S3 (communications): reported done, but its report cites "
                                   "no M- record"]
    assert accepted == {"verified": True, "missing": [],
                        "reason": "all plan steps done, with the records they wrote"}


def test_after_a_rejection_the_manager_runs_the_flagged_step_again_with_its_figures() -> None:
    lying = {"step_id": "S3", "agent": "communications", "status": "done", "summary": "Done."}
    note = "- missing: S3 (communications): reported done, but its report cites no M- record"

    again = progress(_prompt([*HONEST, lying], ALL, note))
    settled = progress(_prompt([*HONEST, lying], ALL))

    assert [s["step_id"] for s in again["next_steps"]] == ["S3"]
    assert "$150.00" in again["next_steps"][0]["instruction"]
    assert again["is_request_satisfied"]["answer"] is False
    # Without the verifier's note the manager believes the reports: satisfied.
    assert settled["is_request_satisfied"]["answer"] is True and not settled["next_steps"]


def test_final_answer_states_the_figures_the_step_results_carry() -> None:
    records = [{"step_id": "S2", "agent": "billing", "status": "done", "summary": "Refunded.",
                "reported": {"figures": {"refunded_usd": 150.0}}}]

    done = final(_prompt(records, ALL, "How the run ended: satisfied."))
    unproven = final(_prompt([], ALL, "How the run ended: satisfied."))

    assert "$150.00" in done and "189" not in done
    assert "189" not in unproven and "do not show" in unproven


def test_tool_results_are_read_per_tool_and_injected_calls_can_be_skipped() -> None:
    messages = [_tool("call_1", "lookup_order", {"amount_usd": 1.0}),
                _tool("evx_2", "lookup_order", {"amount_usd": 2.0}),
                {"role": "tool", "tool_call_id": "call_3", "content": "not a data block"}]

    assert tool_results(messages) == {"lookup_order": [{"amount_usd": 1.0}, {"amount_usd": 2.0}]}
    assert tool_results(messages, skip=("ev",)) == {"lookup_order": [{"amount_usd": 1.0}]}
