"""Running scenarios: one run per (scenario, policy, seed), each on its own temp data dir,
spread over worker processes (the machine has two cores), scored on the world it leaves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import respx

from app.config.settings import PolicyName, Settings, load_settings
from app.governance.approvals import ApprovalService
from app.governance.resumers import InlineResume
from app.runs.pauses import Interrupt
from app.runs.runner import RunResult
from evals.behaviours import Script
from evals.faults import (
    API_BASE,
    DUMMY_KEY,
    KEY_ENV,
    Noise,
    NoisyProvider,
    WireModel,
    raising_tools,
    wire_settings,
)
from evals.metrics import score
from evals.scenario import Approval, Scenario
from evals.world import gold_shape, prepare, snapshot
from evals.world_calls import check_world, fail_record
from tools.spec import args_sha256

if TYPE_CHECKING:
    from app.services import Services

ROOT = Path(__file__).resolve().parent.parent
POLICIES: tuple[PolicyName, ...] = ("all-small", "routed", "all-large")
RUN_TIMEOUT_S = 180.0
_PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_API_KEY", "GEMINI_API_KEY",
                  "GROQ_API_KEY", "MISTRAL_API_KEY", "COHERE_API_KEY", "TOGETHER_API_KEY")


def offline_env() -> None:
    """No provider key in the environment, litellm's local price map, httpx transport (so
    respx sees every request), and only the dummy key of the mocked wire deployments."""
    for key in _PROVIDER_KEYS:
        os.environ.pop(key, None)
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["DISABLE_AIOHTTP_TRANSPORT"] = "True"
    os.environ[KEY_ENV] = DUMMY_KEY
    os.environ.pop("FOREMAN_OFFLINE", None)


class HashingEmbedder:
    """Bag-of-words hashing embeddings: deterministic, instant, no model to load."""

    name = "eval-hashing-256"

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * 256
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            h = int(hashlib.sha256(word.encode()).hexdigest(), 16)
            vec[h % 256] += 1.0 if (h >> 8) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """The query's vector."""
        return self._vector(text)


def configure(base: Settings, scenario: Scenario, policy: PolicyName, data_dir: Path) -> Settings:
    """The scenario's settings: offline (or wired to the mocked endpoint), its team options."""
    teams = dict(base.teams)
    team = teams[scenario.team]
    teams[scenario.team] = team.model_copy(update={
        "plan_review": scenario.plan_review,
        "limits": team.limits.model_copy(update=scenario.team_limits)})
    knowledge = base.knowledge.model_copy(update={"ingest_bundled": scenario.knowledge})
    routing = base.routing.model_copy(update={"cache": False})
    settings = base.model_copy(update={
        "data_dir": data_dir, "offline": not scenario.wire, "teams": teams,
        "knowledge": knowledge, "routing": routing, "scripted_latency_ms": 0.0,
        "scripted_weak_roles": []}).with_policy(policy)
    return wire_settings(settings) if scenario.wire else settings


def _answer(rule: Approval | None, pending: Interrupt) -> dict[str, Any]:
    if rule is None:
        return {"decision": "reject", "message": "not expected by the scenario"}
    if rule.decision == "edit" and rule.drop_agents:
        ledger = dict(pending.value["action_request"]["args"]["ledger"])
        ledger["plan"] = [s for s in ledger["plan"] if s["agent"] not in rule.drop_agents]
        return {"decision": "edit", "args": {"ledger": ledger}}
    answer: dict[str, Any] = {"decision": rule.decision}
    if rule.args is not None:
        answer["args"] = rule.args
    if rule.message:
        answer["message"] = rule.message
    return answer


class EvalClock:
    """The approvals sweeper's clock in an eval run: real time until the scenario lets an
    approval expire, then moved past its expiry (nobody waits a day for a TTL)."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew

    def move_past(self, moment: float) -> None:
        """From now on the clock reads a second after ``moment`` (or later)."""
        self.skew = max(self.skew, moment + 1.0 - time.time())


@dataclass
class Human:
    """The scenario's side of a run's pauses: which of its approval rules answers each one
    (consumed in order), what the run asked and what was decided."""

    scenario: Scenario
    asked: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    used: set[int] = field(default_factory=set)

    def rule_for(self, pending: Interrupt) -> Approval | None:
        """The rule answering this pause (None: the scenario did not expect it)."""
        action = str(pending.value["action_request"]["action"])
        self.asked.append(action)
        i = next((i for i, a in enumerate(self.scenario.approvals)
                  if a.action == action and i not in self.used), None)
        rule = self.scenario.approvals[i] if i is not None else None
        if i is not None:
            self.used.add(i)
        self.decisions.append({
            "action": action, "decision": rule.decision if rule else "reject",
            "interrupt_id": pending.id,
            "args_sha256": pending.value.get("args_sha256") or
            args_sha256(pending.value["action_request"]["args"])})
        return rule


async def answer_pauses(s: Services, human: Human, result: RunResult, timeout_s: float,
                        clock: EvalClock | None = None, max_resumes: int = 12) -> RunResult:
    """Answer a run's pauses from the scenario until it ends (or ``max_resumes`` pauses).

    Decisions resume the run directly; an approval the scenario lets expire is left
    undecided, the clock moves past its expiry and the product's own sweeper
    (:meth:`ApprovalService.sweep`) expires it and resumes the run, as on a server.
    """
    clock = clock or EvalClock()
    for _ in range(max_resumes):
        if result.status != "interrupted":
            break
        rules = [(p, human.rule_for(p)) for p in result.interrupts]
        expiring = [p for p, r in rules if r is not None and r.decision == "expire"]
        if expiring and len(expiring) < len(rules):
            raise ValueError(f"{human.scenario.id}: a pause mixes an expiry with decisions")
        if expiring:
            result = await asyncio.wait_for(_expire(s, result, clock), timeout_s)
        else:
            answers = {p.id: _answer(r, p) for p, r in rules}
            result = await asyncio.wait_for(s.runner.resume(result.thread_id, answers),
                                            timeout_s)
    return result


async def _expire(s: Services, result: RunResult, clock: EvalClock) -> RunResult:
    due = [r.expires_at for r in s.store.thread_pending_approvals(result.thread_id)
           if r.expires_at is not None]
    if not due:
        raise ValueError(f"run {result.run_id} waits for no approval that can expire")
    clock.move_past(max(due))
    sweeper = ApprovalService(s.settings, s.store, s.runner, s.approvals.gate, clock=clock)
    resumed = InlineResume(s.runner)
    await sweeper.sweep(resumed)
    return resumed.result or result


@contextmanager
def _mocked_wire(wire: WireModel | None) -> Iterator[respx.MockRouter]:
    # Every run, wired or not: any HTTP request that is not mocked fails the run.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        if wire is not None:
            mock.post(f"{API_BASE}/chat/completions").mock(side_effect=wire)
        yield mock


async def run_scenario(scenario: Scenario, policy: PolicyName, seed: int, workdir: Path,
                       base: Settings | None = None) -> dict[str, Any]:
    """Run one scenario once and score it."""
    from app.services import open_services

    offline_env()
    base = base or load_settings(os.environ.get("FOREMAN_EVAL_CONFIG") or ROOT / "foreman.yaml")
    data = workdir / f"{scenario.id}.{policy}.{seed}"
    shutil.rmtree(data, ignore_errors=True)
    settings = configure(base, scenario, policy, data)
    prepare(data / "sandbox.db", scenario.fixture)
    before = snapshot(data / "sandbox.db")
    script = Script(scenario, seed)
    noise = Noise(scenario.id, seed)
    wire = WireModel(script, scenario.faults, noise) if scenario.wire else None
    human = Human(scenario)
    obs: dict[str, Any] = {"status": "error", "stop_reason": None, "events": []}
    started = time.perf_counter()
    with _mocked_wire(wire) as mock, raising_tools(scenario.faults) as hooks:
        async with open_services(settings, scripted=NoisyProvider(script, noise),
                                 embedder=HashingEmbedder()) as s:
            try:
                result = await asyncio.wait_for(s.runner.start(
                    scenario.task, scenario.team, budget_usd=scenario.budget_usd), RUN_TIMEOUT_S)
                result = await answer_pauses(s, human, result, RUN_TIMEOUT_S)
                obs["http_requests"] = len(mock.calls)
                obs.update(status=result.status, stop_reason=result.stop_reason,
                           final_answer=result.final_answer, error=result.error,
                           events=s.store.events(result.run_id))
            except TimeoutError:
                obs["error"] = f"run exceeded {RUN_TIMEOUT_S:.0f}s"
            world = await check_world(scenario.expect.world_calls, s.registry, s.toolbox.secrets)
    obs.update(before=before, after=snapshot(data / "sandbox.db"), asked=human.asked,
               decisions=human.decisions, wall_s=round(time.perf_counter() - started, 3))
    record = fail_record(score(scenario, obs, gold_shape(scenario, data)), world)
    injected = (wire.injected if wire else []) + noise.injected + [
        {"kind": "tool_exception", "tool": n, "times": h.raised} for n, h in hooks.items()]
    record.update(policy=policy, seed=seed, variant=script.variant, faults_injected=injected,
                  noise_slips=len(noise.injected),
                  http_requests=obs.get("http_requests", 0), no_provider_keys=not any(
                      os.environ.get(k) for k in _PROVIDER_KEYS))
    shutil.rmtree(data, ignore_errors=True)
    return record


def _worker_init() -> None:
    offline_env()
    # Injected tool failures are logged with tracebacks; in the suite they are expected.
    logging.getLogger("app").setLevel(logging.CRITICAL)
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)


def _work(args: tuple[dict[str, Any], PolicyName, int, str]) -> dict[str, Any]:
    scenario, policy, seed, workdir = args
    return asyncio.run(run_scenario(Scenario.model_validate(scenario), policy, seed,
                                    Path(workdir)))


def run_suite(scenarios: list[Scenario], policies: list[PolicyName], seeds: int, *,
              workers: int = 2, on_done: Callable[[dict[str, Any]], None] | None = None
              ) -> list[dict[str, Any]]:
    """Every (scenario, policy, seed) run; in ``workers`` processes, or inline when 0."""
    jobs = [(s.model_dump(mode="json"), p, k) for s in scenarios for p in policies
            for k in range(seeds)]
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="foreman-eval-") as tmp:
        if workers <= 0:
            for scenario, policy, seed in jobs:
                rec = _work((scenario, policy, seed, tmp))
                records.append(rec)
                if on_done:
                    on_done(rec)
            return records
        # Wire runs are the slowest (litellm's import): start them first.
        jobs.sort(key=lambda j: not any(f["kind"] != "tool_exception"
                                        for f in j[0].get("faults", [])))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = [pool.submit(_work, (s, p, k, tmp)) for s, p, k in jobs]
            for fut in as_completed(futures):
                rec = fut.result()
                records.append(rec)
                if on_done:
                    on_done(rec)
    return sorted(records, key=lambda r: (r["policy"], r["scenario"], r["seed"]))
