"""The model catalog: every configured model with its tier, prices, context and capabilities.

Prices not set in ``foreman.yaml`` come from litellm's bundled cost map, read as the JSON
file it ships rather than by importing litellm (whose import takes seconds), and only when
some model needs it. A model whose price is known nowhere is a ``ConfigError``: it is never
costed at $0.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from app.config.settings_schema import ModelEntry, Tier
from app.errors import ConfigError

COST_MAP_FILE = "model_prices_and_context_window_backup.json"
_PER_MTOK = 1_000_000


@cache
def cost_map() -> dict[str, dict[str, Any]]:
    """litellm's bundled price map (the one ``LITELLM_LOCAL_MODEL_COST_MAP=True`` uses)."""
    # find_spec locates the package without executing its slow __init__.
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    for folder in spec.submodule_search_locations:
        path = Path(folder) / COST_MAP_FILE
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if isinstance(v, dict)}
    return {}


def map_entry(litellm_model: str) -> dict[str, Any] | None:
    """The cost-map entry of a litellm model id, with or without its provider prefix."""
    known = cost_map()
    return known.get(litellm_model) or known.get(litellm_model.split("/", 1)[-1])


@dataclass(frozen=True)
class CatalogModel:
    """A configured model with resolved per-token prices, context window and capabilities."""

    entry: ModelEntry
    input_per_token: float
    output_per_token: float
    cached_per_token: float
    context_window: int | None
    tools: bool
    json_output: bool
    json_schema: bool = False

    @property
    def name(self) -> str:
        """The catalog name used in routing config and the ledger."""
        return self.entry.name

    @property
    def tier(self) -> Tier:
        """small, medium or large."""
        return self.entry.tier

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD for a call's usage; cached prompt tokens at the cache-read price."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.input_per_token
            + cached * self.cached_per_token
            + completion_tokens * self.output_per_token
        )

    def worst_case(self, prompt_tokens: int, max_tokens: int) -> float:
        """USD if every prompt token is uncached and the answer uses all of ``max_tokens``."""
        return prompt_tokens * self.input_per_token + max_tokens * self.output_per_token

    def fits(self, prompt_tokens: int, needs_tools: bool) -> bool:
        """Whether this model can take the request at all."""
        if needs_tools and not self.tools:
            return False
        return self.context_window is None or prompt_tokens <= self.context_window


def _per_token(mtok: float | None) -> float | None:
    return None if mtok is None else mtok / _PER_MTOK


def describe(entry: ModelEntry, where: str) -> CatalogModel:
    """Resolve one entry; ``ConfigError`` naming it when its price is unknown."""
    info: dict[str, Any] = {}
    explicit = entry.input_cost_per_mtok is not None and entry.output_cost_per_mtok is not None
    needs_map = not entry.scripted and (
        not explicit or entry.context_window is None or entry.supports_tools is None
    )
    if needs_map:
        info = map_entry(entry.litellm_model) or {}
    input_price = _per_token(entry.input_cost_per_mtok)
    output_price = _per_token(entry.output_cost_per_mtok)
    if input_price is None:
        input_price = info.get("input_cost_per_token")
    if output_price is None:
        output_price = info.get("output_cost_per_token")
    if input_price is None or output_price is None:
        raise ConfigError(
            f"{where}: no price known for model {entry.name!r} ({entry.litellm_model}); "
            "set input_cost_per_mtok and output_cost_per_mtok"
        )
    cached = _per_token(entry.cached_input_cost_per_mtok)
    if cached is None:
        cached = info.get("cache_read_input_token_cost", input_price)
    window = entry.context_window or info.get("max_input_tokens")
    tools = (
        entry.supports_tools
        if entry.supports_tools is not None
        else bool(info.get("supports_function_calling", True))
    )
    json_output = entry.supports_json if entry.supports_json is not None else True
    if entry.supports_json_schema is None and not entry.scripted and not info:
        info = map_entry(entry.litellm_model) or {}
    return CatalogModel(
        entry=entry,
        input_per_token=float(input_price),
        output_per_token=float(output_price),
        cached_per_token=float(cached),
        context_window=int(window) if window else None,
        tools=tools,
        json_output=json_output,
        json_schema=json_output and schema_capable(entry, info),
    )


def schema_capable(entry: ModelEntry, info: dict[str, Any] | None = None) -> bool:
    """Whether the model takes ``response_format`` JSON Schema: config, else litellm's map."""
    if entry.supports_json_schema is not None:
        return entry.supports_json_schema
    if entry.scripted:
        return True
    found = info if info is not None else map_entry(entry.litellm_model) or {}
    return bool(found.get("supports_response_schema", False))


class Catalog:
    """All configured models by name, in configuration order."""

    def __init__(self, entries: Sequence[ModelEntry], source: str = "foreman.yaml") -> None:
        self.models = [describe(e, f"{source}: models.{i}") for i, e in enumerate(entries)]
        self._by_name = {m.name: m for m in self.models}

    def get(self, name: str) -> CatalogModel:
        """The model of that name (names are validated at load time)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(f"no model named {name!r} in models") from None

    def in_tier(self, tier: Tier, pool: Iterable[CatalogModel]) -> list[CatalogModel]:
        """The pool's models of one tier, in catalog order."""
        return [m for m in pool if m.tier == tier]
