"""Request bodies checked before any route sees them: a size cap (413) and text that UTF-8
can encode (422 naming the field).

A JSON body may spell a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it into a
string that cannot be written as UTF-8, so it would be stored and then break every later
read, or fail half-way through a run that had already started. Rejecting it here, before
routing, means nothing is stored or started. Plain ASGI, like ``Timing``: the body is read
once, checked, and replayed to the app.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import OPENAI_PREFIXES

# A surrogate escape, or CESU-style bytes that json.loads decodes with surrogatepass.
_SUSPECT = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed[\xa0-\xbf]")
DEFAULT_MAX_BODY = 1_048_576


def bad_text(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (key or value) UTF-8 cannot encode, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(body)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if bad_text(k, where) is not None:
                return where
            found = bad_text(v, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = bad_text(v, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None


class BodyGuard:
    """Refuses oversized bodies (413) and JSON bodies with unencodable text (422)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send, 413, "body", "request body too large "
                               f"(at most {self.max_bytes} bytes)")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, send, 413, "body", "request body too large "
                                   f"(at most {self.max_bytes} bytes)")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _SUSPECT.search(body):
            try:
                field = bad_text(json.loads(body))
            except ValueError:
                field = None  # not JSON: the route's own validation answers
            if field is not None:
                await self._refuse(scope, send, 422, field, f"{field}: text is not valid "
                                   "Unicode (a lone surrogate cannot be stored)")
                return
        await self.app(scope, _replay([{"type": "http.request", "body": body,
                                        "more_body": False}], receive), send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, field: str,
                      message: str) -> None:
        code = "request_too_large" if status == 413 else "invalid_request"
        if str(scope.get("path", "")).startswith(OPENAI_PREFIXES):
            payload: dict[str, Any] = {"error": {"message": message,
                                                 "type": "invalid_request_error",
                                                 "param": field, "code": code}}
        else:
            payload = {"detail": message, "code": code, "field": field}
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
