"""Every answer the router makes itself, and the one place errors become answers (response out).

Every error leaves through ``error_middleware`` in the OpenAI shape
``{"error": {"message", "type", "code"}}``; no traceback ever reaches a client. An instance's
own error answer passes through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import jsonutil
from .app_state import CONFIG_KEY, REQUEST_ID
from .errors import (
    HttpError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RouterError,
    TooManyRequests,
    UpstreamStatus,
)
from .logs import accept_request_id, reset_request_id, set_request_id

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: object, status: int = 200) -> web.Response:
    """A JSON response from a Python object."""
    return web.Response(body=jsonutil.dumps(data), status=status, content_type="application/json")


def error_parts(error: RouterError) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer to any RouterError, for either front end.

    An instance's own error answer passes through unchanged; the router's own errors are the
    OpenAI shape. (Whether the connection closes is ``error.close_connection``.)
    """
    if isinstance(error, UpstreamStatus):
        return error.status, {"Content-Type": error.content_type, "X-Fdrouter-Failed-Leg": error.leg}, error.body
    headers = {"Content-Type": "application/json"}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    return error.status, headers, jsonutil.dumps(error.to_dict())


def error_response(error: RouterError) -> web.Response:
    """Render any RouterError as an aiohttp response (``error_parts``)."""
    status, headers, body = error_parts(error)
    response = web.Response(body=body, status=status, headers=headers)
    if error.close_connection:
        response.force_close()
    return response


def _http_exception_error(request: web.Request, exc: web.HTTPException) -> RouterError:
    config = request.app[CONFIG_KEY]
    if exc.status == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if exc.status == 405:
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
    if exc.status == 413:
        return PayloadTooLarge(f"request body is over the limit of {config.max_body_bytes} bytes")
    return HttpError(exc.status, exc.reason or "HTTP error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take or make the request id, then convert every error to the OpenAI error shape."""
    request_id = accept_request_id(request.headers.get("X-Request-Id"))
    request[REQUEST_ID] = request_id
    token = set_request_id(request_id)
    try:
        response = await _handle(request, handler)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response
    finally:
        reset_request_id(token)


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RouterError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_http_exception_error(request, exc))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(RouterError("internal router error; see the router log"))


__all__ = ["error_middleware", "error_parts", "error_response", "json_response"]
