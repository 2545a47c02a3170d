"""The tool registry of one Foreman process: every tool by name, built at start from sources."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from tools.spec import ToolSpec


class DuplicateTool(ValueError):
    """Two sources offer a tool under one name (or one wire name)."""


class ToolRegistry:
    """Tools by name, each with the settings of the source it came from."""

    def __init__(self) -> None:
        self._specs: dict[str, ToolSpec] = {}
        self._wire: dict[str, str] = {}
        self._settings: dict[str, Mapping[str, Any]] = {}
        self.version = 0
        """Bumped whenever tools come or go (an MCP server that connected later)."""

    def add(self, spec: ToolSpec, settings: Mapping[str, Any] | None = None) -> None:
        """Register ``spec``; ``DuplicateTool`` when the name is taken."""
        for taken, table in ((spec.name, self._specs), (spec.wire_name, self._wire)):
            if taken in table:
                other = self._specs.get(taken) or self._specs[self._wire[taken]]
                raise DuplicateTool(f"two tools named {spec.name!r}: from {other.source} "
                                    f"and from {spec.source}")
        self._specs[spec.name] = spec
        self._wire[spec.wire_name] = spec.name
        self.version += 1
        if settings is not None:
            self._settings[spec.source] = settings

    def add_all(self, specs: Iterable[ToolSpec], source: str,
                settings: Mapping[str, Any] | None = None) -> None:
        """Register tools from one source, stamped with that source."""
        for spec in specs:
            self.add(replace(spec, source=source), settings)
        if settings is not None:
            self._settings[source] = settings

    def replace_source(self, source: str, specs: Iterable[ToolSpec]) -> None:
        """Swap every tool of ``source`` for ``specs``; on ``DuplicateTool`` nothing changes."""
        old = [s for s in self._specs.values() if s.source == source]
        for spec in old:
            del self._specs[spec.name], self._wire[spec.wire_name]
        try:
            self.add_all(specs, source)
        except DuplicateTool:
            for spec in [s for s in self._specs.values() if s.source == source]:
                del self._specs[spec.name], self._wire[spec.wire_name]
            for spec in old:
                self.add(spec)
            raise
        self.version += 1

    def get(self, name: str) -> ToolSpec:
        """The tool called ``name`` (or its wire name); ``KeyError`` if there is none."""
        spec = self.find(name)
        if spec is None:
            raise KeyError(f"unknown tool {name!r}")
        return spec

    def find(self, name: str) -> ToolSpec | None:
        """The tool called ``name`` (or its wire name), if any."""
        return self._specs.get(name) or self._specs.get(self._wire.get(name, ""))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def names(self) -> list[str]:
        """Every tool name, in registration order."""
        return list(self._specs)

    def specs(self) -> list[ToolSpec]:
        """Every tool, in registration order."""
        return list(self._specs.values())

    def expand(self, pattern: str) -> list[str]:
        """Tool names matching a name or a glob (``crm.*``), in registration order."""
        if not any(c in pattern for c in "*?["):
            return [pattern] if pattern in self._specs else []
        return [n for n in self._specs if fnmatch.fnmatchcase(n, pattern)]

    def settings_of(self, spec: ToolSpec) -> Mapping[str, Any]:
        """The settings of the source ``spec`` came from (empty when it has none)."""
        return self._settings.get(spec.source, {})

    def source_settings(self, source: str) -> Mapping[str, Any]:
        """The settings of one source, e.g. ``pack:demo``."""
        return self._settings.get(source, {})
