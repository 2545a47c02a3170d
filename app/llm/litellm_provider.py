"""Real models through litellm, imported on the first call only (its import is slow)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import Any

from app.config.settings import ModelEntry
from app.llm.catalog import schema_capable
from app.llm.provider import RUNAWAY_FACTOR, FaultKind, ProviderFault, ProviderReply, TokenSink
from graphs.ports import ModelRequest, ToolCall

_litellm: ModuleType | None = None
LOCAL_KEY = "no-key-needed"


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


async def litellm_ready() -> ModuleType:
    """litellm for async code: its first import (seconds of CPU) runs on a thread, so the
    event loop goes on serving while it loads; concurrent first callers share the import
    through Python's import lock. Afterwards this costs one check."""
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(load_litellm)


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


def response_format(model: ModelEntry, request: ModelRequest, schema_ok: bool
                    ) -> dict[str, Any] | None:
    """JSON Schema structured output where the model takes it, JSON mode otherwise."""
    if not request.json_output or model.supports_json is False:
        return None
    if request.json_schema is not None and schema_ok:
        return {"type": "json_schema", "json_schema": {
            "name": str(request.json_schema.get("title") or "output")[:64],
            "schema": dict(request.json_schema), "strict": False}}
    return {"type": "json_object"}


def _reply(response: Any) -> ProviderReply:
    message = response.choices[0].message
    calls = [
        ToolCall(id=c.id or "", name=c.function.name or "", arguments=c.function.arguments or "{}")
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


class LiteLLMProvider:
    """Calls ``litellm.acompletion``; retries and fallbacks belong to the router, not here.

    ``schema_ok(model)`` says whether a model takes ``response_format`` JSON Schema (the
    catalog's capability); without it every structured call uses JSON mode.
    """

    def __init__(self, schema_ok: Callable[[ModelEntry], bool] | None = None) -> None:
        self.schema_ok = schema_ok or schema_capable

    def _kwargs(self, model: ModelEntry, request: ModelRequest) -> dict[str, Any]:
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
        elif model.api_base and not model.api_key_env:
            # A local server (llama.cpp, vLLM, Ollama) needs no key, but the OpenAI client
            # refuses to start without one.
            kwargs["api_key"] = LOCAL_KEY
        if request.tools:
            kwargs["tools"] = request.tools
        fmt = response_format(model, request, self.schema_ok(model))
        if fmt is not None:
            kwargs["response_format"] = fmt
        return kwargs

    async def complete(self, model: ModelEntry, request: ModelRequest) -> ProviderReply:
        """One call to one model; any provider failure becomes a typed ``ProviderFault``."""
        litellm = load_litellm()
        try:
            response = await litellm.acompletion(**self._kwargs(model, request))
        except Exception as e:  # provider faults of every kind; nothing graph-level in here
            raise fault_from(model, e) from e
        return _reply(response)

    async def stream(self, model: ModelEntry, request: ModelRequest,
                     on_token: TokenSink) -> ProviderReply:
        """The same call streamed: content deltas go to ``on_token`` as they arrive.

        A stream that ends without a finish reason was cut off (``truncated``); one that
        runs far past ``max_tokens`` is stopped (``runaway``). Both keep what was received.
        """
        litellm = load_litellm()
        kwargs = self._kwargs(model, request)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        limit_chars = RUNAWAY_FACTOR * kwargs["max_tokens"] * 4
        chunks: list[Any] = []
        chars, finished = 0, False
        try:
            stream = await litellm.acompletion(**kwargs)
            async for chunk in stream:
                chunks.append(chunk)
                choice = chunk.choices[0] if chunk.choices else None
                if choice is None:
                    continue
                text = getattr(choice.delta, "content", None)
                if text:
                    chars += len(text)
                    on_token(text)
                if choice.finish_reason:
                    finished = True
                if chars > limit_chars:
                    break
        except Exception as e:
            raise fault_from(model, e) from e
        if hasattr(stream, "received_finish_reason"):
            # litellm closes every stream with a made-up "stop"; what the server really
            # sent is kept on the wrapper.
            finished = bool(stream.received_finish_reason
                            or getattr(stream, "intermittent_finish_reason", None))
        built = litellm.stream_chunk_builder(chunks, messages=request.messages) if chunks else None
        reply = _reply(built) if built is not None else ProviderReply(content=None)
        if chars > limit_chars:
            fault = ProviderFault(f"{model.name}: runaway stream stopped after {chars} "
                                  "characters", "runaway")
        elif not finished:
            fault = ProviderFault(f"{model.name}: stream stopped before the reply ended",
                                  "truncated")
        else:
            return reply
        fault.reply = reply
        raise fault

    def count_tokens(self, model: ModelEntry, request: ModelRequest) -> int:
        """Prompt tokens by litellm's tokenizer for the model (tools included)."""
        litellm = load_litellm()
        return int(
            litellm.token_counter(
                model=model.litellm_model, messages=request.messages, tools=request.tools or None
            )
        )
