"""Tool registry and the schemas the model sees."""

from __future__ import annotations

import pytest

from tools.catalog import ALL_TOOLS, get_tool, tool_names
from tools.spec import Risk, SideEffect

EXPECTED = {
    "lookup_customer": (SideEffect.READ, Risk.LOW),
    "lookup_order": (SideEffect.READ, Risk.LOW),
    "list_orders": (SideEffect.READ, Risk.LOW),
    "get_ticket": (SideEffect.READ, Risk.LOW),
    "find_tickets": (SideEffect.READ, Risk.LOW),
    "issue_refund": (SideEffect.WRITE, Risk.HIGH),
    "send_email": (SideEffect.WRITE, Risk.MEDIUM),
    "update_ticket": (SideEffect.WRITE, Risk.LOW),
    "get_service_status": (SideEffect.READ, Risk.LOW),
    "list_services": (SideEffect.READ, Risk.LOW),
    "get_runbook": (SideEffect.READ, Risk.LOW),
    "open_incident": (SideEffect.WRITE, Risk.MEDIUM),
    "post_incident_update": (SideEffect.WRITE, Risk.MEDIUM),
    "restart_service": (SideEffect.WRITE, Risk.HIGH),
    "scale_service": (SideEffect.WRITE, Risk.HIGH),
    "rollback_service": (SideEffect.WRITE, Risk.HIGH),
    "search_knowledge": (SideEffect.READ, Risk.LOW),
}


def test_catalog_side_effects_and_risks() -> None:
    assert {n: (s.side_effect, s.risk) for n, s in ALL_TOOLS.items()} == EXPECTED


def test_catalog_tool_names_match_registry() -> None:
    assert tool_names() == list(ALL_TOOLS)
    assert all(get_tool(n).name == n for n in tool_names())


def test_catalog_get_tool_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError, match="no_such_tool"):
        get_tool("no_such_tool")


def test_catalog_openai_schema_lists_required_fields() -> None:
    schema = get_tool("issue_refund").openai_schema()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "issue_refund" and fn["description"]
    params = fn["parameters"]
    assert params["type"] == "object"
    assert set(params["required"]) == {"order_id", "amount_usd", "reason"}
    assert params["properties"]["order_id"]["pattern"] == r"^O-\d{4}$"
    assert params["properties"]["amount_usd"]["exclusiveMinimum"] == 0


def test_catalog_every_schema_is_an_object_with_described_fields() -> None:
    for spec in ALL_TOOLS.values():
        params = spec.openai_schema()["function"]["parameters"]
        assert params["type"] == "object", spec.name
        for field, prop in params.get("properties", {}).items():
            assert prop.get("description"), f"{spec.name}.{field} lacks a description"
