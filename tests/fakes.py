"""Fakes shared by tests: OpenAI wire-format bodies and scripted behaviours."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from standardwebhooks.webhooks import Webhook

from evals.runner import HashingEmbedder as EvalHashingEmbedder

if TYPE_CHECKING:
    from tools.registry import ToolRegistry


def chat_body(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    prompt_tokens: int = 50,
    completion_tokens: int = 20,
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    """A ``/v1/chat/completions`` response body as OpenAI sends it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
            }
            for c in tool_calls
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def progress_reply(*, satisfied: bool = False, progress: bool = True, loop: bool = False,
                   steps: list[dict[str, str]] | None = None) -> str:
    """A progress-ledger JSON answer."""
    return json.dumps({
        "is_request_satisfied": {"answer": satisfied, "reason": "test"},
        "is_in_loop": {"answer": loop, "reason": "test"},
        "is_progress_being_made": {"answer": progress, "reason": "test"},
        "next_steps": steps or [],
    })


def event_types(events: list[dict[str, Any]]) -> list[str]:
    """The types of a run's events, in order."""
    return [e["type"] for e in events]
class HashingEmbedder(EvalHashingEmbedder):
    """The eval suite's hashing embedder, named for unit tests (never the product default)."""

    name = "test-hashing-256"


class MemoEmbedder:
    """Wraps a real embedder and remembers every vector, so a test session embeds the
    bundled knowledge once however many tests ingest it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self._docs: dict[str, list[float]] = {}
        self._queries: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._docs]
        for text, vector in zip(missing, self.inner.embed_documents(missing), strict=True):
            self._docs[text] = vector
        return [self._docs[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        if text not in self._queries:
            self._queries[text] = self.inner.embed_query(text)
        return self._queries[text]


def pdf_bytes(lines: list[str], title: str = "") -> bytes:
    """A minimal one-page PDF whose text layer holds ``lines`` (for ingest tests)."""
    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(
        "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
        for line in lines) + " ET"
    info = f"<< /Title ({title}) >>" if title else "<< >>"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        info,
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return out
def cached_chat_body(
    content: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    """A chat completion whose usage reports prompt-cache hits."""
    body = chat_body(
        content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, model=model
    )
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return body


class EventLog:
    """An ``EventSink`` that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, type: str, data: Any) -> None:
        self.events.append((type, dict(data)))

    def of(self, type: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == type]


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
class RefundNeedsApproval:
    """A policy gate that holds every ``issue_refund`` for a human; everything else runs."""

    def check(self, request: Any) -> Any:
        from graphs.ports import GateAction, GateDecision

        if request.tool == "issue_refund":
            return GateDecision(GateAction.REQUIRE_APPROVAL, reason="refunds need a human",
                                rule="refunds-need-approval", approver_group="billing-leads")
        return GateDecision(GateAction.ALLOW, reason="allowed", rule="default")


def demo_registry(db_path: Path) -> ToolRegistry:
    """The built-in tools and the demo pack on ``db_path``, as a started process has them."""
    from tools.catalog import BUILTIN_TOOLS
    from tools.demo import PACK
    from tools.registry import ToolRegistry

    reg = ToolRegistry()
    reg.add_all(BUILTIN_TOOLS, "builtin")
    reg.add_all(PACK.tools, "pack:demo", {"db_path": str(db_path)})
    return reg


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 that records each delivery (signature checked) and
    answers the first ``fail_first`` attempts of each webhook id with 500, then 204."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.attempts: list[dict[str, Any]] = []  # every request: headers, body, verified
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except Exception:  # any verification failure is recorded, not raised
                    verified = False
                with receiver.lock:
                    seen = sum(1 for a in receiver.attempts
                               if a["headers"].get("webhook-id") == headers.get("webhook-id"))
                    receiver.attempts.append({"headers": headers, "body": json.loads(body),
                                              "verified": verified, "path": self.path})
                self.send_response(500 if seen < receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Attempts carrying webhook events of ``kind``."""
        with self.lock:
            return [a for a in self.attempts if a["body"]["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
