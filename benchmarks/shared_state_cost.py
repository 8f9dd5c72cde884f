"""What sharing routing state across workers adds to one request, measured without the network.

With ``--workers N`` a request touches the shared state in three ways (``docs/architecture.md``):

1. ``RegistryMirror.poll``: three version words read and compared with the last seen;
2. the load of each candidate instance, summed over the N workers' rows, and this worker's own
   row incremented when the leg starts and decremented when it ends;
3. with a learning policy (``cache_aware``), its decision queued for the other workers: a JSON
   encode per request, and one non-blocking ``sendto`` per peer per event-loop iteration
   (measured here as if every request had an iteration to itself, the worst case).

None of it takes a lock or waits on another process: the words are plain loads and stores in a
shared mapping, and a datagram a peer cannot take is dropped. This script times each piece
against the single-process equivalent (plain attributes) and prints the difference per request.

Usage: ``python benchmarks/shared_state_cost.py [--instances 4] [--workers 2] [--seconds 1]``
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import timeit
from pathlib import Path

from fdrouter import jsonutil
from fdrouter.health_state import Health
from fdrouter.instances import InstanceInfo
from fdrouter.registry import Registry
from fdrouter.workers.shared_registry import RegistryMirror, publish
from fdrouter.workers.shared_state import SharedState

PROMPT_BLOCKS = 24  # a ~12k-token prompt in 512-token blocks, as the Mooncake trace's conversations


def _fleet(n: int) -> list[InstanceInfo]:
    return [InstanceInfo.from_dict({"host_ip": "127.0.0.1", "port": 9000 + i, "role": "mixed"}) for i in range(n)]


def _per_request(states: list, *, poll) -> None:
    """What one request does with the load: poll, read every candidate's load, count a leg, release it."""
    poll()
    best = min(states, key=lambda s: s.in_flight)
    best.add_load(1, 1000)
    best.add_load(-1, -1000)


def _time(fn, seconds: float) -> float:
    """Microseconds per call of ``fn``: the best of three runs of about ``seconds`` / 3 each."""
    timer = timeit.Timer(fn)
    trial = 1000
    per_call = max(timer.timeit(trial) / trial, 1e-9)
    number = max(100, int(seconds / 3 / per_call))
    return min(timer.repeat(3, number)) / number * 1e6


def measure(instances: int, workers: int, seconds: float) -> dict[str, float]:
    """Microseconds per request of each piece (see the module docstring), in one process."""
    infos = _fleet(instances)
    local = Registry(failure_threshold=3, success_threshold=2)
    for info in infos:
        local.add(info)
    local_states = list(local.all())
    figures = {"local": _time(lambda: _per_request(local_states, poll=lambda: None), seconds)}
    with tempfile.TemporaryDirectory(prefix="fdrouter-shared-cost-") as directory:
        supervisor = SharedState(Path(directory), workers, max_instances=64)
        worker = SharedState(Path(directory), workers, max_instances=64, worker=0)
        try:
            for info in infos:
                publish(supervisor.shm, info, Health.HEALTHY)
            registry = Registry(failure_threshold=3, success_threshold=2)
            mirror = RegistryMirror(registry, worker.shm, worker=0, on_removed=lambda state: None)
            mirror.poll()
            shared_states = list(registry.all())
            if len(shared_states) != instances:
                raise RuntimeError(f"the mirror sees {len(shared_states)} instances, {instances} were published")
            figures["poll"] = _time(mirror.poll, seconds)
            figures["shared"] = _time(lambda: _per_request(shared_states, poll=mirror.poll), seconds)
            learn = {"t": "learn", "role": "mixed", "url": infos[0].url, "blocks": list(range(PROMPT_BLOCKS))}
            figures["encode"] = _time(lambda: jsonutil.dumps(learn), seconds)
            figures["sendto"] = _sendto_cost(Path(directory), jsonutil.dumps(learn), seconds)
        finally:
            worker.close()
            supervisor.close()
    figures["added"] = (figures["shared"] - figures["local"] + figures["encode"]
                        + figures["sendto"] * (workers - 1))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--instances", type=int, default=4, help="instances registered (candidates per request)")
    parser.add_argument("--workers", type=int, default=2, help="workers sharing the state")
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent per measurement")
    args = parser.parse_args(argv)
    f = measure(args.instances, args.workers, args.seconds)
    peers = args.workers - 1
    print(f"shared state cost per request: {args.instances} instances, {args.workers} workers, "
          f"python {sys.version.split()[0]}, pid {os.getpid()}")
    print(f"  in-process load (poll nothing, read {args.instances} loads, count and release a leg): "
          f"{f['local']:6.2f} µs")
    print(f"  shared load, same steps:                                          {f['shared']:6.2f} µs "
          f"(+{f['shared'] - f['local']:.2f})")
    print(f"    of which the registry poll (3 version words, nothing changed):  {f['poll']:6.2f} µs")
    print(f"  cache_aware's decision for the other workers: encode               {f['encode']:6.2f} µs")
    print(f"    one sendto per peer per loop iteration, worst case x{peers}:         {f['sendto'] * peers:6.2f} µs")
    print(f"  added per request: {f['added']:.2f} µs without a lock, a wait on another process, or a blocking call")
    return 0


def _sendto_cost(directory: Path, datagram: bytes, seconds: float) -> float:
    """Microseconds of one non-blocking sendto of ``datagram`` to a peer that reads them all."""
    path = str(directory / "peer.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)

    def send_and_drain() -> None:
        sender.sendto(datagram, path)
        receiver.recv(65536)  # the peer's side, so the queue never fills; subtracted below

    def drain_only() -> None:
        try:
            receiver.recv(65536)
        except BlockingIOError:
            pass

    try:
        both = _time(send_and_drain, seconds)
        receive = _time(drain_only, seconds)  # an empty recv costs about what a full one does
    finally:
        sender.close()
        receiver.close()
    return max(both - receive, 0.0)


__all__ = ["main", "measure"]


if __name__ == "__main__":
    raise SystemExit(main())
