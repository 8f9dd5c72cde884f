"""CPU time from /proc: per process (the proxies, the mock, wrk) and for the whole machine.

CPU time per request moves much less with outside load than requests/s does: on a shared
2-core machine throughput follows other people's jobs, while the work one request costs
changes far less. The machine-wide numbers say how much of the CPU others took while a
scenario ran, i.e. when a run's numbers deserve a rerun rather than a conclusion.

The parsers take the files' text, so they are tested on recorded /proc contents.
"""

from __future__ import annotations

import os
import resource
import time

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Kernel clock ticks per second, the unit of /proc's CPU times (proc(5))."""


def parse_pid_stat(text: str, clk_tck: int = CLK_TCK) -> float:
    """User + system CPU seconds (all threads) from the text of ``/proc/PID/stat``; ValueError if malformed."""
    # The command name, field 2, is in parentheses and may itself hold spaces and ")": split after
    # the last ")". utime and stime are fields 14 and 15 of proc(5), i.e. 11 and 12 after it.
    rest = text.rpartition(")")[2].split()
    try:
        return (int(rest[11]) + int(rest[12])) / clk_tck
    except IndexError:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}") from None


def parse_machine_stat(text: str, clk_tck: int = CLK_TCK) -> tuple[float, float]:
    """(busy, steal) CPU seconds of all cores since boot from the text of ``/proc/stat``.

    Busy leaves out softirq time: loopback TCP work runs there and is mostly the benchmark's own.
    """
    first = text.split("\n", 1)[0].split()
    if not first or first[0] != "cpu" or len(first) < 9:
        raise ValueError(f"not a /proc/stat cpu line: {first!r}")
    user, nice, system, _idle, _iowait, irq, _softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq) / clk_tck, steal / clk_tck


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process from /proc; None without a pid, off Linux or when it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_pid_stat(f.read())
    except (OSError, ValueError):
        return None


def machine_cpu() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine since boot; None off Linux."""
    try:
        with open("/proc/stat") as f:
            return parse_machine_stat(f.read())
    except (OSError, ValueError):
        return None


def add_delta(total: float | None, before: float | None, after: float | None) -> float | None:
    """``total`` plus ``after - before``; ``total`` unchanged when either sample is missing."""
    if before is None or after is None:
        return total
    return (total or 0.0) + after - before


def per_request_us(cpu_seconds_total: float | None, requests: int) -> float | None:
    """CPU microseconds per completed request, or None without a CPU total or requests."""
    return cpu_seconds_total / requests * 1e6 if cpu_seconds_total is not None and requests else None


def outside_fractions(start: tuple[float, tuple[float, float] | None, float],
                      end: tuple[float, tuple[float, float] | None, float],
                      cpus: int) -> tuple[float, float] | None:
    """(others' busy, steal) between two samples, as fractions of all ``cpus`` cores.

    Each sample is (monotonic seconds, ``machine_cpu()``, CPU seconds of our own processes).
    None when a machine sample is missing or no time passed.
    """
    (t0, m0, ours0), (t1, m1, ours1) = start, end
    if m0 is None or m1 is None or t1 <= t0:
        return None
    capacity = (t1 - t0) * cpus
    return max(0.0, (m1[0] - m0[0]) - (ours1 - ours0)) / capacity, (m1[1] - m0[1]) / capacity


class OutsideLoad:
    """How much CPU others used while a scenario ran: the machine's busy time minus our processes'."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = self._sample()

    def _sample(self) -> tuple[float, tuple[float, float] | None, float]:
        # RUSAGE_CHILDREN holds the wrk runs that have ended (the servers are reaped only at the end)
        from .proctree import tree_cpus  # here: proctree imports this module

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        # process trees: a multi-worker router's workers are ours too
        ours = (time.process_time() + children.ru_utime + children.ru_stime
                + sum(cpu or 0.0 for cpu in tree_cpus(*self._pids.values())))
        return time.monotonic(), machine_cpu(), ours

    def fractions(self) -> tuple[float, float] | None:
        """(others' busy, steal) since creation, as fractions of all cores; None off Linux."""
        return outside_fractions(self._start, self._sample(), os.cpu_count() or 1)


__all__ = ["CLK_TCK", "OutsideLoad", "add_delta", "cpu_seconds", "machine_cpu", "outside_fractions",
           "parse_machine_stat", "parse_pid_stat", "per_request_us"]
