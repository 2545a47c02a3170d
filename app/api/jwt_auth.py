"""OIDC/JWT bearer tokens → principals (``auth.jwt``), verified with PyJWT.

Keys come from a JWKS document, read from a file or fetched from a URL. A fetched JWKS is
cached for ``jwks_cache_s`` and fetched again early when a token names a key id it does not
hold (the issuer rotated its keys), at most once per ``jwks_min_refresh_s``, so a stream of
tokens with made-up key ids cannot turn the server into a load generator against the issuer.

Only the asymmetric algorithms in ``auth.jwt.algorithms`` are accepted: ``none`` and every
HMAC algorithm are refused before any key is looked at, so a token signed with HS256 using
the issuer's *public* key as the secret never verifies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt

from app.config.auth_config import JwtConfig
from app.errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)
MAX_JWKS_BYTES = 1_000_000
MAX_TOKEN_CHARS = 16_000


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts (API keys never contain dots)."""
    return token.count(".") == 2


def _parse_jwks(raw: bytes | str, where: str) -> dict[str, jwt.PyJWK]:
    try:
        doc = json.loads(raw)
        keys = doc["keys"]
        if not isinstance(keys, list):
            raise TypeError("keys is not a list")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{where}: not a JWKS document ({e})") from e
    found: dict[str, jwt.PyJWK] = {}
    for i, entry in enumerate(keys):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError as e:
            log.warning("skipping a JWKS key that cannot be used",
                        extra={"status": f"{where} key {i}: {e}"})
            continue
        found[str(entry.get("kid") or "")] = key
    return found


class JwksCache:
    """The issuer's signing keys by key id; refreshed on expiry or an unknown key id."""

    def __init__(self, config: JwtConfig, base: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        if config.jwks_file is not None:
            path = config.jwks_file
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                raw = path.read_bytes()
            except OSError as e:
                raise ConfigError(f"auth.jwt.jwks_file: cannot read {path} ({e})") from e
            self._keys = _parse_jwks(raw, f"auth.jwt.jwks_file ({path})")

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key a token names (the only key, when the token names none)."""
        if self.config.jwks_url is not None:
            now = self.clock()
            stale = (self._fetched_at is None
                     or now - self._fetched_at >= self.config.jwks_cache_s)
            unknown = self._pick(kid) is None
            may_refresh = (self._fetched_at is None
                           or now - self._fetched_at >= self.config.jwks_min_refresh_s)
            if stale or (unknown and may_refresh):
                await self._refresh(now)
        return self._pick(kid)

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self, asked_at: float) -> None:
        async with self._lock:
            if self._fetched_at is not None and self._fetched_at > asked_at:
                return  # another request refreshed while this one waited
            url = self.config.jwks_url
            assert url is not None
            self._fetched_at = self.clock()
            self.fetches += 1
            try:
                async with httpx.AsyncClient(timeout=self.config.jwks_timeout_s,
                                             follow_redirects=False) as client:
                    reply = await client.get(url, headers={"Accept": "application/json"})
                reply.raise_for_status()
                if len(reply.content) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS document too large")
                self._keys = _parse_jwks(reply.content, "auth.jwt.jwks_url")
            except (httpx.HTTPError, ValueError, ConfigError) as e:
                # Keep the keys we had: an issuer outage must not sign everyone out.
                log.warning("JWKS refresh failed", extra={"status": type(e).__name__})


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by dotted path (``realm_access.roles``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def string_list(value: Any) -> list[str]:
    """A claim holding a list of strings, or one space-separated string (OAuth scopes)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class JwtVerifier:
    """Checks signature, algorithm, issuer, audience and expiry; returns the claims."""

    def __init__(self, config: JwtConfig, base: Path | None = None) -> None:
        self.config = config
        self.jwks = JwksCache(config, base)

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of a token, or ``Unauthorized``."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("bearer token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthorized("malformed bearer token") from e
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        key = await self.jwks.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise Unauthorized("token signed by an unknown key")
        if not _same_family(key.algorithm_name, str(alg)):
            # A JWK carries its own key type: an RSA key never verifies an EC token.
            raise Unauthorized("token algorithm does not match its key")
        try:
            decoded: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[str(alg)], audience=self.config.audience,
                issuer=self.config.issuer, leeway=self.config.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as e:
            raise Unauthorized("token expired") from e
        except jwt.PyJWTError as e:
            raise Unauthorized(f"invalid token: {type(e).__name__}") from e
        return decoded


def _same_family(a: str, b: str) -> bool:
    return a[:2] == b[:2] or {a[:2], b[:2]} <= {"RS", "PS"}
