"""The cost-aware router: policy → tier → deployments, fitted to the budget, called with
fallbacks, and written to the cost ledger. ``Router`` lives as long as the process (catalog,
circuit breakers, tenant reservations); ``RunRouter`` is the per-run ``ModelRouter`` port.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from app.config.settings import Settings, Tier
from app.errors import ConfigError
from app.llm.budget import Reservation, RunBudget, TenantSpend
from app.llm.cache import ResponseCache
from app.llm.catalog import Catalog, CatalogModel
from app.llm.fallback import Chain, CircuitBreaker, Fault
from app.llm.journal import Journal
from app.llm.policy import Tiers, make_policy
from app.llm.provider import (
    BAD_OUTPUT,
    Provider,
    ProviderFault,
    ProviderReply,
    bad_output,
)
from app.llm.stream import CallStream
from app.storage.store import LedgerRow, Store
from graphs.errors import BudgetExhausted, ModelCallError
from graphs.ports import EventSink, ModelRequest, ModelResponse, Usage

log = logging.getLogger(__name__)


def is_offline(settings: Settings) -> bool:
    """Offline when forced, or when a routed model has no credentials."""
    if settings.offline:
        return True
    return not all(settings.model(m).has_credentials() for m in settings.routing.roles.values())


@dataclass(frozen=True)
class Route:
    """The deployments chosen for a call (same tier, best first) and why."""

    tier: Tier
    models: list[CatalogModel]
    reason: str


def _rough_tokens(request: ModelRequest) -> int:
    return sum(len(str(m.get("content") or "")) for m in request.messages) // 4


class Router:
    """Picks tier and deployments per call; shared by every run of the process."""

    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, Provider],
        offline: bool,
        store: Store,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.offline = offline
        self.store = store
        self.clock = clock
        routing = settings.routing
        self.catalog = Catalog(settings.models, settings.source)
        self.policy = make_policy(routing.policy, routing)
        fb = routing.fallbacks
        self.breaker = CircuitBreaker(
            fb.circuit_failures, fb.circuit_window_s, fb.circuit_cooldown_s, clock
        )
        self.chain: Chain[tuple[ProviderReply, Reservation, float]] = Chain(fb, self.breaker, rng)
        self.tenants = TenantSpend(store, settings.budgets.tenant_daily_usd)
        self.cache = ResponseCache(store) if routing.cache else None
        if offline:
            self.pool = [self.catalog.get(n) for n in routing.offline.values()]
        else:
            self.pool = [
                m for m in self.catalog.models if not m.entry.scripted and m.entry.has_credentials()
            ]
        if not self.pool:
            raise ConfigError(
                f"{settings.source}: models: no usable model (offline: "
                f"{offline}); check routing.offline and provider keys"
            )
        self.tiers = Tiers([m.tier for m in self.pool])

    def provider(self, model: CatalogModel) -> Provider:
        """The provider serving that model."""
        return self.providers["scripted" if model.entry.scripted else "litellm"]

    def home(self, request: ModelRequest) -> CatalogModel:
        """The role's configured model; ``specialist.<agent>`` uses the agent's model role."""
        roles = self.settings.routing.roles
        name = roles.get(request.role)
        if name is None and request.role.startswith("specialist."):
            name = roles.get(
                str(request.signals.get("model_role", "specialist")), roles.get("specialist")
            )
        if name is None:
            raise ModelCallError(f"no model configured for role {request.role!r}")
        return self.catalog.get(name)

    def deployments(
        self, tier: Tier, request: ModelRequest, home: CatalogModel
    ) -> list[CatalogModel]:
        """Usable models of a tier, the role's own model first, then catalog order."""
        if self.offline:
            name = self.settings.routing.offline.get(tier)
            return [self.catalog.get(name)] if name else []
        tokens = _rough_tokens(request)
        models = [
            m
            for m in self.pool
            if m.tier == tier and m.fits(tokens, needs_tools=bool(request.tools))
        ]
        models.sort(key=lambda m: m.name != home.name)  # stable: catalog order otherwise
        return models

    def route(self, request: ModelRequest, budget: RunBudget) -> Route:
        """Policy's tier, or the strongest cheaper tier whose worst case fits the budget."""
        home = self.home(request)
        choice = self.policy.choose(request, home.tier, self.tiers)
        reason = f"{self.policy.name}: {choice.reason}"
        order = [choice.tier, *self.tiers.below(choice.tier)]
        order += [t for t in self.tiers.order if t not in order]
        problem: str | None = None
        for tier in order:
            models = self.deployments(tier, request, home)
            if not models:
                continue
            first = models[0]
            tokens = self.provider(first).count_tokens(first.entry, request)
            out = request.max_tokens or first.entry.max_tokens
            problem = budget.shortfall(first.worst_case(tokens, out), tokens + out)
            if problem is not None:
                continue
            if tier != choice.tier:
                why = (
                    "budget downgrade"
                    if self._ranks(tier) < self._ranks(choice.tier)
                    else "no usable model"
                )
                reason += f"; {why} {choice.tier}→{tier}"
            return Route(tier, models, reason)
        if problem is not None:
            raise BudgetExhausted(problem)
        raise ModelCallError(
            f"no usable model for {request.role} (tools needed: {bool(request.tools)})"
        )

    def _ranks(self, tier: Tier) -> int:
        return self.tiers.order.index(tier)

    def escalate(self, request: ModelRequest, budget: RunBudget, after: Route) -> Route | None:
        """The next stronger tier that has a model the budget covers, after bad output."""
        home = self.home(request)
        for tier in self.tiers.order[self._ranks(after.tier) + 1:]:
            models = self.deployments(tier, request, home)
            if not models:
                continue
            first = models[0]
            tokens = self.provider(first).count_tokens(first.entry, request)
            out = request.max_tokens or first.entry.max_tokens
            if budget.shortfall(first.worst_case(tokens, out), tokens + out) is None:
                return Route(tier, models, f"{after.reason}; escalated {after.tier}→{tier} "
                                           "after bad output")
        return None

    def for_run(
        self, journal: Journal, events: EventSink, budget_usd: float | None = None
    ) -> RunRouter:
        """The router port for one run, its budget resumed from the run's ledger."""
        totals = self.store.totals(journal.run_id)
        budget = RunBudget(
            self.settings.budgets,
            tenant=journal.tenant,
            tenants=self.tenants,
            events=events,
            run_usd=budget_usd,
            spent_usd=totals.cost_usd,
            spent_tokens=totals.prompt_tokens + totals.completion_tokens,
        )
        return RunRouter(self, journal, events, budget)


class RunRouter:
    """The ``ModelRouter`` port for one run: journaled, budgeted, costed, reported."""

    def __init__(
        self, router: Router, journal: Journal, events: EventSink, budget: RunBudget
    ) -> None:
        self.router = router
        self.journal = journal
        self.events = events
        self.budget = budget

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Replay a call this run already completed; otherwise route, call and record it."""
        stored = await self.journal.aget(request.call_key)
        if stored is not None:
            return stored
        self.budget.check_limits(request)
        await self.budget.refresh()
        route = self.router.route(request, self.budget)
        # Providers see a run-unique key, so scripted tool-call ids never collide across runs.
        unique = replace(request, call_key=f"{self.journal.run_id}/{request.call_key}")
        cache = self.router.cache
        if cache is not None:
            hit = await self.journal.store.db.call(cache.get, route.models[0].entry, unique)
            if hit is not None:
                return await self._answered(
                    request,
                    route,
                    route.models[0],
                    hit,
                    0.0,
                    "cached",
                    route.reason + "; cache hit",
                )
        failures: list[Fault] = []
        stream = CallStream.of(self.journal.run_id, request)

        async def send(name: str) -> tuple[ProviderReply, Reservation, float]:
            model = self.router.catalog.get(name)
            provider = self.router.provider(model)
            tokens = provider.count_tokens(model.entry, unique)
            out = request.max_tokens or model.entry.max_tokens
            held = await self.budget.areserve(model.worst_case(tokens, out), tokens + out)
            started = time.perf_counter()
            try:
                reply = await (stream.call(provider, name, model.entry, unique) if stream
                               else provider.complete(model.entry, unique))
                fault = bad_output(model.entry, request, reply)
            except ProviderFault as f:
                if f.reply is None:
                    await self.budget.arelease(held)
                    raise
                fault = f
            except BaseException:  # cancelled by the timeout too: the hold must go back
                await asyncio.shield(self.budget.arelease(held))
                raise
            if fault is not None:
                # Bad output was still produced and paid for: settle, then refuse it.
                spent = fault.reply or reply
                cost = model.cost(spent.prompt_tokens, spent.completion_tokens,
                                  spent.cached_tokens)
                await self.budget.asettle(held, cost,
                                          spent.prompt_tokens + spent.completion_tokens)
                raise fault
            return reply, held, (time.perf_counter() - started) * 1000

        async def on_fault(fault: Fault) -> None:
            failures.append(fault)
            await self._failed(request, route, fault, len(failures))

        while True:
            timeouts = {m.name: m.entry.timeout_s for m in route.models}
            seen = len(failures)
            try:
                name, (reply, held, latency_ms) = await self.router.chain.run(
                    [m.name for m in route.models], send, on_fault, timeouts
                )
                break
            except ModelCallError:
                faults = [f.fault for f in failures[seen:]]
                if not faults or any(f is None or f.kind not in BAD_OUTPUT for f in faults):
                    raise
                higher = self.router.escalate(request, self.budget, route)
                if higher is None:
                    raise
                route = higher
        model = self.router.catalog.get(name)
        reason = route.reason
        if failures:
            first = failures[0]
            what = "circuit open" if first.fault is None else first.fault.kind
            reason += (
                f"; fallback after {first.model} {what}"
                if name != first.model
                else (f"; retried after {what}")
            )
        if cache is not None:
            await self.journal.store.db.call(cache.put, model.entry, unique, reply)
        response = await self._answered(request, route, model, reply, latency_ms, "ok", reason)
        await self.budget.asettle(
            held, response.usage.cost_usd, reply.prompt_tokens + reply.completion_tokens
        )
        return response

    def _row(
        self,
        request: ModelRequest,
        key: str,
        model: CatalogModel,
        reason: str,
        reply: ProviderReply | None,
        cost: float,
        latency_ms: float,
        outcome: str,
    ) -> LedgerRow:
        agent = request.signals.get("agent")
        return LedgerRow(
            run_id=self.journal.run_id,
            call_key=key,
            thread_id=self.journal.thread_id,
            tenant=self.journal.tenant,
            role=request.role,
            agent=str(agent) if agent else None,
            model=model.name,
            tier=model.tier,
            route_reason=reason,
            prompt_tokens=reply.prompt_tokens if reply else 0,
            completion_tokens=reply.completion_tokens if reply else 0,
            cached_tokens=reply.cached_tokens if reply else 0,
            cost_usd=cost,
            latency_ms=round(latency_ms, 2),
            outcome=outcome,
        )

    async def _answered(
        self,
        request: ModelRequest,
        route: Route,
        model: CatalogModel,
        reply: ProviderReply,
        latency_ms: float,
        outcome: str,
        reason: str,
    ) -> ModelResponse:
        cost = (
            0.0
            if outcome == "cached"
            else model.cost(reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens)
        )
        response = ModelResponse(
            content=reply.content,
            tool_calls=reply.tool_calls,
            model=model.name,
            usage=Usage(reply.prompt_tokens, reply.completion_tokens, cost),
        )
        row = self._row(request, request.call_key, model, reason, reply, cost, latency_ms, outcome)
        await self.journal.arecord(row, response)
        self._emit(row, request)
        return response

    async def _failed(self, request: ModelRequest, route: Route, fault: Fault, n: int) -> None:
        model = self.router.catalog.get(fault.model)
        outcome = "circuit_open" if fault.fault is None else fault.fault.kind
        spent = fault.fault.reply if fault.fault is not None else None
        row = self._row(
            request,
            f"{request.call_key}#{n}",
            model,
            route.reason,
            spent,
            model.cost(spent.prompt_tokens, spent.completion_tokens, spent.cached_tokens)
            if spent else 0.0,
            fault.latency_ms,
            outcome,
        )
        await self.journal.arecord(row, None)
        self._emit(
            row,
            request,
            retry_in_s=fault.wait_s,
            error=str(fault.fault) if fault.fault else "circuit open",
        )

    def _emit(self, row: LedgerRow, request: ModelRequest, **extra: object) -> None:
        self.events.emit(
            "model_call",
            {
                "role": row.role,
                "agent": row.agent,
                "model": row.model,
                "tier": row.tier,
                "call_key": row.call_key,
                "outcome": row.outcome,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "cached_tokens": row.cached_tokens,
                "cost_usd": row.cost_usd,
                "latency_ms": row.latency_ms,
                "route_reason": row.route_reason,
                "prompt_chars": sum(len(str(m.get("content") or "")) for m in request.messages),
                **extra,
            },
        )
