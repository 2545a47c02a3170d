"""Request bodies of the LangGraph-Platform routes. Unknown fields are ignored, as there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.api.deps import ID_PATTERN
from app.errors import InvalidRequest

StreamMode = Literal["values", "updates", "custom", "messages", "messages-tuple", "events",
                     "debug", "tasks", "checkpoints"]
MAX_TASK_CHARS = 20_000


class AssistantSearch(BaseModel):
    """``POST /assistants/search``."""

    graph_id: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=100_000)


class ThreadCreate(BaseModel):
    """``POST /threads``."""

    thread_id: str | None = Field(default=None, pattern=ID_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadSearch(BaseModel):
    """``POST /threads/search``."""

    metadata: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=100_000)


class HistoryRequest(BaseModel):
    """``POST /threads/{id}/history``; filters are deliberately not passed to the saver."""

    limit: int = Field(default=10, ge=1, le=100)


class ResumeCommand(BaseModel):
    """``command``: only ``resume`` is supported."""

    resume: Any = None


class RunCreate(BaseModel):
    """``POST /threads/{id}/runs[/wait|/stream]``."""

    assistant_id: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] | None = None
    command: ResumeCommand | None = None
    stream_mode: StreamMode | list[StreamMode] = "values"
    config: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "reject"
    if_not_exists: Literal["create", "reject"] = "reject"
    budget_usd: float | None = Field(default=None, gt=0, le=10_000)
    mode: Literal["live", "shadow"] = "live"
    webhook: str | None = Field(default=None, max_length=2048)  # told when the run ends

    def modes(self) -> list[str]:
        """Stream modes as a list."""
        return [self.stream_mode] if isinstance(self.stream_mode, str) else list(
            self.stream_mode)


def text_of(content: Any) -> str:
    """A message's text (plain string, or OpenAI/LangChain content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, dict) and p.get("type", "text") == "text")
    return ""


def check_task(task: str, field: str) -> str:
    """A usable task text, or ``InvalidRequest`` naming the field."""
    task = task.strip()
    if not task:
        raise InvalidRequest("no task: send a non-empty user message", field=field)
    if len(task) > MAX_TASK_CHARS or "\x00" in task:
        raise InvalidRequest(f"task must be under {MAX_TASK_CHARS} characters of text",
                             field=field)
    return task


def task_from_input(data: dict[str, Any]) -> str:
    """The task in a run ``input``: the last human/user message, or ``task``."""
    msgs = data.get("messages")
    if isinstance(msgs, list):
        for m in reversed(msgs):
            if isinstance(m, str):
                return check_task(m, "input.messages")
            if isinstance(m, dict) and m.get("role", m.get("type")) in {"user", "human"}:
                return check_task(text_of(m.get("content")), "input.messages")
        raise InvalidRequest("input.messages has no user message", field="input.messages")
    if isinstance(data.get("task"), str):
        return check_task(data["task"], "input.task")
    raise InvalidRequest('send input {"messages": [{"role": "user", "content": "..."}]}',
                         field="input.messages")
