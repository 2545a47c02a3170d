"""Webhooks end to end, in process: a refund run pauses, is approved and completes, another
approval expires; each becomes a signed delivery to a receiver on 127.0.0.1 that fails the
first attempts; URL rules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from app.api.auth import Principal
from app.config.ops_config import WebhooksConfig, WebhookSubscription
from app.config.settings import Settings
from app.errors import InvalidRequest
from app.governance.resumers import InlineResume
from app.observability.webhooks import Webhooks, check_url, deliveries, shown_url
from app.services import Services, open_services
from tests.fakes import WebhookReceiver as Receiver
from tools import sandbox

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BOB = Principal("bob", "acme", frozenset({"approver"}),
                groups=frozenset({"support-leads", "budget-owners"}))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET, fail_first=2)
    yield r
    r.close()


@pytest.fixture
async def svc(policy_settings: Settings, receiver: Receiver,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Services]:
    monkeypatch.setenv("FOREMAN_WEBHOOK_SECRET", SECRET)
    hooks = WebhooksConfig(backoff_s=0.05, max_backoff_s=0.2, subscriptions=[
        WebhookSubscription(tenant="acme", url=receiver.url + "/hooks?token=abc"),
        WebhookSubscription(tenant="globex", url=receiver.url + "/globex")])
    async with open_services(policy_settings.model_copy(update={"webhooks": hooks})) as s:
        yield s


async def _drain(hooks: Webhooks, until: int, receiver: Receiver) -> None:
    """Scan and send until ``until`` deliveries succeeded (bounded)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        hooks.scan()
        await hooks.send_due()
        done = hooks.db.one("SELECT COUNT(*) AS n FROM webhook_deliveries"
                            " WHERE status = 'delivered'")
        if done and int(done["n"]) >= until:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries did not finish: {receiver.attempts}")


async def test_webhooks_signed_retried_for_pause_completion_and_expiry(
        svc: Services, receiver: Receiver) -> None:
    hooks = Webhooks(svc.settings, svc.store)
    try:
        paused = await svc.runner.start(TASK, "support", tenant="acme", created_by="alice")
        assert paused.status == "interrupted"
        await _drain(hooks, 1, receiver)
        (first,) = {a["headers"]["webhook-id"] for a in receiver.of_type("run.interrupted")}
        tries = receiver.of_type("run.interrupted")
        assert len(tries) == 3 and all(a["verified"] for a in tries)  # two 500s, then 204
        assert all(a["path"] == "/hooks?token=abc" for a in tries)
        body = tries[-1]["body"]
        assert body["data"]["run_id"] == paused.run_id and body["data"]["status"] == "interrupted"
        assert body["data"]["event"]["action"] == "issue_refund"
        (row,) = deliveries(svc.store.db, paused.run_id)
        assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 3, 204)
        assert row["id"] == first and row["url"].endswith("/hooks?…")

        resumer = InlineResume(svc.runner)
        await svc.approvals.decide(BOB, paused.interrupts[0].value["approval_id"], "approve",
                                   resumer)
        assert resumer.result is not None and resumer.result.status == "success"
        await _drain(hooks, 2, receiver)
        (done,) = {a["body"]["data"]["final_answer"] for a in receiver.of_type("run.completed")}
        assert done and "O-5002" in done

        # An approval nobody decides expires: the expiry is delivered too (on the seeded
        # world again: the order is refunded in full by now).
        sandbox.reset(svc.sandbox)
        second = await svc.runner.start(TASK, "support", tenant="acme", created_by="alice")
        await svc.approvals.sweep(InlineResume(svc.runner), now=time.time() + 10**7)
        await _drain(hooks, 5, receiver)  # interrupted, expired, completed (a refusal)
        expired = receiver.of_type("approval.expired")
        assert expired[-1]["body"]["data"]["run_id"] == second.run_id
        assert expired[-1]["body"]["data"]["event"]["decision"] == "expired"
        # Scanning again finds nothing new; globex's subscriber heard nothing of acme.
        assert hooks.scan() == 0
        assert not any(a["path"] == "/globex" for a in receiver.attempts)
    finally:
        await hooks.aclose()


async def test_webhooks_give_up_after_max_attempts(
        svc: Services, receiver: Receiver) -> None:
    receiver.fail_first = 100
    settings = svc.settings.model_copy(update={"webhooks": svc.settings.webhooks.model_copy(
        update={"max_attempts": 2})})
    hooks = Webhooks(settings, svc.store)
    try:
        run = await svc.runner.start(TASK, "support", tenant="acme", created_by="alice")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                d["status"] == "failed" for d in deliveries(svc.store.db, run.run_id)):
            hooks.scan()
            await hooks.send_due()
            await asyncio.sleep(0.05)
        (row,) = deliveries(svc.store.db, run.run_id)
        assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 2, "HTTP 500")
        assert len(receiver.attempts) == 2
    finally:
        await hooks.aclose()


def test_webhooks_url_rules() -> None:
    assert check_url(" https://hooks.example.com/x?y=1 ") == "https://hooks.example.com/x?y=1"
    for bad in ("ftp://example.com/x", "https://user:pw@example.com/", "not a url", "http://"):
        with pytest.raises(InvalidRequest) as e:
            check_url(bad)
        assert e.value.field == "webhook"
    for private in ("http://127.0.0.1:9/x", "http://10.1.2.3/", "http://localhost/x",
                    "http://169.254.169.254/latest"):
        with pytest.raises(InvalidRequest):
            check_url(private, allow_private=False)
    assert check_url("http://127.0.0.1:9/x", allow_private=True)
    assert shown_url("https://h.example.com:8443/p?token=s3cret") == "https://h.example.com:8443/p?…"
    with pytest.raises(ValueError, match="credentials"):
        WebhookSubscription(tenant="acme", url="https://u:p@example.com/")


def test_webhooks_missing_subscription_secret_is_a_config_error(
        policy_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.api.app import create_app
    from app.errors import ConfigError

    monkeypatch.delenv("ACME_HOOK_SECRET", raising=False)
    hooks = WebhooksConfig(subscriptions=[WebhookSubscription(
        tenant="acme", url="https://hooks.example.com/x", secret_env="ACME_HOOK_SECRET")])
    with pytest.raises(ConfigError, match=r"webhooks\.subscriptions\.0\.secret_env"):
        create_app(policy_settings.model_copy(update={"webhooks": hooks}))
