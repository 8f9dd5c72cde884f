"""Re-record data/proc_tree.json: /proc of the whole machine while ``fdrouter serve --workers 2`` runs.

    PYTHONPATH=$PWD python tests/benchmarks/record_tree_fixture.py     # Linux

It starts the router (a supervisor, multiprocessing's resource tracker and two workers) and, as
a sibling the tree walk must leave out, an idle Python child; waits for ``listening on``; then
reads ``/proc/PID/stat`` of every process and keeps those of the recorder, the sibling and the
router's tree (nothing else of the machine goes into the file), the ``/proc/PID/status`` of the
router's processes, and, as an independent account of the same moment, ``ps -e -o
pid,ppid,rss`` for the same pids. The tests take the root pid and the ps listing from the
file, so after re-recording nothing needs updating.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def main() -> None:
    """Record the fixture."""
    with tempfile.TemporaryFile() as log:
        router = subprocess.Popen(
            [sys.executable, "-m", "fdrouter", "serve", "--workers", "2", "--port", "0",
             "--worker-urls", "http://127.0.0.1:9", "--log-level", "error"], stdout=log, stderr=subprocess.STDOUT)
        sibling = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                log.seek(0)
                if re.search(rb"listening on http://", log.read()):
                    break
                time.sleep(0.1)
            else:
                sys.exit("the router did not start within 60 s")
            ps = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True,
                                check=True).stdout
            stats = {name: text for name in os.listdir("/proc")
                     if name.isdigit() and (text := _read(f"/proc/{name}/stat")) is not None}
            below = {str(router.pid)}
            for line in ps.splitlines():  # ps lists parents before children here; good enough to pick statuses
                pid, ppid, _ = line.split()
                if ppid in below:
                    below.add(pid)
            statuses = {pid: text for pid in sorted(below) if (text := _read(f"/proc/{pid}/status")) is not None}
            keep = below | {str(os.getpid()), str(sibling.pid)}
            stats = {pid: text for pid, text in stats.items() if pid in keep}
            ps = "".join(line + "\n" for line in ps.splitlines() if line.split()[0] in keep)
        finally:
            router.terminate()
            sibling.stdin.close()  # type: ignore[union-attr]
            router.wait(timeout=60)
            sibling.wait(timeout=10)
    fixture = {"root": router.pid, "recorder": os.getpid(), "sibling": sibling.pid, "clk_tck": os.sysconf("SC_CLK_TCK"), "ps": ps, "stats": stats,
               "statuses": statuses}
    (DATA / "proc_tree.json").write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")


__all__ = ["main"]

if __name__ == "__main__":
    main()
