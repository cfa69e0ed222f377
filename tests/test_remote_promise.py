"""Issue 13: the remote path keeps its promise (nothing lost, nothing doubled, never blocks).

Each test reproduces one finding of the fault campaign against the session's real
`mlflow server`, through tests/faulty_proxy.py where a fault is needed, and counts
records exactly by reading them back through MLflow's own client. Every test here
failed before the fix it names.
"""

from __future__ import annotations

import os
import sys
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
