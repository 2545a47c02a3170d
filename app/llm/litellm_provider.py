"""Real models through litellm, imported on the first call only (its import is slow)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any

from app.llm.provider import FaultKind, ProviderFault, ProviderReply
from app.settings import ModelEntry
from graphs.ports import ModelRequest, ToolCall

_litellm: ModuleType | None = None


def load_litellm() -> ModuleType:
    """Import litellm with its network-free settings (bundled price map)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks us to wait."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _kind(status: int | None, error: BaseException) -> FaultKind:
    name = type(error).__name__
    if status == 408 or "Timeout" in name:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if "Connection" in name and status in (None, 500):
        return "connection"
    if status is not None and status >= 500:
        return "server_error"
    return "bad_request"


def fault_from(model: ModelEntry, error: BaseException) -> ProviderFault:
    """A typed fault from whatever litellm (or openai, or httpx) raised."""
    status = getattr(error, "status_code", None)
    status = status if isinstance(status, int) else None
    headers = getattr(error, "litellm_response_headers", None) or getattr(
        getattr(error, "response", None), "headers", None
    )
    kind = _kind(status, error)
    # The message is cut short: provider errors can echo request bodies at length.
    return ProviderFault(
        f"{model.name}: {kind} ({type(error).__name__}, status {status})",
        kind,
        status,
        retry_after_s(headers),
    )


class LiteLLMProvider:
    """Calls ``litellm.acompletion``; retries and fallbacks belong to the router, not here."""

    async def complete(self, model: ModelEntry, request: ModelRequest) -> ProviderReply:
        """One call to one model; any provider failure becomes a typed ``ProviderFault``."""
        litellm = load_litellm()
        kwargs: dict[str, Any] = {
            "model": model.litellm_model,
            "messages": request.messages,
            "max_tokens": request.max_tokens or model.max_tokens,
            "timeout": model.timeout_s,
            # Retries are the router's: the SDKs must not retry (and sleep) on their own.
            "num_retries": 0,
            "max_retries": 0,
        }
        if model.api_base:
            kwargs["api_base"] = model.api_base
        if model.api_key_env and os.environ.get(model.api_key_env):
            kwargs["api_key"] = os.environ[model.api_key_env]
        if request.tools:
            kwargs["tools"] = request.tools
        if request.json_output and model.supports_json is not False:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as e:  # provider faults of every kind; nothing graph-level in here
            raise fault_from(model, e) from e
        message = response.choices[0].message
        calls = [
            ToolCall(
                id=c.id or "", name=c.function.name or "", arguments=c.function.arguments or "{}"
            )
            for c in (message.tool_calls or [])
        ]
        usage = getattr(response, "usage", None)
        details = getattr(usage, "prompt_tokens_details", None)
        return ProviderReply(
            content=message.content,
            tool_calls=calls,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
        )

    def count_tokens(self, model: ModelEntry, request: ModelRequest) -> int:
        """Prompt tokens by litellm's tokenizer for the model (tools included)."""
        litellm = load_litellm()
        return int(
            litellm.token_counter(
                model=model.litellm_model, messages=request.messages, tools=request.tools or None
            )
        )
