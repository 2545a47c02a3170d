"""The raw-LangGraph baseline: Foreman's superstep shape with nothing in the nodes.

plan → (progress → delegate via ``Send``, which invokes a subgraph)* → verify → final, on the
same checkpointer and durability as Foreman, so the difference is what Foreman's nodes do:
prompts, routing, the journal, events, memory. The subgraph is one node, or with
``tool_step`` the three supersteps of a specialist step that makes one tool call (think →
tool → think, the shape of LangGraph's prebuilt ReAct agent for such a step).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Send


class LoopState(TypedDict, total=False):
    """A round counter and the step results, like ``ManagerState`` without the ledger."""

    task: str
    rounds: int
    round: int
    results: Annotated[list[dict[str, Any]], operator.add]
    answer: str


class StepState(TypedDict, total=False):
    """The subgraph's state."""

    round: int
    summary: str
    seen: str


def _think(state: StepState) -> Command[str]:
    if "seen" not in state:
        return Command(goto="tool", update={"summary": ""})
    return Command(goto=END, update={"summary": f"DONE: area {state['round']} ({state['seen']})"})


def _step_graph(tool_step: bool) -> CompiledStateGraph[Any, Any, Any, Any]:
    step: StateGraph[StepState, Any, Any, Any] = StateGraph(StepState)
    if tool_step:
        step.add_node("think", _think, destinations=("tool", END))
        step.add_node("tool", lambda s: {"seen": f"record {s['round']}"})
        step.add_edge("tool", "think")
    else:
        step.add_node("think", lambda s: {"summary": f"DONE: area {s['round']}"})
        step.add_edge("think", END)
    step.add_edge(START, "think")
    return step.compile()


def build_baseline(
    saver: BaseCheckpointSaver[Any] | None, *, tool_step: bool = False,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled baseline loop; run it with ``{"task": ..., "rounds": n}``."""
    specialist = _step_graph(tool_step)

    def plan(state: LoopState) -> dict[str, Any]:
        return {"round": 0}

    def progress(state: LoopState) -> Command[str]:
        rnd = state.get("round", 0) + 1
        if rnd > state["rounds"]:
            return Command(goto="verify", update={"round": rnd})
        return Command(goto=[Send("delegate", {"round": rnd})], update={"round": rnd})

    async def delegate(payload: dict[str, Any]) -> dict[str, Any]:
        out = await specialist.ainvoke({"round": payload["round"]}, get_config())
        return {"results": [{"round": payload["round"], "summary": out["summary"]}]}

    graph: StateGraph[LoopState, Any, Any, Any] = StateGraph(LoopState)
    graph.add_node("plan", plan)
    graph.add_node("progress", progress, destinations=("verify", "delegate"))
    delegate_node: Any = delegate  # a Send payload node does not fit add_node's typing
    graph.add_node("delegate", delegate_node)
    graph.add_node("verify", lambda s: {})
    graph.add_node("final", lambda s: {"answer": f"{len(s.get('results', []))} steps"})
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "progress")
    graph.add_edge("delegate", "progress")
    graph.add_edge("verify", "final")
    graph.add_edge("final", END)
    return graph.compile(checkpointer=saver)
