"""``webhook`` on a run body: validated (422 naming the field), delivered signed when the
run ends, retried after failures, and the delivery log is in the run's console detail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import SUPPORT_WHERE, Server
from tests.webhook_receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET, fail_first=1)
    yield r
    r.close()


def test_webhooks_api_run_webhook_delivered_and_logged(tmp_path: Path,
                                                       receiver: Receiver) -> None:
    server = Server(tmp_path, {"FOREMAN_TEST_GATE": "open", "FOREMAN_WEBHOOK_SECRET": SECRET,
                               "FOREMAN_WEBHOOKS__ALLOW_PRIVATE_TARGETS": "true",
                               "FOREMAN_WEBHOOKS__BACKOFF_S": "0.1",
                               "FOREMAN_WEBHOOKS__POLL_S": "0.2"}).start()
    try:
        with server.client() as c:
            thread = c.post("/threads", json={}).json()["thread_id"]
            body = {"assistant_id": "support", "webhook": receiver.url + "/done?k=1",
                    "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}
            c.post(f"/threads/{thread}/runs/wait", json=body)
            run = c.get(f"/threads/{thread}/runs").json()[0]
            assert run["status"] == "success"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                log = c.get(f"/v1/runs/{run['run_id']}").json()["deliveries"]
                if log and log[0]["status"] == "delivered":
                    break
                time.sleep(0.2)
            (row,) = log
            assert (row["event"], row["status"], row["attempts"]) == ("run.completed",
                                                                      "delivered", 2)
            assert row["url"] == receiver.url + "/done?…"
    finally:
        server.stop()
    tries = receiver.of_type("run.completed")
    assert len(tries) == 2 and all(t["verified"] for t in tries)
    assert len({t["headers"]["webhook-id"] for t in tries}) == 1
    assert tries[-1]["body"]["data"]["run_id"] == run["run_id"]
    assert tries[-1]["body"]["data"]["final_answer"]


def test_webhooks_api_rejects_bad_urls(keyed_server: Server) -> None:
    with keyed_server.client("alice") as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        for url in ("ftp://example.com/x", "https://u:p@example.com/",
                    "http://127.0.0.1:9/hook"):  # private targets are off by default
            r = c.post(f"/threads/{thread}/runs", json={
                "assistant_id": "support", "webhook": url,
                "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}})
            assert r.status_code == 422 and r.json()["field"] == "webhook", url
        assert c.get(f"/threads/{thread}/runs").json() == []
