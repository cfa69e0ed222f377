"""The fluent API: module-level functions acting on the active run, as in MLflow.

The active-run stack lives in a ContextVar, so each thread (and each asyncio
task) has its own: parallel trials never log into each other's runs. Runs left
open when the interpreter exits, or when SIGTERM arrives, are ended with the
status that says why (FINISHED, FAILED after an uncaught exception, KILLED).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import notices, runtime
from .artifacts import RUNS_SCHEME, split_runs_uri
from .client import TrackingClient
from .entities import (
    Dataset,
    DatasetInput,
    Experiment,
    InputTag,
    LifecycleStage,
    Metric,
    ModelVersion,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from .exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError, RunStateError
from .uri import get_tracking_uri

if TYPE_CHECKING:
    import pandas

PARENT_RUN_ID_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
FLUSH_TIMEOUT_ENV = "MLTRAIL_FLUSH_TIMEOUT"


class ActiveRun:
    """The run `start_run` opened; ends it when used as a context manager.

    Attributes:
        info: the RunInfo as of the start.
        data: the RunData as of the start.
        adopted: True for the handle of a run taken over through `adoptable`:
            ending it leaves the run open for the code that started it.
    """

    adopted: bool = False

    def __init__(self, run: Run, client: TrackingClient) -> None:
        self.info = run.info
        self.data = run.data
        self.client = client

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _end(self, _status_for(exc))

    def __repr__(self) -> str:
        return f"<ActiveRun: run_id={self.info.run_id!r}, name={self.info.run_name!r}>"


def _status_for(exc: BaseException | None) -> str:
    if exc is None:
        return RunStatus.FINISHED
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.KILLED
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return RunStatus.FINISHED
    return RunStatus.FAILED


_stack: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar(
    "mltrail_active_runs", default=()
)
_last_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mltrail_last_run_id", default=None
)
_adoptable: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "mltrail_adoptable_run", default=None
)


@contextlib.contextmanager
def adoptable(run: ActiveRun) -> Iterator[None]:
    """Let the first `start_run` in this scope take over `run` instead of starting a run.

    A search integration opens one run per trial and calls the user's objective
    inside this scope, so an objective that opens its own run, as people wrote
    before autolog (`with mlflow.start_run(nested=True):` or a plain
    `start_run()`), logs into the trial's run instead of failing ("already
    active") or leaving the trial run empty beside a grandchild. The takeover
    happens only while `run` is the innermost active run, and only for a call
    without `run_id` or `parent_run_id` and in the same experiment; its
    `run_name`, `tags` and `description` are applied to `run`. The handle it
    returns is `adopted`: ending it (or leaving its `with` block) does not end
    `run`, which its owner ends.
    """
    token = _adoptable.set(run)
    try:
        yield
    finally:
        _adoptable.reset(token)


def _adopt(
    run_id: str | None,
    experiment_id: str | None,
    parent_run_id: str | None,
    run_name: str | None,
    tags: dict[str, Any] | None,
    description: str | None,
) -> ActiveRun | None:
    target = _adoptable.get()
    if target is None or run_id is not None or parent_run_id is not None:
        return None
    stack = _stack.get()
    if not stack or stack[-1] is not target:
        return None
    if experiment_id is not None and str(experiment_id) != target.info.experiment_id:
        return None
    _adoptable.set(None)  # one takeover per scope; a second start_run nests as usual
    extra = dict(tags or {})
    if description is not None:
        extra[NOTE_TAG] = description
    if run_name is not None:
        extra["mlflow.runName"] = run_name
    if extra:
        target.client.log_batch(
            target.info.run_id, tags=[RunTag(str(k), v) for k, v in extra.items()]
        )
    handle = copy.copy(target)
    handle.adopted = True
    _stack.set((*stack, handle))
    return handle


_process = runtime.process  # the process state lives in `mltrail.runtime`


def _forget_parent_runs() -> None:
    """A forked child (a multiprocessing worker) owns none of its parent's open runs.

    Without this, a worker stopped by SIGTERM would end the parent's runs as its
    own (KILLED), and could wait on a lock another thread held at the fork. The
    child also gives SIGTERM back its default: a Python-level handler runs only
    in the main thread, and a pool worker blocked on its task queue's lock, with
    the signal delivered to one of its other threads (BLAS, OpenMP), would never
    run it, so `Pool.terminate()` would wait for that worker forever.
    """
    _process.lock = threading.Lock()
    _process.open_runs.clear()
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_runs)


def current_client() -> TrackingClient:
    """The client of the tracking URI in force, one per URI for the process (so its
    store, spool and sender are shared by every fluent call)."""
    uri = get_tracking_uri()
    with _process.lock:
        client = _process.clients.get(uri)
        if client is None:
            client = _process.clients[uri] = TrackingClient(uri)
        return client


# experiments ---------------------------------------------------------------


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make an experiment the active one, creating it by name when it is missing."""
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidParameterError(
            "Give exactly one of experiment_name and experiment_id", key="experiment_name"
        )
    client = current_client()
    if experiment_id is not None:
        experiment = client.get_experiment(str(experiment_id))
    else:
        assert experiment_name is not None
        experiment = client.get_or_create_experiment(experiment_name)
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        raise RunStateError(
            f"Experiment {experiment.name!r} ({experiment.experiment_id}) is deleted; "
            "restore it or choose another name"
        )
    _process.experiment = (client.tracking_uri, experiment.experiment_id)
    return experiment


def _active_experiment_id(client: TrackingClient) -> str:
    if _process.experiment is not None and _process.experiment[0] == client.tracking_uri:
        return _process.experiment[1]
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        return set_experiment(name).experiment_id
    return "0"


def get_experiment(experiment_id: str) -> Experiment:
    return current_client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return current_client().get_experiment_by_name(name)


def create_experiment(
    name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
) -> str:
    return current_client().create_experiment(name, artifact_location, tags)


def search_experiments(view_type: int = ViewType.ACTIVE_ONLY) -> list[Experiment]:
    return current_client().search_experiments(view_type)


# runs ----------------------------------------------------------------------


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
    *,
    end_on_exit: bool = True,
) -> ActiveRun:
    """Start a run (or resume `run_id`) and make it the active run of this context.

    Args:
        run_id: resume this existing run instead of creating one.
        experiment_id: the experiment for a new run; default: the active experiment.
        run_name: a display name; a readable one is generated when omitted.
        nested: start a child of the active run (tagged `mlflow.parentRunId`).
        parent_run_id: make the new run a child of this run, active or not.
        tags: extra tags for the run.
        description: shown as the run's note in the MLflow UI.
        end_on_exit: with `run_id`, False attaches to a run another process owns (a
            search trial's run, which the Spark driver started and will end): its
            status is left as it is, ending the handle leaves the run open, and
            neither interpreter exit nor SIGTERM ends it here.

    Inside an `adoptable(run)` scope (a search trial under autolog), the first
    call may return an adopted handle to that run instead of starting one.

    Raises:
        RunStateError: a run is active and neither `nested` nor `parent_run_id` is given.
        NotFoundError: `run_id` is unknown to the tracking store (with a local store: its
            folder is not visible from this machine).
    """
    if not end_on_exit:
        if run_id is None:
            raise InvalidParameterError("end_on_exit=False needs a run_id", key="end_on_exit")
        return _attach(run_id)
    adopted = _adopt(run_id, experiment_id, parent_run_id, run_name, tags, description)
    if adopted is not None:
        return adopted
    stack = _stack.get()
    if stack and not nested and parent_run_id is None:
        raise RunStateError(
            f"Run {stack[-1].info.run_id} is already active. End it with end_run() first, "
            "or start a child run with start_run(nested=True)",
            run_id=stack[-1].info.run_id,
        )
    client = current_client()
    if parent_run_id is None and nested and stack:
        parent_run_id = stack[-1].info.run_id
    if run_id is not None:
        run = _resume(client, run_id)
    else:
        all_tags = dict(tags or {})
        if parent_run_id is not None:
            if all(r.info.run_id != parent_run_id for r in stack):  # else known to exist
                client.get_run(parent_run_id)  # fail now on an unknown parent id
            all_tags[PARENT_RUN_ID_TAG] = parent_run_id
        if description is not None:
            all_tags[NOTE_TAG] = description
        exp_id = str(experiment_id) if experiment_id is not None else _active_experiment_id(client)
        run = client.create_run(exp_id, tags=all_tags, run_name=run_name)
    active = ActiveRun(run, client)
    _stack.set((*stack, active))
    _last_run_id.set(run.info.run_id)
    with _process.lock:
        _process.open_runs[run.info.run_id] = active
    _install_exit_hooks()
    return active


def _attach(run_id: str) -> ActiveRun:
    """The active run of this context becomes `run_id`, owned elsewhere: no status is
    written (a late delivery can never overwrite its owner's final status)."""
    client = current_client()
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == LifecycleStage.DELETED:
        raise RunStateError(f"Run {run_id} is deleted; it cannot be attached to", run_id=run_id)
    handle = ActiveRun(run, client)
    handle.adopted = True  # ending it pops it from the stack and leaves the run open
    _stack.set((*_stack.get(), handle))
    return handle


def _resume(client: TrackingClient, run_id: str) -> Run:
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == LifecycleStage.DELETED:
        raise RunStateError(f"Run {run_id} is deleted; it cannot be resumed", run_id=run_id)
    client.store.update_run_info(run_id, RunStatus.RUNNING, None)
    return client.get_run(run_id)


def _end(active: ActiveRun, status: str) -> None:
    stack = _stack.get()
    if active in stack:
        _stack.set(tuple(r for r in stack if r is not active))
    if active.adopted:
        return  # the run belongs to whoever let it be adopted; they end it
    with _process.lock:
        still_open = _process.open_runs.pop(active.info.run_id, None) is not None
    if still_open:
        active.client.set_terminated(active.info.run_id, status)
        _last_run_id.set(active.info.run_id)


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run of this context (the innermost one) with `status`."""
    if status not in RunStatus.ALL:
        raise InvalidParameterError(f"Unknown run status {status!r}", key="status")
    stack = _stack.get()
    if stack:
        _end(stack[-1], status)


def active_run() -> ActiveRun | None:
    """The innermost active run of this thread or task, or None."""
    stack = _stack.get()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    """The active run, else the run most recently ended in this context, as a Run."""
    current = active_run()
    run_id = current.info.run_id if current else _last_run_id.get()
    return None if run_id is None else current_client().get_run(run_id)


def run_for_logging() -> tuple[TrackingClient, str]:
    """The client and id of the run a fluent logging call writes to: the active run,
    started on first use when none is, as MLflow does (`log_model` uses it too)."""
    current = active_run()
    if current is None:
        current = start_run()
    return current.client, current.info.run_id


def get_run(run_id: str) -> Run:
    return current_client().get_run(run_id)


def delete_run(run_id: str) -> None:
    current_client().delete_run(run_id)


def log_param(key: str, value: Any) -> Any:
    client, run_id = run_for_logging()
    return client.log_param(run_id, key, value)


def log_params(params: dict[str, Any]) -> None:
    client, run_id = run_for_logging()
    client.log_batch(run_id, params=[Param(str(k), v) for k, v in params.items()])


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    client, run_id = run_for_logging()
    client.log_metric(run_id, key, value, timestamp, step)


def log_metrics(
    metrics: dict[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    client, run_id = run_for_logging()
    ts = timestamp or int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, ts, step or 0) for k, v in metrics.items()])


def set_tag(key: str, value: Any) -> None:
    client, run_id = run_for_logging()
    client.set_tag(run_id, key, value)


def set_tags(tags: dict[str, Any]) -> None:
    client, run_id = run_for_logging()
    client.log_batch(run_id, tags=[RunTag(str(k), v) for k, v in tags.items()])


def delete_tag(key: str) -> None:
    client, run_id = run_for_logging()
    client.delete_tag(run_id, key)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    client, run_id = run_for_logging()
    client.log_artifact(run_id, local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    client, run_id = run_for_logging()
    client.log_artifacts(run_id, local_dir, artifact_path)


def log_dict(dictionary: dict[str, Any], artifact_file: str) -> None:
    client, run_id = run_for_logging()
    client.log_dict(run_id, dictionary, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    client, run_id = run_for_logging()
    client.log_text(run_id, text, artifact_file)


def log_input(
    dataset: Dataset | Any,
    context: str | None = None,
    tags: dict[str, str] | None = None,
    name: str | None = None,
) -> None:
    """Record a dataset the run consumed: a `Dataset`, a pandas DataFrame or an array.

    Only its name, digest, schema and shape are kept, never its content.
    """
    if not isinstance(dataset, Dataset):
        from .data import from_any

        dataset = from_any(dataset, name=name)
    input_tags = dict(tags or {})
    if context is not None:
        input_tags["mlflow.data.context"] = context
    item = DatasetInput(dataset, tuple(InputTag(k, str(v)) for k, v in input_tags.items()))
    client, run_id = run_for_logging()
    client.log_inputs(run_id, [item])


def get_artifact_uri(artifact_path: str | None = None) -> str:
    client, run_id = run_for_logging()
    base = client.get_run(run_id).info.artifact_uri
    return f"{base.rstrip('/')}/{artifact_path}" if artifact_path else base


def search_runs(
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = 100000,
    order_by: Sequence[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Sequence[str] | None = None,
) -> pandas.DataFrame | list[Run]:
    """Runs matching an MLflow filter, as a DataFrame (or a list with output_format="list").

    The DataFrame has `run_id`, `experiment_id`, `status`, `artifact_uri`,
    `start_time`, `end_time`, and one `metrics.*`, `params.*` and `tags.*` column
    per key, as MLflow's does.
    """
    client = current_client()
    if experiment_names:
        ids = []
        for name in experiment_names:
            found = client.get_experiment_by_name(name)
            if found is not None:
                ids.append(found.experiment_id)
    elif experiment_ids:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    elif search_all_experiments:
        ids = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
    else:
        ids = [_active_experiment_id(client)]
    runs: list[Run] = []
    token = None
    while len(runs) < max_results:
        page = client.search_runs(
            ids, filter_string, run_view_type, min(50000, max_results - len(runs)), order_by, token
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    if output_format == "list":
        return runs
    if output_format != "pandas":
        raise InvalidParameterError(
            f"output_format must be 'pandas' or 'list', got {output_format!r}", key="output_format"
        )
    return runs_to_frame(runs)


def runs_to_frame(runs: list[Run]) -> pandas.DataFrame:
    import pandas as pd

    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "artifact_uri": run.info.artifact_uri,
            "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(run.info.end_time, unit="ms", utc=True)
            if run.info.end_time
            else pd.NaT,
        }
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    base = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    return pd.DataFrame(rows, columns=None if rows else base)


# model registry ------------------------------------------------------------


def register_model(
    model_uri: str,
    name: str,
    await_registration_for: int = 300,
    *,
    tags: dict[str, Any] | None = None,
) -> ModelVersion:
    """Register the model at `model_uri` as a new version of `name` (created if missing).

    Args:
        model_uri: usually `runs:/<run_id>/<path>`; a `runs:/` URI is checked
            first, so a wrong run id or path fails here rather than at load time.
            `models:/<model_id>` (a logged model's id, `ModelInfo.model_id`) works too.
        name: the registered model; versions count up from 1 per name.
        await_registration_for: accepted for MLflow compatibility; registration
            here completes before the call returns.
        tags: tags of the new version.

    Raises:
        NotFoundError: the run does not exist or holds no model at that path.
    """
    import contextlib

    from .models.uris import logged_model_id

    client = current_client()
    run_id = None
    model_id = logged_model_id(model_uri)
    if model_uri.startswith(RUNS_SCHEME):
        run_id, path = split_runs_uri(model_uri, key="model_uri")
        _check_run_model(client, run_id, path, model_uri)
    elif model_id is not None:
        # The source names the model as its store knows it: a remote store's model is
        # delivered first and registered by the server's id, which MLflow resolves too.
        logged = client.get_logged_model(model_id)
        model_uri, run_id = f"models:/{logged.model_id}", logged.source_run_id
    with contextlib.suppress(AlreadyExistsError):  # a new version of an existing model
        client.create_registered_model(name)
    return client.create_model_version(name, model_uri, run_id, tags=tags)


def _check_run_model(client: TrackingClient, run_id: str, path: str, model_uri: str) -> None:
    client.get_run(run_id)  # an unknown run id raises NotFoundError naming it

    def has_mlmodel() -> bool:
        listed = client.list_artifacts(run_id, path or None)
        return any(f.path.rsplit("/", 1)[-1] == "MLmodel" and not f.is_dir for f in listed)

    if has_mlmodel():
        return
    client.flush()  # a remote store uploads files in the background: let them arrive
    if not has_mlmodel():
        top = ", ".join(f.path + ("/" if f.is_dir else "") for f in client.list_artifacts(run_id))
        # On an MLflow 3 server a run's models are LoggedModels, outside its artifacts.
        logged = ", ".join(m.name for m in client.run_logged_models(run_id))
        raise NotFoundError(
            f"No model at {model_uri}: run {run_id} has no MLmodel file under {path or '/'!r} "
            f"(its artifacts: {top or 'none'}{'; its logged models: ' + logged if logged else ''})",
            resource_id=model_uri,
        )


# process exit --------------------------------------------------------------


def _flush_timeout() -> float:
    try:
        return float(os.environ.get(FLUSH_TIMEOUT_ENV, "5"))
    except ValueError:
        return 5.0


def flush(timeout: float | None = None) -> bool:
    """Wait until every record logged so far is delivered to its tracking server.

    Artifacts drawn off the training path (scikit-learn's `estimator.html`) are
    waited for first. Local stores have nothing else to wait for. Returns False if records are still
    pending after `timeout` seconds; they stay on disk and `mltrail sync` ships them.
    Without `timeout`, each store waits its own default (MLTRAIL_FLUSH_TIMEOUT: 5 s for a
    server, 60 s for a database, whose first contact runs MLflow's migrations), so the
    exit path, which calls this, keeps a database's longer wait.
    """
    with _process.lock:
        clients = list(_process.clients.values())
    deadline = time.monotonic() + (_flush_timeout() if timeout is None else timeout)
    delivered = runtime.wait_for_background(max(0.0, deadline - time.monotonic()))
    for client in clients:
        left = None if timeout is None else max(0.0, deadline - time.monotonic())
        delivered &= client.flush(left)
    return delivered


def reset_process_state() -> None:
    """Forget the active experiment and every cached client (a test's own stores).

    For test suites: the public way to start the next test from a clean process
    state, instead of reaching into private attributes. Open runs are not ended here;
    end them first (`end_run`).
    """
    with _process.lock:
        _process.experiment = None
        _process.clients.clear()


def end_open_runs(status: str) -> None:
    """End every run this process still has open, then flush every store.

    Called at interpreter exit and on SIGTERM; safe to call more than once.
    """
    with _process.lock:
        open_runs = list(_process.open_runs.values())
        _process.open_runs.clear()
    for active in reversed(open_runs):  # children before their parents
        try:
            active.client.set_terminated(active.info.run_id, status)
        except Exception as exc:
            notices.warn(f"mltrail: could not end run {active.info.run_id}: {exc}", stacklevel=1)
    flush()


def _forget_parent_runs() -> None:
    """In a forked child: the runs the parent has open are the parent's to end."""
    _process.open_runs = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_runs)


def _at_exit() -> None:
    crashed = _process.crashed_with
    if crashed is None:
        status = RunStatus.FINISHED
    elif issubclass(crashed, KeyboardInterrupt):
        status = RunStatus.KILLED
    else:
        status = RunStatus.FAILED
    end_open_runs(status)


def _on_sigterm(signum: int, frame: Any) -> None:
    end_open_runs(RunStatus.KILLED)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_exit_hooks() -> None:
    if _process.hooks_installed:
        return
    _process.hooks_installed = True
    runtime.at_exit(runtime.END_RUNS, _at_exit)
    previous_hook = sys.excepthook

    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        _process.crashed_with = exc_type
        previous_hook(exc_type, exc, tb)

    sys.excepthook = excepthook
    # Only take SIGTERM when nobody else handles it: a framework's handler wins.
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)
