"""The registry of every bundled tool, by name."""

from __future__ import annotations

from tools.incident import INCIDENT_TOOLS
from tools.knowledge import KNOWLEDGE_TOOLS
from tools.spec import ToolSpec
from tools.support import SUPPORT_TOOLS


def _index(specs: tuple[ToolSpec, ...]) -> dict[str, ToolSpec]:
    out: dict[str, ToolSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise ValueError(f"duplicate tool name {spec.name}")
        out[spec.name] = spec
    return out


ALL_TOOLS: dict[str, ToolSpec] = _index(SUPPORT_TOOLS + INCIDENT_TOOLS + KNOWLEDGE_TOOLS)


def get_tool(name: str) -> ToolSpec:
    """The tool called ``name``; raises ``KeyError`` if there is none."""
    try:
        return ALL_TOOLS[name]
    except KeyError:
        raise KeyError(f"unknown tool {name!r}; known: {', '.join(ALL_TOOLS)}") from None


def tool_names() -> list[str]:
    """Every tool name, in registration order."""
    return list(ALL_TOOLS)
