"""Local-store specifics beyond the contract: many runs, summaries, races, page tokens.

The checks go through TrackingClient and fresh LocalStore instances (each one sees the
folder as another process would), never through the file layout.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest

import mltrail
from mltrail import RunStatus, TrackingClient
from mltrail.entities import Metric, Param, RunTag
from mltrail.exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError
from mltrail.stores.local import LocalStore

MANY = 2_000
BASE_TIME = 1_700_000_000_000


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """MANY finished runs in one experiment: run i has metric i, param group g<i % 10>."""
    root = tmp_path_factory.mktemp("many") / "runs"
    client = TrackingClient(str(root))
    experiment_id = client.create_experiment("many")
    with pytest.MonkeyPatch.context() as patch:
        # Durability is not under test here and fsync is most of the cost of ending a run.
        patch.setattr(os, "fsync", lambda fd: None)
        _log_many(client, experiment_id)
    return root, experiment_id


def _log_many(client: TrackingClient, experiment_id: str) -> None:
    for i in range(MANY):
        run_id = client.create_run(
            experiment_id, start_time=BASE_TIME + i, run_name=f"run-{i}"
        ).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric("i", i, BASE_TIME + i, 0)],
            params=[Param("group", f"g{i % 10}")],
            tags=[RunTag("even", str(i % 2 == 0))],
        )
        client.set_terminated(run_id, RunStatus.FINISHED, end_time=BASE_TIME + i + 1)


def test_listing_thousands_of_runs(many_runs: tuple[Path, str]) -> None:
    root, experiment_id = many_runs
    store = LocalStore(root)  # a fresh reader: nothing cached from the writes
    everything = store.search_runs([experiment_id], "", 1, 50_000, [], None)
    assert len(everything) == MANY and everything.token is None
    assert [r.info.run_name for r in everything[:3]] == ["run-1999", "run-1998", "run-1997"]
    assert all(r.info.status == RunStatus.FINISHED for r in everything)

    client = TrackingClient(str(root))
    paged: list[str] = []
    token = None
    for _ in range(10):  # 2,000 runs in pages of 700 is three pages
        page = client.search_runs([experiment_id], max_results=700, page_token=token)
        paged.extend(r.info.run_id for r in page)
        token = page.token
        if token is None:
            break
    assert paged == [r.info.run_id for r in everything]

    low = client.search_runs([experiment_id], "metrics.i < 100", max_results=50_000)
    assert sorted(int(r.data.metrics["i"]) for r in low) == list(range(100))
    group = client.search_runs(
        [experiment_id], "params.group = 'g3' and tags.even = 'False'", max_results=50_000
    )
    assert len(group) == MANY // 10
    assert all(int(r.data.metrics["i"]) % 10 == 3 for r in group)
    top = client.search_runs([experiment_id], order_by=["metrics.i DESC"], max_results=2)
    assert [r.data.metrics["i"] for r in top] == [1999.0, 1998.0]


def test_records_after_the_end_are_seen(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    writer = TrackingClient(str(root))
    experiment_id = writer.create_experiment("late")
    run_id = writer.create_run(experiment_id, run_name="late").info.run_id
    writer.log_metric(run_id, "score", 1.0, step=0)
    writer.set_terminated(run_id)

    reader = LocalStore(root)
    assert reader.get_run(run_id).data.metrics == {"score": 1.0}

    # Logged after the run ended: a reader must not trust a stale summary alone.
    writer.set_tag(run_id, "reviewed", "yes")
    writer.log_metric(run_id, "score", 2.0, step=1)
    for store in (reader, LocalStore(root)):
        found = store.search_runs([experiment_id], "tags.reviewed = 'yes'", 1, 10, [], None)
        assert [r.info.run_id for r in found] == [run_id]
        assert found[0].data.metrics == {"score": 2.0}
        assert found[0].info.status == RunStatus.FINISHED
        assert len(store.get_metric_history(run_id, "score")) == 2


def test_another_writer_sees_status_changes(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    first, second = LocalStore(root), LocalStore(root)
    experiment_id = first.create_experiment("shared")
    run = first.create_run(experiment_id, "u", BASE_TIME, [], "r")
    run_id = run.info.run_id
    assert second.get_run(run_id).info.status == RunStatus.RUNNING
    first.update_run_info(run_id, RunStatus.FINISHED, BASE_TIME + 5)
    assert second.get_run(run_id).info.status == RunStatus.FINISHED
    second.update_run_info(run_id, RunStatus.RUNNING, None)  # resumed elsewhere
    running = first.search_runs([experiment_id], "attributes.status = 'RUNNING'", 1, 10, [], None)
    assert [r.info.run_id for r in running] == [run_id]


def test_experiment_creation_race(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    threads_count = 8
    barrier = threading.Barrier(threads_count, timeout=30)
    created: list[str] = []
    refused: list[BaseException] = []
    other: list[BaseException] = []

    def create() -> None:
        store = LocalStore(root)  # one instance each, as separate processes would have
        barrier.wait()
        try:
            created.append(store.create_experiment("contested"))
        except AlreadyExistsError as exc:
            refused.append(exc)
        except BaseException as exc:
            other.append(exc)

    threads = [threading.Thread(target=create) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert other == []
    assert len(created) == 1 and len(refused) == threads_count - 1
    assert all("contested" in str(exc) for exc in refused)
    store = LocalStore(root)
    assert store.get_experiment_by_name("contested").experiment_id == created[0]  # type: ignore[union-attr]
    names = [e.name for e in store.search_experiments()]
    assert sorted(names) == ["Default", "contested"]  # the losers left nothing behind


def test_set_experiment_race_gives_everyone_the_same_id(tmp_path: Path) -> None:
    mltrail.set_tracking_uri(str(tmp_path / "runs"))
    barrier = threading.Barrier(6, timeout=30)
    ids: list[str] = []
    errors: list[BaseException] = []

    def join() -> None:
        barrier.wait()
        try:
            ids.append(mltrail.set_experiment("together").experiment_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=join) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(ids) == 6 and len(set(ids)) == 1


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"page": 3}').decode(),
        base64.urlsafe_b64encode(b'{"offset": "x"}').decode(),
    ],
)
def test_bad_page_token_is_an_error(tmp_path: Path, token: str) -> None:
    client = TrackingClient(str(tmp_path / "runs"))
    experiment_id = client.create_experiment("paging")
    client.create_run(experiment_id)
    with pytest.raises(InvalidParameterError) as excinfo:
        client.search_runs([experiment_id], page_token=token)
    assert excinfo.value.key == "page_token"


def test_page_token_past_the_end_is_an_empty_last_page(tmp_path: Path) -> None:
    client = TrackingClient(str(tmp_path / "runs"))
    experiment_id = client.create_experiment("paging")
    for _ in range(3):
        client.create_run(experiment_id)
    first = client.search_runs([experiment_id], max_results=2)
    assert len(first) == 2 and first.token
    second = client.search_runs([experiment_id], max_results=2, page_token=first.token)
    assert len(second) == 1 and second.token is None
    far = base64.urlsafe_b64encode(b'{"offset": 50}').decode()
    beyond = client.search_runs([experiment_id], max_results=2, page_token=far)
    assert list(beyond) == [] and beyond.token is None


def test_search_in_unknown_experiment_names_it(tmp_path: Path) -> None:
    client = TrackingClient(str(tmp_path / "runs"))
    with pytest.raises(NotFoundError) as excinfo:
        client.search_runs(["4242"])
    assert "4242" in str(excinfo.value)


def test_artifact_paths_cannot_escape_the_run(tmp_path: Path) -> None:
    client = TrackingClient(str(tmp_path / "runs"))
    run_id = client.create_run(client.create_experiment("safe")).info.run_id
    source = tmp_path / "f.txt"
    source.write_text("x")
    with pytest.raises(InvalidParameterError):
        client.log_artifact(run_id, source, artifact_path="../../elsewhere")
    with pytest.raises(InvalidParameterError):
        client.download_artifacts(run_id, "../summary.json", str(tmp_path / "out"))
    assert not (tmp_path / "runs" / "elsewhere").exists()
