"""Saving a model folder and logging it into a run, for every flavour.

A flavour (an integration) describes its files with a `layout.ModelSpec`;
`save_model` writes the folder, `log_model` writes it straight into a run's
artifacts (staged, then published at once) and says what it logged in a
`ModelInfo`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import AlreadyExistsError, InvalidParameterError
from .layout import (
    DEFAULT_ARTIFACT_PATH,
    MLMODEL,
    PYFUNC_FLAVOR,
    ModelSpec,
    final_requirements,
    folder_size,
    utc_now,
    write_environment,
    yaml_dump,
)
from .signatures import infer_signature, signature_dict, write_input_example
from .uris import mark_known


class ModelSaveError(InvalidParameterError):
    """A model could not be written, typically because it cannot be pickled.

    Nothing is logged when this is raised: the model is written to a scratch
    folder first and only a complete folder becomes an artifact.
    """


@dataclass(frozen=True)
class ModelInfo:
    """What `log_model` logged, with MLflow's attribute names.

    Attributes:
        artifact_path: the folder of the model inside the run's artifacts.
        flavors: the flavours written into MLmodel.
        model_uri: `runs:/<run_id>/<artifact_path>`, for `load_model` and `register_model`.
        model_uuid: a fresh id for this copy of the model.
        run_id: the run that holds the model.
        utc_time_created: when MLmodel was written, as MLflow formats it.
        signature: MLflow's signature dict (`inputs`, `outputs`, `params`), or None.
        metadata: the user's metadata dict written into MLmodel, or None.
        registered_model_version: the version created when `registered_model_name`
            was given, else None.
        model_id: the logged model's own id (`m-...`), where the store gives one:
            `models:/<model_id>` loads it with mltrail, and it is what the registry
            takes as a source. On a remote store it is the id mltrail assigned; the
            server's id (what MLflow's own client uses) is
            `TrackingClient().get_logged_model(model_id).model_id`. None where the
            store keeps models as plain run artifacts.
    """

    artifact_path: str
    flavors: dict[str, dict[str, Any]]
    model_uri: str
    model_uuid: str
    run_id: str
    utc_time_created: str
    signature: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    registered_model_version: str | None = None
    mlmodel: dict[str, Any] = field(default_factory=dict, repr=False)
    model_id: str | None = None


def save_model(
    path: str | os.PathLike[str],
    spec: ModelSpec,
    *,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Write a model folder in MLflow's layout at `path`, which must not exist yet.

    The model file streams straight into the folder (see `ModelSpec.write`), so a
    model bigger than memory never has to be held as bytes. If writing fails,
    the partial folder is removed.

    Args:
        path: the folder to create.
        spec: the flavour's files, MLmodel entries and requirements.
        signature: a signature dict (`infer_signature`); inferred from
            `input_example` when omitted.
        input_example: a few rows of input, saved as MLflow saves them.
        pip_requirements: replace the flavour's requirement lines.
        extra_pip_requirements: lines added to them.
        metadata: free-form dict stored under MLmodel's `metadata`.
        run_id: the run the model belongs to, written into MLmodel.
        artifact_path: the model's folder inside that run's artifacts.
        model_id: the logged model's id, written into MLmodel.

    Returns:
        The MLmodel content that was written.

    Raises:
        AlreadyExistsError: `path` exists and is not an empty folder.
        ModelSaveError: the flavour could not write the model (e.g. it cannot be pickled).
    """
    folder = Path(path)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise AlreadyExistsError(
            f"Cannot save a model to {str(folder)!r}: the path already exists",
            resource_id=str(folder),
        )
    requirements = final_requirements(spec, pip_requirements, extra_pip_requirements)
    signature_content = signature_dict(signature)
    if signature_content is None and input_example is not None:
        signature_content = infer_signature(input_example)
    folder.mkdir(parents=True, exist_ok=True)
    flavour_names = ", ".join(k for k in spec.flavors if k != PYFUNC_FLAVOR)
    try:
        spec.write(folder)
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelSaveError(
            f"Could not save the {flavour_names} model to {str(folder)!r}: "
            f"{type(exc).__name__}: {exc}",
            key="model",
        ) from exc
    try:
        mlmodel: dict[str, Any] = {
            "artifact_path": artifact_path,
            "flavors": spec.flavors,
            "model_id": model_id,
            "model_uuid": uuid.uuid4().hex,
            "run_id": run_id,
            "utc_time_created": utc_now(),
        }
        if input_example is not None:
            mlmodel["saved_input_example_info"] = write_input_example(folder, input_example)
        if signature_content is not None:
            mlmodel["signature"] = signature_content
        if metadata:
            mlmodel["metadata"] = dict(metadata)
        mlmodel = {k: v for k, v in mlmodel.items() if v is not None}
        write_environment(folder, requirements)
        mlmodel["model_size_bytes"] = folder_size(folder)
        (folder / MLMODEL).write_text(yaml_dump(mlmodel))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    mark_known(folder)
    return mlmodel


def log_model(
    artifact_path: str | None,
    spec: ModelSpec,
    *,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Sequence[str] | None = None,
    extra_pip_requirements: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    registered_model_name: str | None = None,
    run_id: str | None = None,
) -> ModelInfo:
    """Save a model straight into the run's artifacts (staged, then published at once).

    Args:
        artifact_path: the model's folder inside the run's artifacts ("model" if None).
        spec: the flavour's files, MLmodel entries and requirements.
        signature, input_example, pip_requirements, extra_pip_requirements, metadata:
            as for `save_model`.
        registered_model_name: also register the logged model under this name
            (creating the registered model if needed).
        run_id: log into this run; by default the active run, started if none is.

    Returns:
        A ModelInfo whose `model_uri` loads the model back.

    Raises:
        ModelSaveError: the model could not be written; nothing was logged.
    """
    from .. import fluent

    artifact_path = (artifact_path or DEFAULT_ARTIFACT_PATH).strip("/")
    if not artifact_path or ".." in artifact_path.split("/"):
        raise InvalidParameterError(
            f"Invalid model artifact path {artifact_path!r}", key="artifact_path"
        )
    if run_id is None:
        client, run_id = fluent.run_for_logging()
    else:
        client = fluent.current_client()
    model_id = client.new_model_id() if client.logs_model_ids else None
    with client.stage_logged_model(run_id, model_id or "", artifact_path, artifact_path) as folder:
        mlmodel = save_model(
            folder,
            spec,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
            run_id=run_id,
            artifact_path=artifact_path,
            model_id=model_id,
        )
    model_uri = f"runs:/{run_id}/{artifact_path}"
    version = None
    if registered_model_name is not None:
        version = fluent.register_model(model_uri, registered_model_name).version
    return ModelInfo(
        artifact_path=artifact_path,
        flavors=mlmodel["flavors"],
        model_uri=model_uri,
        model_uuid=mlmodel["model_uuid"],
        run_id=run_id,
        utc_time_created=mlmodel["utc_time_created"],
        signature=mlmodel.get("signature"),
        metadata=mlmodel.get("metadata"),
        registered_model_version=version,
        mlmodel=mlmodel,
        model_id=model_id,
    )
