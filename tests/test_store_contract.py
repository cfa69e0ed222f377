"""The Store contract (`mltrail.testing.store_contract`, shipped for third-party stores),
run here over both of mltrail's backends: the local store and a real MLflow server."""

from __future__ import annotations

import pytest

from mltrail import TrackingClient
from mltrail.testing.store_contract import *  # noqa: F403

BACKENDS = ["local", "rest"]


@pytest.fixture(scope="module", params=BACKENDS)
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> TrackingClient:
    """One store per backend for the module; each test makes its own experiment."""
    if request.param == "local":
        return TrackingClient(str(tmp_path_factory.mktemp("contract") / "store"))
    server = request.getfixturevalue("mlflow_server")
    return TrackingClient(server.url)


def test_a_store_object_runs_the_suite_as_a_third_party_store_would(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from mltrail.stores.local import LocalStore

    client = TrackingClient(store=LocalStore(tmp_path_factory.mktemp("direct")))
    assert client.store.__class__ is LocalStore
    assert client.tracking_uri == "store:LocalStore"
    experiment = client.create_experiment("direct")
    run = client.create_run(experiment)
    assert client.get_run(run.info.run_id).info.experiment_id == experiment
