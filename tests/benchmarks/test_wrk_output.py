"""The wrk report parser, on reports wrk 4.1.0 really printed (data/, made by record_fixtures.py).

- wrk_plain.txt: ``wrk -c 8 --latency`` on a server that answers at once; wrk's text report only.
- wrk_errors.txt: the benchmark's Lua script, ``-c 4``, on a server that answers every 5th request
  503 and drops the connection on every 7th: socket read errors, non-2xx responses, done() line.
- wrk_histogram.txt: the benchmark's Lua script, ``-c 4``, every 20th answer 20 ms late.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fdbench.wrk_output import DONE_MARK, parse_wrk_output

DATA = Path(__file__).resolve().parent / "data"
RECORDING = json.loads((DATA / "recording.json").read_text())


def report(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def without_done_line(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(DONE_MARK))


def test_a_plain_report_gives_responses_rate_and_the_four_printed_percentiles():
    run = parse_wrk_output(report("wrk_plain"), connections=8)
    # "87971 requests in 1.00s, 6.88MB read" / "Requests/sec:  87936.79" / "50%   81.00us" ...
    assert run.responses == 87971 and run.ok == 87971
    assert run.rps == pytest.approx(87936.79)
    assert run.seconds == pytest.approx(87971 / 87936.79)  # finer than the printed "1.00s"
    assert run.bytes_read == round(6.88 * 2**20)
    assert run.percentiles == pytest.approx({50: 81e-6, 75: 107e-6, 90: 142e-6, 99: 247e-6})
    assert run.errors == 0 and run.status_errors == 0
    assert run.histogram is None  # no done() line: nothing to pool but the printed percentiles


def test_socket_errors_and_error_statuses_are_read_from_the_text_report():
    run = parse_wrk_output(without_done_line(report("wrk_errors")), connections=4)
    # "Socket errors: connect 0, read 3869, write 0, timeout 0" / "Non-2xx or 3xx responses: 4644"
    assert run.socket_errors == {"connect": 0, "read": 3869, "write": 0, "timeout": 0}
    assert run.status_errors == 4644
    assert run.errors == 3869 + 4644
    assert run.ok == 23219 - 4644  # a 503 is a complete response but not a served request


def test_the_error_counts_match_what_the_server_did():
    run = parse_wrk_output(report("wrk_errors"), connections=4)
    server = RECORDING["server_before_histogram_run"]  # the errors run came before it
    assert run.status_errors == server["status_503"]
    # every dropped connection is a read error, but the last drop may come after wrk stopped counting
    assert server["dropped"] - 4 <= run.socket_errors["read"] <= server["dropped"]


def test_the_done_line_replaces_the_rounded_numbers_with_exact_ones():
    run = parse_wrk_output(report("wrk_errors"), connections=4)
    # the text says "1.10s, 1.91MB read"; done() says duration_us=1099512 bytes=2006126
    assert run.seconds == 1.099512
    assert run.bytes_read == 2006126
    assert run.status_errors == 4644 and run.socket_errors["read"] == 3869
    assert run.histogram is not None and sum(run.histogram.values()) == run.responses


def test_a_histogram_that_does_not_add_up_to_the_responses_is_dropped_for_the_printed_percentiles():
    # wrk's stats struct not laid out as the Lua script assumes reads as garbage counts
    text = report("wrk_histogram").replace(" hist=", " hist=1:99999,", 1)
    run = parse_wrk_output(text, connections=4)
    assert run.histogram is None
    assert run.percentiles[99] == pytest.approx(20.78e-3)


def test_a_done_line_without_histogram_keeps_the_exact_counts():
    line = next(line for line in report("wrk_errors").splitlines() if line.startswith(DONE_MARK))
    text = report("wrk_errors").replace(line, line.split(" hist=")[0] + " nohist")
    run = parse_wrk_output(text, connections=4)
    assert run.histogram is None and run.bytes_read == 2006126 and run.errors == 3869 + 4644


def test_output_without_a_report_is_an_error_that_shows_the_output():
    with pytest.raises(ValueError, match="unable to connect"):
        parse_wrk_output("unable to connect to 127.0.0.1:9 Connection refused\n", connections=1)
