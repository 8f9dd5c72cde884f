"""One rank of test_collective's 2-process run (paddle.distributed.launch, gloo on CPU).

Not a test module: the launcher runs it as a script. It applies the profile from
FDROUTER_PADDLE_PROFILE, exercises compat.tensor_model_parallel_all_reduce the ways the
test checks, and writes what it saw to ``<out_dir>/rank<N>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from compat import profiles

profiles.apply_from_env()

import paddle  # noqa: E402 - after the profile, as a model server would see it
import paddle.distributed as dist  # noqa: E402
from paddle.distributed import fleet  # noqa: E402

import compat  # noqa: E402

all_reduce = compat.tensor_model_parallel_all_reduce


def main(out_dir: Path) -> None:
    """Run the cases on this rank and write the results."""
    dist.init_parallel_env()
    rank = dist.get_rank()
    seen: dict[str, object] = {"rank": rank, "world_size": dist.get_world_size()}
    seen["path"] = compat.features()["tensor_model_parallel_all_reduce"].path

    # no group, no fleet: the global group
    x = paddle.full([2, 3], float(rank + 1))
    seen["global_sum"] = all_reduce(x).numpy().tolist()

    # an explicit group
    pair = dist.new_group([0, 1])
    y = paddle.to_tensor([rank * 10.0, 1.0])
    seen["group_sum"] = all_reduce(y, group=pair).numpy().tolist()

    # nothing to reduce: returned as is, without a collective the other rank would wait on
    empty = paddle.zeros([0, 3])
    seen["empty_returned_as_is"] = all_reduce(empty) is empty

    # an initialised fleet whose model-parallel group is this rank alone (dp 2 x mp 1): the
    # default group is that one-rank group, so nothing is summed
    strategy = fleet.DistributedStrategy()
    strategy.hybrid_configs = {"dp_degree": 2, "mp_degree": 1, "pp_degree": 1}
    fleet.init(is_collective=True, strategy=strategy)
    z = paddle.full([2], float(rank + 1))
    out = all_reduce(z)
    seen["fleet_mp1_returned_as_is"] = out is z
    seen["fleet_mp1_values"] = out.numpy().tolist()

    # an explicit group still wins over fleet's model-parallel group
    w = paddle.full([2], float(rank + 1))
    seen["group_over_fleet_sum"] = all_reduce(w, group=pair).numpy().tolist()

    (out_dir / f"rank{rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
