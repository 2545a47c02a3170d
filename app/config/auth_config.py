"""Who may call Foreman: API keys, OIDC/JWT bearer tokens, roles and approver groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

Role = Literal["requester", "approver", "admin", "operator"]
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,79}$"


class ApiKeyConfig(BaseModel):
    """One API key: stored as its SHA-256 (hex) or read from an env variable at start."""

    name: str = Field(min_length=1, max_length=80)
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    key_env: str | None = None
    tenant: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    roles: list[Role] = Field(default=["requester"], min_length=1)
    groups: list[Annotated[str, Field(pattern=GROUP_PATTERN)]] = Field(default_factory=list,
                                                                       max_length=100)

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_sha256 or key_env")
        return self


class JwtClaimsConfig(BaseModel):
    """Which token claims carry the tenant, roles, groups and display name (dotted paths)."""

    tenant: str = "tenant"
    roles: str = "roles"
    groups: str = "groups"
    name: str = "name"


class JwtConfig(BaseModel):
    """OIDC/JWT bearer tokens: the issuer's keys (JWKS URL or file) and what is checked."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    jwks_file: Path | None = None
    claims: JwtClaimsConfig = Field(default_factory=JwtClaimsConfig)
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                             "ES384", "ES512", "EdDSA"]] = Field(default=["RS256"],
                                                                  min_length=1)
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    default_tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    jwks_cache_s: float = Field(default=300.0, gt=0)
    jwks_min_refresh_s: float = Field(default=30.0, ge=0)
    jwks_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_source(self) -> JwtConfig:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of jwks_url or jwks_file")
        return self


class AuthConfig(BaseModel):
    """API keys and OIDC/JWT; neither configured means local dev mode (loopback only,
    caller is local admin)."""

    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    jwt: JwtConfig | None = None
