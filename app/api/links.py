"""OpenAPI links in ``/openapi.json``: which response's ids the next operations take.

The routes answer with plain dicts, so the schema alone does not say that ``POST /threads``
returns the ``thread_id`` its runs are made on. The links say it, for clients and for
stateful testing (tests/api/test_schemathesis.py follows them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

THREAD = "$response.body#/thread_id"
ON_PATH = "$request.path.thread_id"
RUN = "$response.body#/run_id"
FIRST_APPROVAL = "$response.body#/0/id"
THREAD_OPS = [("get", "/threads/{thread_id}"), ("get", "/threads/{thread_id}/state"),
              ("post", "/threads/{thread_id}/history"), ("get", "/threads/{thread_id}/runs"),
              ("post", "/threads/{thread_id}/runs"), ("post", "/threads/{thread_id}/runs/wait"),
              ("post", "/threads/{thread_id}/runs/stream")]
RUN_OPS = [("get", "/threads/{thread_id}/runs/{run_id}"),
           ("get", "/threads/{thread_id}/runs/{run_id}/join"),
           ("get", "/threads/{thread_id}/runs/{run_id}/stream"),
           ("post", "/threads/{thread_id}/runs/{run_id}/cancel"),
           ("get", "/v1/runs/{run_id}"), ("get", "/v1/runs/{run_id}/events"),
           ("get", "/v1/runs/{run_id}/timeline")]
APPROVAL_OPS = [("get", "/v1/approvals/{approval_id}"),
                ("post", "/v1/approvals/{approval_id}/decision")]
# (source operation, its ids as runtime expressions, the operations they feed)
LINKS: list[tuple[tuple[str, str], dict[str, str], list[tuple[str, str]]]] = [
    (("post", "/threads"), {"thread_id": THREAD}, THREAD_OPS),
    (("post", "/threads/{thread_id}/runs"), {"thread_id": ON_PATH, "run_id": RUN},
     RUN_OPS),
    (("get", "/v1/approvals"), {"approval_id": FIRST_APPROVAL}, APPROVAL_OPS),
]


def _link_name(method: str, path: str) -> str:
    words = [w.strip("{}") for w in path.strip("/").split("/")]
    return method + "".join(w.title().replace("_", "") for w in words)


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the links of LINKS on each source's 200 response, in place."""
    paths = schema.get("paths", {})
    for (method, path), ids, targets in LINKS:
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get("200")
        if response is None:
            continue
        links = response.setdefault("links", {})
        for t_method, t_path in targets:
            target = paths.get(t_path, {}).get(t_method)
            if target is None or "operationId" not in target:
                continue
            wanted = {p["name"] for p in target.get("parameters", []) if p.get("in") == "path"}
            links[_link_name(t_method, t_path)] = {
                "operationId": target["operationId"],
                "parameters": {k: v for k, v in ids.items() if k in wanted}}
    return schema


def declare(app: FastAPI) -> None:
    """Serve ``/openapi.json`` with the links added."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_links(build())
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
