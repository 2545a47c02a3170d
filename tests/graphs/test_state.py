"""The state's delta-channel reducers: deterministic and the same however writes are batched."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from graphs.state import append_writes, last_write, new_messages

WRITES: list[Any] = [[{"n": 1}], [{"n": 2}, {"n": 3}], [], [{"n": 4}]]


def test_append_writes_is_the_same_however_the_writes_are_batched() -> None:
    start = [{"n": 0}]
    whole = append_writes(start, WRITES)
    for cut in range(len(WRITES) + 1):
        folded = append_writes(append_writes(start, WRITES[:cut]), WRITES[cut:])
        assert folded == whole
    assert whole == [{"n": i} for i in range(5)]
    assert start == [{"n": 0}]  # the list a node may still hold is left alone


def test_last_write_is_the_same_however_the_writes_are_batched() -> None:
    writes = [{"v": 1}, {"v": 2}, {"v": 3}]
    for cut in range(len(writes) + 1):
        assert last_write(last_write({"v": 0}, writes[:cut]), writes[cut:]) == {"v": 3}
    assert last_write({"v": 0}, []) == {"v": 0}


class Chat(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], DeltaChannel(append_writes)]


async def test_message_writes_stay_plain_dicts_live_and_when_read_back() -> None:
    def opening(state: Chat) -> dict[str, Any]:
        return {"messages": new_messages({"role": "system", "content": "s"},
                                         {"role": "user", "content": "u"})}

    def answer(state: Chat) -> dict[str, Any]:
        assert all(isinstance(m, dict) for m in state["messages"])
        return {"messages": new_messages({"role": "assistant", "content": "a"})}

    builder: StateGraph[Chat, Any, Any, Any] = StateGraph(Chat)
    builder.add_node("opening", opening)
    builder.add_node("answer", answer)
    builder.add_edge(START, "opening")
    builder.add_edge("opening", "answer")
    builder.add_edge("answer", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}

    out = await graph.ainvoke({"messages": []}, config)
    stored = (await graph.aget_state(config)).values["messages"]

    expected = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a"}]
    assert out["messages"] == expected
    assert stored == expected
