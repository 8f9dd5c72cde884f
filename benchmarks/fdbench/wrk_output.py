"""Reading wrk's report: its ``--latency`` text and the line the benchmark's Lua ``done()`` hook prints.

The text report rounds (``1.23ms``, ``4.56MB``) and its percentiles carry wrk's
coordinated-omission correction. The ``done()`` line (see ``wrk_done.lua``) gives the run's
duration in microseconds, exact byte and error counts and the raw latency histogram, from
which ``latency.undo_wrk_correction`` recovers one sample per response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .latency import undo_wrk_correction

DONE_MARK = "fdbench-wrk"
"""First word of the done() line, so it is found among wrk's own output."""

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}  # wrk's format_time_us
_BINARY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SOCKET_ERRORS = ("connect", "read", "write", "timeout")
_PATTERNS = {
    "requests": re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGTP]?)B read", re.M),
    "rps": re.compile(r"^Requests/sec:\s*([\d.]+)", re.M),
    "socket": re.compile(r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M),
    "status": re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)", re.M),
    "percentile": re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M),
    "done": re.compile(rf"^{DONE_MARK} (.*)$", re.M),
}


@dataclass
class WrkRun:
    """One wrk run's numbers, parsed from its report (exact values from the done() line when present)."""

    responses: int
    """Complete responses of any status."""
    seconds: float
    rps: float
    bytes_read: int
    status_errors: int
    """Responses with a status above 399 (wrk's "Non-2xx or 3xx responses")."""
    socket_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SOCKET_ERRORS, 0))
    percentiles: dict[int, float] = field(default_factory=dict)
    """wrk's printed 50/75/90/99% latency, in seconds (with wrk's coordinated-omission correction)."""
    histogram: dict[int, int] | None = None
    """Latency histogram without wrk's correction, microseconds -> count; None when the script could not
    read it or it did not add up."""
    cpu: float = 0.0
    """wrk's own CPU seconds (user + system), from its resource usage."""

    @property
    def errors(self) -> int:
        """Failed requests: error statuses plus connect/read/write errors and timeouts."""
        return self.status_errors + sum(self.socket_errors.values())

    @property
    def ok(self) -> int:
        """Complete responses that were not error statuses."""
        return max(0, self.responses - self.status_errors)


def _seconds(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def parse_wrk_output(text: str, connections: int) -> WrkRun:
    """Parse wrk 4.x's ``--latency`` report (plus the script's done() line); ValueError if it has none.

    ``connections`` is the run's ``-c``, which wrk's latency correction depends on.
    """
    found = _PATTERNS["requests"].search(text)
    rps_match = _PATTERNS["rps"].search(text)
    if found is None or rps_match is None:
        raise ValueError("no wrk report in its output:\n" + "\n".join(text.splitlines()[-15:]))
    responses, rps = int(found.group(1)), float(rps_match.group(1))
    run = WrkRun(
        responses=responses,
        rps=rps,
        # Requests/sec is responses / runtime to 2 decimals: a finer runtime than the "in 1.00s" text
        seconds=responses / rps if rps > 0 else _seconds(*found.group(2, 3)),
        bytes_read=round(float(found.group(4)) * _BINARY_UNITS[found.group(5)]),
        status_errors=0,
        percentiles={int(m.group(1)): _seconds(*m.group(2, 3)) for m in _PATTERNS["percentile"].finditer(text)},
    )
    if (sock := _PATTERNS["socket"].search(text)) is not None:
        run.socket_errors = dict(zip(_SOCKET_ERRORS, map(int, sock.groups()), strict=True))
    if (status := _PATTERNS["status"].search(text)) is not None:
        run.status_errors = int(status.group(1))
    if (done := _PATTERNS["done"].search(text)) is not None:
        apply_done_line(run, done.group(1), connections)
    return run


def apply_done_line(run: WrkRun, line: str, connections: int) -> None:
    """Overwrite ``run``'s rounded numbers with the done() line's exact ones, and add its histogram."""
    values = dict(part.split("=", 1) for part in line.split() if "=" in part)
    duration_us, responses = int(values["duration_us"]), int(values["requests"])
    connect, read, write, status, timeout = map(int, values["errors"].split(","))
    run.seconds = duration_us / 1e6 if duration_us > 0 else run.seconds
    run.bytes_read = int(values["bytes"])
    run.status_errors = status
    run.socket_errors = {"connect": connect, "read": read, "write": write, "timeout": timeout}
    if "hist" not in values:
        return
    hist = {}
    for pair in filter(None, values["hist"].split(",")):
        us, count = pair.split(":")
        hist[int(us)] = int(count)
    raw = undo_wrk_correction(hist, duration_us, responses, connections)
    # every response but those slower than --timeout has exactly one sample: anything else means
    # the struct was not what the script assumed, and the printed percentiles are the safer numbers
    if responses - timeout <= sum(raw.values()) <= responses:
        run.histogram = raw


__all__ = ["DONE_MARK", "WrkRun", "apply_done_line", "parse_wrk_output"]
