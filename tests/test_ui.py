"""`mltrail ui`: MLflow's real UI (`mlflow ui`, a child process) over a copy of local runs.

Real parts: runs logged by autolog (a hyperopt search) and by hand into a local folder,
`mltrail ui` started as a user starts it (its own process), MLflow's REST API read over
127.0.0.1, SIGINT sent to it as Ctrl-C would, headless Chromium for the screenshot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from chromium import distinct_colours, screenshot_after
from mlflow_server import free_port
from test_database_uris import close_store

import mltrail
import mltrail.autologging as autologging
from mltrail.cli import main

pytest.importorskip("mlflow", reason="the mlflow extra: pip install 'mltrail[mlflow]'")

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 6
STEPS = 5


def _log_runs(root: Path) -> None:
    """A hyperopt search (a parent and its trials) and a run logged by hand."""
    from hyperopt import fmin, hp, tpe

    mltrail.set_tracking_uri(str(root))
    mltrail.set_experiment("local-runs")
    mltrail.hyperopt.autolog()
    try:
        fmin(lambda p: (p["x"] - 1) ** 2 + p["lr"], {"x": hp.uniform("x", -3, 3),
             "lr": hp.loguniform("lr", -5, 0)}, algo=tpe.suggest, max_evals=TRIALS,
             rstate=np.random.default_rng(0), show_progressbar=False)
        with mltrail.start_run(run_name="by-hand"):
            mltrail.log_params({"alpha": 0.01, "solver": "lbfgs"})
            for step in range(STEPS):
                mltrail.log_metric("rmse", 1.0 / (step + 1), step=step)
            mltrail.log_text("weights", "model/weights.txt")
    finally:
        autologging.reset_options()
        mltrail.set_tracking_uri(None)


@dataclass
class Ui:
    root: Path
    url: str
    process: subprocess.Popen[str]

    @property
    def api(self) -> str:
        return f"{self.url}/api/2.0/mlflow"

    def runs(self) -> list[dict]:
        exp = requests.get(f"{self.api}/experiments/get-by-name",
                           params={"experiment_name": "local-runs"}, timeout=30).json()
        found = requests.post(f"{self.api}/runs/search", timeout=30, json={
            "experiment_ids": [exp["experiment"]["experiment_id"]], "max_results": 1000})
        return found.json().get("runs", [])


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (children, their children, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _state_and_parent(int(entry.name))):
            parents.setdefault(found[1], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    found = _state_and_parent(pid)
    return found is not None and found[0] != "Z"  # a zombie has ended, awaiting its reaper


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui") / "mltrail-runs"
    _log_runs(root)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'integrations'}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mltrail.cli", "--tracking-uri", str(root), "ui", "--port",
         str(port), "--interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first line comes once runs are copied
        assert "Ctrl-C stops it" in line, line
        yield Ui(root, f"http://127.0.0.1:{port}", process)
    finally:
        if process.poll() is None:  # a test failed before stopping it: end what it started
            left = _descendants(process.pid)
            process.kill()
            process.wait(30)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_rest_api_lists_the_local_runs(ui: Ui) -> None:
    runs = ui.runs()
    assert len(runs) == TRIALS + 2  # the search's parent, its trials, the run by hand
    by_name = {r["info"]["run_name"]: r for r in runs}
    manual = by_name["by-hand"]
    assert manual["info"]["status"] == "FINISHED"
    assert {p["key"]: p["value"] for p in manual["data"]["params"]} == {
        "alpha": "0.01", "solver": "lbfgs"}
    history = requests.get(f"{ui.api}/metrics/get-history", timeout=30, params={
        "run_id": manual["info"]["run_id"], "metric_key": "rmse"}).json()["metrics"]
    assert sorted((int(m.get("step", 0)), m["value"]) for m in history) == [
        (s, 1.0 / (s + 1)) for s in range(STEPS)]
    files = requests.get(f"{ui.api}/artifacts/list", timeout=30, params={
        "run_id": manual["info"]["run_id"], "path": "model"}).json()["files"]
    assert [f["path"] for f in files] == ["model/weights.txt"]
    got = requests.get(f"{ui.url}/get-artifact", timeout=30, params={
        "run_id": manual["info"]["run_id"], "path": "model/weights.txt"})
    assert got.text == "weights"
    # the search's tree: every trial points at its parent's copy, with its loss
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])}
            for r in runs}
    parents = {t.get("mlflow.parentRunId") for t in tags.values()} - {None}
    assert len(parents) == 1 and parents <= set(tags)
    trials = [r for r in runs if tags[r["info"]["run_id"]].get("mlflow.parentRunId")]
    assert len(trials) == TRIALS
    assert all(any(m["key"] == "loss" for m in r["data"]["metrics"]) for r in trials)


def test_a_run_logged_after_start_appears(ui: Ui) -> None:
    mltrail.set_tracking_uri(str(ui.root))
    try:
        mltrail.set_experiment("local-runs")
        with mltrail.start_run(run_name="later"):
            mltrail.log_metric("score", 0.75)
    finally:
        mltrail.set_tracking_uri(None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        later = [r for r in ui.runs() if r["info"]["run_name"] == "later"]
        if later and later[0]["info"]["status"] == "FINISHED":
            assert later[0]["data"]["metrics"][0]["value"] == 0.75
            return
        time.sleep(0.5)
    pytest.fail("the run logged after `mltrail ui` started never reached its UI")


def _dark_pixels(png: Path, box: tuple[int, int, int, int]) -> int:
    """Pixels darker than mid-grey inside `box` (text, on a white page)."""
    from PIL import Image

    with Image.open(png) as image:
        crop = image.convert("L").crop(box)
        return sum(n for n, value in crop.getcolors(1 << 16) if value < 128)


def test_screenshot_of_the_ui_over_local_runs(ui: Ui, tmp_path: Path) -> None:
    exp = requests.get(f"{ui.api}/experiments/get-by-name", timeout=30,
                       params={"experiment_name": "local-runs"}).json()["experiment"]
    png = tmp_path / "ui.png"
    # the rows of the runs table (below its header) hold text once the runs are drawn
    # (while loading, the pane shows only a few grey bars at the top)
    shown = screenshot_after(f"{ui.url}/#/experiments/{exp['experiment_id']}/runs", png,
                             tmp_path / "chromium", seconds=120, size=(1400, 800),
                             until=lambda p: _dark_pixels(p, (220, 290, 1020, 740)) > 500)
    assert shown, f"MLflow's UI drew no runs within 120 s: see {png}"
    assert distinct_colours(png) > 50
    if os.environ.get("MLTRAIL_DOCS_DIR"):  # how docs/ui.png is made
        Path(os.environ["MLTRAIL_DOCS_DIR"], "ui.png").write_bytes(png.read_bytes())


def test_sigint_stops_the_ui_and_its_children(ui: Ui) -> None:
    below = _descendants(ui.process.pid)
    assert len(below) >= 2, "`mltrail ui` should run `mlflow ui`, which runs its server"
    (bridge,) = [p for p in below
                 if b"mltrail.stores.bridge.worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    # A Ctrl-C at a terminal reaches the whole foreground group; the helper that delivers
    # the copy to the database is in a group of its own, so the exit path can still use it.
    assert os.getpgid(bridge) != os.getpgid(ui.process.pid)
    ui.process.send_signal(signal.SIGINT)
    assert ui.process.wait(60) == 0
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in below if _alive(p)], "processes left after Ctrl-C"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ui.url}/health", timeout=5)


def test_without_mlflow_it_points_to_the_install_and_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # mlflow is installed here; its absence is simulated where `mltrail ui` looks for it.
    from mltrail import ui as ui_module

    monkeypatch.setattr(ui_module, "mlflow_installed", lambda: False)
    assert main(["--tracking-uri", str(tmp_path), "ui"]) == 2
    said = capsys.readouterr().err
    assert "pip install \"mltrail[mlflow]\"" in said and "mltrail report" in said


def test_a_server_uri_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tracking-uri", "http://127.0.0.1:9", "ui"]) == 1
    assert "shows a local store" in capsys.readouterr().err


def test_the_copy_follows_running_runs_and_a_second_start_continues_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copying alone (no UI process): a running run gains its new metric steps and
    ends; a new `Mirror` on the same database adds only what is new."""
    from mltrail import TrackingClient
    from mltrail.entities import Metric
    from mltrail.ui import LOCAL_ID_TAG, Mirror

    monkeypatch.chdir(tmp_path)
    source = TrackingClient(str(tmp_path / "runs"))
    experiment = source.create_experiment("copied")
    running = source.create_run(experiment, run_name="running").info.run_id
    source.log_batch(running, metrics=[Metric("loss", 1.0 / (s + 1), 1000 + s, s)
                                       for s in range(2)])
    target = TrackingClient(f"sqlite:///{tmp_path / 'copy.db'}")
    mirror = Mirror(source, target, tmp_path / "artifacts")
    assert mirror.sync() == 1
    copy = target.get_run(mirror.runs[running])
    assert copy.info.status == "RUNNING" and copy.data.tags[LOCAL_ID_TAG] == running
    source.log_metric(running, "loss", 0.25, 1002, 2)
    source.set_terminated(running)
    mirror.sync()
    assert [(m.step, m.value) for m in target.get_metric_history(copy.info.run_id, "loss")] \
        == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert target.get_run(copy.info.run_id).info.status == "FINISHED"

    later = source.create_run(experiment, run_name="later").info.run_id
    source.set_terminated(later)
    again = Mirror(source, target, tmp_path / "artifacts")
    assert again.runs == {running: copy.info.run_id}  # read back from the database
    assert again.sync() == 1
    copies = target.search_runs([again.experiments[experiment]])
    assert sorted(r.data.tags[LOCAL_ID_TAG] for r in copies) == sorted([running, later])
    close_store(target.tracking_uri)  # its bridge helper process ends here, not at exit
