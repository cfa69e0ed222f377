"""The MLflow side of the bridge: REST-shaped requests answered by MLflow's own client.

This is the only mltrail module that imports mlflow, and only when a request comes:
in the helper process (``python -m mltrail.stores.bridge.worker URI``, the default)
or in the background thread of the in-thread mode. It speaks the same JSON as an
MLflow server (`mlflow.MlflowClient` does the writing, MLflow's protobuf JSON does
the answers), so mltrail's shipper, which sends runs to a server, sends them to a
database unchanged.

Protocol of the helper process: one JSON object a line on stdin, ``{"op": ...,
"args": {...}}``; one a line back on stdout, ``{"ok": answer}`` or ``{"error":
{"error_code", "message", "transient"}}``. It ends when stdin closes (the
training process exited or closed the bridge).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

# MLflow error codes that a later attempt may get past (a locked sqlite file, a
# database restarting), as 5xx answers are for a server.
TRANSIENT_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
)
_VIEW = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}


class BridgeError(Exception):
    """A request MLflow refused or could not carry out, as the REST API would say it."""

    def __init__(self, error_code: str, message: str, transient: bool) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.transient = transient

    def as_dict(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message, "transient": self.transient}


class MlflowSide:
    """Answers bridge requests for one tracking URI with `mlflow.MlflowClient`.

    Args:
        tracking_uri: the database URI (already normalized by `mltrail.stores.bridge`),
            or None when only artifacts are written (a server's non-proxied root).
    """

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        """Answer one request; MLflow's errors become `BridgeError`."""
        from mlflow.exceptions import MlflowException

        try:
            if op == "call":
                return self.call(args["endpoint"], args.get("payload") or {})
            if op == "log_artifact":
                return self.log_artifact(args["artifact_uri"], args["path"], args["local_file"])
            if op == "list_artifacts":
                return self.list_artifacts(args["artifact_uri"], args.get("path") or "")
            if op == "download":
                return self.download(args["artifact_uri"], args["path"], args["target"])
            if op == "ping":
                return self.ping()
        except BridgeError:
            raise
        except MlflowException as exc:
            code = str(exc.error_code)
            raise BridgeError(code, exc.message, code in TRANSIENT_CODES) from exc
        except Exception as exc:  # the database or the artifact store is unreachable
            raise BridgeError(
                "TEMPORARILY_UNAVAILABLE", f"{type(exc).__name__}: {exc}", True
            ) from exc
        raise BridgeError("BAD_REQUEST", f"unknown bridge request {op!r}", False)

    def ping(self) -> dict[str, Any]:
        """Connect once, without MLflow's minutes of retries, so `mltrail doctor` can
        say at once that a database server does not answer."""
        import mlflow
        import sqlalchemy

        if self.tracking_uri and not self.tracking_uri.startswith("sqlite:"):
            engine = sqlalchemy.create_engine(self.tracking_uri)
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
        return {"mlflow": mlflow.__version__}

    # tracking ------------------------------------------------------------

    def call(self, endpoint: str, p: dict[str, Any]) -> dict[str, Any]:
        from mlflow.entities import Metric, Param, RunTag

        client = self.client
        if endpoint == "experiments/get-by-name":
            found = client.get_experiment_by_name(p["experiment_name"])
            if found is None:
                raise BridgeError(
                    "RESOURCE_DOES_NOT_EXIST",
                    f"Experiment {p['experiment_name']!r} does not exist",
                    False,
                )
            return {"experiment": _json(found)}
        if endpoint == "experiments/get":
            return {"experiment": _json(client.get_experiment(str(p["experiment_id"])))}
        if endpoint == "experiments/create":
            tags = {t["key"]: t["value"] for t in p.get("tags") or []}
            new_id = client.create_experiment(
                p["name"], artifact_location=p.get("artifact_location"), tags=tags or None
            )
            return {"experiment_id": str(new_id)}
        if endpoint == "experiments/search":
            page = client.search_experiments(
                view_type=_VIEW.get(p.get("view_type", "ACTIVE_ONLY"), 1),
                max_results=int(p.get("max_results", 1000)),
                page_token=p.get("page_token"),
            )
            return {"experiments": [_json(e) for e in page], "next_page_token": _token(page)}
        if endpoint == "runs/create":
            tags = {t["key"]: t["value"] for t in p.get("tags") or []}
            if p.get("user_id"):
                tags.setdefault("mlflow.user", p["user_id"])
            run = client.create_run(
                str(p["experiment_id"]),
                start_time=p.get("start_time"),
                tags=tags,
                run_name=p.get("run_name") or None,
            )
            return {"run": _json(run)}
        if endpoint == "runs/get":
            return {"run": _json(client.get_run(p["run_id"]))}
        if endpoint == "runs/search":
            page = client.search_runs(
                [str(e) for e in p.get("experiment_ids") or []],
                filter_string=p.get("filter") or "",
                run_view_type=_VIEW.get(p.get("run_view_type", "ACTIVE_ONLY"), 1),
                max_results=int(p.get("max_results", 1000)),
                order_by=p.get("order_by"),
                page_token=p.get("page_token"),
            )
            return {"runs": [_json(r) for r in page], "next_page_token": _token(page)}
        if endpoint == "runs/log-batch":
            client.log_batch(
                p["run_id"],
                metrics=[
                    Metric(m["key"], float(m["value"]), int(m["timestamp"]), int(m["step"]))
                    for m in p.get("metrics") or []
                ],
                params=[Param(x["key"], str(x["value"])) for x in p.get("params") or []],
                tags=[RunTag(x["key"], str(x["value"])) for x in p.get("tags") or []],
                synchronous=True,
            )
            return {}
        if endpoint == "runs/update":
            return self._update(p)
        if endpoint == "runs/delete-tag":
            client.delete_tag(p["run_id"], p["key"])
            return {}
        if endpoint == "runs/delete":
            client.delete_run(p["run_id"])
            return {}
        if endpoint == "runs/restore":
            client.restore_run(p["run_id"])
            return {}
        if endpoint == "runs/log-inputs":
            client.log_inputs(p["run_id"], datasets=[_dataset_input(d) for d in p["datasets"]])
            return {}
        if endpoint == "metrics/get-history":
            points = client.get_metric_history(p["run_id"], p["metric_key"])
            return {"metrics": [_json(m) for m in points]}
        if endpoint.startswith(("registered-models/", "model-versions/")):
            return self._registry(endpoint, p)
        if endpoint == "logged-models" or endpoint.startswith("logged-models/"):
            # The bridge does not carry MLflow 3's logged-models API. It answers as a
            # server without that API does (not found), so models keep the run-artifact
            # layout and `runs:/` reads and `register_model` fall back to it, instead of
            # a refusal that sets the model record aside and fails the read.
            raise BridgeError(
                "RESOURCE_DOES_NOT_EXIST",
                f"{endpoint}: logged models are not available through mltrail's bridge",
                False,
            )
        raise BridgeError(
            "ENDPOINT_NOT_FOUND",
            f"{endpoint} is not available for {self.tracking_uri} through mltrail's bridge",
            False,
        )

    def _registry(self, endpoint: str, p: dict[str, Any]) -> dict[str, Any]:
        """The model registry's requests (`mltrail.stores.remote.registry`), on the
        registry MLflow keeps in the same database."""
        client = self.client
        tags = {t["key"]: t["value"] for t in p.get("tags") or []}
        search = {
            "filter_string": p.get("filter") or None,
            "max_results": int(p.get("max_results", 100)),
            "order_by": p.get("order_by"),
            "page_token": p.get("page_token"),
        }
        if endpoint == "registered-models/create":
            model = client.create_registered_model(
                p["name"], tags=tags or None, description=p.get("description")
            )
            return {"registered_model": _json(model)}
        if endpoint == "registered-models/get":
            return {"registered_model": _json(client.get_registered_model(p["name"]))}
        if endpoint == "registered-models/search":
            page = client.search_registered_models(**search)
            return {"registered_models": [_json(m) for m in page], "next_page_token": _token(page)}
        if endpoint == "registered-models/update":
            model = client.update_registered_model(p["name"], description=p.get("description"))
            return {"registered_model": _json(model)}
        if endpoint == "registered-models/delete":
            client.delete_registered_model(p["name"])
            return {}
        if endpoint == "registered-models/set-tag":
            client.set_registered_model_tag(p["name"], p["key"], p["value"])
            return {}
        if endpoint == "registered-models/get-latest-versions":
            found = client.get_latest_versions(p["name"], stages=p.get("stages") or None)
            return {"model_versions": [_json(v) for v in found]}
        if endpoint == "registered-models/alias":
            if "version" in p:
                client.set_registered_model_alias(p["name"], p["alias"], p["version"])
                return {}
            if p.get("_method") == "DELETE":
                client.delete_registered_model_alias(p["name"], p["alias"])
                return {}
            found = client.get_model_version_by_alias(p["name"], p["alias"])
            return {"model_version": _json(found)}
        if endpoint == "model-versions/create":
            version = client.create_model_version(
                p["name"], p["source"], run_id=p.get("run_id"), tags=tags or None,
                description=p.get("description"),
            )
            return {"model_version": _json(version)}
        if endpoint == "model-versions/get":
            return {"model_version": _json(client.get_model_version(p["name"], p["version"]))}
        if endpoint == "model-versions/search":
            page = client.search_model_versions(**search)
            return {"model_versions": [_json(v) for v in page], "next_page_token": _token(page)}
        if endpoint == "model-versions/transition-stage":
            version = client.transition_model_version_stage(
                p["name"], p["version"], p["stage"],
                archive_existing_versions=bool(p.get("archive_existing_versions")),
            )
            return {"model_version": _json(version)}
        if endpoint == "model-versions/update":
            version = client.update_model_version(
                p["name"], p["version"], description=p.get("description")
            )
            return {"model_version": _json(version)}
        if endpoint == "model-versions/delete":
            client.delete_model_version(p["name"], p["version"])
            return {}
        if endpoint == "model-versions/set-tag":
            client.set_model_version_tag(p["name"], p["version"], p["key"], p["value"])
            return {}
        raise BridgeError(
            "ENDPOINT_NOT_FOUND",
            f"{endpoint} is not available for {self.tracking_uri} through mltrail's bridge",
            False,
        )

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        from mlflow.entities import RunStatus

        client = self.client
        status = p.get("status")
        if p.get("run_name"):
            client.update_run(p["run_id"], name=p["run_name"])
        if status and RunStatus.is_terminated(RunStatus.from_string(status)):
            client.set_terminated(p["run_id"], status, end_time=p.get("end_time"))
        elif status:
            client.update_run(p["run_id"], status=status)
        return {}

    # artifacts -----------------------------------------------------------

    def log_artifact(self, artifact_uri: str, path: str, local_file: str) -> dict[str, Any]:
        """Write one file to `artifact_uri`/`path` with MLflow's artifact repository for
        the URI's scheme (s3, gs, wasbs, hdfs, ...), keeping the file's name."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        folder, _, name = path.rpartition("/")
        source = Path(local_file)
        if source.name != name:  # the repository keeps the local name: stage under the right one
            staged = source.with_name(f".{source.name}.bridge") / name
            staged.parent.mkdir(exist_ok=True)
            shutil.copyfile(source, staged)
            try:
                get_artifact_repository(artifact_uri).log_artifact(str(staged), folder or None)
            finally:
                shutil.rmtree(staged.parent, ignore_errors=True)
        else:
            get_artifact_repository(artifact_uri).log_artifact(str(source), folder or None)
        return {}

    def list_artifacts(self, artifact_uri: str, path: str) -> list[dict[str, Any]]:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        entries = get_artifact_repository(artifact_uri).list_artifacts(path or None)
        return [
            {
                "path": e.path.rsplit("/", 1)[-1],
                "is_dir": bool(e.is_dir),
                "file_size": e.file_size,
            }
            for e in entries
        ]

    def download(self, artifact_uri: str, path: str, target: str) -> dict[str, Any]:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        Path(target).parent.mkdir(parents=True, exist_ok=True)
        got = get_artifact_repository(artifact_uri).download_artifacts(
            path, dst_path=str(Path(target).parent)
        )
        if Path(got) != Path(target):
            shutil.move(got, target)
        return {}


def _json(entity: Any) -> dict[str, Any]:
    """An MLflow entity as the REST API's JSON (what a server would answer)."""
    from mlflow.utils.proto_json_utils import message_to_json

    return json.loads(message_to_json(entity.to_proto()))


def _token(page: Any) -> str | None:
    token = page.token
    return token.decode() if isinstance(token, bytes) else token


def _dataset_input(item: dict[str, Any]) -> Any:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    d = item["dataset"]
    dataset = Dataset(
        name=d.get("name", ""),
        digest=d.get("digest", ""),
        source_type=d.get("source_type", ""),
        source=d.get("source", ""),
        schema=d.get("schema"),
        profile=d.get("profile"),
    )
    tags = [InputTag(t["key"], t["value"]) for t in item.get("tags") or []]
    return DatasetInput(dataset=dataset, tags=tags)


def serve(tracking_uri: str | None) -> None:
    """The helper process's loop: a request a line in, an answer a line out."""
    side = MlflowSide(tracking_uri)
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever MLflow prints must not mix with the answers
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer: dict[str, Any] = {"ok": side.handle(request["op"], request.get("args", {}))}
        except BridgeError as exc:
            answer = {"error": exc.as_dict()}
        try:
            out.write(json.dumps(answer) + "\n")
            out.flush()
        except BrokenPipeError:  # the training process is gone; the spool keeps the rest
            return


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        serve(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None)
