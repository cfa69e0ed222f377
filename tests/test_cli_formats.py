"""`--format table|json|csv`, `--columns`, `runs show --metric` and `runs compare --children`:
what a program reads back is what was logged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import mltrail
from mltrail import TrackingClient
from mltrail.cli import main
from mltrail.cli_output import sparkline

LOSSES = (0.5, 0.125, 0.75, 0.25)


@pytest.fixture
def sweep(tracking_dir: Path) -> dict[str, str]:
    """A parent with four children (params x, kind; metric loss), and a curve on the parent."""
    mltrail.set_experiment("sweep")
    ids: dict[str, str] = {}
    with mltrail.start_run(run_name="search") as parent:
        for step, value in enumerate((3.0, 2.0, 2.5, 1.0, float("nan"), 0.5)):
            mltrail.log_metric("curve", value, step=step * 10)
        for i, loss in enumerate(LOSSES):
            with mltrail.start_run(run_name=f"trial-{i}", nested=True) as child:
                mltrail.log_params({"x": i * 1.5, "kind": "ab"[i % 2], "seed": 7})
                mltrail.log_metric("loss", loss)
                ids[f"trial-{i}"] = child.info.run_id
    ids["search"] = parent.info.run_id
    return ids


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_runs_list_json_and_csv_read_back(sweep: dict[str, str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    client = TrackingClient()
    exp = client.get_experiment_by_name("sweep")
    logged = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}

    records = json.loads(cli(capsys, "runs", "list", "-e", "sweep", "--format", "json"))
    assert {r["run_id"] for r in records} == set(logged)
    for record in records:
        run = logged[record["run_id"]]
        assert record["params"] == run.data.params and record["metrics"] == run.data.metrics
        assert record["parent_run_id"] == run.data.tags.get("mlflow.parentRunId")
        assert record["start_time"] == run.info.start_time and record["status"] == "FINISHED"

    rows = list(csv.DictReader(io.StringIO(cli(capsys, "runs", "list", "-e", "sweep",
                                               "--format", "csv"))))
    assert {r["run_id"] for r in rows} == set(logged)
    for row in rows:
        run = logged[row["run_id"]]
        assert row["params.x"] == run.data.params.get("x", "")
        if "loss" in run.data.metrics:
            assert float(row["metrics.loss"]) == run.data.metrics["loss"]

    chosen = list(csv.reader(io.StringIO(cli(
        capsys, "runs", "list", "-e", "sweep", "--format", "csv", "--columns",
        "run_id,metrics.loss", "--columns", "params.*"))))
    assert chosen[0] == ["run_id", "metrics.loss", "params.kind", "params.seed", "params.x"]
    flat = json.loads(cli(capsys, "runs", "list", "-e", "sweep", "--format", "json",
                          "--columns", "name,metrics.loss"))
    assert sorted(r["metrics.loss"] for r in flat if r["metrics.loss"] is not None) == sorted(
        LOSSES)
    assert all(set(r) == {"name", "metrics.loss"} for r in flat)

    table = cli(capsys, "runs", "list", "-e", "sweep", "--columns", "name,params.x")
    header = table.splitlines()[3]
    assert header.split() == ["NAME", "params.x"] and "trial-3" in table and "4.5" in table


def test_runs_show_metric_history_in_three_formats(sweep: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    parent = sweep["search"]
    history = TrackingClient().get_metric_history(parent, "curve")
    data = json.loads(cli(capsys, "runs", "show", parent, "--metric", "curve", "--format",
                          "json"))
    assert data["key"] == "curve" and data["run_id"] == parent
    assert [(p["step"], p["value"]) for p in data["history"]][:4] == [
        (m.step, m.value) for m in history][:4]
    assert data["history"][4]["value"] == "nan"  # NaN is kept, as MLflow's REST API writes it

    rows = list(csv.DictReader(io.StringIO(cli(capsys, "runs", "show", parent[:8],
                                               "--metric", "curve", "--format", "csv"))))
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40, 50]
    assert [r["value"] for r in rows][-1] == "0.5"

    table = cli(capsys, "runs", "show", parent, "--metric", "curve")
    assert "6 point(s), min 0.5, max 3" in table
    assert table.splitlines()[1].strip() == sparkline([3.0, 2.0, 2.5, 1.0, float("nan"), 0.5])
    assert table.splitlines()[1].strip() == "█▅▇▂ ▁"

    code = main(["runs", "show", parent, "--metric", "nope"])
    assert code == 1 and "curve" in capsys.readouterr().err  # names the metrics it has


def test_runs_show_json_and_csv(sweep: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    child = sweep["trial-2"]
    data = json.loads(cli(capsys, "runs", "show", child, "--format", "json"))
    assert data["params"] == {"x": "3.0", "kind": "a", "seed": "7"}
    assert data["metrics"] == {"loss": 0.75} and data["parent_run_id"] == sweep["search"]
    rows = list(csv.reader(io.StringIO(cli(capsys, "runs", "show", child, "--format", "csv"))))
    assert rows[0] == ["section", "key", "value"]
    assert ["params", "x", "3.0"] in rows and ["metrics", "loss", "0.75"] in rows


def test_runs_compare_children_sorted_by_loss(sweep: dict[str, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    records = json.loads(cli(capsys, "runs", "compare", "--children", sweep["search"][:8],
                             "--format", "json"))
    assert [r["metrics"]["loss"] for r in records] == sorted(LOSSES)
    assert [r["run_id"] for r in records] == [sweep["trial-1"], sweep["trial-3"],
                                              sweep["trial-0"], sweep["trial-2"]]
    table = cli(capsys, "runs", "compare", "--children", sweep["search"])
    assert "sorted by loss (lowest first)" in table
    lines = table.splitlines()
    assert "params.x" in lines[2] and "params.seed" not in lines[2]  # only what varies
    assert lines[4].split()[1] == "trial-1" and lines[-1].split()[1] == "trial-2"
    rows = list(csv.DictReader(io.StringIO(cli(
        capsys, "runs", "compare", "--children", sweep["search"], "--sort-by", "loss",
        "--format", "csv", "--columns", "name,metrics.loss"))))
    assert [r["name"] for r in rows] == ["trial-1", "trial-3", "trial-0", "trial-2"]
    plain = json.loads(cli(capsys, "runs", "compare", sweep["trial-0"], sweep["trial-1"],
                           "--format", "json"))
    assert [r["run_id"] for r in plain] == [sweep["trial-0"], sweep["trial-1"]]
    assert main(["runs", "compare"]) == 1  # neither ids nor --children


def test_experiments_list_json_and_csv(sweep: dict[str, str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    client = TrackingClient()
    logged = {e.experiment_id: e.name for e in client.search_experiments()}
    data = json.loads(cli(capsys, "experiments", "list", "--format", "json"))
    assert {e["experiment_id"]: e["name"] for e in data} == logged
    rows = list(csv.DictReader(io.StringIO(cli(capsys, "experiments", "list", "--format",
                                               "csv"))))
    assert {r["experiment_id"]: r["name"] for r in rows} == logged


def test_empty_store_gives_empty_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "nothing-here")
    assert json.loads(cli(capsys, "--tracking-uri", target, "runs", "list", "--format",
                          "json")) == []
    assert json.loads(cli(capsys, "--tracking-uri", target, "experiments", "list",
                          "--format", "json")) == []


def test_sparkline_scales_and_buckets() -> None:
    assert sparkline([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5.0, 5.0]) == "▁▁"
    long = sparkline(list(np.linspace(0, 1, 1000)), width=10)
    assert len(long) == 10 and long[0] == "▁" and long[-1] == "█"
