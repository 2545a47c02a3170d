"""OIDC/JWT sign-in over HTTP beside API keys: a token's groups decide an approval that a
key's requester asked for; bad tokens are 401 on every kind of route."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.conftest import SUPPORT_REFUND, Server, keyed_env, wait_status

ISSUER, AUDIENCE = "https://id.example.test/", "foreman-api"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(**over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "fiona@example.test", "exp": now + 300,
              "org": "acme", "roles": ["approver"], "groups": ["billing-leads"],
              "name": "Fiona Lead", **over}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "main"})


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("jwt")
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    (data / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "main"}]}))
    config = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(data / "jwks.json"),
              "claims": {"tenant": "org", "roles": "roles", "groups": "groups",
                         "name": "name"}}
    s = Server(data, {"FOREMAN_TEST_GATE": "refund", **keyed_env(),
                      "FOREMAN_AUTH__JWT": json.dumps(config)}).start()
    yield s
    s.stop()


def test_jwt_api_a_token_with_the_group_decides_a_keyed_requesters_approval(
        jwt_server: Server) -> None:
    with jwt_server.client("alice") as alice:
        thread = alice.post("/threads", json={}).json()["thread_id"]
        alice.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
        (run,) = alice.get(f"/threads/{thread}/runs").json()
        (waiting,) = [i for t in alice.get(f"/threads/{thread}").json()["interrupts"].values()
                      for i in t]
    approval_id = waiting["value"]["approval_id"]
    signed_in = {"Authorization": f"Bearer {token()}"}
    outsider = {"Authorization": f"Bearer {token(sub='olga', groups=[])}"}
    with httpx.Client(base_url=jwt_server.url, headers=signed_in, timeout=60) as fiona, \
            httpx.Client(base_url=jwt_server.url, headers=outsider, timeout=60) as olga:
        listed = {a["id"]: a for a in fiona.get("/v1/approvals?status=pending").json()}
        refused = olga.post(f"/v1/approvals/{approval_id}/decision",
                            json={"decision": "approve"})
        decided = fiona.post(f"/v1/approvals/{approval_id}/decision",
                             json={"decision": "approve"})
        done = wait_status(fiona, thread, run["run_id"], {"success", "error"}, 120)
        inbox = fiona.get("/inbox")

    assert listed[approval_id]["may_decide"] is True
    assert refused.status_code == 403
    assert decided.status_code == 200 and decided.json()["decided_by"] == "fiona@example.test"
    assert done["status"] == "success"
    assert inbox.status_code == 200 and "API key or token" in inbox.text


@pytest.mark.parametrize(("path", "method"), [("/v1/approvals", "GET"), ("/threads", "POST"),
                                              ("/metrics", "GET")])
def test_jwt_api_bad_tokens_are_401(jwt_server: Server, path: str, method: str) -> None:
    bad = [token(exp=int(time.time()) - 3600), token(iss="https://evil.test/"),
           token(aud="other"), token()[:-4] + "AAAA", token(org="globex!")]
    with jwt_server.client() as c:
        codes = [c.request(method, path, json={} if method == "POST" else None,
                           headers={"Authorization": f"Bearer {t}"}).status_code for t in bad]
    assert codes == [401] * len(bad)
