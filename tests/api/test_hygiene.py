"""Bad bodies are refused before anything is stored or started: lone surrogates (422 naming
the field), oversized bodies (413) and metadata (422); dev mode's Host check."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import SUPPORT_WHERE, Server

RUN = ('{"assistant_id": "support", "input": {"messages": [{"role": "user", "content": '
       '"%s"}]}, "metadata": {"note": "%s"}}')


def raw(c: httpx.Client, path: str, body: bytes | str) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return c.post(path, content=data, headers={"Content-Type": "application/json"})


def thread_ids(c: httpx.Client) -> set[str]:
    found = c.post("/threads/search", json={"limit": 1000})
    assert found.status_code == 200, found.text
    return {t["thread_id"] for t in found.json()}


def test_hygiene_lone_surrogate_in_thread_metadata_is_refused_and_nothing_is_stored(
        server: Server) -> None:
    with server.client() as c:
        before = thread_ids(c)
        bad = raw(c, "/threads", '{"thread_id": "t-surrogate", "metadata": {"k": "\\ud800"}}')
        key = raw(c, "/threads", '{"metadata": {"\\udfff": 1}}')
        after = thread_ids(c)
        missing = c.get("/threads/t-surrogate")

    assert bad.status_code == 422 and bad.json()["field"] == "metadata.k"
    assert key.status_code == 422
    assert after == before and missing.status_code == 404


def test_hygiene_lone_surrogate_in_a_run_starts_nothing(server: Server) -> None:
    with server.client() as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        bad_task = raw(c, f"/threads/{thread}/runs/wait", RUN % ("refund \\ud83d now", "x"))
        bad_meta = raw(c, f"/threads/{thread}/runs", RUN % (SUPPORT_WHERE, "\\udc00"))
        # The same surrogate sent as raw (CESU-8) bytes instead of an escape.
        cesu = raw(c, f"/threads/{thread}/runs",
                   (RUN % (SUPPORT_WHERE, "@")).encode().replace(b"@", b"\xed\xa0\x80"))
        runs = c.get(f"/threads/{thread}/runs").json()
        state = c.get(f"/threads/{thread}")

    assert bad_task.status_code == 422
    assert bad_task.json()["field"] == "input.messages.0.content"
    assert bad_meta.status_code == 422 and bad_meta.json()["field"] == "metadata.note"
    assert cesu.status_code == 422
    assert runs == [] and state.status_code == 200


def test_hygiene_lone_surrogate_in_chat_and_decisions(server: Server) -> None:
    with server.client() as c:
        chat = raw(c, "/v1/chat/completions",
                   '{"model": "support", "messages": [{"role": "user", "content": "\\ud800"}]}')
        # Refused before routing: not even the approval's existence is looked up.
        decision = raw(c, "/v1/approvals/no-such-approval/decision",
                       '{"decision": "reject", "message": "\\ud800"}')

    assert chat.status_code == 422
    assert chat.json()["error"]["param"] == "messages.0.content"
    assert decision.status_code == 422 and decision.json()["field"] == "message"


def test_hygiene_surrogate_pairs_are_ordinary_text(server: Server) -> None:
    with server.client() as c:
        made = raw(c, "/threads", '{"metadata": {"mood": "\\ud83d\\ude00"}}')
        assert made.status_code == 200, made.text
        got = c.get(f"/threads/{made.json()['thread_id']}").json()
    assert got["metadata"] == {"mood": "\U0001f600"}


def test_hygiene_body_and_metadata_sizes_are_bounded(server: Server) -> None:
    big: dict[str, Any] = {"metadata": {"blob": "x" * 2_000_000}}
    with server.client() as c:
        before = thread_ids(c)
        too_big = c.post("/threads", json=big)
        too_much_metadata = c.post("/threads", json={"metadata": {"blob": "x" * 70_000}})
        thread = c.post("/threads", json={}).json()["thread_id"]
        big_config = c.post(f"/threads/{thread}/runs", json={
            "assistant_id": "support", "config": {"configurable": {"x": "y" * 70_000}},
            "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}})
        runs = c.get(f"/threads/{thread}/runs").json()
        after = thread_ids(c) - {thread}

    assert too_big.status_code == 413
    assert too_much_metadata.status_code == 422
    assert too_much_metadata.json()["field"] == "body.metadata"
    assert big_config.status_code == 422 and big_config.json()["field"] == "body.config"
    assert runs == [] and after == before


def test_hygiene_dev_mode_answers_only_loopback_host_headers(server: Server) -> None:
    with server.client() as c:
        rebound = c.get("/v1/approvals", headers={"Host": f"evil.example:{server.port}"})
        bare = c.get("/v1/approvals", headers={"Host": "attacker.test"})
        local = c.get("/v1/approvals", headers={"Host": f"localhost:{server.port}"})
        ip = c.get("/v1/approvals", headers={"Host": f"127.0.0.1:{server.port}"})
        v6 = c.get("/v1/approvals", headers={"Host": f"[::1]:{server.port}"})
        health = c.get("/healthz", headers={"Host": "evil.example"})

    assert rebound.status_code == 403 and "Host" in rebound.json()["detail"]
    assert bare.status_code == 403
    assert (local.status_code, ip.status_code, v6.status_code) == (200, 200, 200)
    assert health.status_code == 200  # liveness carries no data
