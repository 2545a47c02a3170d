"""A foreman.yaml whose every role runs on the fake provider, as a user configures a local
OpenAI-compatible server (llama.cpp, vLLM, Ollama) through ``api_base``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("manager.plan", "manager.progress", "manager.verify", "manager.final", "specialist")


def local_models(api_base: str) -> list[dict[str, Any]]:
    """Two tiers on the one server, priced explicitly (a local model has no list price)."""
    return [{"name": f"local-{tier}", "litellm_model": "openai/fake-model", "tier": tier,
             "api_base": api_base, "input_cost_per_mtok": 0.1, "output_cost_per_mtok": 0.2,
             "context_window": 32768, "supports_json_schema": True}
            for tier in ("small", "large")]


def write_config(path: Path, api_base: str) -> Path:
    """The bundled config with its models replaced by the fake provider's."""
    data = yaml.safe_load((ROOT / "foreman.yaml").read_text(encoding="utf-8"))
    scripted = [m for m in data["models"] if str(m["litellm_model"]).startswith("scripted/")]
    data["models"] = [*scripted, *local_models(api_base)]
    data["routing"]["roles"] = {r: "local-small" for r in ROLES}
    data["routing"]["fallbacks"].update(backoff_base_s=0.01, backoff_max_s=0.1)
    for team in data["teams"].values():
        for agent in team["agents"]:
            prompt = agent.get("prompt")
            if prompt and not Path(prompt).is_absolute():
                agent["prompt"] = str(ROOT / "prompts" / prompt)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
