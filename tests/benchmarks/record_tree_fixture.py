"""Re-record data/proc_tree.json: /proc of the whole machine while ``fdrouter serve --workers 2`` runs.

    PYTHONPATH=$PWD python tests/benchmarks/record_tree_fixture.py     # Linux

It starts the router (a supervisor, multiprocessing's resource tracker and two workers), waits
for ``listening on``, then reads every ``/proc/PID/stat``, the ``/proc/PID/status`` of the
router's processes, and, as an independent account of the same moment, ``ps -e -o
pid,ppid,rss``. The tests assert on the recorded pids, so after re-recording nothing needs
updating: they take the root pid and the ps listing from the file.
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
        finally:
            router.terminate()
            router.wait(timeout=60)
    fixture = {"root": router.pid, "clk_tck": os.sysconf("SC_CLK_TCK"), "ps": ps, "stats": stats,
               "statuses": statuses}
    (DATA / "proc_tree.json").write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")


__all__ = ["main"]

if __name__ == "__main__":
    main()
