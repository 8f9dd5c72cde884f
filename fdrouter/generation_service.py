"""Serving one generation request, whatever parsed it (request in -> router -> response out).

Two front ends parse client requests: aiohttp (``handlers.generation``: every endpoint) and
the lean HTTP/1.1 protocol for the two generation endpoints (``front.py``). Both hand a
parsed request to ``GenerationService.serve``, so the guarantees live in one place:

- the API key is checked before a byte of the body is read;
- the body is read (with the client body timeout, by the front end's ``read_body``), parsed and
  checked (400 naming the field);
- the request waits for an admission slot (429 beyond the queue);
- it is counted as *arrived* for a graceful shutdown only once its body is in;
- the router routes it and the ``Sink`` relays the answer;
- a failure after the answer started ends the stream with an error event; one before it is
  raised to the front end, which renders it;
- metrics are recorded on every path.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping

from .admission import AdmissionControl
from .config import RouterConfig
from .errors import ClientDisconnected, RouterError, ShuttingDown, TooManyRequests, Unauthorized
from .router import Router
from .sink import Sink
from .validate import check_generation, parse_json_object

log = logging.getLogger(__name__)


def check_bearer(authorization: str | None, key: str | None, what: str) -> None:
    """Raise Unauthorized unless ``authorization`` is ``Bearer <key>`` (no key configured: pass)."""
    if key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    # header bytes that are not UTF-8 arrive as lone surrogates (aiohttp) or latin-1 (httptools):
    # encode them back as they came, so any byte sequence compares (and fails) instead of raising
    presented = token.strip().encode("utf-8", "surrogateescape")
    # compare_digest: the time taken must not reveal how much of the key matched
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, key.encode()):
        raise Unauthorized(f"missing or invalid {what}: send 'Authorization: Bearer <key>'")


class GenerationService:
    """Everything one generation request goes through after parsing; shared by both front ends."""

    def __init__(self, router: Router, config: RouterConfig, admission: AdmissionControl,
                 active: set[asyncio.Task]) -> None:
        self.router = router
        self.config = config
        self.admission = admission
        self.active = active
        """Handler tasks of requests whose body has arrived: what a graceful shutdown waits for."""

    async def serve(self, path: str, headers: Mapping[str, str], read_body: Callable[[], Awaitable[bytes]],
                    sink: Sink, request_id: str) -> int:
        """Serve one request; returns the status answered (499 if the client left).

        RouterErrors raised before the answer started are for the caller to render.
        """
        router = self.router
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = 499  # until something is answered: the client left
        task = asyncio.current_task()
        assert task is not None
        try:
            check_bearer(headers.get("Authorization"), self.config.api_key, "API key")
            raw = await read_body()
            # a graceful shutdown waits for requests that have arrived, never for one still uploading
            self.active.add(task)
            body = parse_json_object(raw)
            check_generation(body, path)
            async with self.admission.admit():
                status = await router.generate(path, raw, body, sink, request_id=request_id, headers=headers)
            return status
        except ClientDisconnected:
            log.info("client disconnected from %s mid-stream; upstream closed", path)
            return status
        except TooManyRequests as error:
            status = error.status
            router.metrics.observe_rejection(error.reason)
            log.warning("rejected: %s", error.message)
            raise
        except RouterError as error:
            status = error.status
            if sink.prepared:
                log.warning("%s failed mid-stream: %s", path, error.message)
                await sink.stream_error(error)
                return status
            raise
        except Exception:
            status = 500  # a bug: the front end answers it as an internal error
            raise
        except asyncio.CancelledError:
            # The client left (nothing to tell) or the shutdown grace period ran out: then a
            # started stream still ends with an error event rather than a bare cut.
            if sink.prepared and not sink.finished:
                await sink.stream_error(ShuttingDown(
                    "the router is shutting down and its grace period ran out before this answer was complete"
                ))
            raise
        finally:
            self.active.discard(task)
            first = sink.first_byte_at
            router.metrics.observe_request(
                path, status, duration_secs=loop.time() - started,
                ttft_secs=None if first is None else first - started, instance=sink.instance,
            )


__all__ = ["GenerationService", "check_bearer"]
