"""The lean front end's tests run on both event loops: asyncio's (the tests' default) and uvloop
(what ``fdrouter serve`` runs on), whose transports differ in the details this code relies on
(``set_protocol`` mid-connection, ``write_eof``, pausing reads)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop

from fdrouter.front import FrontConnection


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], Any]]:
    """Every async test here runs once per event loop."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def lean_connections(server: Any) -> list[FrontConnection]:
    """The router's client connections that the lean front end holds now."""
    return [c for c in server._runner.server.connections if isinstance(c, FrontConnection)]
