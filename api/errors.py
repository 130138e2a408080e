"""The one place where pattogis errors become HTTP responses: one handler for the whole API.

Every :class:`pattogis.errors.PattogisError` carries its HTTP status (``exc.status``; the table is
in :mod:`pattogis.errors`), so routes raise library errors and never catch them. Request
validation by FastAPI answers 400 (a parameter or body that cannot be parsed) or 422 (a body that
parses but is invalid); bodies over the size limit 413 (:class:`BodyLimitMiddleware`).

Every error body is JSON: ``{"detail": <message>, "status": <code>, "title": <reason>}`` plus
``file``/``rows``/``field`` for input errors and ``errors`` (the list of problems) for
request-validation errors.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pattogis.errors import BadRequest, InputError, PattogisError

__all__ = ["BadRequest", "BodyLimitMiddleware", "document_errors", "install", "problem",
           "status_of"]


def default_max_body_bytes() -> int:
    """Largest accepted request body in bytes: ``api_max_body_mb`` in settings.yaml (10 MB)."""
    from pattogis import config

    return int(float(config.settings().get("api_max_body_mb", 10)) * 1024 * 1024)


def status_of(exc: BaseException) -> int:
    """HTTP status of an error: its own ``status`` for pattogis errors, else 500."""
    return int(getattr(exc, "status", 500)) if isinstance(exc, PattogisError) else 500


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    """An error response: detail (the reason), status and its standard title."""
    body = {"detail": detail, "status": status, "title": HTTPStatus(status).phrase}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def _pattogis_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PattogisError)
    status = status_of(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, InputError):
        extra = {"file": exc.file, "rows": exc.rows or None, "field": exc.field}
    return problem(status, str(exc), **extra)


def _where(loc: tuple | list) -> str:
    return ".".join(str(p) for p in loc if p not in ("query", "path", "header", "body", "cookie"))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Unparseable parameters or JSON body -> 400; a body that parses but is invalid -> 422."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    in_body = [e for e in errors if e.get("loc", ("",))[0] == "body"]
    malformed = any(e.get("type") == "json_invalid" for e in in_body)
    status = 422 if in_body and not malformed else 400
    reasons = "; ".join(
        f"{_where(e.get('loc', ())) or e.get('loc', ('request',))[0]}: {e.get('msg', 'invalid')}"
        for e in errors
    )
    what = "malformed request body" if malformed else "invalid request"
    return problem(status, f"{what}: {reasons}", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    resp = problem(exc.status_code, str(exc.detail))
    if exc.headers:
        resp.headers.update(exc.headers)
    return resp


def install(app: FastAPI, *, max_body_bytes: int | None = -1) -> None:
    """Register the error handlers and the body-size limit: ``max_body_bytes`` bytes, the
    settings' ``api_max_body_mb`` when -1, no limit when None."""
    if max_body_bytes == -1:
        max_body_bytes = default_max_body_bytes()
    app.add_exception_handler(PattogisError, _pattogis_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    if max_body_bytes is not None:
        app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413: at once when Content-Length says so,
    otherwise (chunked uploads) as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await problem(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await problem(413, self._too_large())(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises its HTTPException from body parsing (other errors would
                    # become a generic 400), so this reaches the handler as a 413.
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)


#: The error body as documented in the OpenAPI document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail", "status"],
    "properties": {
        "detail": {"type": "string", "description": "what is wrong and where"},
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "file": {"type": "string"},
        "rows": {"type": "array", "items": {"type": "integer"}},
        "field": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def document_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document tell the truth about errors: FastAPI's validation-error schema
    becomes the error body above, and every operation taking parameters or a body documents
    400 (unparseable parameter or body); with a body also 413 (too large)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    if "HTTPValidationError" in schemas:
        schemas["HTTPValidationError"] = PROBLEM_SCHEMA
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            res = op["responses"]
            if op.get("parameters") or op.get("requestBody"):
                res.setdefault("400", {"description": "Bad Request: a parameter or the body "
                                       "cannot be parsed, or a parameter is unknown", **ref})
                # names in parameters (collection, comune, Unione, site, call, proposal...)
                res.setdefault("404", {"description": "Not Found: a name in the request is "
                                       "not known", **ref})
                res.setdefault("422", {"description": "Unprocessable: well-formed input that "
                                       "fails validation (the detail names where)", **ref})
            if op.get("requestBody"):
                res.setdefault("413", {"description": "Request body too large", **ref})
                res.setdefault("415", {"description": "Unsupported body media type", **ref})
            # every analysis reads the layer set, which may be missing or incomplete
            res.setdefault("503", {"description": "Service Unavailable: the layer set is "
                                   "missing or incomplete (the detail says how to rebuild)", **ref})
    return doc


def documents(*formats: str, description: str = "the document") -> dict[int | str, Any]:
    """``responses`` of an endpoint answering a file: the 200 with each format's media type
    (``pattogis.exports.MEDIA``), so the OpenAPI document says what comes back."""
    from pattogis.exports import MEDIA

    return {200: {"description": description,
                  "content": {MEDIA[f].split(";")[0]: {} for f in formats}}}
