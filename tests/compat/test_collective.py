"""compat.tensor_model_parallel_all_reduce and compat.decode_alltoall_transpose."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import compat
from compat import profiles
from fdrouter.testing import closed_port

WORKER = Path(__file__).with_name("allreduce_worker.py")
LAUNCH_TIMEOUT_S = 90


@pytest.mark.parametrize("profile", ["cpu", "hpu"], ids=["native", "fallback"])
def test_all_reduce_returns_an_input_with_empty_first_dimension_unchanged(paddle, profile):
    with profiles.using(profile):
        x = paddle.zeros([0, 4])
        assert compat.tensor_model_parallel_all_reduce(x) is x


@pytest.mark.parametrize("profile", ["cpu", "hpu"], ids=["native", "fallback"])
def test_all_reduce_returns_the_input_unchanged_when_the_world_size_is_one(paddle, profile, monkeypatch):
    def no_collective(*args, **kwargs):
        raise AssertionError("all_reduce ran with a world size of 1")

    monkeypatch.setattr(paddle.distributed, "all_reduce", no_collective)
    with profiles.using(profile):
        x = paddle.to_tensor([[1.0, 2.0], [3.0, 4.0]])
        out = compat.tensor_model_parallel_all_reduce(x)
    assert out is x
    assert out.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("full_graph", [True, False], ids=["ast", "sot"])
@pytest.mark.parametrize("profile", ["cpu", "hpu"], ids=["native", "fallback"])
def test_all_reduce_works_inside_a_to_static_graph(paddle, profile, full_graph):
    with profiles.using(profile):

        @paddle.jit.to_static(full_graph=full_graph)
        def layer(x):
            return compat.tensor_model_parallel_all_reduce(x * 2) + 1

        out = layer(paddle.ones([2, 3]))
    assert out.numpy().tolist() == [[3.0] * 3] * 2


@pytest.mark.parametrize("profile", list(profiles.PROFILES))
def test_decode_alltoall_transpose_raises_a_runtime_error_naming_op_platform_and_registration(
    paddle, profile
):
    with profiles.using(profile):
        with pytest.raises(RuntimeError) as caught:
            compat.decode_alltoall_transpose(paddle.ones([2, 4]))
        platform = compat.platform()
    message = str(caught.value)
    assert isinstance(caught.value, compat.OpUnavailable)
    assert message.startswith(f"decode_alltoall_transpose is unavailable on {platform}: ")
    assert platform.startswith(profile)
    if profile == "cpu":
        assert "custom op registration works" in message
    else:
        assert "custom op registration failed: AttributeError:" in message
        assert "register_op" in message


def test_decode_alltoall_transpose_raises_under_the_suite_profile_too(paddle):
    with pytest.raises(RuntimeError, match="decode_alltoall_transpose is unavailable"):
        compat.decode_alltoall_transpose(paddle.ones([1, 2]), out=paddle.ones([1, 2]))


@contextlib.contextmanager
def _consecutive_ports(n: int) -> Iterator[int]:
    """The first of ``n`` consecutive loopback ports, each held by `closed_port` until the block ends.

    Left to itself, paddle.distributed.launch checks that ports are free and lets go of them
    before its workers bind them, seconds later: a race with every other process on the machine.
    Given ``--ips 127.0.0.1 --start_port P`` it uses P (the rendezvous store) and P + 1 for rank 1,
    which it binds with SO_REUSEADDR, over the held ports.
    """
    while True:
        with contextlib.ExitStack() as held:
            start = held.enter_context(closed_port())
            try:
                for offset in range(1, n):
                    held.enter_context(closed_port(port=start + offset))
            except OSError:
                continue  # a neighbour is taken: start elsewhere
            yield start
            return


def test_all_reduce_sums_across_two_gloo_ranks_with_the_suite_profiles_path(
    tmp_path, child_env, suite_profile, expected_paths
):
    with _consecutive_ports(2) as start_port:
        command = [
            sys.executable, "-m", "paddle.distributed.launch",
            "--nproc_per_node", "2", "--ips", "127.0.0.1", "--start_port", str(start_port),
            "--log_dir", str(tmp_path / "log"),
            str(WORKER), str(tmp_path),
        ]  # fmt: skip
        result = _launch(command, tmp_path, child_env(suite_profile))
    assert result.returncode == 0, f"launch failed:\n{result.stdout[-3000:]}\n{_worker_logs(tmp_path)}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    for seen in ranks:
        assert seen["world_size"] == 2
        assert seen["path"] == expected_paths[suite_profile]["tensor_model_parallel_all_reduce"]
        assert seen["global_sum"] == [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]  # 1 + 2
        assert seen["group_sum"] == [10.0, 2.0]  # [0, 1] + [10, 1]
        assert seen["empty_returned_as_is"] is True
        assert seen["fleet_mp1_returned_as_is"] is True
        assert seen["group_over_fleet_sum"] == [3.0, 3.0]
    assert [seen["fleet_mp1_values"] for seen in ranks] == [[1.0, 1.0], [2.0, 2.0]]


def _launch(command: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"2-rank launch did not finish in {LAUNCH_TIMEOUT_S} s; logs:\n{_worker_logs(tmp_path)}")


def _worker_logs(tmp_path: Path) -> str:
    logs = sorted((tmp_path / "log").glob("workerlog.*"))
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
