"""The `mltrail` command: in-process through `main`, and `mltrail demo` as a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import mltrail
from mltrail import TrackingClient
from mltrail.cli import COMMAND_GROUPS, main, order_as_tree
from mltrail.demo import (
    DEMO_EXPERIMENT,
    FOREST_GRID,
    LASSO_ALPHAS,
    SEARCH_TRIALS,
    forest_name,
    run_demo,
)
from mltrail.entities import Metric, Param


@dataclass
class Logged:
    root: Path
    parent: str
    children: list[str]
    other: str


@pytest.fixture
def logged(tracking_dir: Path, tmp_path: Path) -> Logged:
    """A sweep (parent + 2 children) in `sweep`, then a lone run in `solo`, started last."""
    mltrail.set_experiment("sweep")
    with mltrail.start_run(run_name="search") as parent:
        mltrail.set_tag("kind", "sweep")
        children = []
        for depth, rmse in ((3, 6.5), (5, 4.25)):
            with mltrail.start_run(run_name=f"depth-{depth}", nested=True) as child:
                mltrail.log_params({"max_depth": depth, "criterion": "gini"})
                mltrail.log_metric("rmse", rmse)
                mltrail.log_metric("r2", 0.5 + depth / 100)
            children.append(child.info.run_id)
    artifact = tmp_path / "report.txt"
    artifact.write_text("fine\n")
    mltrail.set_experiment("solo")
    with mltrail.start_run(run_name="lonely") as other:
        mltrail.log_metric("accuracy", 0.875)
        mltrail.log_artifact(artifact, artifact_path="reports")
    return Logged(tracking_dir, parent.info.run_id, children, other.info.run_id)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _line_with(text: str, out: str) -> int:
    lines = out.splitlines()
    matching = [i for i, line in enumerate(lines) if text in line]
    assert len(matching) == 1, (text, out)
    return matching[0]


# help and structure --------------------------------------------------------


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for word in ("runs", "experiments", "demo", "--tracking-uri", "mltrail demo"):
        assert word in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 2 and "usage: mltrail" in out


def test_command_groups_register_through_one_function_each() -> None:
    names = [group.__name__ for group in COMMAND_GROUPS]
    assert all(name.startswith("add_") for name in names)
    assert {"add_runs_commands", "add_experiments_commands"} <= set(names)


# runs list -----------------------------------------------------------------


def test_runs_list_shows_the_tree(logged: Logged, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "runs", "list", "--experiment", "sweep")
    assert code == 0, err
    parent_line = _line_with(logged.parent[:8], out)
    child_lines = [_line_with(c[:8], out) for c in logged.children]
    assert all(line > parent_line for line in child_lines)
    lines = out.splitlines()
    assert "search" in lines[parent_line] and "FINISHED" in lines[parent_line]
    for index in child_lines:
        name_at = lines[index].index("depth-")
        assert name_at > lines[parent_line].index("search")  # indented under the parent
    header = lines[_line_with("STATUS", out)]
    for column in ("NAME", "STATUS", "STARTED", "DURATION", "rmse", "r2"):
        assert column in header
    assert "6.5" in lines[_line_with(logged.children[0][:8], out)]
    assert logged.other[:8] not in out
    assert "3 run(s)" in out


def test_runs_list_defaults_to_the_latest_experiment(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "runs", "list")
    assert code == 0
    assert "'solo'" in out and logged.other[:8] in out and logged.parent[:8] not in out

    code, out, _ = run_cli(capsys, "runs", "list", "--all-experiments")
    assert code == 0
    for run_id in (logged.parent, *logged.children, logged.other):
        assert run_id[:8] in out


def test_runs_list_filter_order_and_limit(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["runs", "list", "-e", "sweep", "--filter", "metrics.rmse < 7"]
    code, out, _ = run_cli(capsys, *args, "--order-by", "metrics.rmse ASC")
    assert code == 0
    first, second = (_line_with(c[:8], out) for c in reversed(logged.children))
    assert first < second  # rmse 4.25 before 6.5
    assert logged.parent[:8] not in out

    code, out, _ = run_cli(capsys, *args, "--order-by", "metrics.rmse DESC")
    assert _line_with(logged.children[0][:8], out) < _line_with(logged.children[1][:8], out)

    code, out, _ = run_cli(capsys, "runs", "list", "-e", "sweep", "--limit", "1")
    assert code == 0 and "1 run(s) (more match" in out

    code, out, _ = run_cli(capsys, "runs", "list", "-e", "sweep", "--filter", "metrics.rmse > 99")
    assert code == 0 and "No runs match" in out


def test_tracking_uri_option_before_or_after_the_command(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    mltrail.set_tracking_uri(None)  # only the option says where the runs are
    uri = str(logged.root)
    code, before, _ = run_cli(capsys, "--tracking-uri", uri, "runs", "list", "-e", "solo")
    assert code == 0 and logged.other[:8] in before
    code, after, _ = run_cli(capsys, "runs", "list", "-e", "solo", "--tracking-uri", uri)
    assert code == 0 and logged.other[:8] in after


def test_runs_list_on_an_empty_folder_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nothing-here"
    code, out, _ = run_cli(capsys, "--tracking-uri", str(target), "runs", "list")
    assert code == 0 and "No runs yet" in out and "mltrail demo" in out
    assert not target.exists()


def test_order_as_tree_keeps_orphans_and_survives_cycles(tracking_dir: Path) -> None:
    client = TrackingClient(str(tracking_dir))
    exp = client.create_experiment("tree")
    a = client.create_run(exp, run_name="a").info.run_id
    b = client.create_run(exp, run_name="b", tags={"mlflow.parentRunId": a}).info.run_id
    orphan = client.create_run(exp, run_name="o", tags={"mlflow.parentRunId": "9" * 32})
    client.set_tag(a, "mlflow.parentRunId", b)  # a cycle a <-> b
    runs = [client.get_run(r) for r in (orphan.info.run_id, a, b)]
    ordered = [(depth, run.info.run_name) for depth, run in order_as_tree(runs)]
    assert ordered[0] == (0, "o")
    assert sorted(name for _, name in ordered) == ["a", "b", "o"]


# runs show / compare -------------------------------------------------------


def test_runs_show(logged: Logged, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "runs", "show", logged.children[1])
    assert code == 0, err
    assert f"Run {logged.children[1]}" in out
    assert "depth-5" in out and "sweep" in out and logged.parent in out
    assert _line_with("max_depth", out) > _line_with("Params", out)
    assert "4.25" in out[out.index("Metrics") :]
    assert _line_with("mlflow.user", out) > _line_with("System tags", out)
    assert "Artifacts\n  (none)" in out

    code, out, _ = run_cli(capsys, "runs", "show", logged.other[:8])  # the short id works
    assert code == 0 and f"Run {logged.other}" in out
    assert "reports/report.txt" in out and "accuracy" in out


def test_runs_show_unknown_id_is_one_line_on_stderr(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = "f" * 32
    code, out, err = run_cli(capsys, "runs", "show", unknown)
    assert code == 1 and out == ""
    assert err.startswith("mltrail: error:") and unknown in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    code, _, err = run_cli(capsys, "runs", "show", "not-an-id")
    assert code == 1 and "not-an-id" in err


def test_ambiguous_short_id(tracking_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = TrackingClient(str(tracking_dir))
    exp = client.create_experiment("prefixes")
    for suffix in ("1", "2"):  # ids sharing their first 31 characters
        client.store.create_run(exp, "u", 1, [], "r", run_id="abcd" * 7 + "abc" + suffix)
    code, _, err = run_cli(capsys, "runs", "show", "abcdabcd")
    assert code == 1 and "ambiguous" in err
    code, out, _ = run_cli(capsys, "runs", "show", "abcd" * 7 + "abc2")
    assert code == 0 and "abc2" in out


def test_runs_compare_marks_differing_params(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "runs", "compare", *[c[:8] for c in logged.children])
    assert code == 0, err
    assert out.splitlines()[_line_with("params.max_depth", out)].lstrip().startswith("*")
    criterion = out.splitlines()[_line_with("params.criterion", out)]
    assert not criterion.lstrip().startswith("*") and criterion.count("gini") == 2
    rmse = out.splitlines()[_line_with("metrics.rmse", out)]
    assert "6.5" in rmse and "4.25" in rmse
    assert rmse.index("6.5") < rmse.index("4.25")  # columns follow the order given
    assert "1 param(s)" in out


# experiments and errors ----------------------------------------------------


def test_experiments_list(logged: Logged, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "experiments", "list")
    assert code == 0
    client = TrackingClient(str(logged.root))
    for name in ("Default", "sweep", "solo"):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        line = out.splitlines()[_line_with(f" {name} ", out)]
        assert line.split()[0] == experiment.experiment_id


def test_errors_are_one_clear_line(tracking_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with mltrail.start_run():
        mltrail.log_metric("x", 1.0)
    code, _, err = run_cli(capsys, "runs", "list", "-e", "no-such-experiment")
    assert code == 1 and "no-such-experiment" in err and "Traceback" not in err

    code, _, err = run_cli(capsys, "runs", "list", "--all-experiments", "--filter", "metrics.x <")
    assert code == 1 and err.startswith("mltrail: error: Invalid filter")

    code, _, err = run_cli(capsys, "--tracking-uri", "nosuch://x", "experiments", "list")
    assert code == 1 and "'nosuch'" in err and "Traceback" not in err


# demo ----------------------------------------------------------------------


def test_run_demo_logs_a_sweep_and_autologged_runs(tracking_dir: Path) -> None:
    said: list[str] = []
    mltrail.set_experiment(DEMO_EXPERIMENT)
    with mltrail.start_run(run_name="an earlier run"):
        pass
    run_ids = run_demo(tracking_uri=str(tracking_dir), echo=said.append)
    # The count is this demo's runs, not the experiment's running total.
    this_demo = 1 + len(FOREST_GRID) + len(LASSO_ALPHAS) + 1 + 1 + SEARCH_TRIALS
    assert len(run_ids) == this_demo + 1
    assert f"{this_demo} runs logged to experiment 'mltrail-demo'" in "\n".join(said)
    assert "beside 1 from earlier demos" in "\n".join(said)
    run_ids = [r for r in run_ids if TrackingClient(str(tracking_dir)).get_run(r).info.run_name
               != "an earlier run"]
    client = TrackingClient(str(tracking_dir))
    runs = {r: client.get_run(r) for r in run_ids}
    by_name = {r.info.run_name: r for r in runs.values()}
    parent = by_name["wine-forest-sweep"]
    forests = [by_name[forest_name(d, t)] for d, t in FOREST_GRID]
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in forests)
    # autolog filled each forest's run; the held-out accuracy was logged by hand
    assert [r.data.params["max_depth"] for r in forests] == [str(d) for d, _ in FOREST_GRID]
    assert all("training_accuracy_score" in r.data.metrics for r in forests)
    assert all(0.5 < r.data.metrics["accuracy"] <= 1.0 for r in forests)
    assert all(client.list_artifacts(r.info.run_id, "model") for r in forests)
    lassos = [
        r
        for r in runs.values()
        if r.data.tags.get("estimator_name") == "Lasso" and "mlflow.parentRunId" not in r.data.tags
    ]
    assert sorted(float(r.data.params["alpha"]) for r in lassos) == sorted(LASSO_ALPHAS)
    assert all(r.data.tags["mlflow.autologging"] == "sklearn" for r in lassos)
    xgb_runs = [r for r in runs.values() if r.data.tags.get("mlflow.autologging") == "xgboost"]
    assert len(xgb_runs) == 1
    assert len(client.get_metric_history(xgb_runs[0].info.run_id, "validation-rmse")) > 10
    searches = [
        r
        for r in runs.values()
        if r.data.tags.get("mlflow.autologging") == "hyperopt"
        and "mlflow.parentRunId" not in r.data.tags
    ]
    assert len(searches) == 1
    trials = [
        r for r in runs.values() if r.data.tags.get("mlflow.parentRunId") == searches[0].info.run_id
    ]
    assert len(trials) == SEARCH_TRIALS
    assert all("loss" in r.data.metrics and "alpha" in r.data.params for r in trials)
    # the objective's metric call is named after its variable, as in any user's script
    assert all("root_mean_squared_error_x_valid" in r.data.metrics for r in trials)
    text = "\n".join(said)
    assert "runs list" in text and "runs show" in text and str(tracking_dir) in text


def _console_script() -> str:
    beside = Path(sys.executable).with_name("mltrail")
    found = str(beside) if beside.exists() else shutil.which("mltrail")
    assert found, "the `mltrail` console script is not installed (pip install -e .)"
    return found


def test_demo_then_runs_list_as_a_user_would(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("TRACKING_URI")}
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    script = _console_script()

    demo = subprocess.run(
        [script, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "mltrail-runs").as_uri() in demo.stdout
    assert "mltrail runs list" in demo.stdout

    listing = subprocess.run(
        [script, "runs", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert "mltrail-demo" in listing.stdout
    assert "wine-forest-sweep" in listing.stdout
    for depth, trees in FOREST_GRID:
        assert f"forest-depth{depth}-trees{trees}" in listing.stdout
    # the sweep, its forests, the Lasso fits, the xgboost train, the search and its trials
    total = 1 + len(FOREST_GRID) + len(LASSO_ALPHAS) + 1 + 1 + SEARCH_TRIALS
    assert f"{total} run(s)" in listing.stdout


def test_runs_list_and_show_on_a_tracking_server(
    mlflow_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    url = mlflow_server.url  # type: ignore[attr-defined]
    client = TrackingClient(url)
    name = f"cli-{os.getpid()}-{id(client)}"
    experiment_id = client.create_experiment(name)
    parent = client.create_run(experiment_id, run_name="remote-parent").info.run_id
    child = client.create_run(
        experiment_id, run_name="remote-child", tags={"mlflow.parentRunId": parent}
    ).info.run_id
    client.log_batch(child, params=[Param("depth", 4)], metrics=[Metric("rmse", 2.5, 1, 0)])
    for run_id in (child, parent):
        client.set_terminated(run_id)
    assert client.store.flush(60)

    code, out, err = run_cli(capsys, "--tracking-uri", url, "runs", "list", "-e", name)
    assert code == 0, err
    assert _line_with(parent[:8], out) < _line_with(child[:8], out)
    assert "remote-child" in out and "2.5" in out
    code, out, err = run_cli(capsys, "--tracking-uri", url, "runs", "show", child)
    assert code == 0, err
    assert "depth" in out and parent in out
