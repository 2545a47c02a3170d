"""The run's model-call journal and cost ledger: a completed call is never paid for twice."""

from __future__ import annotations

from app.llm.provider import tool_calls_from_json, tool_calls_to_json
from app.runs import crashpoints
from app.storage.store import LedgerRow, Store
from graphs.ports import ModelResponse, Usage


class Journal:
    """Stored responses and ledger rows of one run's model calls, keyed by the call key."""

    def __init__(self, store: Store, run_id: str, thread_id: str, tenant: str = "default") -> None:
        self.store = store
        self.run_id = run_id
        self.thread_id = thread_id
        self.tenant = tenant
        self.replayed = 0

    def get(self, call_key: str) -> ModelResponse | None:
        """The stored response of a completed call (usage zero: it costs nothing now)."""
        data = self.store.journal_get(self.run_id, call_key)
        if data is None:
            return None
        self.replayed += 1
        return ModelResponse(
            content=data["content"],
            tool_calls=tool_calls_from_json(data),
            usage=Usage(),
            model=data["model"],
        )

    async def aget(self, call_key: str) -> ModelResponse | None:
        """:meth:`get` on the database's threads (the event loop does not wait on it)."""
        return await self.store.db.call(self.get, call_key)

    async def arecord(self, row: LedgerRow, response: ModelResponse | None) -> None:
        """:meth:`record` on the database's threads."""
        await self.store.db.call(self.record, row, response)

    def record(self, row: LedgerRow, response: ModelResponse | None) -> None:
        """Write one ledger row; with the response when the call answered."""
        stored = (
            None
            if response is None
            else {
                "content": response.content,
                "model": response.model,
                "tool_calls": tool_calls_to_json(response.tool_calls),
            }
        )
        self.store.ledger_put(row, stored)
        crashpoints.hit("model.journal")
