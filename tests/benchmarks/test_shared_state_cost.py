"""benchmarks/shared_state_cost.py measures the shared state's per-request pieces on real shared memory."""

from __future__ import annotations

import shared_state_cost


def test_every_piece_is_measured_on_a_mirror_that_sees_every_published_instance():
    figures = shared_state_cost.measure(instances=3, workers=3, seconds=0.03)
    assert set(figures) == {"local", "poll", "shared", "encode", "sendto", "added"}
    assert all(value > 0 for key, value in figures.items() if key != "added")
    # the total counts one datagram per other worker: two peers here
    assert figures["added"] == figures["shared"] - figures["local"] + figures["encode"] + 2 * figures["sendto"]


def test_the_script_prints_the_added_cost_per_request(capsys):
    assert shared_state_cost.main(["--instances", "2", "--workers", "2", "--seconds", "0.03"]) == 0
    out = capsys.readouterr().out
    assert "added per request" in out and "registry poll" in out
