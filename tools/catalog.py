"""The bundled tools by name: the ``demo`` pack plus the built-in ``search_knowledge``.

A running Foreman resolves tools through its ``ToolRegistry`` (bundled tools, packs and
MCP servers); this index serves code that only ever needs the bundled ones.
"""

from __future__ import annotations

from dataclasses import replace

from tools.demo import PACK as DEMO_PACK
from tools.knowledge import KNOWLEDGE_TOOLS
from tools.spec import ToolSpec

BUILTIN_TOOLS: tuple[ToolSpec, ...] = KNOWLEDGE_TOOLS
"""Tools every Foreman has, whatever packs are configured."""


def _index(specs: tuple[ToolSpec, ...]) -> dict[str, ToolSpec]:
    out: dict[str, ToolSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"duplicate tool name {spec.name}")
        out[spec.name] = spec
    return out


ALL_TOOLS: dict[str, ToolSpec] = _index(
    tuple(replace(s, source="pack:demo") for s in DEMO_PACK.tools) + BUILTIN_TOOLS)


def get_tool(name: str) -> ToolSpec:
    """The bundled tool called ``name``; raises ``KeyError`` if there is none."""
    try:
        return ALL_TOOLS[name]
    except KeyError:
        raise KeyError(f"unknown tool {name!r}; known: {', '.join(ALL_TOOLS)}") from None


def tool_names() -> list[str]:
    """Every bundled tool name, in registration order."""
    return list(ALL_TOOLS)
