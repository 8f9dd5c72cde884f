"""A router with registered mock backends, as a notebook uses it: ``async with cluster(...)``."""

from __future__ import annotations

import pytest

from fdrouter import testing
from fdrouter.testing import MockBackend


async def test_a_mixed_cluster_routes_to_its_backends_and_closes_everything_on_exit() -> None:
    async with testing.cluster(mixed=2, behavior={"output_tokens": 3}, policy="round_robin") as c:
        answers = [await c.chat(f"hello {i}") for i in range(4)]
        async with c.http.get(c.url + "/registered_number") as response:
            registered = await response.json()
        backends = list(c.backends)
    assert [status for status, _ in answers] == [200] * 4
    assert {answer["usage"]["completion_tokens"] for _, answer in answers} == {3}
    assert [b.requests_total for b in backends] == [2, 2]  # both registered, taken in turn
    assert registered["mixed"] == 2
    assert not any(b.serving for b in backends)


async def test_a_splitwise_cluster_sends_each_request_to_one_prefill_and_one_decode() -> None:
    async with testing.cluster(prefill=1, decode=1, splitwise=True) as c:
        status, answer = await c.chat()
        [prefill], [decode] = c.prefill, c.decode
    assert status == 200 and answer["choices"]
    assert (prefill.role, prefill.requests_total, decode.role, decode.requests_total) == ("prefill", 1, "decode", 1)


async def test_clusters_makes_several_that_share_one_cleanup() -> None:
    async with testing.clusters() as make:
        first, second = await make(mixed=1), await make(mixed=1)
        assert first.server is not second.server and first.backends[0] is not second.backends[0]
        assert [(await c.chat())[0] for c in (first, second)] == [200, 200]
    made: list[MockBackend] = [*first.backends, *second.backends]
    assert not any(b.serving for b in made)
    assert first.http.closed


async def test_a_cluster_left_with_a_request_counted_in_flight_fails_on_exit() -> None:
    with pytest.raises(AssertionError, match="requests still counted in flight"):
        async with testing.cluster(mixed=1) as c:
            c.server.router.registry.all()[0].in_flight += 1
