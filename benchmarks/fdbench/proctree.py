"""CPU time and resident memory of a process and all its descendants, from /proc.

A multi-process target (``fdrouter serve --workers 2``: a supervisor, its workers and
multiprocessing's resource tracker) costs what the whole tree costs, so its CPU per request
and RSS per stream are sums over the tree. This kernel has no ``/proc/PID/task/TID/children``
(``CONFIG_PROC_CHILDREN`` is off on many builds), so the tree comes from the parent pid
(field 4 of ``/proc/PID/stat``, proc(5)) of every process: one scan of /proc per sample.

CPU: each process's utime + stime plus cutime + cstime, the CPU of its children that have
exited and been reaped (a worker restarted mid-round, a short-lived helper). A live
process's own time is never in its parent's cutime, so nothing counts twice.

The parsers take the files' text (``ProcSnapshot`` holds the texts of one scan), so the
tree walk is tested on recorded /proc contents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .cpu import CLK_TCK


def _after_name(stat_text: str) -> list[str]:
    # the command name (field 2) is in parentheses and may itself hold spaces and ")": split after the last ")"
    return stat_text.rpartition(")")[2].split()


def parse_ppid(stat_text: str) -> int:
    """The parent pid (field 4 of proc(5)) from the text of ``/proc/PID/stat``; ValueError if malformed."""
    rest = _after_name(stat_text)
    try:
        return int(rest[1])  # fields after the name: 3 state, 4 ppid
    except (IndexError, ValueError):
        raise ValueError(f"not a /proc/PID/stat line: {stat_text[:80]!r}") from None


def parse_cpu_with_reaped(stat_text: str, clk_tck: int = CLK_TCK) -> float:
    """utime + stime + cutime + cstime (fields 14-17) in seconds: the process and its reaped children."""
    rest = _after_name(stat_text)
    try:
        return sum(int(rest[i]) for i in range(11, 15)) / clk_tck
    except (IndexError, ValueError):
        raise ValueError(f"not a /proc/PID/stat line: {stat_text[:80]!r}") from None


def parse_vmrss_kb(status_text: str) -> int | None:
    """``VmRSS`` in KiB from the text of ``/proc/PID/status``; None for a zombie or kernel thread (no such line)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def descendants(root: int, ppids: dict[int, int]) -> list[int]:
    """``root`` and every process below it, given pid -> parent pid for all processes; [] if root is gone."""
    if root not in ppids:
        return []
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return sorted(tree)


@dataclass
class ProcSnapshot:
    """The ``/proc/PID/stat`` texts of every process at one moment (and ``status`` texts where read)."""

    stats: dict[int, str]
    statuses: dict[int, str] = field(default_factory=dict)

    def ppids(self) -> dict[int, int]:
        """pid -> parent pid, leaving out texts that do not parse."""
        out = {}
        for pid, text in self.stats.items():
            try:
                out[pid] = parse_ppid(text)
            except ValueError:
                continue
        return out

    def tree(self, root: int) -> list[int]:
        """``root`` and its descendants."""
        return descendants(root, self.ppids())

    def tree_cpu(self, root: int, clk_tck: int = CLK_TCK) -> float | None:
        """CPU seconds of the tree under ``root`` (reaped children included); None if root is gone."""
        pids = self.tree(root)
        if not pids:
            return None
        total = 0.0
        for pid in pids:
            try:
                total += parse_cpu_with_reaped(self.stats[pid], clk_tck)
            except ValueError:
                continue
        return total

    def tree_rss_kb(self, root: int) -> int | None:
        """Summed VmRSS (KiB) of the tree under ``root`` whose status was read; None if root is gone."""
        pids = self.tree(root)
        if not pids:
            return None
        return sum(parse_vmrss_kb(self.statuses.get(pid, "")) or 0 for pid in pids)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # the process exited between listing and reading, or not Linux
        return None


def snapshot(status_of: list[int] | None = None) -> ProcSnapshot:
    """Read /proc/*/stat now; also the status of the trees under the pids in ``status_of`` (for RSS)."""
    stats = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return ProcSnapshot({})
    for name in names:
        if name.isdigit() and (text := _read(f"/proc/{name}/stat")) is not None:
            stats[int(name)] = text
    snap = ProcSnapshot(stats)
    for root in status_of or ():
        for pid in snap.tree(root):
            if (text := _read(f"/proc/{pid}/status")) is not None:
                snap.statuses[pid] = text
    return snap


def tree_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds of ``pid`` and its descendants now (see the module docstring); None without it."""
    return None if pid is None else snapshot().tree_cpu(pid)


def tree_cpus(*pids: int | None) -> tuple[float | None, ...]:
    """``tree_cpu_seconds`` of each pid, all from one scan of /proc."""
    snap = snapshot() if any(pid is not None for pid in pids) else ProcSnapshot({})
    return tuple(None if pid is None else snap.tree_cpu(pid) for pid in pids)


def tree_rss_kb(pid: int | None) -> int | None:
    """Summed VmRSS (KiB) of ``pid`` and its descendants now; None without it."""
    return None if pid is None else snapshot([pid]).tree_rss_kb(pid)


__all__ = ["ProcSnapshot", "descendants", "parse_cpu_with_reaped", "parse_ppid", "parse_vmrss_kb", "snapshot",
           "tree_cpu_seconds", "tree_cpus", "tree_rss_kb"]
