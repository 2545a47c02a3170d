"""OIDC/JWT bearer tokens: the attack matrix (each a 401), claims → principal, and the JWKS
cache (URL served on 127.0.0.1: refresh on an unknown key id, bounded, timeouts)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.api.auth import KeyRing, Principal
from app.config.auth_config import AuthConfig, JwtConfig
from app.config.settings import Settings
from app.errors import Unauthorized

ISSUER = "https://id.example.test/"
AUDIENCE = "foreman"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY_1, KEY_2 = rsa_key(), rsa_key()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(private: Any, kid: str) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        out = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    else:
        out = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return {**out, "kid": kid, "use": "sig"}


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "iat": now, "exp": now + 300,
            "tenant": "acme", "roles": ["approver"], "groups": ["finance-leads"],
            "name": "Fiona Lead"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def token(private: Any = KEY_1, kid: str | None = "k1", alg: str = "RS256",
          **over: Any) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims(**over), private, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b"" if secret is None else hmac.new(secret, signing_input.encode(),
                                              hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def ring(settings: Settings, jwks_file: Path | None = None, jwks_url: str | None = None,
         **over: Any) -> KeyRing:
    config = JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file,
                       jwks_url=jwks_url,
                       **({"claims": {"tenant": "tenant", "roles": "roles", "groups": "groups",
                                      "name": "name"}} | over))
    return KeyRing.from_settings(settings.model_copy(update={
        "auth": AuthConfig(jwt=config)}))


@pytest.fixture
def file_ring(settings: Settings, tmp_path: Path) -> KeyRing:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(KEY_1, "k1"), jwk(EC_KEY, "e1")]}))
    return ring(settings, jwks_file=path, algorithms=["RS256", "ES256"])


class Issuer:
    """A JWKS endpoint on 127.0.0.1 whose keys a test can rotate; counts fetches."""

    def __init__(self) -> None:
        self.keys = [jwk(KEY_1, "k1")]
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                body = json.dumps({"keys": issuer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    served = Issuer()
    yield served
    served.close()


async def test_jwt_valid_token_maps_claims_to_a_principal(file_ring: KeyRing) -> None:
    principal = await file_ring.authenticate(token())
    assert principal == Principal("u-123", "acme", frozenset({"approver"}),
                                  groups=frozenset({"finance-leads"}),
                                  display_name="Fiona Lead")
    ec_principal = await file_ring.authenticate(token(EC_KEY, "e1", "ES256"))
    assert ec_principal is not None and ec_principal.tenant == "acme"


async def test_jwt_expiry_has_a_small_leeway(file_ring: KeyRing) -> None:
    now = int(time.time())
    assert await file_ring.authenticate(token(exp=now - 5)) is not None
    with pytest.raises(Unauthorized, match="expired"):
        await file_ring.authenticate(token(exp=now - 120))


def _tampered() -> str:
    head, _, sig = token().split(".")
    payload = b64(json.dumps(claims(roles=["admin"], tenant="globex")).encode())
    return f"{head}.{payload}.{sig}"


def _hs256_with_public_key() -> str:
    pem = KEY_1.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return unsigned({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims(), pem)


ATTACKS = {
    "expired": lambda: token(exp=int(time.time()) - 3600),
    "wrong issuer": lambda: token(iss="https://evil.example.test/"),
    "wrong audience": lambda: token(aud="someone-else"),
    "no expiry": lambda: token(exp=None),
    "alg none": lambda: unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, claims(), None),
    "HS256 signed with the RSA public key": _hs256_with_public_key,
    "unknown kid": lambda: token(KEY_2, "k9"),
    "known kid, other key": lambda: token(KEY_2, "k1"),
    "EC token under an RSA kid": lambda: token(EC_KEY, "k1", "ES256"),
    "tampered payload": _tampered,
    "garbage": lambda: "not.a.jwt",
    "no tenant": lambda: token(tenant=None),
    "no Foreman role": lambda: token(roles=["viewer"]),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_jwt_attack_matrix_is_refused(file_ring: KeyRing, attack: str) -> None:
    with pytest.raises(Unauthorized):
        await file_ring.authenticate(ATTACKS[attack]())


async def test_jwt_nested_claim_paths_and_scope_strings(settings: Settings,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(KEY_1, "k1")]}))
    keyed = ring(settings, jwks_file=path,
                 claims={"tenant": "org.id", "roles": "realm_access.roles",
                         "groups": "scp", "name": "preferred_username"})
    principal = await keyed.authenticate(token(
        org={"id": "globex"}, realm_access={"roles": ["requester", "root-of-all"]},
        scp="sre-oncall finance-leads", preferred_username="sam", tenant=None, roles=None,
        groups=None, name=None))
    assert principal is not None
    assert (principal.tenant, principal.roles, principal.groups, principal.display_name) == (
        "globex", frozenset({"requester"}), frozenset({"sre-oncall", "finance-leads"}), "sam")


async def test_jwt_jwks_url_refreshes_on_rotation_and_is_bounded(
        settings: Settings, issuer: Issuer) -> None:
    keyed = ring(settings, jwks_url=issuer.url, jwks_min_refresh_s=0, jwks_cache_s=3600)
    assert await keyed.authenticate(token()) is not None
    assert issuer.fetches == 1
    assert await keyed.authenticate(token()) is not None
    assert issuer.fetches == 1  # cached

    issuer.keys = [jwk(KEY_2, "k2")]  # the issuer rotates: k1 is withdrawn
    assert await keyed.authenticate(token(KEY_2, "k2")) is not None  # unknown kid: refetch
    assert issuer.fetches == 2
    with pytest.raises(Unauthorized, match="unknown key"):
        await keyed.authenticate(token(KEY_1, "k1"))  # the rotated-out key no longer signs


async def test_jwt_unknown_kids_do_not_hammer_the_issuer(settings: Settings,
                                                        issuer: Issuer) -> None:
    keyed = ring(settings, jwks_url=issuer.url, jwks_min_refresh_s=3600)
    assert await keyed.authenticate(token()) is not None
    for i in range(20):
        with pytest.raises(Unauthorized, match="unknown key"):
            await keyed.authenticate(token(KEY_2, f"made-up-{i}"))
    assert issuer.fetches == 1


async def test_jwt_jwks_url_that_never_answers_times_out_as_401(settings: Settings) -> None:
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json"
        keyed = ring(settings, jwks_url=url, jwks_timeout_s=0.5)
        with pytest.raises(Unauthorized, match="unknown key"):
            await keyed.authenticate(token())


async def test_jwt_api_keys_still_work_beside_tokens(settings: Settings,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(KEY_1, "k1")]}))
    with_keys = settings.model_copy(update={"auth": AuthConfig.model_validate({
        "api_keys": [{"name": "svc", "key_sha256": hashlib.sha256(b"sk-svc").hexdigest(),
                      "tenant": "acme", "roles": ["requester"], "groups": ["ops"]}],
        "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(path)}})})
    keyed = KeyRing.from_settings(with_keys)
    assert not keyed.local_mode
    svc = await keyed.authenticate("sk-svc")
    assert svc is not None and svc.groups == frozenset({"ops"})
    assert await keyed.authenticate("sk-unknown") is None
    assert await keyed.authenticate(token()) is not None
