"""The baseline gate. A baseline is a scenario set and what each policy reached on it; a
run fails the gate when it does not cover that set (a scenario deleted or renamed, fewer
scenarios, fewer trials, a policy left out) or when it does worse on it (a scenario's
success, the suite's success or pass^k drop beyond a tolerance; cost rises beyond one).

Two baselines are committed: ``evals/baseline.json`` for the full suite (``foreman eval``)
and ``evals/baseline-ci.json`` for the fast subset ``make test`` runs
(tests/evals/test_eval_gate.py). ``foreman eval --write-baseline`` measures and rewrites both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config.settings import PolicyName
from evals.scenario import Scenario, load_suite

HERE = Path(__file__).parent
BASELINE = HERE / "baseline.json"
CI_BASELINE = HERE / "baseline-ci.json"
VERSION = 2
SUCCESS_TOLERANCE = 0.02  # absolute drop in a success rate or pass^k
COST_TOLERANCE = 0.10  # relative rise in cost
KNOWLEDGE = ("recall_at_5", "mrr")  # retrieval figures gated like success rates
ALL_POLICIES: tuple[PolicyName, ...] = ("all-small", "routed", "all-large")
# The fast subset: the suite's main kinds of control flow (approve, edit, reject, expiry
# through the sweeper, plan review, injection, a weak small tier, a failing tool, a stall
# and replan), small enough for about a minute on two cores. Provider faults on the wire
# are left to the full suite and tests/evals/test_runner.py (litellm's client is slow to
# start).
CI_SCENARIOS = ("support-refund-approve", "support-refund-edit", "support-refund-reject",
                "support-refund-expire", "support-plan-review-reject",
                "support-injection-needs-approval", "support-weak-billing-args",
                "support-tool-exception-write", "incident-stall-replan")


@dataclass(frozen=True)
class Selection:
    """Which runs a baseline is measured on."""

    name: str
    path: Path
    seeds: int
    ids: tuple[str, ...] | None = None  # None: every scenario of the bundled suite
    policies: tuple[PolicyName, ...] = ALL_POLICIES

    def scenarios(self) -> list[Scenario]:
        """The selected scenarios of the bundled suite (a listed id that is gone is left
        out here and caught by the gate as missing)."""
        found = load_suite()
        return found if self.ids is None else [s for s in found if s.id in self.ids]


FULL = Selection("full suite", BASELINE, seeds=4)
CI = Selection("CI subset", CI_BASELINE, seeds=2, ids=CI_SCENARIOS)


def fingerprint(scenario: Scenario) -> str:
    """A digest of a scenario's definition (what it asks and what it checks)."""
    text = json.dumps(scenario.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _k(seeds: int) -> str:
    return f"pass^{min(max(seeds, 1), 4)}"


def baseline_of(summary: dict[str, Any], seeds: int, scenarios: list[Scenario],
                knowledge: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a baseline keeps: the scenario set (ids, categories, fingerprints), the seeds,
    the policies, per policy and scenario its trials, success, pass^k and cost, and the
    knowledge retrieval figures when they were measured."""
    k = _k(seeds)
    kept = {m: knowledge[m] for m in KNOWLEDGE} if knowledge else None
    return {"knowledge": kept,
        "version": VERSION, "seeds": seeds, "count": len(scenarios),
        "policies": sorted(summary),
        "scenarios": {s.id: {"category": s.category, "sha256": fingerprint(s)}
                      for s in sorted(scenarios, key=lambda s: s.id)},
        "metrics": {p: {sid: {"trials": v["trials"], "success": v["success"], k: v[k],
                              "cost_usd": v["cost_usd"]}
                        for sid, v in s["scenarios"].items()}
                    for p, s in summary.items()},
    }


def load_baseline(path: Path = BASELINE) -> dict[str, Any] | None:
    """A committed baseline, if there is one."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_baseline(path: Path, baseline: dict[str, Any]) -> None:
    """Write a baseline as stable, reviewable JSON."""
    path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def gate(summary: dict[str, Any], baseline: dict[str, Any] | None,
         knowledge: dict[str, Any] | None = None) -> list[str]:
    """Every way this run falls short of the baseline (empty: the gate passes); retrieval
    figures are compared when the run measured them."""
    if baseline is None:
        return []
    if baseline.get("version") != VERSION:
        return [f"the baseline is format {baseline.get('version', 1)}, not {VERSION}: "
                "rewrite it with `foreman eval --write-baseline`"]
    failures: list[str] = []
    wanted: dict[str, Any] = baseline["scenarios"]
    k = _k(int(baseline["seeds"]))
    for policy in baseline["policies"]:
        if policy not in summary:
            failures.append(f"{policy}: not run, but the baseline has it")
            continue
        now: dict[str, Any] = summary[policy]["scenarios"]
        base: dict[str, Any] = baseline["metrics"][policy]
        for sid in sorted(set(wanted) - set(now)):
            failures.append(f"{policy}: scenario {sid} is missing (deleted or renamed)")
        if len(now) < int(baseline["count"]):
            failures.append(f"{policy}: {len(now)} scenarios, the baseline has "
                            f"{baseline['count']}")
        common = sorted(set(wanted) & set(now) & set(base))
        for sid in common:
            failures += _scenario(policy, sid, now[sid], base[sid])
        if common:
            failures += _suite(policy, k, [now[i] for i in common], [base[i] for i in common])
    for metric, was in (baseline.get("knowledge") or {}).items():
        got = (knowledge or {}).get(metric)
        if got is not None and got < was - SUCCESS_TOLERANCE - 1e-9:
            failures.append(f"knowledge {metric} {was:.3f} → {got:.3f}")
    return failures


def _scenario(policy: str, sid: str, now: dict[str, Any], base: dict[str, Any]) -> list[str]:
    out = []
    if now["trials"] < base["trials"]:
        out.append(f"{policy}: {sid} ran {now['trials']} trials, the baseline "
                   f"{base['trials']}")
    if now["success"] < base["success"] - SUCCESS_TOLERANCE - 1e-9:
        out.append(f"{policy}: {sid} success {base['success']:.2f} → {now['success']:.2f}")
    return out


def _suite(policy: str, k: str, now: list[dict[str, Any]],
           base: list[dict[str, Any]]) -> list[str]:
    out = []
    for metric in ("success", k):
        if any(b.get(metric) is None for b in base):
            continue
        if any(n.get(metric) is None for n in now):
            out.append(f"{policy}: {metric} not measured (too few trials)")
            continue
        mean_was = sum(float(b[metric]) for b in base) / len(base)
        mean_got = sum(float(n[metric]) for n in now) / len(now)
        if mean_got < mean_was - SUCCESS_TOLERANCE - 1e-9:
            out.append(f"{policy}: {metric} {mean_was:.3f} → {mean_got:.3f}")
    cost_was = sum(b["cost_usd"] for b in base)
    cost_now = sum(n["cost_usd"] for n in now)
    if cost_was > 0 and cost_now > cost_was * (1 + COST_TOLERANCE):
        out.append(f"{policy}: cost ${cost_was:.4f} → ${cost_now:.4f} "
                   f"(+{cost_now / cost_was - 1:.0%}, tolerance {COST_TOLERANCE:.0%})")
    return out


def notes(scenarios: list[Scenario], baseline: dict[str, Any] | None) -> list[str]:
    """What does not fail the gate but says the baseline is due a rewrite: scenarios it
    does not know yet, and scenarios changed since it was measured."""
    if not baseline or baseline.get("version") != VERSION:
        return []
    known: dict[str, Any] = baseline["scenarios"]
    new = [s.id for s in scenarios if s.id not in known]
    changed = [s.id for s in scenarios if s.id in known
               and known[s.id].get("sha256") != fingerprint(s)]
    out = [f"new since the baseline: {', '.join(new)}"] if new else []
    if changed:
        out.append(f"changed since the baseline: {', '.join(changed)}")
    return out
