"""list, tag, note, delete and workers against a real `trainctl serve`, as a person would use them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.harness import IRIS_SPEC
from tests.trainctl.conftest import LiveServer
from tests.trainctl.test_client_cli import client_for, trainctl, write_spec

pytestmark = pytest.mark.slow


def test_list_tag_note_and_delete(live_server: LiveServer, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, IRIS_SPEC)
    ids = [trainctl(live_server, "submit", spec, "--name", f"org-{i}").stdout.strip() for i in range(2)]
    with client_for(live_server) as client:
        for job_id in ids:
            client.wait(job_id, timeout=90)

    assert trainctl(live_server, "tag", ids[0], "keep", "adam").stdout == f"{ids[0]}: adam, keep\n"
    assert trainctl(live_server, "tag", ids[0], "--remove", "adam").stdout == f"{ids[0]}: keep\n"
    assert trainctl(live_server, "note", ids[0], "the baseline").exit_code == 0
    assert trainctl(live_server, "note", ids[0]).stdout == "the baseline\n"

    listed = trainctl(live_server, "list", "--tag", "keep", env_columns="80")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "EPOCH", "RESULT", "CREATED"]
    assert len(lines) == 2 and ids[0] in lines[1] and "org-0" in lines[1] and "succeeded" in lines[1]
    assert re.search(r"test_accuracy 0\.\d+", lines[1]) and all(len(line) <= 80 for line in lines)
    newest_first = trainctl(live_server, "list", "--name", "org-1", "--json")
    assert [job["id"] for job in json.loads(newest_first.stdout)] == [ids[1]]
    by_accuracy = json.loads(trainctl(live_server, "list", "--sort", "-test_accuracy", "--json").stdout)
    accuracies = [job["result"]["test"]["test_accuracy"] for job in by_accuracy if job.get("result")]
    assert accuracies == sorted(accuracies, reverse=True)
    bad_sort = trainctl(live_server, "list", "--sort", "colour")
    assert bad_sort.exit_code == 2 and "sort" in bad_sort.stderr

    assert trainctl(live_server, "delete", *ids).stdout == f"{ids[0]} deleted\n{ids[1]} deleted\n"
    gone = trainctl(live_server, "status", ids[0])
    assert gone.exit_code == 1 and gone.stderr.count("\n") == 1


def test_workers_shows_the_serve_worker(live_server: LiveServer) -> None:
    shown = trainctl(live_server, "workers", env_columns="80")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["WORKER", "PID", "QUEUES", "DEVICE", "JOBS", "RUNNING", "SEEN"]
    assert any("@" in line and " cpu " in line and " ago" in line for line in lines[1:]), shown.stdout
    (worker,) = [w for w in json.loads(trainctl(live_server, "workers", "--json").stdout) if w["alive"]]
    assert worker["pid"] > 0 and worker["concurrency"] >= 1 and worker["host"]
