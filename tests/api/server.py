"""The app factory the API tests serve with uvicorn (``--factory``): config from env.

``FOREMAN_TEST_GATE=refund`` holds every refund for approval; ``open`` lets every tool call
run (for tests of the run machinery itself); unset means the bundled policy of foreman.yaml.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from app.api.app import create_app
from app.config.settings import load_settings
from app.governance.policy.gate import PolicyEngine
from app.governance.policy.rules import PolicyConfig
from graphs.ports import PolicyGate
from tests.fakes import RefundNeedsApproval


def create() -> FastAPI:
    """Settings from FOREMAN_CONFIG and FOREMAN_* env; optional test gate."""
    choice = os.environ.get("FOREMAN_TEST_GATE")
    gate: PolicyGate | None = None
    if choice == "refund":
        gate = RefundNeedsApproval()
    elif choice == "open":
        gate = PolicyEngine(PolicyConfig())
    return create_app(load_settings(), gate=gate)
