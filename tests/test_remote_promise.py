"""Issue 13: the remote path keeps its promise (nothing lost, nothing doubled, never blocks).

Each test reproduces one finding of the fault campaign against the session's real
`mlflow server`, through tests/faulty_proxy.py where a fault is needed, and counts
records exactly by reading them back through MLflow's own client. Every test here
failed before the fix it names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faulty_proxy import FaultyProxy
from remote_helpers import RemoteFactory, history, server_runs, unique

import mltrail
from mltrail.exceptions import InvalidParameterError
from mltrail.stores.local import LocalStore

BASE_TS = 1_700_000_000_000


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteFactory]:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def mlflow_client_cls() -> Any:
    import mlflow

    return mlflow.MlflowClient


# finding 1 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "timestamp"),
    [(2**63, None), (10**20, None), (-(2**63) - 1, None), (0, 2**63), (0, -1), (0, 10**20)],
)
def test_out_of_range_step_or_timestamp_is_refused_at_the_call_and_nothing_after_is_lost(
    mlflow_server: Any,
    remote: RemoteFactory,
    mlflow_client_cls: Any,
    step: int,
    timestamp: int | None,
) -> None:
    client = remote(mlflow_server.url)
    run_id = client.create_run(client.create_experiment(unique("int64"))).info.run_id
    for i in range(5):
        client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
    with pytest.raises(InvalidParameterError, match="'bad'") as caught:
        client.log_metric(run_id, "bad", 1.0, timestamp, step)
    assert caught.value.key == "bad"
    for i in range(5, 10):
        client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
    client.log_param(run_id, "after", "yes")
    client.set_terminated(run_id)
    assert client.store.flush(60)

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    assert history(server, run_id, "loss") == [(i, BASE_TS + i, float(i)) for i in range(10)]
    run = server.get_run(run_id)
    assert run.data.params == {"after": "yes"}
    assert "bad" not in run.data.metrics
    assert run.info.status == "FINISHED"


def test_int64_bounds_themselves_are_accepted(tracking_dir: Path) -> None:
    with mltrail.start_run():
        mltrail.log_metric("edge", 1.0, step=2**63 - 1, timestamp=2**63 - 1)
        mltrail.log_metric("edge", 2.0, step=-(2**63), timestamp=1)


# finding 5 -------------------------------------------------------------------------


def test_experiment_name_file_is_never_visible_empty(tmp_path: Path) -> None:
    """Watch the name file at every audited operation while an experiment is created.

    The old code created the file with O_EXCL and wrote the id afterwards; a process
    reading it in between found an empty id. An audit hook (it fires on each open,
    link, rename... of this process) checks the file between those steps, so the
    window is seen deterministically rather than by a lucky race.
    """
    store = LocalStore(tmp_path / "runs")
    store.create_experiment("warm-up")  # the default experiment and names/ exist
    name = unique("race")
    name_file = store._name_file(name)
    seen_empty: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not watching[0]:
            return
        try:
            size = os.stat(name_file).st_size
        except OSError:
            return
        if size == 0:
            seen_empty.append(event)

    sys.addaudithook(hook)
    try:
        experiment_id = store.create_experiment(name)
    finally:
        watching[0] = False  # an audit hook cannot be removed; it is switched off
    assert seen_empty == []
    assert name_file.read_text() == experiment_id
    found = LocalStore(tmp_path / "runs").get_experiment_by_name(name)
    assert found is not None and found.experiment_id == experiment_id


# finding 7 -------------------------------------------------------------------------


def test_a_refused_record_is_set_aside_and_the_records_behind_it_ship(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    from mltrail.entities import Metric

    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        run_id = client.create_run(client.create_experiment(unique("refused"))).info.run_id
        for i in range(5):
            client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
        assert client.store.flush(60)
        # A negative timestamp as an older client (no check at the call) spooled it:
        # written straight into the spool, past the validation the client now does.
        store = client.store
        ref = store._ref(run_id)
        with pytest.warns(UserWarning, match="refused 1 record"):
            store.spool.store.log_batch(ref.spool_id, [Metric("loss", 99.0, -5, 99)], [], [])
            for i in range(5, 10):
                client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
            client.log_param(run_id, "after", "yes")
            client.set_terminated(run_id)
            assert client.store.flush(60)
        assert not client.store.sender.broken
        assert client.store.unsent_summary() is None
        set_aside = (ref.run_dir / "refused.jsonl").read_text().splitlines()
        assert len(set_aside) == 1 and "-5" in set_aside[0]

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    assert history(server, run_id, "loss") == [(i, BASE_TS + i, float(i)) for i in range(10)]
    run = server.get_run(run_id)
    assert run.data.params == {"after": "yes"}
    assert run.info.status == "FINISHED"


def test_deleting_the_active_run_then_ending_it_does_not_block_the_run(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    client = remote(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("deleted"))
    with pytest.warns(UserWarning, match="refused 1 record"):
        with mltrail.start_run() as run:
            for i in range(20):
                mltrail.log_metric("loss", float(i), step=i, timestamp=BASE_TS + i)
            mltrail.delete_run(run.info.run_id)
        assert client.store.flush(60)
    assert client.store.unsent_summary() is None
    assert not client.store.sender.broken

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    [got] = server_runs(server, experiment.experiment_id)
    assert got.info.lifecycle_stage == "deleted"
    assert history(server, got.info.run_id, "loss") == [
        (i, BASE_TS + i, float(i)) for i in range(20)
    ]


# finding 4 -------------------------------------------------------------------------


def test_creates_held_three_seconds_make_exactly_one_server_run_each(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, create_timeout=2.0)
        experiment_id = client.create_experiment(unique("slow-create"))
        # each create reaches the server 3 s late, past the 2 s budget
        proxy.add("runs/create", ("delay_before", 3.0), times=None)
        local_ids = []
        for r in range(3):
            run_id = client.create_run(experiment_id, run_name=f"r{r}").info.run_id
            local_ids.append(run_id)
            for i in range(50):
                client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
            client.log_param(run_id, "r", r)
            client.set_terminated(run_id)
        assert client.store.flush(120)
        assert proxy.count("runs/create") == 3  # never a second create for one run

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    runs = server_runs(server, experiment_id)
    assert sorted(r.info.run_name for r in runs) == ["r0", "r1", "r2"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params == {"r": run.info.run_name[1:]}
        assert history(server, run.info.run_id, "loss") == [
            (i, BASE_TS + i, float(i)) for i in range(50)
        ]
    # every id handed out resolves to its one server run
    assert sorted(client.get_run(i).info.run_name for i in local_ids) == ["r0", "r1", "r2"]


def test_a_lost_create_is_looked_up_again_until_it_settles_not_created_twice(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    """The create's answer is lost and the lookup first misses it (the server has not
    shown it yet): no second create is sent before the create's read timeout passed."""
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, timeout=3.0, create_timeout=1.0)
        experiment_id = client.create_experiment(unique("lost-create"))
        proxy.add("runs/create", "drop_after")  # the server makes the run, the answer is lost
        # the first two lookups answer "no such run", as a server still busy would
        proxy.add("runs/search", ("rewrite", lambda body: {}), times=2)
        with pytest.warns(UserWarning):
            run_id = client.create_run(experiment_id, run_name="once").info.run_id
            client.log_metric(run_id, "loss", 1.0, BASE_TS, 0)
            client.set_terminated(run_id)
            assert client.store.flush(120)
        assert proxy.count("runs/create") == 1
        assert proxy.count("runs/search") >= 3

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    [run] = server_runs(server, experiment_id)
    assert run.info.status == "FINISHED"
    assert history(server, run.info.run_id, "loss") == [(0, BASE_TS, 1.0)]


# findings 3 and 6 -------------------------------------------------------------------


def test_set_experiment_survives_a_failing_lookup_beside_a_working_create(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    name = unique("flaky-lookup")
    with FaultyProxy(mlflow_server.url) as proxy:
        remote(proxy.url)
        proxy.add("experiments/get-by-name", ("status", 503, None), times=None)
        mltrail.set_tracking_uri(proxy.url)
        experiment = mltrail.set_experiment(name)
        assert proxy.count("experiments/create") == 1
    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    assert experiment.experiment_id == server.get_experiment_by_name(name).experiment_id


def test_blackhole_server_at_start_does_not_hold_training_and_everything_ships_later(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    name = unique("blackhole")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("/api/", ("hang", 120.0), times=None)  # accepts, never answers
        client = remote(proxy.url, create_timeout=1.0)
        mltrail.set_tracking_uri(proxy.url)
        with pytest.warns(UserWarning, match="did not answer within"):
            experiment = mltrail.set_experiment(name)
        assert experiment.experiment_id.startswith("local-")
        # one lookup went out and hangs; nothing was retried in the foreground
        assert proxy.count("/api/") == 1
        with mltrail.start_run(run_name="bh"):
            mltrail.log_param("alpha", 1)
            for i in range(100):
                mltrail.log_metric("loss", float(i), step=i, timestamp=BASE_TS + i)
        # the run went offline at once: no create was sent while the lookup hangs
        assert proxy.count("runs/create") == 0
        summary = client.store.unsent_summary() or ""
        assert "1 run (" in summary and "mltrail sync" in summary

        proxy.rules.clear()
        proxy.release_hung()
        assert client.store.flush(120)
        assert client.store.unsent_summary() is None

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    on_server = server.get_experiment_by_name(name)
    [run] = server_runs(server, on_server.experiment_id)
    assert run.info.run_name == "bh" and run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "1"}
    assert history(server, run.info.run_id, "loss") == [
        (i, BASE_TS + i, float(i)) for i in range(100)
    ]


# finding 2 -------------------------------------------------------------------------


def _trainer(url: str, experiment: str, runs: int, points: int) -> str:
    return f"""
import mltrail
mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({experiment!r})
for r in range({runs}):
    with mltrail.start_run(run_name=f"r{{r}}"):
        mltrail.log_param("r", r)
        for i in range({points}):
            mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)
print("trained")
"""


def _run_trainer(
    url: str, experiment: str, runs: int, points: int, spool: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MLTRAIL_SPOOL_DIR": str(spool),
        "MLTRAIL_FLUSH_TIMEOUT": "1",
        "MLTRAIL_CREATE_TIMEOUT": "1",
        "MLTRAIL_HTTP_TIMEOUT": "30",
        "MLTRAIL_HTTP_BACKOFF": "0.05",
        "MLTRAIL_HTTP_BACKOFF_MAX": "0.5",
    }
    env.pop("MLTRAIL_STRICT", None)  # as a user runs it
    return subprocess.run(
        [sys.executable, "-c", _trainer(url, experiment, runs, points)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,  # a safety net for a hung test, not a measurement
    )


def _sync_until_done(url: str, spool: Path, tries: int = 20) -> str:
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(spool), "MLTRAIL_HTTP_BACKOFF": "0.05"}
    out = ""
    for _ in range(tries):  # a bounded loop: a run may need its create to settle first
        done = subprocess.run(
            [sys.executable, "-m", "mltrail.cli", "sync", "--uri", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        out += done.stdout + done.stderr
        if done.returncode == 0:
            return out
        time.sleep(1.0)
    raise AssertionError(f"mltrail sync did not finish: {out}")


def _check_delivered(
    mlflow_client_cls: Any, url: str, experiment: str, runs: int, points: int
) -> None:
    server = mlflow_client_cls(tracking_uri=url)
    on_server = server.get_experiment_by_name(experiment)
    found = server_runs(server, on_server.experiment_id)
    assert sorted(r.info.run_name for r in found) == [f"r{r}" for r in range(runs)]
    for run in found:
        assert run.info.status == "FINISHED"
        assert run.data.params == {"r": run.info.run_name[1:]}
        assert history(server, run.info.run_id, "loss") == [
            (i, BASE_TS + i, float(i)) for i in range(points)
        ]


@pytest.mark.slow
def test_blackhole_server_exit_message_counts_the_run_and_sync_ships_it(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path
) -> None:
    experiment = unique("bh-exit")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("/api/", ("hang", 120.0), times=None)
        trained = _run_trainer(proxy.url, experiment, 1, 200, tmp_path / "spool")
        assert trained.returncode == 0, trained.stderr
        assert trained.stdout.strip() == "trained"
        assert trained.stderr.count("send them with: mltrail sync") == 1, trained.stderr
        assert "mltrail: 1 run (" in trained.stderr, trained.stderr
        proxy.rules.clear()
        proxy.release_hung()
        _sync_until_done(proxy.url, tmp_path / "spool")
    _check_delivered(mlflow_client_cls, mlflow_server.url, experiment, 1, 200)


@pytest.mark.slow
@pytest.mark.parametrize("runs", [1, 2])
def test_runs_in_flight_at_exit_are_counted_and_sync_ships_them_once(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path, runs: int
) -> None:
    experiment = unique("held-exit")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("runs/log-batch", ("delay", 8.0), times=None)  # answers held 8 s
        trained = _run_trainer(proxy.url, experiment, runs, 200, tmp_path / "spool")
        assert trained.returncode == 0, trained.stderr
        plural = "1 run (" if runs == 1 else f"{runs} runs ("
        assert f"mltrail: {plural}" in trained.stderr, trained.stderr
        assert trained.stderr.count("send them with: mltrail sync") == 1
        proxy.rules.clear()
        _sync_until_done(proxy.url, tmp_path / "spool")
    _check_delivered(mlflow_client_cls, mlflow_server.url, experiment, runs, 200)


# finding 9 -------------------------------------------------------------------------


def test_a_password_in_the_uri_is_printed_nowhere(
    mlflow_server: Any,
    remote: RemoteFactory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import base64

    from mltrail import cli

    secret = "s3cr3t-pw"
    expected = "Basic " + base64.b64encode(f"ana:{secret}".encode()).decode()
    monkeypatch.setenv("MLTRAIL_SPOOL_DIR", str(tmp_path / "spool"))
    with FaultyProxy(mlflow_server.url, authorization=expected) as proxy:
        uri = proxy.url.replace("http://", f"http://ana:{secret}@")
        client = remote(uri)
        run_id = client.create_run(client.create_experiment(unique("cred"))).info.run_id
        client.set_terminated(run_id)
        assert client.store.flush(60)
        assert cli.main(["runs", "list", "--tracking-uri", uri]) == 0
        assert cli.main(["experiments", "list", "--tracking-uri", uri]) == 0
        cli.main(["doctor", uri])
        printed = capsys.readouterr()
        assert "ana:***@" in printed.out  # the listing says where, without the password
        proxy.down = True
        with pytest.warns(UserWarning) as caught:
            client.log_metric(run_id, "late", 1.0)
            assert not client.store.flush(1)
        summary = client.store.unsent_summary() or ""
        assert "mltrail sync" in summary
    shown = printed.out + printed.err + summary + " ".join(str(w.message) for w in caught)
    assert secret not in shown


# finding 8 -------------------------------------------------------------------------


def _full_disk_script(url: str, experiment: str) -> str:
    return f"""
import os
import mltrail
from mltrail.exceptions import MltrailError

SPOOL = os.environ["MLTRAIL_SPOOL_DIR"]
FILLER = os.path.join(SPOOL, "filler")

def fill():
    handle = open(FILLER, "wb", buffering=0)
    try:
        for _ in range(100_000):  # bounded: the tmpfs is 1 MB
            handle.write(b"\\0" * 4096)
    except OSError:
        pass
    finally:
        handle.close()

def log(start, stop):
    for i in range(start, stop):
        mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)

mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({experiment!r})
mltrail.start_run(run_name="A")
mltrail.log_param("r", 0)
log(0, 100)
print("flush-before", mltrail.flush(30))
log(100, 150)  # pending when the disk fills
fill()
print("flush-while-full", mltrail.flush(2))
failed_at = None
try:
    for i in range(150, 290):  # the journal's last page has room for a few lines
        failed_at = i
        log(i, i + 1)
    print("log-while-full: no error")
except MltrailError as exc:
    print("log-while-full:", type(exc).__name__, "is-oserror", isinstance(exc, OSError))
except OSError as exc:
    print("log-while-full: raw", type(exc).__name__)
os.remove(FILLER)
log(failed_at, 300)  # the point that failed is logged again, once
mltrail.end_run()
print("flush-after", mltrail.flush(60))
fill()
try:
    mltrail.start_run(run_name="B")
    print("run-B: started")
except MltrailError as exc:
    print("run-B:", type(exc).__name__)
os.remove(FILLER)
"""


@pytest.mark.slow
def test_full_spool_is_a_local_error_never_a_refusal_and_nothing_is_lost(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path
) -> None:
    """A real full disk: a 1 MB tmpfs mounted as the spool in a private mount namespace
    (`unshare -rm`), filled by the script itself at chosen moments."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("SKIPPED LOUDLY: `unshare -rm` (a user+mount namespace) is not allowed here")
    spool = tmp_path / "spool"
    spool.mkdir()
    experiment = unique("full")
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(spool), "MLTRAIL_HTTP_BACKOFF": "0.05"}
    env["MLTRAIL_HTTP_BACKOFF_MAX"] = "0.5"
    env.pop("MLTRAIL_STRICT", None)
    done = subprocess.run(
        [
            "unshare", "-rm", "sh", "-c",
            'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$1" -c "$2"',
            str(spool), sys.executable, _full_disk_script(mlflow_server.url, experiment),
        ],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "flush-before True" in out
    assert "log-while-full: StorageError is-oserror False" in out, out + done.stderr
    assert "flush-after True" in out, out + done.stderr
    assert "run-B: StorageError" in out, out
    assert "refused records" not in done.stderr  # a full disk is not the server's refusal

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    [run] = server_runs(server, server.get_experiment_by_name(experiment).experiment_id)
    assert run.info.run_name == "A" and run.info.status == "FINISHED"  # no empty run B
    assert run.data.params == {"r": "0"}
    assert history(server, run.info.run_id, "loss") == [
        (i, BASE_TS + i, float(i)) for i in range(300)
    ]


# finding 10 ------------------------------------------------------------------------


def test_a_damaged_summary_is_a_clear_error_and_does_not_hide_other_runs(
    tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mltrail import cli
    from mltrail.exceptions import DamagedRunError

    with mltrail.start_run(run_name="healthy"):
        mltrail.log_metric("m", 1.0)
    with mltrail.start_run(run_name="damaged") as damaged:
        mltrail.log_metric("m", 2.0)
    assert mltrail.flush()  # the summaries are written (in the background) before damage
    summary = next(tracking_dir.glob(f"*/{damaged.info.run_id}/summary.json"))
    summary.write_text('{"run_id": "trunc')

    with pytest.warns(UserWarning, match=f"skipped in the listing: Run {damaged.info.run_id}"):
        assert cli.main(["runs", "list", "--tracking-uri", str(tracking_dir)]) == 0
    out = capsys.readouterr().out
    assert "healthy" in out and "No runs" not in out
    with pytest.raises(DamagedRunError, match=r"summary\.json is damaged"):
        mltrail.TrackingClient(str(tracking_dir)).get_run(damaged.info.run_id)


def test_infinite_metrics_end_to_end_kept_in_the_spool_clamped_by_the_server_with_a_warning(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    import math

    client = remote(mlflow_server.url)
    run_id = client.create_run(client.create_experiment(unique("inf"))).info.run_id
    with pytest.warns(UserWarning, match="'up' is infinite") as caught:
        client.log_metric(run_id, "up", math.inf, BASE_TS, 0)
        client.log_metric(run_id, "up", math.inf, BASE_TS + 1, 1)  # warned once per key
        client.log_metric(run_id, "down", -math.inf, BASE_TS, 0)
        client.log_metric(run_id, "nan", math.nan, BASE_TS, 0)
    assert sum("is infinite" in str(w.message) for w in caught) == 2
    spooled = client.store.spool.store.get_metric_history(run_id, "up")
    assert [p.value for p in spooled] == [math.inf, math.inf]  # kept as logged locally
    client.set_terminated(run_id)
    assert client.store.flush(60)
    assert client.store.spool.store.get_run(run_id).data.metrics["down"] == -math.inf
    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    # What MLflow 3.17 keeps (and what its own client would get back too):
    assert [v for _, _, v in history(server, run_id, "up")] == [1.7976931348623157e308] * 2
    assert [v for _, _, v in history(server, run_id, "down")] == [-1.7976931348623157e308]
    assert math.isnan(server.get_metric_history(run_id, "nan")[0].value)


def test_delivered_journals_are_pruned_to_a_receipt_and_sync_stays_idempotent(
    mlflow_server: Any,
    remote: RemoteFactory,
    mlflow_client_cls: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from mltrail import cli
    from mltrail.stores.remote.spool import ShipState

    monkeypatch.setenv("MLTRAIL_SPOOL_DIR", str(tmp_path / "spool"))
    with FaultyProxy(mlflow_server.url) as proxy:
        # online: pruned by the process's own sender once delivered
        client = remote(proxy.url, timeout=2.0)
        experiment_id = client.create_experiment(unique("prune"))
        online = client.create_run(experiment_id, run_name="online").info.run_id
        for i in range(1000):
            client.log_metric(online, "loss", float(i), BASE_TS + i, i)
        client.set_terminated(online)
        assert client.store.flush(60)
        run_dir = client.store.spool.store.run_dir(online)
        assert not (run_dir / "journal.jsonl").exists()
        receipt = ShipState.load(run_dir)
        assert receipt.server_run_id == online and receipt.pruned["bytes"] > 30_000
        assert sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file()) < 8_000

        # offline: shipped and pruned by `mltrail sync`, which says so
        proxy.down = True
        with pytest.warns(UserWarning):
            offline = client.create_run(experiment_id, run_name="offline").info.run_id
            for i in range(300):
                client.log_metric(offline, "loss", float(i), BASE_TS + i, i)
            client.set_terminated(offline)
        client.store.close()  # this process is gone; `mltrail sync` takes over
        proxy.down = False
        # The dropped create may have landed: sync waits for it to settle (the client's
        # 2 s read timeout) before creating the run, so it may need a few tries.
        for _ in range(20):  # bounded
            if cli.main(["sync", "--uri", proxy.url]) == 0:
                break
            time.sleep(0.5)
        out = capsys.readouterr().out
        assert f"shipped {offline}" in out and "journal pruned (" in out
        proxy.reset_counts()
        assert cli.main(["sync", "--uri", proxy.url]) == 0  # run again: nothing moves
        assert "nothing to send" in capsys.readouterr().out
        assert proxy.count("runs/") == 0

        # a new process still resolves both local ids through the receipts
        later = remote(proxy.url)
        assert later.get_run(online).info.run_name == "online"
        assert later.get_run(offline).info.run_name == "offline"

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    runs = {r.info.run_name: r for r in server_runs(server, experiment_id)}
    assert set(runs) == {"online", "offline"}
    for name, count in (("online", 1000), ("offline", 300)):
        assert history(server, runs[name].info.run_id, "loss") == [
            (i, BASE_TS + i, float(i)) for i in range(count)
        ]


# findings 4 and 5 together: many processes at once -------------------------------------


def _worker(url: str, experiment: str, worker: int, runs: int, points: int) -> str:
    return f"""
import mltrail
mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({experiment!r})
for r in range({runs}):
    with mltrail.start_run(run_name="w{worker}-r" + str(r)):
        for i in range({points}):
            mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)
"""


@pytest.mark.slow
def test_eight_processes_sharing_a_spool_and_a_new_experiment_make_each_run_once(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path
) -> None:
    experiment, workers, runs, points = unique("crowd"), 8, 3, 40
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(tmp_path / "spool")}
    env["MLTRAIL_FLUSH_TIMEOUT"] = "60"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _worker(mlflow_server.url, experiment, w, runs, points)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            errors.append(err)
    assert errors == []  # no process died on a half-created experiment

    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    found = server_runs(server, server.get_experiment_by_name(experiment).experiment_id)
    names = sorted(r.info.run_name for r in found)
    assert names == sorted(f"w{w}-r{r}" for w in range(workers) for r in range(runs))
    for run in found:
        assert run.info.status == "FINISHED"
        assert len(server.get_metric_history(run.info.run_id, "loss")) == points


@pytest.mark.slow
def test_read_only_spool_at_run_start_leaves_no_empty_run_on_the_server(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path
) -> None:
    """A read-only spool: a tmpfs mounted read-only in a private mount namespace."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("SKIPPED LOUDLY: `unshare -rm` (a user+mount namespace) is not allowed here")
    spool = tmp_path / "spool"
    spool.mkdir()
    experiment = unique("read-only")
    script = f"""
import mltrail
from mltrail.exceptions import MltrailError
mltrail.set_tracking_uri({mlflow_server.url!r})
mltrail.set_experiment({experiment!r})
try:
    mltrail.start_run(run_name="never")
    print("started")
except MltrailError as exc:
    print("refused:", type(exc).__name__, "is-oserror", isinstance(exc, OSError))
"""
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(spool), "MLTRAIL_FLUSH_TIMEOUT": "1"}
    env.pop("MLTRAIL_STRICT", None)
    done = subprocess.run(
        [
            "unshare", "-rm", "sh", "-c",
            'mount -t tmpfs -o ro tmpfs "$0" && exec "$1" -c "$2"',
            str(spool), sys.executable, script,
        ],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "refused: StorageError is-oserror False" in done.stdout, done.stdout + done.stderr
    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    on_server = server.get_experiment_by_name(experiment)
    assert server_runs(server, on_server.experiment_id) == []  # no empty RUNNING run


def test_warnings_as_errors_never_stop_the_background_sender(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Test suites run with warnings turned into errors; the sender's own warnings
    # (server down, records waiting) used to raise in its thread and end it (the next
    # record logged started a new one, so delivery alone did not show it).
    import threading
    import warnings

    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        experiment = client.create_experiment(unique("warn-errors"))
        run_id = client.create_run(experiment).info.run_id
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            proxy.down = True
            client.log_metric(run_id, "m", 1.0, timestamp=BASE_TS, step=0)
            assert not client.flush(1.5)  # the sender met the down server and warned
            proxy.down = False
            client.log_metric(run_id, "m", 2.0, timestamp=BASE_TS, step=1)
            assert client.flush(30)
    assert died == []  # no thread of the sender ended on an exception
    points = history(mlflow_client_cls(tracking_uri=mlflow_server.url), run_id, "m")
    assert [(step, value) for step, _, value in points] == [(0, 1.0), (1, 2.0)]


def test_warnings_as_errors_never_stop_a_run_started_while_the_server_is_down(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    # The foreground's "server down, the spool is used" warning used to raise out of
    # create_experiment/create_run under an "error" filter: the user's training
    # stopped at its first tracking call, the one thing the remote path promises not to do.
    import warnings

    name = unique("warn-errors-down")
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        proxy.down = True
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            experiment = client.create_experiment(name)
            run_id = client.create_run(experiment).info.run_id
            for step in range(3):
                client.log_metric(run_id, "m", float(step), timestamp=BASE_TS, step=step)
            client.set_terminated(run_id)
        proxy.down = False
        assert client.flush(30)
    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    (on_server,) = server_runs(server, server.get_experiment_by_name(name).experiment_id)
    assert on_server.info.status == "FINISHED"
    points = history(server, on_server.info.run_id, "m")
    assert [(step, value) for step, _, value in points] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_runs_logged_offline_keep_their_nesting_on_the_server(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    # A child logged while the server was down carried its parent's local id in
    # `mlflow.parentRunId`, and a tag naming another run (a search's best trial) its
    # local id too: after shipping, they named runs the server never had.
    name = unique("offline-nesting")
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        proxy.down = True
        experiment = client.create_experiment(name)
        parent = client.create_run(experiment, run_name="parent").info.run_id
        child = client.create_run(
            experiment, run_name="child", tags={"mlflow.parentRunId": parent}).info.run_id
        client.set_tag(parent, "best_run", child)
        client.set_tag(parent, "not_a_run", "0" * 32)  # looks like an id: kept as it is
        for run_id in (child, parent):
            client.set_terminated(run_id)
        proxy.down = False
        assert client.flush(60)
    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    runs = server_runs(server, server.get_experiment_by_name(name).experiment_id)
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == ["child", "parent"]
    assert by_name["child"].data.tags["mlflow.parentRunId"] == by_name["parent"].info.run_id
    assert by_name["parent"].data.tags["best_run"] == by_name["child"].info.run_id
    assert by_name["parent"].data.tags["not_a_run"] == "0" * 32


# Ctrl-C and the exit wait ------------------------------------------------------------


def _exit_waiter(url: str, experiment: str) -> str:
    """A trainer whose exit path waits for log-batch answers the proxy holds."""
    return f"""
import mltrail
mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({experiment!r})
with mltrail.start_run(run_name="r0"):
    mltrail.log_param("r", 0)
    for i in range(300):
        mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)
"""


def _trainer_env(spool: Path, flush_timeout: str, **extra: str) -> dict[str, str]:
    """A training subprocess's environment: its own spool, a short backoff, not strict."""
    env = {
        **os.environ,
        "MLTRAIL_SPOOL_DIR": str(spool),
        "MLTRAIL_FLUSH_TIMEOUT": flush_timeout,
        "MLTRAIL_HTTP_BACKOFF": "0.05",
        "MLTRAIL_HTTP_BACKOFF_MAX": "0.5",
        **extra,
    }
    env.pop("MLTRAIL_STRICT", None)
    return env


def _start_exit_waiter(
    url: str, experiment: str, spool: Path, flush_timeout: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _exit_waiter(url, experiment)],
        env=_trainer_env(spool, flush_timeout),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_during_the_exit_wait_still_names_mltrail_sync(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path
) -> None:
    """Ctrl-C while the exit path waits for the server: the wait ends, and the records
    left in the spool are still counted in the message naming `mltrail sync` (it used
    to end the exit path with a KeyboardInterrupt traceback and no word of them)."""
    import signal

    experiment = unique("ctrl-c-exit")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("runs/log-batch", ("hold", 120.0), times=None)
        try:
            trainer = _start_exit_waiter(proxy.url, experiment, tmp_path / "spool", "120")
            assert trainer.stderr is not None
            # The exit path's first progress line: it is waiting for the held answers.
            for _ in range(50):  # bounded; a process that ended reads ""
                line = trainer.stderr.readline()
                if not line or line.startswith("mltrail: sending to"):
                    break
            assert line.startswith("mltrail: sending to"), line
            trainer.send_signal(signal.SIGINT)
            _, err = trainer.communicate(timeout=60)  # a safety net, not a measurement
        finally:
            proxy.rules.clear()
            proxy.release_hung()
        assert "Traceback" not in err, err
        assert err.count("send them with: mltrail sync") == 1, err
        assert "mltrail: 1 run (" in err, err
        _sync_until_done(proxy.url, tmp_path / "spool")
        again = _sync_until_done(proxy.url, tmp_path / "spool")
        assert "nothing to send" in again, again
    _check_delivered(mlflow_client_cls, mlflow_server.url, experiment, 1, 300)


def test_the_exit_wait_says_how_far_it_got(mlflow_server: Any, tmp_path: Path) -> None:
    """README: the exit wait reports its progress every 5 s. The runs' own flush at exit
    used to take the whole wait in silence, leaving the progress lines to a second wait
    that never came."""
    experiment = unique("exit-progress")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("runs/log-batch", ("hold", 120.0), times=None)
        try:
            trainer = _start_exit_waiter(proxy.url, experiment, tmp_path / "spool", "6")
            _, err = trainer.communicate(timeout=120)  # a safety net, not a measurement
        finally:
            proxy.release_hung()
    assert f"mltrail: sending to {proxy.url}: " in err, err
    assert "of 300 points sent" in err, err
    assert err.count("send them with: mltrail sync") == 1, err


# a late request overtaken by later ones -----------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="not fixed: a log-batch that outlived its read timeout is resent at once, so "
    "the first copy, landing late, overwrites a tag written after it (a fix: wait for the "
    "lost request to settle, as runs/create does, before sending the run's later records)",
)
def test_a_tag_batch_landing_after_its_timeout_does_not_overwrite_a_later_value(
    mlflow_server: Any, remote: RemoteFactory, mlflow_client_cls: Any
) -> None:
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, timeout=2.0)
        run_id = client.create_run(client.create_experiment(unique("late-tag"))).info.run_id
        client.set_tag(run_id, "stage", "first")
        assert client.store.flush(60)
        # The next batch reaches the server half a second after the client gave up on it.
        proxy.add("runs/log-batch", ("delay_before", 2.5))
        client.set_tag(run_id, "stage", "second")
        assert client.store.flush(60)
        client.set_tag(run_id, "stage", "third")
        client.set_terminated(run_id)
        assert client.store.flush(60)
        for _ in range(600):  # bounded: until the server has handled the late copy too
            if sum(n for p, n in proxy.forwarded.items() if "log-batch" in p) == proxy.count(
                "runs/log-batch"
            ):
                break
            time.sleep(0.05)
    tags = mlflow_client_cls(tracking_uri=mlflow_server.url).get_run(run_id).data.tags
    assert tags["stage"] == "third"


# multiprocessing children made by fork ------------------------------------------------


def _forking_trainer(url: str, experiment: str) -> str:
    """A parent run whose two forked multiprocessing children log nested runs; the
    parent prints its run's status on the server once the children are gone."""
    return f"""
import multiprocessing as mp
import mlflow, mltrail

def work(w):
    with mltrail.start_run(run_name="w" + str(w), nested=True):
        mltrail.log_param("r", w)
        for i in range(300):
            mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)

if __name__ == "__main__":
    mltrail.set_tracking_uri({url!r})
    mltrail.set_experiment({experiment!r})
    with mltrail.start_run(run_name="parent") as parent:
        children = [mp.get_context("fork").Process(target=work, args=(w,)) for w in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        print("exit codes", [child.exitcode for child in children], flush=True)
        try:
            server = mlflow.MlflowClient(tracking_uri={url!r})
            print("parent", server.get_run(parent.info.run_id).info.status, flush=True)
        except Exception as exc:
            print("parent unreadable", type(exc).__name__, flush=True)
"""


def _run_forking_trainer(
    url: str, experiment: str, spool: Path, flush_timeout: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _forking_trainer(url, experiment)],
        env=_trainer_env(spool, flush_timeout, MLTRAIL_CREATE_TIMEOUT="1",
                         MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"),
        capture_output=True,
        text=True,
        timeout=240,  # a safety net for a hung test, not a measurement
    )


def test_forked_children_deliver_their_runs_and_leave_the_parents_open(
    mlflow_server: Any, mlflow_client_cls: Any, tmp_path: Path
) -> None:
    """multiprocessing's fork children leave through os._exit, past atexit: their runs
    stayed in the spool, RUNNING and empty on the server, without a word."""
    experiment = unique("forked")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("runs/log-batch", ("delay", 0.5), times=None)  # a slow server
        trained = _run_forking_trainer(proxy.url, experiment, tmp_path / "spool", "30")
    assert trained.returncode == 0, trained.stderr
    assert "exit codes [0, 0]" in trained.stdout, trained.stdout
    assert "parent RUNNING" in trained.stdout, trained.stdout  # the children did not end it
    assert "mltrail sync" not in trained.stderr, trained.stderr
    server = mlflow_client_cls(tracking_uri=mlflow_server.url)
    found = server_runs(server, server.get_experiment_by_name(experiment).experiment_id)
    assert sorted((r.info.run_name, r.info.status) for r in found) == [
        ("parent", "FINISHED"), ("w0", "FINISHED"), ("w1", "FINISHED")
    ]
    for run in found:
        if run.info.run_name != "parent":
            assert history(server, run.info.run_id, "loss") == [
                (i, BASE_TS + i, float(i)) for i in range(300)
            ]


def test_forked_children_name_mltrail_sync_for_what_they_could_not_send(
    mlflow_server: Any, tmp_path: Path
) -> None:
    experiment = unique("forked-down")
    with FaultyProxy(mlflow_server.url) as proxy:
        proxy.add("runs/log-batch", ("status", 503, None), times=None)
        trained = _run_forking_trainer(proxy.url, experiment, tmp_path / "spool", "2")
        assert trained.returncode == 0, trained.stderr
        # Each child says what it left (the parent logged no batch: its run ended).
        assert trained.stderr.count("send them with: mltrail sync") == 2, trained.stderr
        proxy.rules.clear()
        _sync_until_done(proxy.url, tmp_path / "spool")
