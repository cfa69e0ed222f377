"""Delivering big runs: metric batches side by side, progress on big backlogs.

Against the session's real `mlflow server`, through tests/faulty_proxy.py where a
fault or a slow answer is needed; what reached the server is read back with
MLflow's own client, so a point lost or sent twice shows as a difference.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faulty_proxy import FaultyProxy
from remote_helpers import RemoteFactory, history, server_runs, unique

from mltrail import cli
from mltrail.stores import journal
from mltrail.stores.remote import shipper, store, sync

BASE_TS = 1_700_000_000_000
POINTS = 2_000


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteFactory]:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    yield factory
    factory.close()


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100 metrics a request instead of 1,000: many batches from a small, fast run.
    monkeypatch.setattr(shipper, "MAX_METRICS", 100)


def _log_offline(client: Any, experiment_id: str, proxy: FaultyProxy) -> str:
    """A run logged while the server is unreachable: metrics with tags between them."""
    proxy.down = True
    with pytest.warns(UserWarning):
        run_id = client.create_run(experiment_id, run_name="big").info.run_id
        for i in range(POINTS):
            client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
            if i % 500 == 0:
                client.set_tag(run_id, "stage", f"s{i}")  # a later value must win
        client.set_tag(run_id, "gone", "x")
        client.delete_tag(run_id, "gone")
        client.set_terminated(run_id)
    client.store.close()
    proxy.down = False
    return run_id


def _check(mlflow_server: Any, experiment_id: str) -> None:
    import mlflow

    server = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    runs = server_runs(server, experiment_id)
    assert len(runs) == 1
    run = runs[0]
    assert history(server, run.info.run_id, "loss") == [
        (i, BASE_TS + i, float(i)) for i in range(POINTS)
    ]
    assert run.data.tags["stage"] == "s1500" and "gone" not in run.data.tags
    assert run.info.status == "FINISHED"


def _sync(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    out = ""
    for _ in range(30):  # bounded: a dropped create settles after the read timeout
        code = cli.main(["sync", "--uri", url])
        out += capsys.readouterr().out
        if code == 0:
            return out
        time.sleep(0.5)
    raise AssertionError(out)


def test_batches_go_side_by_side_and_lost_answers_double_nothing(
    mlflow_server: Any,
    remote: RemoteFactory,
    small_batches: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLTRAIL_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLTRAIL_HTTP_TIMEOUT", "2.5")
    monkeypatch.setattr(sync, "_PROGRESS_EVERY", 0.2)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, timeout=2.5)
        experiment_id = client.create_experiment(unique("side"))
        run_id = _log_offline(client, experiment_id, proxy)
        # Two answers lost after the server took the batch, one batch refused for now;
        # then every answer held 0.6 s, so batches sent one after another arrive at
        # least 0.6 s apart, and batches sent side by side arrive closer.
        proxy.add("runs/log-batch", ("delay", 0.6), times=1)
        proxy.add("runs/log-batch", "drop_after", times=2)
        proxy.add("runs/log-batch", ("status", 503, 0), times=1)
        proxy.add("runs/log-batch", ("delay", 0.6), times=None)
        out = _sync(proxy.url, capsys)
        arrivals = [s.at for s in proxy.seen if "log-batch" in s.path]
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert sum(gap < 0.3 for gap in gaps) >= len(gaps) // 2, gaps
    assert f"shipped {run_id}" in out and f"{POINTS:,} points (" in out, out
    assert f"of {POINTS:,} points sent (" in out, out  # a progress line while it shipped
    _check(mlflow_server, experiment_id)


def test_exit_message_counts_points_sent_and_pending(
    mlflow_server: Any,
    remote: RemoteFactory,
    small_batches: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(store, "_PROGRESS_EVERY", 0.3)
    monkeypatch.setattr(store, "_BIG_BACKLOG", 100)
    monkeypatch.setenv("MLTRAIL_FLUSH_TIMEOUT", "1.5")
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        experiment_id = client.create_experiment(unique("exit"))
        proxy.add("runs/log-batch", ("delay", 0.5), times=None)  # a slow server
        run_id = client.create_run(experiment_id, run_name="big").info.run_id
        for i in range(POINTS):
            client.log_metric(run_id, "loss", float(i), BASE_TS + i, i)
        client.set_terminated(run_id)
        rest = client.store
        rest._exit_reported = False
        rest._last_flush = None
        rest._report_unsent()
        err = capsys.readouterr().err
        proxy.rules.clear()
        assert rest.flush(120)
    assert f"mltrail: sending to {proxy.url}: " in err, err
    assert "points sent, " in err and " points/s" in err, err
    assert "mltrail: 1 run (" in err and "points sent" in err.splitlines()[-1], err


def test_points_are_counted_without_parsing_lines(tmp_path: Path) -> None:
    path = tmp_path / journal.JOURNAL
    records = [
        journal.batch_record([], {"p": '],["x'}, {"t": '"m":[['}),  # look-alikes in strings
        {"k": "b", "m": [["a],[\"b", 1.0, 2, 3], ["c", 2.0, 2, 3]]},
        {"k": "u", "status": "FINISHED", "end_time": 1},
        {"k": "b", "m": [["loss", float("nan"), 1, 1]], "t": {"a": "b"}},
    ]
    path.write_bytes(b"".join(map(journal.encode, records)) + b'{"k":"b","m":[["torn"')
    assert journal.count_after(path, 0) == (4, 3)
    second = len(journal.encode(records[0]))
    assert journal.count_after(path, second) == (3, 3)
