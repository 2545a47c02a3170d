"""Who is calling: API keys → principals (name, tenant, roles), and role checks.

Keys are configured as SHA-256 digests or read from an env variable at start; the raw key
is never stored or logged. With no keys configured the server runs in local dev mode:
loopback callers only, each treated as the local admin of tenant ``default``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from app.errors import ConfigError, Forbidden, Unauthorized
from app.settings import Settings

ROLES = ("requester", "approver", "admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``admin`` passes every role check within its tenant."""

    name: str
    tenant: str
    roles: frozenset[str]
    local: bool = False

    def has(self, *roles: str) -> bool:
        """Holds any of ``roles`` (admins hold them all)."""
        return "admin" in self.roles or any(r in self.roles for r in roles)


LOCAL_ADMIN = Principal("local", "default", frozenset(ROLES), local=True)


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is configured and looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Configured keys by digest."""

    def __init__(self, principals: dict[str, Principal]) -> None:
        self._by_digest = principals

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Build from ``auth.api_keys``; a ``key_env`` that is unset is a config error."""
        found: dict[str, Principal] = {}
        for i, k in enumerate(settings.auth.api_keys):
            if k.key_env:
                raw = os.environ.get(k.key_env)
                if not raw:
                    raise ConfigError(f"{settings.source}: auth.api_keys.{i}.key_env: "
                                      f"environment variable {k.key_env} is not set")
                key_digest = digest(raw)
            else:
                assert k.key_sha256 is not None
                key_digest = k.key_sha256.lower()
            found[key_digest] = Principal(k.name, k.tenant, frozenset(k.roles))
        return cls(found)

    @property
    def local_mode(self) -> bool:
        """No keys configured: local dev mode."""
        return not self._by_digest

    def lookup(self, key: str) -> Principal | None:
        """The principal of a presented key."""
        return self._by_digest.get(digest(key))


def is_loopback(host: str | None) -> bool:
    """A loopback address (or the in-process test client)."""
    if host in {"localhost", "testclient"}:
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def presented_key(request: Request) -> str | None:
    """``Authorization: Bearer <key>``, or ``x-api-key`` as the LangGraph SDK sends it."""
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def current_principal(request: Request) -> Principal:
    """The caller, or 401."""
    ring: KeyRing = request.app.state.keyring
    if ring.local_mode:
        if not is_loopback(request.client.host if request.client else None):
            raise Forbidden("local dev mode serves loopback callers only")
        return LOCAL_ADMIN
    key = presented_key(request)
    principal = ring.lookup(key) if key else None
    if principal is None:
        raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that passes the caller through when it holds any of ``roles``."""

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"needs role {' or '.join(roles)}")
        return principal

    return check


Requester = Annotated[Principal, Depends(require_role("requester"))]
Approver = Annotated[Principal, Depends(require_role("approver"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
