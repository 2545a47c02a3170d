"""Which roles have a reachable model: a cheap probe for the serve banner and ``/readyz``.

A local OpenAI-compatible server (``api_base``) is asked for ``GET /models`` with a short
timeout; a hosted model is only checked for its key (reaching it would spend money and
time at every start). ``foreman models check`` is the thorough version.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from app.config.settings import ModelEntry, Settings

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RoleModel:
    """One role's model and whether it answers."""

    model: str
    reachable: bool | None  # None: not probed (hosted model with its key set)
    detail: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON shape."""
        return asdict(self)


async def _probe(client: httpx.AsyncClient, entry: ModelEntry) -> tuple[bool | None, str]:
    if entry.scripted:
        return True, "built-in scripted model"
    if entry.api_base:
        url = entry.api_base.rstrip("/") + "/models"
        key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
        try:
            r = await client.get(url, headers={"Authorization": f"Bearer {key}"} if key else {})
        except httpx.HTTPError as e:
            return False, f"{entry.api_base} does not answer ({type(e).__name__})"
        if r.status_code >= 500 or r.status_code in (401, 403):
            return False, f"{entry.api_base} answered HTTP {r.status_code}"
        return True, f"{entry.api_base} answers"
    if entry.has_credentials():
        return None, f"{entry.api_key_env} is set (hosted, not probed)"
    return False, f"{entry.api_key_env or 'no api_key_env'} is not set"


async def role_models(settings: Settings, offline: bool) -> dict[str, RoleModel]:
    """Each routed role's model and its reachability (offline: the scripted models)."""
    if offline:
        names = {t: n for t, n in settings.routing.offline.items()}
        return {role: RoleModel(names.get(settings.model(name).tier, "scripted"), True,
                                "offline: built-in scripted model")
                for role, name in settings.routing.roles.items()}
    entries = {name: settings.model(name) for name in set(settings.routing.roles.values())}
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
        results = await asyncio.gather(*(_probe(client, e) for e in entries.values()))
    found = dict(zip(entries, results, strict=True))
    return {role: RoleModel(name, *found[name]) for role, name in settings.routing.roles.items()}


def banner(models: dict[str, RoleModel]) -> str:
    """One line for the serve banner: role → model (state)."""
    state = {True: "reachable", False: "UNREACHABLE", None: "key set"}
    return "; ".join(f"{role} → {m.model} ({state[m.reachable]})" for role, m in models.items())
