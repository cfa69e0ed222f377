"""Metric history of the local store read through its per-key index (`history.idx`).

Every test compares what `get_metric_history` returns with a plain replay of the
journal, so an index that is wrong, stale or from another journal shows up as a
difference, whichever way the store chose to answer.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mltrail import TrackingClient
from mltrail.entities import Metric
from mltrail.stores import journal
from mltrail.stores.local import LocalStore

KEYS = ("loss", "acc", "lr")


@pytest.fixture(autouse=True)
def index_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # A run's index is only written past 256 KB of journal; these runs are smaller.
    monkeypatch.setattr(journal, "_REBUILD_AFTER", 0)


def test_a_small_run_has_no_index_and_reads_from_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "_REBUILD_AFTER", 256 << 10)
    run_id, run_dir = logged_run(tmp_path)
    assert not (run_dir / journal.HISTORY).exists()
    reader = LocalStore(tmp_path)
    for key in KEYS:
        assert same(reader.get_metric_history(run_id, key), replayed(run_dir, key))
    assert not (run_dir / journal.HISTORY).exists()  # nor does a read write one


def replayed(run_dir: Path, key: str) -> list[Metric]:
    """The history as the journal itself says, line by line."""
    return [
        Metric(k, float(value), timestamp, step)
        for record, _ in journal.iter_lines(run_dir / journal.JOURNAL, 0)
        if record is not None and record["k"] == journal.Kind.BATCH
        for k, value, timestamp, step in record.get("m", ())
        if k == key
    ]


def logged_run(root: Path, steps: int = 200) -> tuple[str, Path]:
    client = TrackingClient(str(root))
    run_id = client.create_run("0").info.run_id
    for step in range(steps):
        for n, key in enumerate(KEYS):
            client.log_metric(run_id, key, step * 0.5 + n, timestamp=1000 + step, step=step)
    client.log_batch(run_id, metrics=[Metric("loss", float("nan"), 5, steps)])
    assert client.get_metric_history(run_id, "loss")[-1].step == steps  # open: from memory
    client.set_terminated(run_id)
    client.flush()
    return run_id, client.store.run_dir(run_id)  # type: ignore[attr-defined]


def same(left: list[Metric], right: list[Metric]) -> bool:
    # NaN != NaN, so compare the JSON text of each point.
    return [journal.encode(p.__dict__) for p in left] == [journal.encode(p.__dict__) for p in right]


def test_history_is_read_from_the_index_written_at_the_end(tmp_path: Path) -> None:
    run_id, run_dir = logged_run(tmp_path)
    assert (run_dir / journal.HISTORY).is_file()
    expected = {key: replayed(run_dir, key) for key in KEYS}
    assert len(expected["loss"]) == 201 and len(expected["acc"]) == 200
    # Blank out the journal's metric lines (same length, still complete lines): only
    # an answer taken from the index can still hold the points.
    path = run_dir / journal.JOURNAL
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(b" " * len(line) for line in lines))
    reader = LocalStore(tmp_path)
    for key in KEYS:
        assert same(reader.get_metric_history(run_id, key), expected[key])
    assert reader.get_metric_history(run_id, "never") == []


def test_points_after_the_index_are_read_from_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, run_dir = logged_run(tmp_path)
    other = TrackingClient(str(tmp_path))  # another writer, after the run ended
    other.log_metric(run_id, "loss", 9.0, timestamp=7, step=999)
    other.log_metric(run_id, "new", 1.0, timestamp=7, step=0)
    reader = LocalStore(tmp_path)
    monkeypatch.setattr(journal, "_REBUILD_AFTER", 1 << 20)  # a small tail: read as it is
    for key in (*KEYS, "new"):
        assert same(reader.get_metric_history(run_id, key), replayed(run_dir, key))
    assert reader.get_metric_history(run_id, "loss")[-1].value == 9.0
    found = journal.HistoryIndex.load(run_dir)
    assert found is not None and found[1] < (run_dir / journal.JOURNAL).stat().st_size
    # A tail worth re-indexing is folded into a new index that covers it.
    monkeypatch.setattr(journal, "_REBUILD_AFTER", 0)
    assert same(reader.get_metric_history(run_id, "new"), replayed(run_dir, "new"))
    found = journal.HistoryIndex.load(run_dir)
    assert found is not None and found[1] == (run_dir / journal.JOURNAL).stat().st_size


def test_torn_tail_is_skipped_before_and_after_a_later_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, run_dir = logged_run(tmp_path)
    expected = replayed(run_dir, "loss")
    with open(run_dir / journal.JOURNAL, "ab") as handle:
        handle.write(b'{"k":"b","m":[["loss",123.0,1,')  # a crash in mid-line
    monkeypatch.setattr(journal, "_REBUILD_AFTER", 0)
    (run_dir / journal.HISTORY).unlink()
    assert same(LocalStore(tmp_path).get_metric_history(run_id, "loss"), expected)
    TrackingClient(str(tmp_path)).log_metric(run_id, "loss", 4.0, timestamp=1, step=500)
    for _ in range(2):  # rebuilt from the journal, then from the index saved by the first
        history = LocalStore(tmp_path).get_metric_history(run_id, "loss")
        assert same(history, [*expected, Metric("loss", 4.0, 1, 500)])


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "other journal"])
def test_a_bad_index_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    run_id, run_dir = logged_run(tmp_path / "a")
    index = run_dir / journal.HISTORY
    if damage == "missing":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\x00not an index\n" * 10)
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:-100])
    else:  # an index covering more than this journal holds
        _, big_dir = logged_run(tmp_path / "b", steps=400)
        index.write_bytes((big_dir / journal.HISTORY).read_bytes())
    monkeypatch.setattr(journal, "_REBUILD_AFTER", 0)
    for _ in range(2):
        reader = LocalStore(tmp_path / "a")
        for key in KEYS:
            assert same(reader.get_metric_history(run_id, key), replayed(run_dir, key))
    found = journal.HistoryIndex.load(run_dir)
    assert found is not None and found[1] == (run_dir / journal.JOURNAL).stat().st_size


WRITER = textwrap.dedent(
    """
    import sys
    from mltrail import TrackingClient
    client = TrackingClient(sys.argv[1])
    for step in range(300):
        client.log_metric(sys.argv[2], "from-child", float(step), timestamp=1, step=step)
    """
)


def test_two_writer_processes_on_one_run(tmp_path: Path) -> None:
    client = TrackingClient(str(tmp_path))
    run_id = client.create_run("0").info.run_id
    run_dir = client.store.run_dir(run_id)  # type: ignore[attr-defined]
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), run_id])
    for step in range(300):
        client.log_metric(run_id, "from-parent", float(step), timestamp=1, step=step)
    assert child.wait(timeout=120) == 0
    client.log_metric(run_id, "from-parent", 300.0, timestamp=1, step=300)
    for key in ("from-parent", "from-child"):  # the open run, with lines it did not write
        assert same(client.get_metric_history(run_id, key), replayed(run_dir, key))
    client.set_terminated(run_id)
    client.flush()
    reader = LocalStore(tmp_path)
    for key, count in (("from-parent", 301), ("from-child", 300)):
        history = reader.get_metric_history(run_id, key)
        assert same(history, replayed(run_dir, key))
        assert [p.step for p in history] == list(range(count))
