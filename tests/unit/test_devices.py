"""Replica device planning: disjoint GPU and CPU sets, parallel sizes, clear errors."""

from __future__ import annotations

import pytest

from servemark.deploy.devices import Devices, compact_ranges, parallel_sizes, plan_replicas
from servemark.errors import ConfigError

GPUS8 = Devices("gpu", tuple(range(8)))
CORES = Devices("cpu", tuple(range(16)))


def test_parallel_sizes_from_vllm_flags() -> None:
    assert parallel_sizes([]) == (1, 1)
    assert parallel_sizes(["--tensor-parallel-size", "4", "--dtype", "bf16"]) == (4, 1)
    assert parallel_sizes(["-tp=2", "--pipeline-parallel-size=2"]) == (2, 2)
    with pytest.raises(ConfigError, match="--tensor-parallel-size needs an integer"):
        parallel_sizes(["--tensor-parallel-size", "four"])


def test_compact_ranges() -> None:
    assert compact_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert compact_ranges([3]) == "3"


def test_gpu_replicas_get_disjoint_tp_sized_sets() -> None:
    plan = plan_replicas(2, GPUS8, ranks=4)
    assert [r.env["CUDA_VISIBLE_DEVICES"] for r in plan] == ["0,1,2,3", "4,5,6,7"]


def test_gpu_max_is_the_largest_fit() -> None:
    assert len(plan_replicas("max", GPUS8, ranks=4)) == 2
    assert len(plan_replicas("max", GPUS8, ranks=3)) == 2  # 2 GPUs stay idle
    assert len(plan_replicas("max", Devices("gpu", (2, 5, 7)), ranks=1)) == 3
    visible = plan_replicas("max", Devices("gpu", (2, 5, 7)), ranks=1)
    assert [r.env["CUDA_VISIBLE_DEVICES"] for r in visible] == ["2", "5", "7"]


def test_not_enough_gpus_is_an_error_naming_what_fits() -> None:
    with pytest.raises(ConfigError, match=r"3 replicas need 12 GPUs .* this node has 8") as e:
        plan_replicas(3, GPUS8, ranks=4)
    assert "--replicas 2" in e.value.one_line()
    with pytest.raises(ConfigError, match="not even one replica fits"):
        plan_replicas("max", GPUS8, ranks=16)


def test_cpu_replicas_share_cores_evenly_and_disjointly() -> None:
    plan = plan_replicas(2, CORES)
    assert [r.env["VLLM_CPU_OMP_THREADS_BIND"] for r in plan] == ["0-7", "8-15"]
    one_each = plan_replicas(2, Devices("cpu", (0, 1)))
    assert [r.env["VLLM_CPU_OMP_THREADS_BIND"] for r in one_each] == ["0", "1"]


def test_cpu_ranks_are_separated_by_bar() -> None:
    plan = plan_replicas(2, CORES, ranks=2)
    assert plan[0].env["VLLM_CPU_OMP_THREADS_BIND"] == "0-3|4-7"
    assert plan[1].env["VLLM_CPU_OMP_THREADS_BIND"] == "8-11|12-15"


def test_cpu_max_and_cores_per_replica() -> None:
    assert len(plan_replicas("max", CORES, per_replica=4)) == 4
    assert len(plan_replicas("max", CORES)) == 16  # one core per rank by default
    with pytest.raises(ConfigError, match="cannot host TP×PP = 4 ranks"):
        plan_replicas(2, CORES, ranks=4, per_replica=2)
    with pytest.raises(ConfigError, match="need 20 CPU cores"):
        plan_replicas(5, CORES, per_replica=4)
