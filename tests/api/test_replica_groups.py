"""How a sweep's jobs are cut into replica groups: by what shapes the stacked model, bounded by memory."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from api.sweeps.replicas import BYTES_PER_PARAMETER, assign_groups, group_size_limit
from core.config import Settings
from core.models import Job
from tests.api.test_sweeps import post_sweep
from training.spec import EXAMPLE_SPEC, JobSpec


def jobs(*changes: dict[str, Any], seeds: int = 5, parameters: int = 1000) -> list[tuple[Job, JobSpec, int]]:
    """(job, spec, parameters) for each change × seed."""
    made = []
    for change in changes:
        for seed in range(seeds):
            raw = copy.deepcopy(EXAMPLE_SPEC) | change
            raw["training"] = {**raw["training"], "seed": seed}
            made.append((Job(id=f"j{len(made)}", spec=raw), JobSpec.model_validate(raw), parameters))
    return made


def test_seeds_learning_rates_and_activations_share_a_group_architectures_do_not() -> None:
    lr = {"optimizer": {"name": "adam", "learning_rate": 0.1}}
    made = jobs({}, lr, {"activation": "tanh"}, {"normalization": {"layers": "layer"}})
    groups = assign_groups("sw_x", made, Settings())
    assert sorted(len(g) for g in groups) == [5, 15]
    assert len({job.replica_group for job, _, _ in made}) == 2


def test_groups_are_cut_evenly_to_the_memory_bound() -> None:
    parameters = 1000
    settings = Settings(replica_group_memory_mb=4 * parameters * BYTES_PER_PARAMETER / 2**20)
    assert group_size_limit(parameters, settings) == 4
    groups = assign_groups("sw_x", jobs({}, seeds=10, parameters=parameters), settings)
    assert sorted(len(g) for g in groups) == [3, 3, 4]


def test_groups_are_cut_evenly_to_the_size_bound() -> None:
    groups = assign_groups("sw_x", jobs({}, {"activation": "tanh"}, seeds=10), Settings(replica_group_size=8))
    assert sorted(len(g) for g in groups) == [6, 7, 7]
    assert sorted(len(g) for g in assign_groups("sw_x", jobs({}, seeds=16), Settings())) == [16]


def test_recurrent_networks_and_grouping_off_run_alone() -> None:
    rnn = {"dataset": {"name": "parity", "samples": 64, "length": 4}, "network": {"type": "rnn"}}
    assert [len(g) for g in assign_groups("sw_x", jobs(rnn, seeds=3), Settings())] == [1, 1, 1]
    off = assign_groups("sw_x", made := jobs({}, seeds=3), Settings(replica_groups=False))
    assert [len(g) for g in off] == [1, 1, 1] and all(job.replica_group is None for job, _, _ in made)


def test_sweep_jobs_show_their_replica_group(client: TestClient, auth_headers: dict[str, str]) -> None:
    sweep = post_sweep(client, auth_headers).json()
    shown = [client.get(f"/v1/jobs/{job['id']}", headers=auth_headers).json() for job in sweep["jobs"]]
    groups = [job["replica_group"] for job in shown]
    # the grid's activations train together; its normalizations (other parameters) apart
    layers = [job["params"]["normalization.layers"] for job in sweep["jobs"]]
    assert len(set(groups)) == 2 and all(g and g.startswith(sweep["id"]) for g in groups)
    pairs = list(zip(groups, layers, strict=True))
    assert all((a == b) == (m == n) for a, m in pairs for b, n in pairs)
