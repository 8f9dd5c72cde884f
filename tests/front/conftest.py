"""The lean front end's tests run on uvloop (what ``fdrouter serve`` runs on); those whose outcome
depends on the transport's details (``set_protocol`` mid-connection, ``write_eof``, pausing reads)
also on asyncio's loop, which embedders and the rest of the suite use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop

from fdrouter.front import FrontConnection

# parsing and timers: the same code whatever the loop
_UVLOOP_ONLY = ("test_heads.py", "test_slow_clients.py")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    """The event loops an async test here runs on."""
    if item.path.name in _UVLOOP_ONLY:
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def lean_connections(server: Any) -> list[FrontConnection]:
    """The router's client connections that the lean front end holds now."""
    return [c for c in server._runner.server.connections if isinstance(c, FrontConnection)]
