"""Optional exact-match response cache (off by default; on for eval replays).

Only a byte-identical request to the same model is a hit, so a cached answer is exactly
what that model was asked before; it costs nothing and is marked ``cached`` in the ledger.
"""

from __future__ import annotations

import hashlib
import json

from app.config.settings import ModelEntry
from app.llm.provider import ProviderReply, tool_calls_from_json, tool_calls_to_json
from app.storage.store import Store
from graphs.ports import ModelRequest


def cache_key(model: ModelEntry, request: ModelRequest) -> str:
    """Hash of everything that shapes the answer: model, messages, tools, output mode."""
    body = json.dumps(
        {
            "model": model.litellm_model,
            "api_base": model.api_base,
            "messages": request.messages,
            "tools": request.tools,
            "json": request.json_output,
            "max_tokens": request.max_tokens or model.max_tokens,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


class ResponseCache:
    """Answers by request hash, kept in the app database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, model: ModelEntry, request: ModelRequest) -> ProviderReply | None:
        """The cached answer to this exact request, if any."""
        data = self.store.cache_get(cache_key(model, request))
        if data is None:
            return None
        return ProviderReply(
            content=data["content"],
            tool_calls=tool_calls_from_json(data),
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
        )

    def put(self, model: ModelEntry, request: ModelRequest, reply: ProviderReply) -> None:
        """Remember an answer."""
        self.store.cache_put(
            cache_key(model, request),
            model.name,
            {
                "content": reply.content,
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "tool_calls": tool_calls_to_json(reply.tool_calls),
            },
        )
