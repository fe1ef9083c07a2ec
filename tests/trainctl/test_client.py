"""The Python client against a real `trainctl serve` (API + worker process): jobs, errors, waiting, events."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import DIVERGING_SPEC, IRIS_SPEC, SLOW_SPEC
from tests.trainctl.conftest import LiveServer, free_port
from trainctl.client import (
    Client,
    RetryPolicy,
    ServerUnreachable,
    Table,
    TrainctlError,
    WaitTimeout,
    resolve_key,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def client(live_server: LiveServer) -> Any:
    with Client(live_server.url, live_server.key) as client:
        yield client


def test_submit_wait_metrics_and_table(client: Client) -> None:
    job = client.submit(IRIS_SPEC, name="client-iris", tags=["client"])
    assert job["status"] == "queued" and job["name"] == "client-iris" and job["tags"] == ["client"]
    seen: list[tuple[str, int]] = []
    done = client.wait(
        job["id"], timeout=60, on_progress=lambda j: seen.append((j["status"], j["progress"]["epoch"]))
    )
    assert done["status"] == "succeeded" and done["result"]["epochs_run"] == 5
    assert seen[-1] == ("succeeded", 5) and len(seen) == len(set(seen))  # each change reported once
    assert client.get(job["id"]) == done

    records = client.metrics(job["id"])
    assert [record["epoch"] for record in records] == [1, 2, 3, 4, 5]
    assert "layers" in records[0]
    later = client.metrics(job["id"], since_epoch=3, fields=["val_loss"])
    assert later == [
        {"epoch": 4, "val_loss": records[3]["val_loss"]},
        {"epoch": 5, "val_loss": records[4]["val_loss"]},
    ]

    table = client.metrics_table(job["id"], fields="train_loss,val_loss")
    assert table.columns == ["epoch", "train_loss", "val_loss"] and len(table) == 5
    assert table.column("epoch") == [1, 2, 3, 4, 5]
    assert table.records()[0] == {k: records[0][k] for k in table.columns}
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(rows) == 5 and float(rows[4]["val_loss"]) == pytest.approx(records[4]["val_loss"])
    server_csv = list(csv.DictReader(io.StringIO(client.metrics_csv(job["id"]))))
    assert len(server_csv) == 5 and any(name.startswith("layers.") for name in server_csv[0])


def test_table_without_pandas() -> None:
    table = Table.from_records([{"a": 1, "b": {"x": 1}}, {"a": 2, "c": "z"}])
    assert table.columns == ["a", "b", "c"]
    assert table.rows == [[1, {"x": 1}, None], [2, None, "z"]]
    assert table.to_csv().splitlines() == ["a,b,c", '1,"{""x"": 1}",', "2,,z"]


def test_download_a_checkpoint_and_idempotent_submit(client: Client, tmp_path: Path) -> None:
    first = client.submit(IRIS_SPEC, idempotency_key="client-once")
    again = client.submit(IRIS_SPEC, idempotency_key="client-once")
    assert first["id"] == again["id"]
    client.wait(first["id"], timeout=60)
    path = client.download(first["id"], "best", tmp_path / "best.safetensors")
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    assert "__metadata__" in header and len(header) > 1
    assert not (tmp_path / "best.safetensors.part").exists()
    with pytest.raises(TrainctlError) as missing:
        client.download(first["id"], "epoch-9999", tmp_path / "nope.safetensors")
    assert missing.value.status == 404 and not (tmp_path / "nope.safetensors").exists()
    names = {checkpoint["name"] for checkpoint in client.checkpoints(first["id"])}
    assert {"best", "last"} <= names
    client.delete(first["id"])
    with pytest.raises(TrainctlError) as gone:
        client.get(first["id"])
    assert gone.value.status == 404


def test_a_failed_job_is_reported_not_raised(client: Client) -> None:
    job = client.wait(client.submit(DIVERGING_SPEC)["id"], timeout=60)
    assert job["status"] == "failed" and job["error"]


def test_wait_times_out_then_cancel(client: Client) -> None:
    job = client.submit(SLOW_SPEC)
    with pytest.raises(WaitTimeout) as timed_out:
        client.wait(job["id"], timeout=0.3)
    assert isinstance(timed_out.value, TimeoutError)
    assert job["id"] in str(timed_out.value) and "0.3" in str(timed_out.value)
    client.cancel(job["id"])
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"


def test_problems_become_errors_with_fields(client: Client) -> None:
    bad = {**IRIS_SPEC, "optimizer": {"name": "adam", "learning_rate": -1}, "trainng": {}}
    with pytest.raises(TrainctlError) as invalid:
        client.submit(bad)
    error = invalid.value
    assert error.status == 422 and error.title == "Invalid request"
    fields = {problem.field for problem in error.errors}
    assert "spec" in fields or "spec.trainng" in fields, fields
    assert str(error).startswith("Invalid request (422)")
    assert all(f"  {problem.field}: {problem.message}" in str(error) for problem in error.errors)
    with pytest.raises(TrainctlError) as missing:
        client.get("job_does_not_exist")
    assert missing.value.status == 404 and "job_does_not_exist" in missing.value.detail


def test_bad_key_and_no_server(live_server: LiveServer) -> None:
    with Client(live_server.url, "not-a-key") as client, pytest.raises(TrainctlError) as refused:
        client.get("job_x")
    assert refused.value.status == 401
    url = f"http://127.0.0.1:{free_port()}"
    quick = RetryPolicy(total=1.0)
    with Client(url, "k", timeout=2, retry=quick) as client, pytest.raises(ServerUnreachable) as down:
        client.get("job_x")
    assert down.value.status == 0 and url in str(down.value)


def test_url_and_key_from_the_environment_or_the_key_file(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("TRAINCTL_URL", "TRAINCTL_API_KEY", "TRAINCTL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert Client().url == "http://127.0.0.1:8000" and resolve_key() is None
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "api-key").write_text("from-default-file\n")
    assert resolve_key() == "from-default-file"
    monkeypatch.setenv("TRAINCTL_DATA_DIR", str(live_server.data_dir))
    monkeypatch.setenv("TRAINCTL_URL", live_server.url + "/")
    with Client() as client:
        assert client.url == live_server.url and client.api_key == live_server.key
        assert client.health()["status"] in {"ok", "degraded"}
        assert isinstance(client.jobs(limit=1), list)
        assert isinstance(client.sweeps(limit=1), list)
    monkeypatch.setenv("TRAINCTL_API_KEY", "from-env")
    assert resolve_key() == "from-env" and resolve_key("given") == "given"


def test_events_deliver_every_epoch_in_order_then_end(client: Client) -> None:
    job = client.submit({**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 8}})
    events = list(client.events(job["id"]))
    epochs = [data["epoch"] for event, data in events if event == "epoch"]
    assert epochs == list(range(1, 9))
    assert events[-1][0] == "end"
    assert any(event == "status" for event, _data in events)
    resumed = [
        data["epoch"] for event, data in client.events(job["id"], last_event_id="6") if event == "epoch"
    ]
    assert resumed == [7, 8]


def test_sweep_wait_compare_plot_from_python(client: Client, tmp_path: Path) -> None:
    base = {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 3}}
    sweep = client.sweep(base, {"activation": ["tanh", "relu"]}, seeds=2, name="py-sweep", tags=["py"])
    assert len(sweep["jobs"]) == 4
    changes: list[dict[str, int]] = []
    done = client.wait_sweep(
        sweep["id"], timeout=120, on_progress=lambda s: changes.append(s["counts"]), poll=0.2
    )
    assert all(job["status"] == "succeeded" for job in done["jobs"]) and changes
    assert any(item["id"] == sweep["id"] for item in client.sweeps())

    result = client.compare(sweep=sweep["id"], metric="val_loss", mode="min", target="val_loss<5")
    assert [group["n"] for group in result["groups"]] == [2, 2]
    assert {job["differs"]["activation"] for job in result["jobs"]} == {"tanh", "relu"}
    assert all(job["epochs_to_target"] == 1 for job in result["jobs"])
    ids = [job["id"] for job in done["jobs"]]
    pair = client.compare(jobs=ids[:2], fields=["val_loss"], points=2, job_curves=True)
    assert set(pair["curves"]) == set(ids[:2]) and len(pair["bands"]["val_loss"]) == len(pair["groups"])
    assert [test["other"] for test in result["tests"]] == [1 - result["best_group"]]
    grown = client.add_seeds(sweep["id"], 3)
    assert len(grown["added"]) == 2 and grown["seeds"] == 3
    client.wait_sweep(sweep["id"], timeout=120, poll=0.2)
    rows = list(csv.DictReader(io.StringIO(client.compare_csv(sweep=sweep["id"]))))
    assert len(rows) == 6
    effects = list(csv.DictReader(io.StringIO(client.compare_csv(sweep=sweep["id"], table="effects"))))
    assert [row["term"] for row in effects] == ["activation"]
    png = client.plot(sweep=sweep["id"], metric="val_loss", path=tmp_path / "curves.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    gradients = client.job_plot(ids[0], "gradients", tmp_path / "gradients.png")
    assert gradients.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        client.compare()


def test_cancel_a_sweep_and_wait_sweep_times_out(client: Client) -> None:
    sweep = client.sweep(SLOW_SPEC, {"training.batch_size": [8, 9]}, name="py-slow")
    with pytest.raises(WaitTimeout) as timed_out:
        client.wait_sweep(sweep["id"], timeout=0.2)
    assert sweep["id"] in str(timed_out.value)
    client.cancel_sweep(sweep["id"])
    done = client.wait_sweep(sweep["id"], timeout=60, poll=0.2)
    assert {job["status"] for job in done["jobs"]} == {"cancelled"}
