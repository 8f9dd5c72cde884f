"""Process-tree CPU and RSS, on /proc recorded while ``fdrouter serve --workers 2`` ran (record_tree_fixture.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fdbench.proctree import (
    ProcSnapshot,
    descendants,
    parse_cpu_with_reaped,
    parse_ppid,
    parse_vmrss_kb,
    tree_cpu_seconds,
    tree_rss_kb,
)

from .conftest import DATA

FIXTURE = json.loads((DATA / "proc_tree.json").read_text())
ROOT = FIXTURE["root"]
PS = [tuple(map(int, line.split())) for line in FIXTURE["ps"].splitlines()]  # (pid, ppid, rss KiB)


def recorded() -> ProcSnapshot:
    return ProcSnapshot({int(p): t for p, t in FIXTURE["stats"].items()},
                        {int(p): t for p, t in FIXTURE["statuses"].items()})


def test_the_tree_of_a_two_worker_router_is_its_supervisor_the_resource_tracker_and_both_workers():
    tree = recorded().tree(ROOT)
    # ps, an independent reader of the same moment, names the same children
    assert tree == sorted([ROOT] + [pid for pid, ppid, _ in PS if ppid == ROOT])
    assert len(tree) == 4
    names = {pid: FIXTURE["stats"][str(pid)].split("(", 1)[1].rsplit(")", 1)[0] for pid in tree}
    assert all("python" in name for name in names.values()), names
    # the recorder (the root's parent) and its other child are recorded too, and outside the tree
    assert parse_ppid(FIXTURE["stats"][str(ROOT)]) == FIXTURE["recorder"]
    assert parse_ppid(FIXTURE["stats"][str(FIXTURE["sibling"])]) == FIXTURE["recorder"]
    assert FIXTURE["recorder"] not in tree and FIXTURE["sibling"] not in tree
    assert recorded().tree(FIXTURE["recorder"]) == sorted([FIXTURE["recorder"], FIXTURE["sibling"], *tree])


def test_tree_rss_is_the_sum_of_every_member_s_vmrss():
    snap = recorded()
    expected = sum(rss for pid, _, rss in PS if pid in snap.tree(ROOT))
    assert snap.tree_rss_kb(ROOT) == expected  # ps's RSS column is VmRSS
    assert expected > 3 * sum(rss for pid, _, rss in PS if pid == ROOT) / 2  # workers count, not just the root


def test_tree_cpu_adds_every_member_s_own_and_reaped_children_s_ticks():
    snap = recorded()
    ticks = FIXTURE["clk_tck"]
    by_hand = 0
    for pid in snap.tree(ROOT):
        fields = FIXTURE["stats"][str(pid)].rsplit(")", 1)[1].split()
        by_hand += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime, proc(5) fields 14-17
    assert snap.tree_cpu(ROOT, ticks) == pytest.approx(by_hand / ticks)
    assert snap.tree_cpu(ROOT, ticks) > parse_cpu_with_reaped(FIXTURE["stats"][str(ROOT)], ticks)


def test_a_process_that_is_gone_has_no_tree_and_no_numbers():
    snap = recorded()
    gone = max(snap.stats) + 1
    assert snap.tree(gone) == [] and snap.tree_cpu(gone) is None and snap.tree_rss_kb(gone) is None


def test_descendants_walk_every_generation_and_only_below_the_root():
    ppids = {1: 0, 10: 1, 11: 10, 12: 11, 13: 11, 20: 1, 21: 20}
    assert descendants(10, ppids) == [10, 11, 12, 13]
    assert descendants(12, ppids) == [12]
    assert descendants(99, ppids) == []


def test_parsers_survive_parentheses_in_names_and_reject_what_is_not_proc_text():
    line = "42 (a) (b) S 7 42 42 0 -1 4194560 1 0 0 0 30 20 5 4 20 0 1 0 1 1 1"
    assert parse_ppid(line) == 7
    assert parse_cpu_with_reaped(line, 100) == pytest.approx((30 + 20 + 5 + 4) / 100)
    with pytest.raises(ValueError):
        parse_ppid("garbage")
    with pytest.raises(ValueError):
        parse_cpu_with_reaped("1 (x) S 0 1", 100)
    assert parse_vmrss_kb("Name:\tx\nVmRSS:\t  1234 kB\n") == 1234
    assert parse_vmrss_kb("Name:\tkthreadd\nState:\tS\n") is None  # kernel threads and zombies have none


def test_live_tree_cpu_includes_a_grandchild_that_has_exited_and_been_reaped():
    # the child starts a grandchild that burns ~0.3 s of CPU, reaps it, says so, then waits for stdin
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.3: pass']); "
            "print('reaped', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "reaped"
        assert tree_cpu_seconds(child.pid) >= 0.3
        assert tree_rss_kb(child.pid) > 1000  # a Python interpreter is megabytes
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert tree_cpu_seconds(child.pid) is None and tree_cpu_seconds(None) is None
