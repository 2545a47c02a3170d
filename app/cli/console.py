"""Live progress of a run in the terminal: plan, ledger decisions, agents, tools, cost."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _retry(data: Mapping[str, Any]) -> str:
    wait = data.get("retry_in_s")
    return f", retrying in {wait:.2f}s" if wait else ", trying the next deployment"


class ProgressPrinter:
    """An event listener that prints one readable line (or block) per event."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.cost = 0.0
        self.calls = 0

    def __call__(self, seq: int, type: str, data: Mapping[str, Any]) -> None:
        """Render one event."""
        c = self.console
        if type in {"run_started", "run_resumed"}:
            c.print(f"[bold]{type.replace('_', ' ').capitalize()}[/bold] on thread "
                    f"{data['thread_id']}" + (f" (team {data['team']})" if "team" in data else ""))
        elif type == "model_call":
            self.cost += float(data["cost_usd"])
            outcome = data.get("outcome", "ok")
            if outcome not in {"ok", "cached"}:
                c.print(f"  [yellow]model {data['role']} → {data['model']}: {outcome}"
                        f"{_retry(data)}[/yellow]")
                return
            self.calls += 1
            c.print(f"  [dim]model {data['role']} → {data['model']} ({data.get('tier')}): "
                    f"{data['prompt_tokens']}+{data['completion_tokens']} tok, "
                    f"${data['cost_usd']:.5f} (run so far ${self.cost:.4f}, "
                    f"{self.calls} calls) · {_short(data.get('route_reason', ''), 90)}[/dim]")
        elif type == "budget_warning":
            c.print(f"[yellow]Budget warning:[/yellow] {data['scope']} {data['unit']} at "
                    f"{data['fraction']:.0%} ({data['spent']} of {data['limit']})")
        elif type == "plan_created":
            c.print("[bold]Plan[/bold]")
            for step in data["ledger"]["plan"]:
                deps = f" after {', '.join(step['depends_on'])}" if step["depends_on"] else ""
                c.print(f"  {step['id']} [cyan]{step['agent']}[/cyan]: "
                        f"{escape(step['goal'])}{deps}")
        elif type == "ledger_updated":
            steps = ", ".join(f"{s['step_id']}→{s['agent']}" for s in data["next_steps"])
            progress = data.get("progress") or {}
            done = (progress.get("is_request_satisfied") or {}).get("answer")
            c.print(f"[bold]Round {data['round']}[/bold]: "
                    f"{'satisfied' if done else 'next ' + (steps or 'nothing')}"
                    f" (stalls {data['stall_count']})")
            for note in data.get("notes", []):
                c.print(f"  [yellow]note:[/yellow] {_short(note)}")
        elif type == "agent_started":
            c.print(f"  [cyan]{data['agent']}[/cyan] starts {data['step_id']}: "
                    f"{_short(data['instruction'])}")
        elif type == "tool_called":
            c.print(f"    tool {data['tool']}({_short(data['args'], 100)})")
        elif type == "tool_result":
            mark = "[green]ok[/green]" if data["ok"] else "[red]error[/red]"
            shown = data.get("result") if data["ok"] else data.get("error") or data.get("result")
            c.print(f"    → {data['tool']} {mark} {_short(shown, 100)}")
        elif type == "agent_finished":
            c.print(f"  [cyan]{data['agent']}[/cyan] reports: {_short(data['summary'], 160)}")
        elif type == "replanned":
            c.print(f"[magenta]Replanned ({data['replans']})[/magenta]")
        elif type == "verification":
            verdict = data.get("verdict") or {}
            c.print(f"Verification: {'passed' if verdict.get('verified') else 'rejected'}")
        elif type == "run_failed":
            c.print(f"[red]Run failed:[/red] {_short(data['reason'], 300)}")
