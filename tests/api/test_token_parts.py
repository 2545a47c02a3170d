"""The streamed answer adds up to the stored one: the line Foreman puts under a model's answer
goes out as one more delta of the answer's message."""

from __future__ import annotations

from app.api.chat import rest_of
from app.api.token_parts import TokenParts, unstreamed
from app.llm.stream import TokenDelta
from app.storage.store import RunRow

RUN = RunRow(id="r-1", thread_id="default/t-1", team="support", task="t", status="running",
             stop_reason=None, final_answer=None, error=None)
LINE = "\n\nChanges made by this run (from its tool record): none."


def _delta(text: str, attempt: int = 0, role: str = "manager.final") -> TokenDelta:
    return TokenDelta("r-1", "final", role, "m", attempt, text)


def test_the_rest_of_the_answer_streams_as_a_delta_of_the_same_message() -> None:
    parts = TokenParts(RUN, ["messages-tuple"])
    sent = [m for d in ("Order O-5003 ", "is in transit.\n") for _e, (m, _meta) in
            parts.parts(_delta(d))]
    [(event, (chunk, meta))] = list(parts.rest("Order O-5003 is in transit." + LINE))
    assert event == "messages" and meta["langgraph_node"] == "final"
    assert chunk["id"] == sent[0]["id"]  # one message, as the model's own deltas
    text = "".join(m["content"] for m in sent) + chunk["content"]
    assert text == "Order O-5003 is in transit." + LINE  # the newline sent is not sent twice


def test_nothing_more_streams_when_the_answer_does_not_go_on_from_the_stream() -> None:
    parts = TokenParts(RUN, ["messages"])
    list(parts.parts(_delta("A first reply that was cut")))
    list(parts.parts(_delta("Order O-5003 is in transit.", attempt=1)))
    assert list(parts.rest("Order O-5003 is in transit.")) == []  # nothing left to send
    assert list(parts.rest("An answer written without the model.")) == []
    assert list(TokenParts(RUN, ["messages"]).rest("No token streamed.")) == []
    assert unstreamed("abc" + LINE, "  abc ") == LINE
    assert unstreamed("other", "abc") is None


def test_chat_sends_the_rest_or_the_whole_answer() -> None:
    assert rest_of("Done." + LINE, "Done.") == LINE
    assert rest_of("Done.", "") == "Done."
    assert rest_of("Replaced.", "Done.") == "\n\nReplaced."
