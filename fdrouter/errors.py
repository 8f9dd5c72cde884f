"""One error tree for the router, rendered to clients in one place (``server.py``).

Each class carries the HTTP status and the OpenAI error ``type`` it is answered with.
aiohttp client errors are mapped to these in exactly one place: ``upstream.py``.
"""

from __future__ import annotations

import asyncio


class RouterError(Exception):
    """Root of every error the router answers a client with."""

    status: int = 500
    type: str = "internal_error"
    code: str = "internal_error"
    close_connection: bool = False
    """Answer with ``Connection: close``: the request was not read to its end, so the connection
    cannot carry another one."""
    instance: str | None = None
    """URL of the instance the error came from, if one did (set by the router's leg bookkeeping);
    retries skip it, and only errors that carry one are retried."""

    def __init__(self, message: str, *, code: str | None = None, instance: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if instance is not None:
            self.instance = instance

    def to_dict(self) -> dict:
        """The OpenAI error shape: ``{"error": {"message", "type", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}


class BadRequest(RouterError):
    """The client's request is malformed or names an invalid field."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(RouterError):
    """An API key is configured and the request did not present it."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(RouterError):
    """No route for this path, or no such registered instance."""

    status = 404
    type = "not_found_error"
    code = "not_found"


class MethodNotAllowed(RouterError):
    """The path exists but not with this HTTP method."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class HttpError(RouterError):
    """Any other HTTP-level refusal of the web framework (e.g. a malformed request), with its status."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, code=f"http_{status}")
        self.status = status


class RequestTimeout(RouterError):
    """The client was too slow sending its request (head or body); the connection is closed."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    close_connection = True


class PayloadTooLarge(RouterError):
    """The request body is over the configured limit."""

    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class TooManyRequests(RouterError):
    """The router is at its concurrency limit and its admission queue is full or was waited on too long."""

    # OpenAI answers rate limits with HTTP 429 and code "rate_limit_exceeded" (its ``type`` names the
    # meter, "requests" or "tokens"); the type follows this tree's ``*_error`` naming and OpenAI's SDK,
    # which raises ``RateLimitError`` on any 429. Clients key on the status and the code.
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, reason: str = "queue_full") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the client should wait before retrying; the web layer sends it as ``Retry-After``."""
        self.reason = reason
        """Why admission failed: ``"queue_full"`` or ``"queue_timeout"`` (a metrics label)."""


class TooManyInstances(RouterError):
    """A new registration would exceed the router's instance limit (--max-instances)."""

    status = 403
    type = "invalid_request_error"
    code = "too_many_instances"


class NoHealthyInstance(RouterError):
    """No healthy instance is registered for a role the request needs."""

    status = 503
    type = "service_unavailable_error"
    code = "no_healthy_instance"


class ShuttingDown(RouterError):
    """The router stopped before this request was done (its shutdown grace period ran out)."""

    status = 503
    type = "service_unavailable_error"
    code = "router_shutting_down"


class InstanceUnhealthy(RouterError):
    """An instance asked to register did not pass its health probe."""

    status = 503
    type = "service_unavailable_error"
    code = "instance_unhealthy"


class UpstreamError(RouterError):
    """Connecting to an instance failed, or its response broke off."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError, asyncio.TimeoutError):
    """An instance did not answer within the configured timeout."""

    status = 504
    type = "upstream_timeout"
    code = "upstream_timeout"


class UpstreamStatus(RouterError):
    """An instance answered non-2xx: its status and body go to the client unchanged."""

    type = "upstream_error"
    code = "upstream_status"

    def __init__(self, status: int, body: bytes, content_type: str, *, instance: str, leg: str) -> None:
        super().__init__(f"{leg} instance {instance} answered HTTP {status}", instance=instance)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.leg = leg


class ClientDisconnected(RouterError):
    """The client went away before its answer was written (nginx's 499); nothing to render."""

    status = 499
    type = "client_closed_request"
    code = "client_closed_request"


__all__ = [
    "BadRequest",
    "ClientDisconnected",
    "HttpError",
    "InstanceUnhealthy",
    "MethodNotAllowed",
    "NoHealthyInstance",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "RouterError",
    "ShuttingDown",
    "TooManyInstances",
    "TooManyRequests",
    "Unauthorized",
    "UpstreamError",
    "UpstreamStatus",
    "UpstreamTimeout",
]
