"""Foreman's composition root: settings, providers, storage, runner, CLI and HTTP API."""

import os

# Checkpoints hold only JSON-shaped state; refuse anything else when deserialising.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
