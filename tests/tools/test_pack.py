"""The @tool decorator, packs and the registry."""

from __future__ import annotations

import asyncio
import types
from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError

from tools.pack import ToolPack, pack_from, tool
from tools.registry import DuplicateTool, ToolRegistry
from tools.schema_args import schema_args
from tools.spec import Risk, SideEffect, ToolContext


@tool(side_effect="write", risk="medium")
async def add_credit(ctx: ToolContext, customer_id: Annotated[str, Field(pattern=r"^C-\d+$")],
                     amount_usd: Annotated[float, Field(gt=0, le=500)],
                     reason: str = "goodwill") -> dict[str, Any]:
    """Give a customer a credit."""
    return {"customer": customer_id, "amount": amount_usd, "reason": reason,
            "key": ctx.idempotency_key, "tenant": ctx.tenant, "db": ctx.settings.get("db")}


@tool
def count_words(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


def test_pack_decorator_builds_spec_from_typed_async_function() -> None:
    schema = add_credit.openai_schema()["function"]
    assert (add_credit.side_effect, add_credit.risk) == (SideEffect.WRITE, Risk.MEDIUM)
    assert schema["description"] == "Give a customer a credit."
    params = schema["parameters"]
    assert set(params["required"]) == {"customer_id", "amount_usd"}
    assert params["properties"]["amount_usd"]["maximum"] == 500
    ctx = ToolContext(idempotency_key="t:1", tenant="acme", settings={"db": "x.db"})
    out = asyncio.run(add_credit.arun(ctx, add_credit.validate(
        {"customer_id": "C-1", "amount_usd": 20})))
    assert out == {"customer": "C-1", "amount": 20.0, "reason": "goodwill", "key": "t:1",
                   "tenant": "acme", "db": "x.db"}


def test_pack_decorator_rejects_bad_args_and_extra_fields() -> None:
    with pytest.raises(ValidationError):
        add_credit.validate({"customer_id": "C-1", "amount_usd": 900})
    with pytest.raises(ValidationError):
        add_credit.validate({"customer_id": "C-1", "amount_usd": 9, "admin": True})


def test_pack_decorator_sync_function_without_context_wraps_plain_result() -> None:
    out = count_words.run(ToolContext(idempotency_key="k"), count_words.validate({"text": "a b c"}))
    assert out == {"result": 3}
    assert count_words.side_effect == SideEffect.READ


def test_pack_decorator_needs_a_description_and_annotations() -> None:
    def bare(x: int) -> int:
        return x

    def untyped(x):  # type: ignore[no-untyped-def]
        """Untyped."""
        return x

    with pytest.raises(ValueError, match="docstring"):
        tool(bare)
    with pytest.raises(ValueError, match="annotation"):
        tool(untyped)


def test_pack_from_module_collects_decorated_tools() -> None:
    module = types.ModuleType("desk_tools")
    module.add_credit = add_credit  # type: ignore[attr-defined]
    module.count_words = count_words  # type: ignore[attr-defined]
    pack = pack_from("desk_tools", module)
    assert [t.name for t in pack.tools] == ["add_credit", "count_words"]
    assert pack_from("x", ToolPack("x", (count_words,))).tools == (count_words,)
    with pytest.raises(ValueError, match="defines no tools"):
        pack_from("empty", types.ModuleType("empty"))


def test_registry_duplicate_names_and_wire_names_are_refused() -> None:
    reg = ToolRegistry()
    reg.add_all([count_words], "pack:a")
    with pytest.raises(DuplicateTool, match="from pack:a and from pack:b"):
        reg.add_all([count_words], "pack:b")
    dotted = schema_args("crm.find", {"type": "object"})
    from dataclasses import replace
    reg.add(replace(count_words, name="crm.find", args_model=dotted, source="mcp:crm"))
    with pytest.raises(DuplicateTool):
        reg.add(replace(count_words, name="crm__find", source="pack:c"))
    assert reg.get("crm__find").name == "crm.find"  # models call it by its wire name


def test_registry_expands_names_and_globs_in_order() -> None:
    from dataclasses import replace

    reg = ToolRegistry()
    for name in ("crm.get", "crm.add", "tickets.get"):
        reg.add(replace(count_words, name=name, source="mcp:x"))
    assert reg.expand("crm.*") == ["crm.get", "crm.add"]
    assert reg.expand("*.get") == ["crm.get", "tickets.get"]
    assert reg.expand("crm.add") == ["crm.add"] and reg.expand("crm.nope") == []


def test_schema_args_validates_against_the_tool_schema() -> None:
    model = schema_args("crm.add", {"type": "object", "required": ["n"],
                                    "properties": {"n": {"type": "integer", "minimum": 1}},
                                    "additionalProperties": False})
    assert model.model_validate({"n": 2}).model_dump(mode="json") == {"n": 2}
    with pytest.raises(ValidationError, match="n: 0 is less than the minimum of 1"):
        model.model_validate({"n": 0})
    with pytest.raises(ValueError, match="invalid input schema"):
        schema_args("bad", {"type": "object", "properties": {"n": {"type": "nonsense"}}})
