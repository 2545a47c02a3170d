"""The sweep's accounting of provider calls: a call in flight at a kill may be asked again;
a journaled answer, or two sends by live processes, may not."""

from __future__ import annotations

from collections import Counter

from tests.verify.crash_sweep import Outcome, in_flight


def outcome(senders: dict[str, list[int]], journaled: dict[str, float]) -> Outcome:
    return Outcome(effects=[], status=("success", "satisfied"), journal=len(journaled),
                   cost_usd=0.0, paid=Counter({k: len(v) for k, v in senders.items()}),
                   senders=senders, journaled=journaled, tools_open=[], audit_ok=True,
                   audit_missing=0)


def test_a_call_lost_with_its_killed_process_is_a_resend() -> None:
    got = outcome({"r/a": [10], "r/b": [10, 11]}, {"r/a": 1.0, "r/b": 6.0})
    assert in_flight(got, {10: 5.0}) == (1, [])


def test_a_call_journaled_before_the_kill_and_sent_again_is_paid_twice() -> None:
    got = outcome({"r/b": [10, 11]}, {"r/b": 4.0})
    assert in_flight(got, {10: 5.0}) == (0, ["r/b"])


def test_two_sends_by_live_processes_are_paid_twice() -> None:
    got = outcome({"r/b": [11, 12]}, {"r/b": 6.0})
    assert in_flight(got, {10: 5.0}) == (0, ["r/b"])
    assert in_flight(outcome({"r/b": [11, 11]}, {}), {}) == (0, ["r/b"])


def test_each_kill_excuses_one_send_of_its_own() -> None:
    got = outcome({"r/b": [10, 11, 12]}, {"r/b": 9.0})
    assert in_flight(got, {10: 5.0, 11: 8.0}) == (2, [])
    assert in_flight(outcome({"r/b": [10, 10, 12]}, {}), {10: 5.0}) == (0, ["r/b"])
