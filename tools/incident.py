"""Incident-response tools: service health, runbooks, incidents and remediations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.records import (
    find_by_key,
    keyed_lookup,
    keyed_result,
    new_id,
    reading,
    require_key,
    result,
    sandbox_db,
    stored,
    utc_now,
    writing,
)
from tools.sandbox import Connection
from tools.spec import Risk, SideEffect, ToolContext, ToolError, ToolSpec

ServiceName = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9-]{1,62}$", description="Service name, e.g. 'checkout-api'."),
]
IncidentId = Annotated[
    str, Field(pattern=r"^INC-[0-9A-Za-z]{1,64}$", description="Incident id, e.g. 'INC-1A2B3C4D'.")
]
Severity = Literal["sev1", "sev2", "sev3", "sev4"]
IncidentStatus = Literal["open", "mitigated", "resolved"]

# Remediations never make a healthy error rate worse than this.
_RECOVERED_ERROR_RATE = 0.01
# Columns that drive the simulation; the model sees symptoms, not the answer.
_HIDDEN = ("min_healthy_replicas", "baseline_p95_ms")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NoArgs(_Args):
    pass


class ServiceArgs(_Args):
    service: ServiceName


class OpenIncidentArgs(_Args):
    service: ServiceName
    severity: Severity = Field(description="sev1 (worst) to sev4 (minor).")
    summary: str = Field(min_length=5, max_length=500, description="What is wrong, briefly.")


class IncidentUpdateArgs(_Args):
    incident_id: IncidentId
    message: str = Field(
        min_length=1, max_length=2000, description="Status update for stakeholders."
    )
    status: IncidentStatus | None = Field(
        default=None, description="New incident status, if it changes."
    )


class ScaleArgs(_Args):
    service: ServiceName
    replicas: int = Field(ge=1, le=20, description="Target replica count, 1 to 20.")


def _public(service: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in service.items() if k not in _HIDDEN}


def _service(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ToolError(f"unknown service {name}")
    return dict(row)


def _incident(conn: Connection, incident_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    if row is None:
        raise ToolError(f"unknown incident {incident_id}")
    return {k: v for k, v in dict(row).items() if k != "idempotency_key"}


def get_service_status(ctx: ToolContext, args: ServiceArgs) -> dict[str, Any]:
    """A service's health, version, open incidents and remediations so far."""
    with reading(sandbox_db(ctx)) as conn:
        service = _public(_service(conn, args.service))
        incidents = conn.execute(
            "SELECT id, severity, status, summary, created_at FROM incidents "
            "WHERE service = ? AND status != 'resolved' ORDER BY created_at, id",
            (args.service,),
        ).fetchall()
        remediations = conn.execute(
            "SELECT id, action, detail, created_at FROM remediations "
            "WHERE service = ? ORDER BY created_at, id",
            (args.service,),
        ).fetchall()
    service["open_incidents"] = [dict(r) for r in incidents]
    service["remediations"] = [dict(r) for r in remediations]
    return service


def list_services(ctx: ToolContext, args: NoArgs) -> dict[str, Any]:
    """Every service with its environment and health."""
    with reading(sandbox_db(ctx)) as conn:
        rows = conn.execute(
            "SELECT name, environment, status, replicas, version, error_rate, p95_latency_ms "
            "FROM services ORDER BY name"
        ).fetchall()
    return {"services": [dict(r) for r in rows]}


def get_runbook(ctx: ToolContext, args: ServiceArgs) -> dict[str, Any]:
    """The runbooks written for one service."""
    with reading(sandbox_db(ctx)) as conn:
        _service(conn, args.service)
        rows = conn.execute(
            "SELECT id, title, body FROM runbooks WHERE service = ? ORDER BY id",
            (args.service,),
        ).fetchall()
    return {"service": args.service, "runbooks": [dict(r) for r in rows]}


def open_incident(ctx: ToolContext, args: OpenIncidentArgs) -> dict[str, Any]:
    """Open a new incident against a service."""
    key = require_key(ctx.idempotency_key)
    with writing(sandbox_db(ctx)) as conn:
        prior = find_by_key(conn, "incidents", key)
        if prior is not None:
            return result(prior, replayed=True)
        _service(conn, args.service)
        conn.execute(
            "INSERT INTO incidents (id, service, severity, status, summary, created_at, "
            "idempotency_key) VALUES (?, ?, ?, 'open', ?, ?, ?)",
            (
                new_id(conn, "incidents", "INC", key),
                args.service,
                args.severity,
                args.summary,
                utc_now(),
                key,
            ),
        )
        row = stored(conn, "incidents", key)
    return result(row, replayed=False)


def post_incident_update(ctx: ToolContext, args: IncidentUpdateArgs) -> dict[str, Any]:
    """Post a stakeholder update on an incident, optionally changing its status."""
    key = require_key(ctx.idempotency_key)
    with writing(sandbox_db(ctx)) as conn:
        prior = find_by_key(conn, "incident_updates", key)
        if prior is None:
            _incident(conn, args.incident_id)
            conn.execute(
                "INSERT INTO incident_updates (id, incident_id, message, status, created_at, "
                "idempotency_key) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    new_id(conn, "incident_updates", "U", key),
                    args.incident_id,
                    args.message,
                    args.status,
                    utc_now(),
                    key,
                ),
            )
            if args.status is not None:
                conn.execute(
                    "UPDATE incidents SET status = ? WHERE id = ?",
                    (args.status, args.incident_id),
                )
        return keyed_result(conn, stored(conn, "incident_updates", key), _incident_now,
                            replayed=prior is not None)


def _incident_now(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The incident an update was posted on, as it stands."""
    return {"incident": _incident(conn, str(row["incident_id"]))}


Apply = Callable[[Connection, dict[str, Any]], str]


def _remediate(
    ctx: ToolContext,
    service_name: str,
    action: Literal["restart", "scale", "rollback"],
    apply: Apply,
) -> dict[str, Any]:
    """Run one remediation once per idempotency key and record it."""
    key = require_key(ctx.idempotency_key)
    with writing(sandbox_db(ctx)) as conn:
        prior = find_by_key(conn, "remediations", key)
        if prior is None:
            detail = apply(conn, _service(conn, service_name))
            conn.execute(
                "INSERT INTO remediations (id, service, action, detail, created_at, "
                "idempotency_key) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    new_id(conn, "remediations", "REM", key),
                    service_name,
                    action,
                    detail,
                    utc_now(),
                    key,
                ),
            )
        return keyed_result(conn, stored(conn, "remediations", key), _service_now,
                            replayed=prior is not None)


def _service_now(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The service a remediation acted on, as it stands."""
    return {"service_state": _public(_service(conn, str(row["service"])))}


def _restart(conn: Connection, svc: dict[str, Any]) -> str:
    conn.execute(
        "UPDATE services SET status = 'healthy', error_rate = ? WHERE name = ?",
        (min(float(svc["error_rate"]), _RECOVERED_ERROR_RATE), svc["name"]),
    )
    return f"restarted {svc['name']} ({svc['replicas']} replicas, {svc['version']})"


def _rollback(conn: Connection, svc: dict[str, Any]) -> str:
    previous = svc["previous_version"]
    if not previous:
        raise ToolError(f"{svc['name']} has no previous version to roll back to")
    # previous_version is cleared so a second rollback cannot flip back to the bad build.
    conn.execute(
        "UPDATE services SET version = ?, previous_version = NULL, status = 'healthy', "
        "error_rate = ?, p95_latency_ms = baseline_p95_ms WHERE name = ?",
        (previous, min(float(svc["error_rate"]), _RECOVERED_ERROR_RATE), svc["name"]),
    )
    return f"rolled back {svc['name']} from {svc['version']} to {previous}"


def restart_service(ctx: ToolContext, args: ServiceArgs) -> dict[str, Any]:
    """Restart a service; clears transient errors."""
    return _remediate(ctx, args.service, "restart", _restart)


def rollback_service(ctx: ToolContext, args: ServiceArgs) -> dict[str, Any]:
    """Roll a service back to its previous version."""
    return _remediate(ctx, args.service, "rollback", _rollback)


def scale_service(ctx: ToolContext, args: ScaleArgs) -> dict[str, Any]:
    """Set a service's replica count; enough replicas bring latency back to baseline."""

    def apply(conn: Connection, svc: dict[str, Any]) -> str:
        threshold = svc["min_healthy_replicas"]
        recovered = threshold is not None and args.replicas >= int(threshold)
        latency = int(svc["baseline_p95_ms"]) if recovered else int(svc["p95_latency_ms"])
        conn.execute(
            "UPDATE services SET replicas = ?, p95_latency_ms = ? WHERE name = ?",
            (args.replicas, latency, svc["name"]),
        )
        return f"scaled {svc['name']} from {svc['replicas']} to {args.replicas} replicas"

    return _remediate(ctx, args.service, "scale", apply)


GET_SERVICE_STATUS = ToolSpec(
    name="get_service_status",
    description=(
        "Get a service's status, version, previous version, replicas, error rate, p95 "
        "latency, open incidents and remediations already applied."
    ),
    args_model=ServiceArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=get_service_status,
)
LIST_SERVICES = ToolSpec(
    name="list_services",
    description="List every service with its environment, status, error rate and latency.",
    args_model=NoArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=list_services,
)
GET_RUNBOOK = ToolSpec(
    name="get_runbook",
    description="Get the runbooks (step-by-step remediation guides) for a service.",
    args_model=ServiceArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=get_runbook,
)
OPEN_INCIDENT = ToolSpec(
    name="open_incident",
    description="Open an incident for a service with a severity (sev1-sev4) and a summary.",
    args_model=OpenIncidentArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.MEDIUM,
    func=open_incident,
    reconcile=keyed_lookup("incidents"),
)
POST_INCIDENT_UPDATE = ToolSpec(
    name="post_incident_update",
    description=(
        "Post a stakeholder update on an incident; optionally set its status to open, "
        "mitigated or resolved."
    ),
    args_model=IncidentUpdateArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.MEDIUM,
    func=post_incident_update,
    reconcile=keyed_lookup("incident_updates", _incident_now),
)
RESTART_SERVICE = ToolSpec(
    name="restart_service",
    description="Restart all replicas of a service. Affects production traffic.",
    args_model=ServiceArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.HIGH,
    func=restart_service,
    reconcile=keyed_lookup("remediations", _service_now),
)
SCALE_SERVICE = ToolSpec(
    name="scale_service",
    description="Set the replica count (1-20) of a service. Affects production capacity.",
    args_model=ScaleArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.HIGH,
    func=scale_service,
    reconcile=keyed_lookup("remediations", _service_now),
)
ROLLBACK_SERVICE = ToolSpec(
    name="rollback_service",
    description=(
        "Roll a service back to its previous version. Fails if there is no previous "
        "version. Affects production traffic."
    ),
    args_model=ServiceArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.HIGH,
    func=rollback_service,
    reconcile=keyed_lookup("remediations", _service_now),
)

INCIDENT_TOOLS: tuple[ToolSpec, ...] = (
    GET_SERVICE_STATUS,
    LIST_SERVICES,
    GET_RUNBOOK,
    OPEN_INCIDENT,
    POST_INCIDENT_UPDATE,
    RESTART_SERVICE,
    SCALE_SERVICE,
    ROLLBACK_SERVICE,
)
