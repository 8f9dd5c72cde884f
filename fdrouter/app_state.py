"""The typed keys of the aiohttp application's and each request's state (``web.AppKey``/``RequestKey``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .admission import AdmissionControl
from .config import RouterConfig
from .generation_service import GenerationService
from .router import Router

ROUTER_KEY = web.AppKey("router", Router)
CONFIG_KEY = web.AppKey("config", RouterConfig)
ADMISSION_KEY = web.AppKey("admission", AdmissionControl)
ACTIVE_KEY = web.AppKey("active_generations", set[asyncio.Task])
"""Handler tasks of generation requests whose body has arrived: what a graceful shutdown waits for."""
REQUEST_ID = web.RequestKey("request_id", str)


GENERATION_KEY = web.AppKey("generation", GenerationService)
"""What serves generation requests for both front ends (set when the router has started)."""

WORKER_KEY = web.AppKey("worker", int)
"""This worker's number in a multi-worker router (absent in a single-process one)."""

__all__ = ["ACTIVE_KEY", "ADMISSION_KEY", "CONFIG_KEY", "GENERATION_KEY", "REQUEST_ID", "ROUTER_KEY", "WORKER_KEY"]
