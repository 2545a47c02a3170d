"""Reports: JSON, Markdown, HTML with the cost-vs-success chart, and JUnit XML; the gate
they show is evals/gate.py's."""

from __future__ import annotations

import html
import io
import json
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.metrics import aggregate, by_scenario

# What each figure measures, where its name alone would overstate it.
MEASURES = {
    "injection_attack_success_rate": (
        "deterministic defences (scripted obedient model): the scripted specialists obey "
        "every instruction planted in tool output, so this is the share of attacks that got "
        "past the policy gate, approvals and tool-output fencing; prompt defences (a model "
        "that declines) are measured by the live suite, `foreman eval --live`"),
    "cost_usd": ("router price table × tokens counted by litellm's tokenizer for each model; "
                 "the scripted models are priced like their cloud counterparts"),
    "success_under_noise": (
        "task success of the runs in which a seeded slip hit (evals/faults.py NOISE_RATES: "
        "3% of small-tier calls, 1% of large-tier calls, seeds ≥ 1)"),
}
INJECTION_LABEL = "injection success, deterministic defences (scripted obedient model)"
METRICS = ("success", "pass^1", "pass^4", "tool_f1", "arg_accuracy", "trajectory_match",
           "approvals_ok", "rounds", "model_calls", "cost_usd")


def git_sha(root: Path) -> str:
    """The commit the suite ran on (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,  # noqa: S607
                             text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per policy: aggregate metrics and per-scenario metrics."""
    out: dict[str, Any] = {}
    for policy in sorted({r["policy"] for r in records}):
        rs = [r for r in records if r["policy"] == policy]
        out[policy] = {"aggregate": aggregate(rs), "scenarios": by_scenario(rs)}
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 0.1 and v != 0 else f"{v:.2f}"
    return str(v)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """Routed cost as a fraction of all-large, and their success levels."""
    agg = {p: s["aggregate"] for p, s in summary.items()}
    if "routed" not in agg or "all-large" not in agg or not agg["all-large"]["cost_usd"]:
        return {}
    return {"routed_cost_fraction_of_all_large": round(
                agg["routed"]["cost_usd"] / agg["all-large"]["cost_usd"], 4),
            "routed_success": agg["routed"]["task_success"],
            "all_large_success": agg["all-large"]["task_success"]}


def aggregate_table(summary: dict[str, Any]) -> str:
    """Markdown table: one row per policy."""
    cols = ["task_success", "pass^1", "pass^2", "pass^3", "pass^4", "tool_f1", "arg_accuracy",
            "trajectory_match", "approval_correctness", "robustness_under_faults",
            "success_under_noise", "injection_attack_success_rate",
            "ledger_parse_failure_rate", "mean_rounds", "model_calls", "cost_usd"]
    names = [INJECTION_LABEL if c == "injection_attack_success_rate" else c for c in cols]
    lines = ["| policy | " + " | ".join(names) + " |", "|---" * (len(cols) + 1) + "|"]
    for policy, s in summary.items():
        a = s["aggregate"]
        lines.append(f"| {policy} | " + " | ".join(_fmt(a[c]) for c in cols) + " |")
    return "\n".join(lines)


def knowledge_line(kb: dict[str, Any]) -> str:
    """The retrieval figures on the labelled questions, as one report line."""
    return (f"Knowledge retrieval ({kb['embedder']}, {kb['questions']} labelled questions in "
            f"evals/knowledge.yaml): recall@5 **{kb['recall_at_5']:.3f}**, MRR "
            f"**{kb['mrr']:.3f}**, recall@1 {kb['recall_at_1']:.3f}, query p95 "
            f"{kb['p95_query_ms']} ms.\n")


def markdown(summary: dict[str, Any], baseline: dict[str, Any] | None, failures: list[str],
             meta: dict[str, Any]) -> str:
    """eval-report.md: aggregates, then scenario × metric per policy with ✅/❌ and Δ."""
    out = [f"# Foreman eval report\n\n{meta['scenarios']} scenarios × {meta['seeds']} seeds, "
           f"git {meta['git_sha'][:12]}, {meta['created']}\n", "## Aggregate\n",
           aggregate_table(summary), ""]
    head = headline(summary)
    if head:
        out.append(f"Routed cost is **{head['routed_cost_fraction_of_all_large']:.1%}** of "
                   f"all-large's, at success {head['routed_success']:.1%} "
                   f"(all-large {head['all_large_success']:.1%}).\n")
    kb = meta.get("retrieval")
    if kb:
        out.append(knowledge_line(kb))
    out.append("## What is measured\n")
    out += [f"- **{name}**: {text}" for name, text in MEASURES.items()]
    out += ["", "## Gate\n", meta.get("gate", "")]
    out.append("\n".join(f"- ❌ {f}" for f in failures) if failures else
               "✅ no regression against the baseline" if baseline else "no baseline")
    out += [f"- note: {n}" for n in meta.get("gate_notes", [])]
    base = (baseline or {}).get("metrics", {})
    for policy, s in summary.items():
        out += ["", f"## Scenarios — {policy}\n",
                "| scenario | category | ok | " + " | ".join(METRICS) + " | Δ success | Δ cost |",
                "|---" * (len(METRICS) + 5) + "|"]
        for sid, v in s["scenarios"].items():
            b = base.get(policy, {}).get(sid)
            ds = "new" if b is None else f"{v['success'] - b['success']:+.2f}"
            dc = "new" if b is None else (f"{v['cost_usd'] / b['cost_usd'] - 1:+.0%}"
                                          if b["cost_usd"] else "–")
            ok = "✅" if v["success"] == 1 else "❌"
            out.append(f"| {sid} | {v['category']} | {ok} | "
                       + " | ".join(_fmt(v[m]) for m in METRICS) + f" | {ds} | {dc} |")
    return "\n".join(out) + "\n"


def chart_svg(summary: dict[str, Any]) -> str:
    """Cost-vs-success scatter of the policies, as inline SVG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for policy, s in summary.items():
        a = s["aggregate"]
        ax.scatter([a["cost_per_run_usd"]], [a["task_success"]], s=80)
        ax.annotate(policy, (a["cost_per_run_usd"], a["task_success"]),
                    textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("mean cost per run (USD, router price table)")
    ax.set_ylabel("task success rate")
    ax.set_ylim(0, 1.05)
    ax.set_title("Routing policies: cost vs success")
    ax.grid(alpha=0.3)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg"):]


def html_report(summary: dict[str, Any], markdown_text: str, meta: dict[str, Any]) -> str:
    """eval-report.html: the chart, then the Markdown report as preformatted text."""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Foreman eval report"
            "</title><style>body{font-family:sans-serif;margin:2em}pre{font-size:12px}"
            "</style></head><body><h1>Foreman eval report</h1>"
            f"<p>git {html.escape(meta['git_sha'])} · {html.escape(meta['created'])}</p>"
            f"{chart_svg(summary)}<pre>{html.escape(markdown_text)}</pre></body></html>")


def junit(records: list[dict[str, Any]]) -> str:
    """One testcase per (policy, scenario, seed); a failure lists what was wrong."""
    suite = ET.Element("testsuite", name="foreman-evals", tests=str(len(records)),
                       failures=str(sum(not r["task_success"] for r in records)))
    for r in records:
        case = ET.SubElement(suite, "testcase", classname=f"evals.{r['policy']}",
                             name=f"{r['scenario']}[seed{r['seed']}]", time=str(r["wall_s"]))
        if not r["task_success"]:
            ET.SubElement(case, "failure", message="; ".join(r["problems"])[:500])
    return ET.tostring(suite, encoding="unicode")


def write_reports(out: Path, records: list[dict[str, Any]], summary: dict[str, Any],
                  baseline: dict[str, Any] | None, failures: list[str],
                  meta: dict[str, Any]) -> list[Path]:
    """Write the four reports into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(summary, baseline, failures, meta)
    files = {
        "eval-report.json": json.dumps({"meta": meta, "measures": MEASURES,
                                        "headline": headline(summary),
                                        "gate_failures": failures, "summary": summary,
                                        "records": records}, indent=1, default=str),
        "eval-report.md": md,
        "eval-report.html": html_report(summary, md, meta),
        "eval-junit.xml": junit(records),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return [out / n for n in files]


def meta_for(root: Path, scenarios: int, seeds: int, policies: list[str]) -> dict[str, Any]:
    """Run metadata stamped on every report."""
    return {"git_sha": git_sha(root), "scenarios": scenarios, "seeds": seeds,
            "policies": policies, "created": datetime.now(UTC).isoformat(timespec="seconds")}
