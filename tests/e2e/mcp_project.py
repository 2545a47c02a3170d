"""A project made with ``foreman init --template blank``, rewired to the test CRM server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.app.tooling.crm import free_port

ROOT = Path(__file__).resolve().parents[2]
TASK = "Give customer CU-1 a credit of $150 for the late delivery"

PLAYBOOK = [{
    "id": "crm-credit", "team": "desk", "match": {"all": ["CU-1", "credit"]},
    "facts": {"given": ["CU-1 should get a $150 credit"], "to_look_up": [], "to_derive": [],
              "guesses": []},
    "steps": [{
        "id": "S1", "agent": "agent", "goal": "Credit the customer.",
        "instruction": "Look up customer CU-1 and give them a $150 credit for the late delivery.",
        "calls": [{"tool": "crm.get_customer", "args": {"customer_id": "CU-1"}},
                  {"tool": "crm.add_credit", "args": {"customer_id": "CU-1", "amount_usd": 150.0,
                                                      "reason": "late delivery"}}],
        "report": "Gave CU-1 a $150 credit."}],
    "final": "Customer CU-1 got a $150 credit for the late delivery.",
}]


def make_project(folder: Path, crm_url: str, **server: Any) -> Path:
    """``foreman init`` a blank project, then point it at the CRM; its foreman.yaml."""
    made = subprocess.run([sys.executable, "-c", "from app.cli.main import main; main()", "init",
                           str(folder), "--template", "blank"], cwd=folder.parent,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert made.returncode == 0, made.stderr
    config = folder / "foreman.yaml"
    data = yaml.safe_load(config.read_text())
    data["tools"]["mcp"] = [{
        "name": "crm", "url": crm_url, "reconnect_after_s": 0, "call_timeout_s": 60,
        "overrides": {"add_credit": {"reconcile": {"tool": "find_credit"}}}, **server}]
    data["teams"]["desk"]["agents"][0]["tools"] = ["crm.*"]
    data["policy"]["rules"] = [{
        "name": "credits-over-100", "tools": ["crm.add_credit"],
        "when": "args.amount_usd > 100.0", "action": "require_approval",
        "reason": "Credits above $100 need a lead's approval.", "approver_group": "leads"}]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    (folder / "playbooks" / "crm.yaml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    return config


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no Foreman or provider settings of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FOREMAN_", "OPENAI_", "ANTHROPIC_"))}
    return {**env, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


def wait_for(check: Any, what: str, timeout: float = 120) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass(frozen=True)
class Served:
    """A ``foreman serve`` child process and where it listens and logs."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def assert_alive(self) -> None:
        """Fails with the tail of the server's log once the process has exited."""
        assert self.proc.poll() is None, self.log.read_text()[-3000:]


@contextmanager
def serving(config: Path, cwd: Path) -> Iterator[Served]:
    """``foreman serve --config config`` on a free loopback port, logging to
    ``cwd/serve.log``; terminated on exit."""
    port = free_port()
    log_path = cwd / "serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from app.cli.main import main; main()", "serve", "--config",
             str(config), "--port", str(port)], cwd=cwd, env=clean_env(),
            stdout=log, stderr=log)
    try:
        yield Served(proc, f"http://127.0.0.1:{port}", log_path)
    finally:
        proc.terminate()
        proc.wait(30)
