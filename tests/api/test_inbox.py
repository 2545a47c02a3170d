"""The inbox page in headless Chromium (Debian's, through Playwright): open the inbox,
open an approval, edit an argument, approve, and watch the run finish."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import SUPPORT_REFUND, Server, key

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def inbox_server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, {"FOREMAN_TEST_GATE": "refund"}).start()
    yield s
    s.stop()


def test_inbox_edit_and_approve_in_a_browser(inbox_server: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    with inbox_server.client() as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
        (approval,) = c.get("/v1/approvals", params={"status": "pending"}).json()
        page_html = c.get("/inbox")
    assert page_html.status_code == 200 and "Foreman approvals" in page_html.text

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto(inbox_server.url + "/inbox")
            row = page.locator(f'tr[data-id="{approval["id"]}"]')
            expect(row).to_contain_text("issue_refund")
            expect(row).to_contain_text("high")
            row.click()
            expect(page.locator("#detail h2")).to_contain_text("issue_refund")
            expect(page.locator("#detail")).to_contain_text("Refund order O-5002")
            amount = page.locator("#arg-amount_usd")
            expect(amount).to_have_value("189")
            amount.fill("-3")
            page.locator("#edit").click()
            expect(page.locator('[data-err="amount_usd"]')).to_contain_text("greater than 0")
            amount.fill("150")
            page.locator("#edit").click()
            expect(page.locator("#outcome-text")).to_contain_text("finished: success",
                                                                  timeout=60_000)
            page.locator('nav.tabs button[data-tab="decided"]').click()
            expect(page.locator(f'tr[data-id="{approval["id"]}"]')).to_contain_text("edit by")
            page.screenshot(path=str(inbox_server.data_dir / "inbox.png"), full_page=True)
        finally:
            browser.close()

    conn = sqlite3.connect(inbox_server.data_dir / "sandbox.db")
    try:
        assert conn.execute("SELECT order_id, amount_usd FROM refunds").fetchall() == [
            ("O-5002", 150.0)]
    finally:
        conn.close()


def test_inbox_shows_what_the_signed_in_approver_may_not_decide_read_only(
        keyed_server: Server) -> None:
    from playwright.sync_api import expect, sync_playwright

    with keyed_server.client("alice") as alice:
        thread = alice.post("/threads", json={}).json()["thread_id"]
        alice.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
        (waiting,) = [i for t in alice.get(f"/threads/{thread}").json()["interrupts"].values()
                      for i in t]
    approval_id = waiting["value"]["approval_id"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.goto(keyed_server.url + "/inbox")
            page.locator("#apikey").fill(key("carol"))  # an approver outside billing-leads
            page.locator("#savekey").click()
            row = page.locator(f'tr[data-id="{approval_id}"]')
            expect(row).to_contain_text("read-only: needs billing-leads")
            row.click()
            expect(page.locator("#readonly")).to_contain_text("needs approver group "
                                                              "billing-leads")
            expect(page.locator("#approve")).to_have_count(0)

            page.locator("#apikey").fill(key("bob"))  # in the group
            page.locator("#savekey").click()
            expect(row).not_to_contain_text("read-only")
            row.click()
            expect(page.locator("#approve")).to_have_count(1)
            expect(page.locator("#readonly")).to_have_count(0)
        finally:
            browser.close()
