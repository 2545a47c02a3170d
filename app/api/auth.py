"""Who is calling: API keys or OIDC/JWT bearer tokens → principals (name, tenant, roles,
approver groups), and role checks.

Keys are configured as SHA-256 digests or read from an env variable at start; the raw key
is never stored or logged. Tokens are verified by :mod:`app.api.jwt_auth`. With neither
configured the server runs in local dev mode: loopback callers with a loopback ``Host``
header only (a DNS-rebinding page reaches the port under its own host name), each treated as
the local admin of tenant ``default``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from app.api.jwt_auth import JwtVerifier, claim, looks_like_jwt, string_list
from app.config.auth_config import GROUP_PATTERN
from app.config.settings import Settings
from app.errors import ConfigError, Forbidden, Unauthorized

ROLES = ("requester", "approver", "admin", "operator")
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_GROUP = re.compile(GROUP_PATTERN)
TENANT_ROLES = ("requester", "approver", "admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``admin`` passes every tenant role check (requester,
    approver, admin) within its tenant; ``operator`` (platform-wide switches, every
    tenant's metrics) is held only when granted."""

    name: str
    tenant: str
    roles: frozenset[str]
    local: bool = False
    groups: frozenset[str] = frozenset()
    display_name: str = ""

    def has(self, *roles: str) -> bool:
        """Holds any of ``roles`` (admins hold every tenant role)."""
        if "admin" in self.roles and any(r in TENANT_ROLES for r in roles):
            return True
        return any(r in self.roles for r in roles)

    def in_group(self, group: str) -> bool:
        """Belongs to approver group ``group``."""
        return group in self.groups


LOCAL_ADMIN = Principal("local", "default", frozenset(ROLES), local=True)


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is configured and looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Configured keys by digest, and the JWT verifier when ``auth.jwt`` is set."""

    def __init__(self, principals: dict[str, Principal],
                 verifier: JwtVerifier | None = None) -> None:
        self._by_digest = principals
        self.verifier = verifier

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
            found[key_digest] = Principal(k.name, k.tenant, frozenset(k.roles),
                                          groups=frozenset(k.groups), display_name=k.name)
        jwt_config = settings.auth.jwt
        base = settings.config_path.parent if settings.config_path else None
        return cls(found, JwtVerifier(jwt_config, base) if jwt_config else None)

    @property
    def local_mode(self) -> bool:
        """No keys and no JWT issuer configured: local dev mode."""
        return not self._by_digest and self.verifier is None

    def lookup(self, key: str) -> Principal | None:
        """The principal of a presented key."""
        return self._by_digest.get(digest(key))

    async def authenticate(self, credential: str) -> Principal | None:
        """The principal of an API key or a verified JWT (``Unauthorized`` for a bad one)."""
        principal = self.lookup(credential)
        if principal is None and self.verifier is not None and looks_like_jwt(credential):
            principal = self._from_claims(await self.verifier.claims(credential))
        return principal

    def _from_claims(self, claims: dict[str, Any]) -> Principal:
        assert self.verifier is not None
        config = self.verifier.config
        mapping = config.claims
        tenant = claim(claims, mapping.tenant) or config.default_tenant
        if not isinstance(tenant, str) or not _TENANT.match(tenant):
            raise Unauthorized(f"token has no usable tenant claim ({mapping.tenant})")
        roles = frozenset(r for r in string_list(claim(claims, mapping.roles)) if r in ROLES)
        if not roles:
            raise Unauthorized(f"token grants no Foreman role ({mapping.roles})")
        groups = frozenset(g for g in string_list(claim(claims, mapping.groups))
                           if _GROUP.match(g))
        subject = str(claims["sub"])
        display = claim(claims, mapping.name)
        return Principal(subject, tenant, roles, groups=groups,
                         display_name=display if isinstance(display, str) else subject)


def loopback_host_header(host: str | None) -> bool:
    """A ``Host`` header naming a loopback address (port allowed), or the test client."""
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.startswith("[") and "]" in name:
        name = name[1:name.index("]")]
    return is_loopback(name.lower())


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str | None) -> bool:
    """A loopback address (or the in-process test client); remembered, since every request
    of local dev mode asks it of its peer's address."""
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
        if not loopback_host_header(request.headers.get("host")):
            raise Forbidden("local dev mode answers only to a loopback Host header "
                            "(localhost, 127.0.0.1, [::1])")
        return LOCAL_ADMIN
    key = presented_key(request)
    principal = await ring.authenticate(key) if key else None
    if principal is None:
        raise Unauthorized("a valid API key or token is required "
                           "(Authorization: Bearer <key or token>)")
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
Operator = Annotated[Principal, Depends(require_role("operator"))]
AdminOrOperator = Annotated[Principal, Depends(require_role("admin", "operator"))]
