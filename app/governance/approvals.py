"""The approvals service: the one way a human decision reaches a paused run.

The HTTP API (approvals routes and ``command.resume`` on the runs API), the inbox page,
the ``foreman approvals`` commands and ``foreman run``'s prompt all decide through
:class:`ApprovalService`, so every decision gets the same checks — role, tenant, the run's
requester may not decide it, single use, not stale, bound to the arguments' hash, edited
arguments validated and the policy evaluated again — and the same audit entry. How the run
then continues is the caller's :class:`Resumer` (in the background on the server, inline in
the CLI). Where the resume is a queue job (distributed mode: a :class:`DeferredResume`), it
is deferred in the transaction that settles the approvals, so a decision is never recorded
without the job that acts on it. The sweeper turns approvals past their expiry into
rejections.

The store is synchronous, so every step of a decision that reads or writes it runs on a
worker thread (the server's event loop goes on serving meanwhile); the settle transaction
stays one transaction there. Only the checkpoint read of what the run waits for and a resume
that spawns a task stay on the loop, under the resumer's admission lock for the thread
(``app.governance.resumers.AdmittingResume``) from its check to that spawn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.api.auth import Principal
from app.config.settings import Settings
from app.errors import Conflict, Forbidden, InvalidRequest, NotFound
from app.governance.policy.rules import RuleConfig
from app.governance.resumers import DeferredResume, Resumer, admitting
from app.runs import crashpoints
from app.runs.runner import Runner
from app.storage.store import ApprovalRow, RunRow, Store
from app.storage.thread_keys import local_id
from graphs.approval import parse_decision
from graphs.ledger import TaskLedgerOut
from graphs.ports import GateAction, GateRequest, PolicyGate
from tools.spec import args_sha256

log = logging.getLogger(__name__)
KINDS = ("approve", "reject", "edit", "respond")
EXPIRY_ACTOR = "system:expiry"


@dataclass(frozen=True)
class _Prepared:
    row: ApprovalRow
    run: RunRow
    kind: str
    value: dict[str, Any]
    args_sha256: str
    extra_budget: float = 0.0


class ApprovalService:
    """Lists, shows and decides approvals; expires overdue ones."""

    def __init__(self, settings: Settings, store: Store, runner: Runner, gate: PolicyGate,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.gate = gate
        self.clock = clock

    # reading
    def find(self, principal: Principal, status: str | None = None) -> list[ApprovalRow]:
        """The principal's tenant's approvals, newest first."""
        return self.store.list_approvals(principal.tenant, status)

    def get(self, principal: Principal, approval_id: str) -> ApprovalRow:
        """One approval of the principal's tenant (another tenant's is "not found")."""
        row = self.store.get_approval(approval_id) if len(approval_id) <= 128 else None
        if row is None or row.tenant != principal.tenant:
            raise NotFound(f"approval {approval_id} not found")
        return row

    def check_no_pending(self, thread_id: str) -> None:
        """New input to a thread that waits for a decision would leave that approval
        stale: ``Conflict`` naming what it waits for."""
        waiting = self.store.thread_pending_approvals(thread_id)
        if waiting:
            ids = ", ".join(r.id for r in waiting)
            raise Conflict(f"thread {local_id(thread_id)} is waiting for an approval ({ids}); "
                           f"decide it first (POST /v1/approvals/{waiting[0].id}/decision) or "
                           "resume the thread with command.resume")

    # deciding
    async def decide(self, principal: Principal, approval_id: str, decision: str,
                     resumer: Resumer, args: Mapping[str, Any] | None = None,
                     message: str = "") -> ApprovalRow:
        """Decide one approval and resume its run."""
        row = await asyncio.to_thread(self.get, principal, approval_id)
        pending = await self._pending(row.thread_id)
        prepared = await asyncio.to_thread(self._prepare, principal, row, decision, args,
                                           message, pending)
        await self._commit(principal, [prepared], resumer)
        done = await asyncio.to_thread(self.store.get_approval, approval_id)
        assert done is not None
        return done

    async def decide_resume(self, principal: Principal, thread_id: str, raw: Any,
                            resumer: Resumer) -> RunRow:
        """A ``command.resume`` value (any accepted spelling, or an id map) as decisions."""
        run = await asyncio.to_thread(self.store.latest_run, thread_id)
        if run is None:
            raise NotFound(f"thread {local_id(thread_id)} has no run to resume")
        pending = await self._pending(thread_id)
        prepared = await asyncio.to_thread(self._prepare_resume, principal, raw, pending)
        await self._commit(principal, prepared, resumer)
        return run

    def _prepare_resume(self, principal: Principal, raw: Any,
                        pending: Mapping[str, Mapping[str, Any]]) -> list[_Prepared]:
        prepared = []
        for interrupt_id, value in resume_map(raw, list(pending)).items():
            approval_id = str(pending[interrupt_id].get("approval_id") or interrupt_id)
            row = self.store.get_approval(approval_id)
            if row is None or row.tenant != principal.tenant:
                raise Conflict(f"interrupt {interrupt_id} has no approval on record")
            d = parse_decision(value)
            prepared.append(self._prepare(principal, row, d.kind, d.args, d.message, pending))
        return prepared

    async def _pending(self, thread_id: str) -> dict[str, dict[str, Any]]:
        run = await asyncio.to_thread(self.store.latest_run, thread_id)
        if run is None:
            return {}
        found = await self.runner.pending_interrupts(thread_id, run.team)
        return {p.id: p.value for p in found}

    def authorize(self, principal: Principal, row: ApprovalRow) -> None:
        """Role, tenant, approver group and separation of duties; raises ``Forbidden`` /
        ``NotFound``. A refusal within the tenant is written to the audit log."""
        if row.tenant != principal.tenant:
            raise NotFound(f"approval {row.id} not found")
        refusal = self.refusal(principal, row)
        if refusal is not None:
            if principal.has("approver"):  # a role check alone is not worth an entry
                self.store.audit_record(row.tenant, "approval_refused", {
                    "approval_id": row.id, "interrupt_id": row.interrupt_id,
                    "policy_rule": row.rule, "approver_group": row.approver_group,
                    "reason": refusal}, run_id=row.run_id, actor=principal.name)
            raise Forbidden(refusal)

    def refusal(self, principal: Principal, row: ApprovalRow) -> str | None:
        """Why ``principal`` may not decide ``row`` (None: it may)."""
        if not principal.has("approver"):
            return "deciding an approval needs role approver or admin"
        if principal.local:
            return None  # local dev mode: the one local operator decides everything
        rule = self._rule(row.rule)
        admin = "admin" in principal.roles
        if row.requester == principal.name and not (admin and rule is not None
                                                    and rule.admin_may_self_approve):
            return "the requester of a run may not decide its approvals"
        group = row.approver_group
        if group and not principal.in_group(group) and not (
                admin and rule is not None and rule.admin_override):
            return (f"approval {row.id} needs approver group {group} (policy rule "
                    f"{row.rule})")
        return None

    def _rule(self, name: str | None) -> RuleConfig | None:
        return next((r for r in self.settings.policy.rules if r.name == name), None)

    def _prepare(self, principal: Principal, row: ApprovalRow, decision: str,
                 args: Mapping[str, Any] | None, message: str,
                 pending: Mapping[str, Mapping[str, Any]]) -> _Prepared:
        self.authorize(principal, row)
        if decision not in KINDS:
            raise InvalidRequest(f"decision must be one of {', '.join(KINDS)}",
                                 field="decision")
        if row.status != "pending":
            raise Conflict(f"approval {row.id} is already {row.status}")
        if row.expires_at is not None and self.clock() >= row.expires_at:
            raise Conflict(f"approval {row.id} expired: no decision before its expiry "
                           f"({round(row.expires_at - row.created_at)}s after it was asked)")
        value = pending.get(row.interrupt_id)
        if value is None or value.get("args_sha256") != row.args_sha256:
            raise Conflict(f"approval {row.id} is stale: its run no longer waits for it")
        run = self.store.get_run(row.run_id)
        if run is None:
            raise NotFound(f"run {row.run_id} not found")
        message = message.strip()
        if decision == "respond" and not message:
            raise InvalidRequest("a response needs a message", field="message")
        out: dict[str, Any] = {"decision": decision, "message": message}
        digest, extra = row.args_sha256, 0.0
        if decision == "edit":
            edited = self._check_edit(row, run, dict(args or {}))
            out["args"], digest = edited, args_sha256(edited)
        if decision == "approve" and row.kind == "budget":
            extra = self._extension(run, args)
        return _Prepared(row, run, decision, out, digest, extra)

    def _check_edit(self, row: ApprovalRow, run: RunRow, args: dict[str, Any]) -> dict[str, Any]:
        """Edited arguments, validated against the tool's schema and the policy again."""
        if row.kind == "budget":
            raise InvalidRequest("a budget extension is approved with args.amount_usd, "
                                 "not edited", field="decision")
        if row.kind == "plan":
            try:
                return {"ledger": TaskLedgerOut.model_validate(
                    args.get("ledger", args)).model_dump()}
            except ValidationError as e:
                raise _invalid(e, "args.ledger") from e
        spec = self.runner.registry.find(row.action)
        if spec is None:
            raise InvalidRequest(f"unknown tool {row.action}", field="args")
        try:
            # Strict, as JSON: true is not 1.0 and "189" is not a number.
            clean = spec.args_model.model_validate_json(
                json.dumps(args, allow_nan=False), strict=True).model_dump(mode="json")
        except ValidationError as e:
            raise _invalid(e, "args") from e
        except ValueError as e:
            raise InvalidRequest("args: numbers must be finite", field="args") from e
        verdict = self.gate.check(GateRequest(
            team=run.team, agent=row.agent or "", tool=spec.name, args=clean,
            side_effect=spec.side_effect, risk=spec.risk, thread_id=local_id(run.thread_id),
            tenant=run.tenant))
        if verdict.action == GateAction.DENY:
            raise Forbidden(f"the edited call is denied by policy rule {verdict.rule}: "
                            f"{verdict.reason}")
        return clean

    def _extension(self, run: RunRow, args: Mapping[str, Any] | None) -> float:
        raw = (args or {}).get("amount_usd")
        if raw is None:  # no amount: the run gets its original budget once more
            return float(run.budget_usd or self.settings.budgets.run_usd or 1.0)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidRequest("amount_usd must be a number", field="args.amount_usd")
        amount = float(raw)
        if not 0 < amount <= 10_000:
            raise InvalidRequest("amount_usd must be above 0 and at most 10000",
                                 field="args.amount_usd")
        return amount

    async def _commit(self, principal: Principal, prepared: list[_Prepared],
                      resumer: Resumer) -> None:
        if not prepared:
            raise Conflict("nothing is waiting for a decision")
        run = prepared[0].run
        async with admitting(resumer, run.thread_id):
            decisions = await asyncio.to_thread(self._settle, principal, prepared, resumer)
            crashpoints.hit("approval.settle")
            if not isinstance(resumer, DeferredResume):
                await resumer.resume(run, decisions)

    def _settle(self, principal: Principal, prepared: list[_Prepared],
                resumer: Resumer) -> dict[str, Any]:
        """The resumer's check, then every decision of the batch (and a deferred resume) in
        one transaction: the decisions by interrupt id."""
        run = prepared[0].run
        resumer.check(run)
        decisions: dict[str, Any] = {}
        with self.store.db.tx() as c:  # every decision of the batch, and a queued resume
            for p in prepared:
                event = {"interrupt_id": p.row.interrupt_id, "approval_id": p.row.id,
                         "decision": p.kind, "by": principal.name,
                         "message": p.value["message"], "args_sha256": p.args_sha256}
                if "args" in p.value:
                    event["args"] = p.value["args"]
                if p.extra_budget:
                    event["budget_extension_usd"] = p.extra_budget
                if self.store.settle_approval_in(c, p.row.id, "decided", p.kind,
                                                 principal.name, p.value["message"],
                                                 event) is None:
                    raise Conflict(f"approval {p.row.id} was decided by someone else first")
                if p.extra_budget:
                    current = p.run.budget_usd or self.settings.budgets.run_usd or 0.0
                    self.store.extend_budget_in(c, p.run.id, current + p.extra_budget)
                decisions[p.row.interrupt_id] = p.value
            if isinstance(resumer, DeferredResume):
                resumer.resume_in(c, run, decisions)
        return decisions

    # expiry
    async def sweep(self, resumer: Resumer, now: float | None = None) -> list[str]:
        """Expire overdue approvals and resume their runs with a rejection."""
        now = self.clock() if now is None else now
        expired = []
        for row in await asyncio.to_thread(self.store.overdue_approvals, now):
            ttl = round((row.expires_at or now) - row.created_at)
            message = f"expired: no decision within {ttl}s"
            run = await asyncio.to_thread(self.store.get_run, row.run_id)
            pending = await self._pending(row.thread_id)
            decisions = {row.interrupt_id: {"decision": "reject", "message": message}}
            async with admitting(resumer, row.thread_id):
                settled, resume = await asyncio.to_thread(
                    self._expire, row, run, row.interrupt_id in pending, resumer, decisions,
                    now)
                if not settled:
                    continue
                crashpoints.hit("approval.settle")
                expired.append(row.id)
                if run is None or not resume or isinstance(resumer, DeferredResume):
                    continue
                try:
                    await resumer.resume(run, decisions)
                except Conflict:
                    log.warning("expired approval's run is busy; it sees the expiry on "
                                "resume", extra={"run_id": run.id})
        return expired

    def _expire(self, row: ApprovalRow, run: RunRow | None, waiting: bool, resumer: Resumer,
                decisions: dict[str, Any], now: float) -> tuple[bool, bool]:
        """Settle one overdue approval (with its deferred resume, where the run waits for it
        and can take one): (whether it was settled here, whether its run resumes)."""
        message = decisions[row.interrupt_id]["message"]
        event = {"interrupt_id": row.interrupt_id, "approval_id": row.id,
                 "decision": "expired", "by": EXPIRY_ACTOR, "message": message,
                 "args_sha256": row.args_sha256}
        resume = run is not None and waiting
        if run is not None and resume:
            try:
                resumer.check(run)
            except Conflict:
                resume = False
                log.warning("expired approval's run is busy; it sees the expiry on "
                            "resume", extra={"run_id": run.id})
        with self.store.db.tx() as c:
            settled = self.store.settle_approval_in(c, row.id, "expired", "reject",
                                                    EXPIRY_ACTOR, message, event, at=now)
            if (settled is not None and resume and run is not None
                    and isinstance(resumer, DeferredResume)):
                resumer.resume_in(c, run, decisions)
        return settled is not None, resume


def resume_map(decision: Any, pending: list[str]) -> dict[str, Any]:
    """A resume value as ``{interrupt_id: value}``, checked against the pending ids."""
    if not pending:
        raise Conflict("nothing is waiting for a decision on this thread")
    ids = set(pending)
    if isinstance(decision, dict) and decision and set(decision) <= ids:
        return dict(decision)
    if isinstance(decision, dict) and decision and all(
            isinstance(k, str) and len(k) >= 16 for k in decision) and not (
            {"type", "decision", "decisions", "args", "message"} & set(decision)):
        raise Conflict("the decision names interrupts that are not pending (stale or "
                       "already decided)")
    if len(pending) > 1:
        raise InvalidRequest("several interrupts are pending: resume with a map of "
                             "interrupt id to decision", field="command.resume")
    return {pending[0]: decision}


def _invalid(err: ValidationError, prefix: str) -> InvalidRequest:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    where = f"{prefix}.{loc}" if loc else prefix
    return InvalidRequest(f"{where}: {first['msg']}", field=where)
