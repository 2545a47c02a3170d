"""The search_knowledge tool: cited passages, tenant from the context, no store → tool error."""

from __future__ import annotations

import pytest

from tools.catalog import get_tool
from tools.knowledge import Passage, SearchArgs
from tools.spec import Risk, SideEffect, ToolContext, ToolError


class _Store:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, int]] = []
        self.by_tenant = {
            "acme": [Passage(text="Refunds reach the card within 5 business days.",
                             source="support/refund-policy.md", title="Refund policy",
                             collection="support", line_start=32, line_end=36, score=0.91234)],
        }

    def search(self, query: str, *, tenant: str, collection: str | None = None,
               k: int = 5) -> list[Passage]:
        self.calls.append((query, tenant, collection, k))
        return self.by_tenant.get(tenant, [])[:k]


def _ctx(store: _Store | None, tenant: str) -> ToolContext:
    return ToolContext(idempotency_key="k", tenant=tenant, knowledge=store)


def test_search_knowledge_returns_citations_and_scores() -> None:
    spec = get_tool("search_knowledge")
    store = _Store()

    out = spec.run(_ctx(store, "acme"), spec.validate({"query": "refund timing",
                                                       "collection": "support"}))

    [p] = out["passages"]
    assert p["citation"] == "support/refund-policy.md:L32-L36"
    assert p["span"] == "L32-L36"
    assert p["source"] == "support/refund-policy.md"
    assert p["score"] == 0.9123
    assert store.calls == [("refund timing", "acme", "support", 4)]


def test_search_knowledge_searches_only_the_context_tenant() -> None:
    spec = get_tool("search_knowledge")
    store = _Store()

    out = spec.run(_ctx(store, "globex"), spec.validate({"query": "refund timing"}))

    assert out["passages"] == []
    assert store.calls[0][1] == "globex"
    assert "tenant" not in SearchArgs.model_json_schema()["properties"]


def test_search_knowledge_is_read_only_low_risk_and_untrusted() -> None:
    spec = get_tool("search_knowledge")

    assert (spec.side_effect, spec.risk, spec.untrusted_output) == (
        SideEffect.READ, Risk.LOW, True)


def test_search_knowledge_without_store_is_a_tool_error() -> None:
    spec = get_tool("search_knowledge")

    with pytest.raises(ToolError, match="no knowledge base"):
        spec.run(_ctx(None, "acme"), spec.validate({"query": "refund timing"}))
