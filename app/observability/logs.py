"""Structured JSON logs for ``foreman serve``; every record carries the run and thread ids."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

from app.governance.redact import redact_text
from app.storage.thread_keys import local_id, tenant_of

run_id_var: ContextVar[str | None] = ContextVar("run_id", default=None)
thread_id_var: ContextVar[str | None] = ContextVar("thread_id", default=None)
# The OpenTelemetry trace of the run or request (set only while tracing is on).
trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

# Extras worth keeping; anything else a caller attaches is dropped rather than risk PII.
_EXTRAS = ("run_id", "thread_id", "tenant", "tool", "status", "method", "path", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run/thread ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
            "run_id": getattr(record, "run_id", None) or run_id_var.get(),
        }
        # Records name threads by their internal key; a log shows the tenant's own id, and
        # the tenant beside it.
        thread = str(getattr(record, "thread_id", None) or thread_id_var.get() or "")
        out["thread_id"] = local_id(thread) if thread else None
        if (tenant := tenant_of(thread)) is not None:
            out["tenant"] = tenant
        trace_id = trace_id_var.get()
        if trace_id:
            out["trace_id"] = trace_id
        for key in _EXTRAS[2:]:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send every log record (ours, uvicorn's) to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("httpx", "LiteLLM", "litellm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
