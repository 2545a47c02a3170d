"""Assistants: one per team (``graph_id`` = team name)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.auth import PrincipalDep
from app.api.deps import ApiDep, assistant_uuid
from app.api.schemas import AssistantSearch
from app.api.views import iso

router = APIRouter(tags=["assistants"])
_EPOCH = 1_735_689_600.0  # teams come from config: a fixed creation time keeps ids stable


def assistant_json(api: ApiDep, team: str) -> dict[str, Any]:
    """A Platform ``Assistant`` for a team."""
    cfg = api.services.settings.teams[team]
    return {"assistant_id": assistant_uuid(team), "graph_id": team, "name": team,
            "description": cfg.description, "config": {}, "context": {},
            "metadata": {"agents": [a.name for a in cfg.agents]}, "version": 1,
            "created_at": iso(_EPOCH), "updated_at": iso(_EPOCH)}


@router.post("/assistants/search")
async def search_assistants(body: AssistantSearch, api: ApiDep,
                            principal: PrincipalDep) -> list[dict[str, Any]]:
    """Teams as assistants, optionally filtered by ``graph_id``."""
    teams = [t for t in api.services.settings.teams if body.graph_id in (None, t)]
    return [assistant_json(api, t) for t in teams][body.offset: body.offset + body.limit]


@router.get("/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, api: ApiDep,
                        principal: PrincipalDep) -> dict[str, Any]:
    """One assistant by id or team name."""
    return assistant_json(api, api.team_of(assistant_id))
