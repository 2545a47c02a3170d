"""One place that turns errors into HTTP responses; OpenAI-style bodies on the /v1 chat routes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    ForemanError,
    InvalidRequest,
    NotFound,
    RateLimited,
    RunStateError,
    StorageError,
    Unauthorized,
)

log = logging.getLogger(__name__)

# Most specific first: Conflict is a RunStateError.
STATUS: list[tuple[type[ForemanError], int, str]] = [
    (Unauthorized, 401, "invalid_api_key"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (RunStateError, 409, "conflict"),
    (RateLimited, 429, "rate_limit_exceeded"),
    (InvalidRequest, 422, "invalid_request"),
    (ConfigError, 404, "not_found"),  # a request naming an unknown team or model
    (StorageError, 503, "unavailable"),  # the database went away: retry, nothing is lost
]
OPENAI_PREFIXES = ("/v1/chat/", "/v1/models")


def status_of(err: ForemanError) -> tuple[int, str]:
    """HTTP status and short code for a Foreman error."""
    for cls, status, code in STATUS:
        if isinstance(err, cls):
            return status, code
    return 400, "bad_request"


def _body(request: Request, status: int, code: str, message: str,
          param: str | None = None, detail: Any = None) -> dict[str, Any]:
    if request.url.path.startswith(OPENAI_PREFIXES):
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 401:
            kind = "authentication_error"
        elif status == 403:
            kind = "permission_error"
        elif status == 429:
            kind = "rate_limit_error"
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    body: dict[str, Any] = {"detail": detail if detail is not None else message, "code": code}
    if param:
        body["field"] = param
    return body


def document(app: FastAPI) -> None:
    """Describe the 422 body in ``/openapi.json`` as it is sent: ``detail`` is the message
    (a refusal naming its ``field``) or the list of validation errors, with ``code``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build().get("components", {}).get("schemas", {})
            body = schemas.get("HTTPValidationError")
            if body is not None:
                props = body.setdefault("properties", {})
                props["detail"] = {"title": "Detail", "anyOf": [
                    {"type": "string"}, props.get("detail", {"type": "array"})]}
                props["code"] = {"title": "Code", "type": "string"}
                props["field"] = {"title": "Field", "type": "string"}
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (and document the error body they send)."""
    document(app)

    @app.exception_handler(ForemanError)
    async def foreman_error(request: Request, err: ForemanError) -> JSONResponse:
        status, code = status_of(err)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if isinstance(err, RateLimited):
            headers["Retry-After"] = str(max(1, round(err.retry_after_s)))
        if status == 503:
            headers["Retry-After"] = "2"
        param = err.field if isinstance(err, InvalidRequest) else None
        return JSONResponse(_body(request, status, code, str(err), param), status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in err.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"])
        message = f"{field}: {first['msg']}" if field else str(first["msg"])
        return JSONResponse(_body(request, 422, "invalid_request", message, field, errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(request, err.status_code, "http_error", str(err.detail)),
                            err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(_body(request, 500, "internal_error", "internal error"), 500)
