"""One real export: a server with ``OTEL_EXPORTER_OTLP_ENDPOINT`` sends a run's trace over
OTLP/HTTP to a receiver this test starts on 127.0.0.1, continuing the client's traceparent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.api.conftest import SUPPORT_WHERE, Server, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver:
    """Collects the spans POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        receiver.spans.extend(ss.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()


def _attr(span: Any, name: str) -> Any:
    for kv in span.attributes:
        if kv.key == name:
            value = kv.value
            return getattr(value, value.WhichOneof("value"))
    return None


def test_telemetry_export_over_otlp_http_continues_the_callers_trace(
        tmp_path: Path, receiver: Receiver) -> None:
    server = Server(tmp_path, {"FOREMAN_TEST_GATE": "open",
                               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                               "OTEL_BSP_SCHEDULE_DELAY": "100"}).start()
    try:
        with server.client() as c:
            thread = c.post("/threads", json={}).json()["thread_id"]
            c.post(f"/threads/{thread}/runs/wait", headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, json={
                "assistant_id": "support",
                "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}})
            run = c.get(f"/threads/{thread}/runs").json()[0]
            assert run["status"] == "success"
            audit = c.get("/v1/audit", params={"run_id": run["run_id"]}).json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                s.name == "run support" for s in receiver.spans):
            time.sleep(0.1)
    finally:
        server.stop()

    assert set(receiver.paths) == {"/v1/traces"}
    (root,) = [s for s in receiver.spans if s.name == "run support"]
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID
    assert _attr(root, "foreman.run_id") == run["run_id"]
    assert _attr(root, "foreman.status") == "success"
    ours = [s for s in receiver.spans if s.trace_id.hex() == TRACE_ID]
    chats = [s for s in ours if s.name.startswith("chat ")]
    assert chats and all(_attr(s, "gen_ai.operation.name") == "chat" for s in chats)
    assert {_attr(s, "gen_ai.provider.name") for s in chats} == {"foreman.scripted"}
    assert any(s.name.startswith("invoke_agent ") for s in ours)
    assert any(s.name.startswith("execute_tool ") for s in ours)
    calls = [e for e in audit if e["type"] == "model_call"]
    assert calls and {e["data"]["trace_id"] for e in calls} == {TRACE_ID}
