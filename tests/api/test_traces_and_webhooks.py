"""Traces and webhooks through a real server: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set it
exports a run's trace over OTLP/HTTP to a receiver this test starts on 127.0.0.1, continuing
the client's ``traceparent``; the run body's ``webhook`` is delivered signed, retried after a
failure, and logged in the run's console detail; bad webhook URLs get 422."""

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
from tests.fakes import WebhookReceiver as Receiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Collector:
    """Collects the spans POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.paths.append(self.path)
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        collector.spans.extend(ss.spans)
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
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    yield c
    c.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET, fail_first=1)
    yield r
    r.close()


def _attr(span: Any, name: str) -> Any:
    for kv in span.attributes:
        if kv.key == name:
            value = kv.value
            return getattr(value, value.WhichOneof("value"))
    return None


def test_traces_and_webhooks_of_a_run_started_over_http(
        tmp_path: Path, collector: Collector, receiver: Receiver) -> None:
    server = Server(tmp_path, {"FOREMAN_TEST_GATE": "open",
                               "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                               "OTEL_BSP_SCHEDULE_DELAY": "100",
                               "FOREMAN_WEBHOOK_SECRET": SECRET,
                               "FOREMAN_WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true",
                               "FOREMAN_WEBHOOKS__BACKOFF_S": "0.1",
                               "FOREMAN_WEBHOOKS__POLL_S": "0.2"}).start()
    try:
        with server.client() as c:
            thread = c.post("/threads", json={}).json()["thread_id"]
            c.post(f"/threads/{thread}/runs/wait", headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, json={
                "assistant_id": "support", "webhook": receiver.url + "/done?k=1",
                "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}})
            run = c.get(f"/threads/{thread}/runs").json()[0]
            assert run["status"] == "success"
            audit = c.get("/v1/audit", params={"run_id": run["run_id"]}).json()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                log = c.get(f"/v1/runs/{run['run_id']}").json()["deliveries"]
                exported = any(s.name == "run support" for s in collector.spans)
                if exported and log and log[0]["status"] == "delivered":
                    break
                time.sleep(0.2)
    finally:
        server.stop()

    # The trace: exported over OTLP/HTTP, under the caller's span.
    assert set(collector.paths) == {"/v1/traces"}
    (root,) = [s for s in collector.spans if s.name == "run support"]
    assert root.trace_id.hex() == TRACE_ID and root.parent_span_id.hex() == PARENT_ID
    assert _attr(root, "foreman.run_id") == run["run_id"]
    assert _attr(root, "foreman.status") == "success"
    ours = [s for s in collector.spans if s.trace_id.hex() == TRACE_ID]
    chats = [s for s in ours if s.name.startswith("chat ")]
    assert chats and all(_attr(s, "gen_ai.operation.name") == "chat" for s in chats)
    assert {_attr(s, "gen_ai.provider.name") for s in chats} == {"foreman.scripted"}
    assert any(s.name.startswith("invoke_agent ") for s in ours)
    assert any(s.name.startswith("execute_tool ") for s in ours)
    calls = [e for e in audit if e["type"] == "model_call"]
    assert calls and {e["data"]["trace_id"] for e in calls} == {TRACE_ID}

    # The webhook: failed once, delivered signed on the retry with the same id, logged.
    (row,) = log
    assert (row["event"], row["status"], row["attempts"]) == ("run.completed", "delivered", 2)
    assert row["url"] == receiver.url + "/done?…"
    tries = receiver.of_type("run.completed")
    assert len(tries) == 2 and all(t["verified"] for t in tries)
    assert len({t["headers"]["webhook-id"] for t in tries}) == 1
    assert tries[-1]["body"]["data"]["run_id"] == run["run_id"]
    assert tries[-1]["body"]["data"]["final_answer"]


def test_traces_and_webhooks_bad_webhook_urls_are_422(keyed_server: Server) -> None:
    with keyed_server.client("alice") as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        for url in ("ftp://example.com/x", "https://u:p@example.com/",
                    "http://127.0.0.1:9/hook"):  # private targets are off by default
            r = c.post(f"/threads/{thread}/runs", json={
                "assistant_id": "support", "webhook": url,
                "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}})
            assert r.status_code == 422 and r.json()["field"] == "webhook", url
        assert c.get(f"/threads/{thread}/runs").json() == []
